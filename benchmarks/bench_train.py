"""Training throughput: our Accelerate loop vs transformers' ``Trainer`` on the same model, data and batch.

Both train the same freshly initialised ``PhiForCausalLM`` preset (same seed) on the same fixed-length
windows of the same token file, in the same order, with the same global batch, micro batch, AdamW
settings, LR schedule, gradient clipping and precision. Throughput is timed per optimizer step
(consecutive step ends, so data loading, forward, backward, clipping and the optimizer all count);
the first ``--skip`` steps (allocation, compilation) are left out; the median step is reported.
MFU = (6N + 12 L d T) * tokens/s / peak FLOP/s (``train.trainer`` docstring); peak is the device's
bf16 dense peak when known (H100 989 TFLOP/s) or ``--peak-flops``; on CPU it is not reported.

CPU (default, the tiny preset, a token file built from this interpreter's stdlib):
    python benchmarks/bench_train.py
GPU (e.g. H100, phi-1 at 2048 tokens in bf16):
    python benchmarks/bench_train.py --preset phi-1 --seq 2048 --bf16 --micro-batch 8 --global-batch 64 --steps 12 --compile
    python benchmarks/bench_train.py --preset phi-1-small --seq 2048 --bf16 --micro-batch 16 --global-batch 128 --steps 12 --compile
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_tokens(work: Path, n_files: int, vocab: int) -> Path:
    """A token directory from the first ``n_files`` stdlib modules (tokenizer trained on them)."""
    import sysconfig

    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.schema import SHARD_SCHEMA
    from train.prepare import prepare_tokens
    from train.tokenizer import train_tokenizer

    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in sorted(root.glob("*.py")) if p.stat().st_size > 2000][:n_files]
    rows = [{"id": p.name, "text": p.read_text(errors="replace")} for p in files]
    (work / "shards" / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=SHARD_SCHEMA), work / "shards" / "data" / "000_00000.parquet"
    )
    train_tokenizer(work / "shards", work / "tok", vocab_size=vocab)
    prepare_tokens(work / "shards", work / "tok", work / "tokens", workers=2)
    return work / "tokens"


def run_ours(args, tokens: Path, out: Path) -> list[float]:
    from train.trainer import train

    train(
        tokens=str(tokens),
        output_dir=str(out),
        preset=args.preset,
        vocab_size=args.vocab,
        seq_len=args.seq,
        global_batch_size=args.global_batch,
        micro_batch_size=args.micro_batch,
        max_steps=args.steps,
        lr=1e-3,
        warmup_steps=2,
        mixed_precision="bf16" if args.bf16 else "no",
        compile=args.compile,
        save_every=10**9,  # the final checkpoint happens after the last timed step
        eval_every=10**9,
        tensorboard=False,
        resume=False,
        peak_flops=args.peak_flops,
        seed=0,
    )
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [args.global_batch * args.seq / m["tokens_per_s"] for m in metrics]


def run_trainer(args, tokens: Path, out: Path) -> list[float]:
    import torch
    from transformers import PhiForCausalLM, Trainer, TrainerCallback, set_seed

    from benchmarks.gpu.sections import trainer_arguments
    from train.prepare import TokenFile
    from train.presets import attn_implementation, phi_config
    from train.trainer import TokenWindows, WindowSampler, grad_accum_steps

    data = TokenFile(tokens)
    windows = TokenWindows(data.tokens, None, 0, data.n_tokens, args.seq)
    sampler = WindowSampler(windows.n_windows, seed=0)
    n_samples = args.steps * args.global_batch

    class Windows(torch.utils.data.Dataset):
        # the same windows in the same order as our loop (Trainer's sampler is made sequential below)
        def __len__(self):
            return n_samples

        def __getitem__(self, k):
            x, _ = windows.batch(sampler.windows(range(k, k + 1)))
            return {"input_ids": x[0], "labels": x[0]}

    class Sequential(Trainer):
        def _get_train_sampler(self, *a, **k):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

        def on_step_begin(self, *a, **k):
            if not self.ends:
                self.ends.append(time.perf_counter())

    set_seed(0)
    config = phi_config(args.preset, vocab_size=args.vocab, max_position_embeddings=max(args.seq, 256))
    config._attn_implementation = attn_implementation("auto")
    model = PhiForCausalLM(config)
    timer = StepTimer()
    spec = {"device": "cuda" if torch.cuda.is_available() else "cpu", "precision": "bf16" if args.bf16 else "no",
            "micro_batch": args.micro_batch, "accum": grad_accum_steps(args.global_batch, args.micro_batch, 1),
            "warmup": 0, "steps": args.steps, "compile": args.compile}  # fmt: skip
    # the GPU suite's Trainer settings, with this script's LR schedule
    training_args = trainer_arguments(
        spec, str(out), learning_rate=1e-3, warmup_steps=2, lr_scheduler_type="linear"
    )
    Sequential(model=model, args=training_args, train_dataset=Windows(), callbacks=[timer]).train()
    return [b - a for a, b in zip(timer.ends, timer.ends[1:], strict=False)]


def summarize(name: str, step_times: list[float], args, fpt: int, peak: float | None) -> dict:
    steady = step_times[args.skip :] or step_times
    median = statistics.median(steady)
    tokens_per_s = args.global_batch * args.seq / median
    mfu = fpt * tokens_per_s / peak if peak else None
    return {
        "name": name,
        "median_step_s": median,
        "tokens_per_s": tokens_per_s,
        "mfu": mfu,
        "steps_timed": len(steady),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=None, help="model vocab (default: the preset's)")
    parser.add_argument("--tokenizer-vocab", type=int, default=2048)
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip", type=int, default=3, help="leading steps left out of the timing")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--peak-flops", type=float, default=None)
    parser.add_argument("--tokens", default=None, help="an existing token directory (default: build one)")
    parser.add_argument("--files", type=int, default=60, help="stdlib files for the built token file")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()

    import torch

    from train.presets import PRESETS, build_model, count_parameters, phi_config
    from train.trainer import flops_per_token, peak_flops

    args.vocab = args.vocab or PRESETS[args.preset]["vocab_size"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokens = (
            Path(args.tokens)
            if args.tokens
            else build_tokens(work, args.files, min(args.tokenizer_vocab, args.vocab))
        )
        with torch.device("meta"):
            meta = build_model(phi_config(args.preset, vocab_size=args.vocab), attn="sdpa")
        fpt = flops_per_token(
            count_parameters(meta), meta.config.num_hidden_layers, meta.config.hidden_size, args.seq
        )
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        peak = peak_flops(device, args.peak_flops)
        ours = summarize("ours (train.trainer)", run_ours(args, tokens, work / "ours"), args, fpt, peak)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        theirs = summarize("transformers Trainer", run_trainer(args, tokens, work / "hf"), args, fpt, peak)

    device_name = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"\npreset {args.preset} | seq {args.seq} | global batch {args.global_batch} (micro {args.micro_batch}) | "
        f"{'bf16' if args.bf16 else 'fp32'}{' + compile' if args.compile else ''} | {device_name}"
    )
    for r in (ours, theirs):
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a (no peak FLOP/s for this device)"
        print(
            f"{r['name']:<24} {r['tokens_per_s']:>12,.0f} tokens/s   median step {r['median_step_s']:.3f} s   MFU {mfu}"
        )
    ratio = ours["tokens_per_s"] / theirs["tokens_per_s"]
    print(f"ratio ours / Trainer: {ratio:.2f}x")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"args": vars(args), "device": device_name, "ours": ours, "trainer": theirs, "ratio": ratio},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
