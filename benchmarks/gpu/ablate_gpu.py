"""Equal-token ablation on one GPU (default: phi-1-micro, 12M tokens per run) from the folder
``ablate_prep.py`` made: every variant x
seed trained for the same tokens (same schedule, same windows per seed), then scored by HumanEval/MBPP
solution bits per character and its own validation loss. Needs torch, transformers and numpy only.

    PYTHONPATH=. python benchmarks/gpu/ablate_gpu.py --data gpu-data/ablate --out "$OUT"

Runs go seed by seed (every variant of seed 0, then of seed 1, ...) and no run starts after
``--deadline-s``, so a slower GPU than estimated gives fewer seeds, not a missing variant.

The loop uses the trainer's own pieces (``train.trainer`` imports without pydantic; ``train()`` itself
needs it for its config, and the GPU machine lacks it): ``make_optimizer`` (AdamW (0.9, 0.98), weight
decay 0.1 on matrices), ``lr_at`` (10% linear warmup, then linear decay), ``TokenWindows`` +
``WindowSampler`` (a fresh window permutation per seed), ``token_loss``; bf16 autocast, clipping at 1.0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def autocast(device: str):
    import torch

    return torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")


def val_loss(model, tokens, start: int, seq: int, device: str, n: int = 32) -> float:
    import torch
    import torch.nn.functional as F

    stop = len(tokens)
    rows = [np.asarray(tokens[s : s + seq + 1], dtype=np.int64) for s in range(start, stop - seq - 1, seq)][
        :n
    ]
    chunk = torch.from_numpy(np.stack(rows)).to(device)
    with torch.no_grad(), autocast(device):
        logits = model(input_ids=chunk[:, :-1]).logits.float()
    return float(F.cross_entropy(logits.transpose(1, 2), chunk[:, 1:]))


def bits_per_char(model, items: list[dict], pad_id: int, device: str, batch: int = 32) -> dict[str, float]:
    import torch

    from train.evaluate.condloss import LN2, batch_nats

    out = {}
    for bench in sorted({it["benchmark"] for it in items}):
        mine = sorted((it for it in items if it["benchmark"] == bench), key=lambda it: len(it["ids"]))
        nats = 0.0
        with torch.no_grad(), autocast(device):
            for i in range(0, len(mine), batch):
                rows = [(it["ids"], it["n_context"]) for it in mine[i : i + batch]]
                nats += sum(n for n, _ in batch_nats(model, rows, pad_id, device))
        out[f"{bench}_bpc"] = nats / LN2 / sum(it["chars"] for it in mine)
    return out


def train_one(args, meta: dict, variant: str, seed: int, items: list[dict]) -> dict:
    import torch

    from train.prepare import TokenFile
    from train.presets import build_model, phi_config
    from train.trainer import TokenWindows, WindowSampler, lr_at, make_optimizer, token_loss

    data = TokenFile(Path(args.data) / "variants" / variant, verify=False)
    split = len(data.tokens) - args.val_tokens
    windows = TokenWindows(data.tokens, None, 0, split, args.seq)
    sampler = WindowSampler(windows.n_windows, seed)
    torch.manual_seed(seed)
    vocab = 64 * math.ceil(meta["vocab_size"] / 64)
    config = phi_config(
        args.preset, vocab_size=vocab, max_position_embeddings=args.seq, eos_token_id=meta["eos_id"]
    )
    model = build_model(config, attn="sdpa").to(args.device)
    opt = make_optimizer(model, args.lr, 0.1, device=torch.device(args.device))
    steps = args.budget // (args.batch * args.seq)
    t0 = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, lr=args.lr, warmup_steps=max(1, steps // 10), max_steps=steps)
        x, y = windows.batch(sampler.windows(range(step * args.batch, (step + 1) * args.batch)))
        with autocast(args.device):
            logits = model(input_ids=x.to(args.device)).logits
        total, count = token_loss(logits, y.to(args.device))
        loss = total / count
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    model.eval()
    final = {
        **bits_per_char(model, items, meta["pad_id"], args.device),
        "val_loss": val_loss(model, data.tokens, split, args.seq, args.device),
    }
    return {"variant": variant, "seed": seed, "steps": steps, "tokens": steps * args.batch * args.seq,
            "train_loss": float(loss), "tokens_per_s": steps * args.batch * args.seq / seconds,
            "variant_tokens": int(len(data.tokens)), "final": final}  # fmt: skip


def summarize(meta: dict, runs: list[dict]) -> dict:
    from train.ablate_report import COMPARED, compare, stats

    variants = {
        name: {m: stats([r["final"][m] for r in runs if r["variant"] == name]) for m in runs[0]["final"]}
        for name in meta["variants"]
        if any(r["variant"] == name for r in runs)  # a partial result (written after every run)
    }
    comparisons = []
    for name in variants:
        if name.startswith("random-") and name.removeprefix("random-") in variants:
            filtered = name.removeprefix("random-")
            for other in [name] + [v for v in variants if v not in (filtered, name)]:
                for metric in COMPARED:
                    if metric in variants[filtered]:
                        comparisons.append({"first": filtered, "second": other, "metric": metric,
                                            **compare(variants[filtered][metric], variants[other][metric])})  # fmt: skip
    return {"variants": variants, "comparisons": comparisons}


def markdown(result: dict) -> str:
    """The table for RESULTS.md: mean +- std over seeds per variant, then the comparisons."""
    metrics = [
        m for m in ("humaneval_bpc", "mbpp_bpc", "val_loss") if m in next(iter(result["variants"].values()))
    ]
    lines = [
        "| variant (tokens available) | " + " | ".join(metrics) + " |",
        "| --- |" + " ---: |" * len(metrics),
    ]
    for name, stats in result["variants"].items():
        available = next(r["variant_tokens"] for r in result["runs"] if r["variant"] == name)
        cells = [f"{stats[m]['mean']:.4f} +- {stats[m]['std']:.4f} (n={stats[m]['n']})" for m in metrics]
        lines.append(f"| {name} ({available / 1e6:.2f}M) | " + " | ".join(cells) + " |")
    lines.append("")
    for c in result["comparisons"]:
        lines.append(f"- {c['first']} vs {c['second']} {c['metric']}: {c['diff']:+.4f} ({c['verdict']})")
    return "\n".join(lines) + "\n"


def write_result(args, meta: dict, runs: list[dict], started: float) -> dict:
    """ablate_gpu.json and ablate_gpu.md, rewritten after every run (a cut run keeps what it finished)."""
    import torch

    device = torch.cuda.get_device_name(0) if args.device == "cuda" else args.device
    summary = summarize(meta, runs) if runs else {"variants": {}, "comparisons": []}
    result = {"device": device, "args": vars(args), "wall_s": time.perf_counter() - started, "runs": runs,
              **summary}  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablate_gpu.json").write_text(json.dumps(result, indent=2))
    (out / "ablate_gpu.md").write_text(markdown(result))
    return result


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="gpu-data/ablate")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--budget", type=int, default=12_000_000, help="training tokens per run")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--val-tokens", type=int, default=200_000)
    parser.add_argument("--preset", default="phi-1-micro")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--deadline-s", type=float, default=float(os.environ.get("ABLATE_DEADLINE_S", 450)),
                        help="start no run after this many seconds (every seed's runs finish together)")  # fmt: skip
    args = parser.parse_args()
    meta = json.loads((Path(args.data) / "prep.json").read_text())
    items = json.loads((Path(args.data) / "items.json").read_text())
    torch.backends.cuda.matmul.allow_tf32 = True
    runs, t0 = [], time.perf_counter()
    # seed-major: every finished seed has all variants, so a deadline cut still compares them
    for seed in [int(s) for s in args.seeds.split(",")]:
        for variant in meta["variants"]:
            elapsed = time.perf_counter() - t0
            per_run = elapsed / len(runs) if runs else 0.0
            if elapsed + per_run > args.deadline_s:
                print(f"deadline: {elapsed:.0f} s spent, a run takes ~{per_run:.0f} s; stopping", flush=True)
                break
            runs.append(train_one(args, meta, variant, seed, items))
            print(json.dumps(runs[-1]), flush=True)
            write_result(args, meta, runs, t0)
        else:
            continue
        break
    complete = [r for r in runs if sum(x["seed"] == r["seed"] for x in runs) == len(meta["variants"])]
    result = write_result(args, meta, complete, t0)
    print(markdown(result))


if __name__ == "__main__":
    main()
