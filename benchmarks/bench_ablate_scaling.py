"""How large a proxy model fits a <= 8-minute GPU ablation? CPU tokens/s of the candidate presets,
extrapolated to one H200 with the measured H200 figures (benchmarks/RESULTS.md).

    PYTHONPATH=. python benchmarks/bench_ablate_scaling.py [--presets phi-1-small,phi-1-mini,phi-1-micro,phi-1-nano]

For each preset (the ablation's 4,096-token vocabulary): one training step (forward, backward, AdamW)
timed on CPU after a warm-up step, in one process on the same batch shape. The CPU's achieved FLOP/s
per model, relative to phi-1-small's, estimates how much of the H200 efficiency measured for
phi-1-small (``--h200-tokens-per-s``, the ablation's 153k tokens/s at seq 1024 x batch 32 in bf16)
each smaller model keeps: ``tokens/s(model) = 153k x fpt(phi-1-small) / fpt(model) x efficiency
ratio``. Small models are worse at filling a GPU than a CPU (kernel launches, small matmuls), so the
estimate is optimistic for them; the ablation is sized with ``--safety`` (default 2x) on top. Prints
a table and the budget (tokens per run) that fits ``--minutes`` for ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cpu_tokens_per_s(preset: str, vocab: int, seq: int, batch: int, steps: int) -> tuple[float, int, int]:
    import torch

    from train.presets import build_model, count_parameters, phi_config
    from train.trainer import flops_per_token, make_optimizer, token_loss

    torch.manual_seed(0)
    model = build_model(phi_config(preset, vocab_size=vocab, dropout=0.0), attn="sdpa")
    optimizer = make_optimizer(model, 1e-4, 0.1)
    n_params = count_parameters(model)
    fpt = flops_per_token(n_params, model.config.num_hidden_layers, model.config.hidden_size, seq)
    x = torch.randint(0, vocab, (batch, seq + 1))
    times = []
    for _ in range(steps + 1):  # the first step (allocations) is not timed
        t0 = time.perf_counter()
        total, count = token_loss(model(input_ids=x[:, :-1]).logits, x[:, 1:])
        (total / count).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return batch * seq * steps / sum(times[1:]), n_params, fpt


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", default="phi-1-small,phi-1-mini,phi-1-micro,phi-1-nano")
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--h200-tokens-per-s", type=float, default=153_000, help="phi-1-small, measured")
    parser.add_argument("--gpu-seq", type=int, default=1024)
    parser.add_argument("--minutes", type=float, default=6.0, help="training time for all runs")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--safety", type=float, default=2.0)
    args = parser.parse_args()
    from train.trainer import flops_per_token

    rows = {}
    for preset in args.presets.split(","):
        rate, n_params, fpt = cpu_tokens_per_s(preset, args.vocab, args.seq, args.batch, args.steps)
        rows[preset] = {"n_params": n_params, "cpu_tokens_per_s": rate, "cpu_gflops": rate * fpt / 1e9}
        print(f"{preset}: {n_params / 1e6:.1f}M params, {rate:,.0f} tokens/s on CPU", flush=True)
    base = rows["phi-1-small"]
    base_gpu_fpt = None
    for preset, row in rows.items():
        from train.presets import PRESETS

        shape = PRESETS[preset]
        gpu_fpt = flops_per_token(
            row["n_params"], shape["num_hidden_layers"], shape["hidden_size"], args.gpu_seq
        )
        base_gpu_fpt = base_gpu_fpt or gpu_fpt
        efficiency = row["cpu_gflops"] / base["cpu_gflops"]
        row["h200_tokens_per_s_est"] = args.h200_tokens_per_s * base_gpu_fpt / gpu_fpt * efficiency
        seconds = args.minutes * 60 / args.runs / args.safety
        row["budget_tokens"] = int(row["h200_tokens_per_s_est"] * seconds)
        row["tokens_per_param"] = row["budget_tokens"] / row["n_params"]
    print(
        "| preset | params (matmul) | CPU tokens/s | CPU GFLOP/s | H200 tokens/s (est.) | budget/run | tokens/param |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for preset, r in rows.items():
        print(f"| {preset} | {r['n_params'] / 1e6:.1f}M | {r['cpu_tokens_per_s']:,.0f} | {r['cpu_gflops']:.1f} | "
              f"{r['h200_tokens_per_s_est']:,.0f} | {r['budget_tokens'] / 1e6:.1f}M | {r['tokens_per_param']:.2f} |")  # fmt: skip
    print(json.dumps({"args": vars(args), "rows": rows}))


if __name__ == "__main__":
    main()
