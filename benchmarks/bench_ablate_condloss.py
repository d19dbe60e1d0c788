"""Conditional-loss scoring speed: ``train.evaluate.condloss.item_losses`` (length-sorted, padded
batches) vs the plain loop a person writes first (one unpadded forward pass per item, the hand
computation of the test), on all of HumanEval (164) and MBPP test (500, when ``TEXTBOOKS_MBPP_PATH``
is set), with the same model and tokenizer. The per-item losses of both are compared.

    python benchmarks/bench_ablate_condloss.py                         # an ablate-quickstart model if present
    python benchmarks/bench_ablate_condloss.py --model DIR --max-len 256 --batch 32
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_MODEL = Path("textbooks-out/ablate-quickstart/runs/unfiltered/seed_0/final")


def one_by_one(model, tok, items, max_len: int) -> list[float]:
    """Baseline: one forward pass per item, no padding."""
    import torch

    from train.evaluate.condloss import encode_item

    out = []
    with torch.no_grad():
        for item in items:
            ids, n_context, _, _ = encode_item(tok, item, max_len)
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
            target = torch.tensor(ids[n_context:])
            out.append(-float(logp[n_context - 1 : len(ids) - 1].gather(1, target[:, None]).sum()))
    return out


def main() -> None:
    import torch

    from train.evaluate.condloss import benchmark_items, item_losses, load_model
    from train.presets import build_model, phi_config
    from train.tokenizer import load_tokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(DEFAULT_MODEL) if DEFAULT_MODEL.is_dir() else None)
    parser.add_argument("--tokenizer", default="textbooks-out/ablate-quickstart/tokenizer")
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.model:
        model, tok = load_model(args.model, device="cpu")
    else:  # a random tiny model: the speed is the same, only the losses are meaningless
        tok = load_tokenizer(args.tokenizer)
        model = build_model(phi_config("tiny", vocab_size=len(tok)), attn="sdpa").eval()
    items = benchmark_items("humaneval")
    if os.environ.get("TEXTBOOKS_MBPP_PATH"):
        items += benchmark_items("mbpp")
    one_by_one(model, tok, items[:8], args.max_len)  # warm-up
    t0 = time.perf_counter()
    base = one_by_one(model, tok, items, args.max_len)
    t_base = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = item_losses(model, tok, items, batch_size=args.batch, max_len=args.max_len)
    t_ours = time.perf_counter() - t0
    worst = max(abs(b - o["nats"]) / max(1.0, abs(b)) for b, o in zip(base, ours, strict=True))
    print(
        f"items: {len(items)}, model: {args.model or 'random tiny'}, max_len {args.max_len}, batch {args.batch}"
    )
    print(f"one item per forward (baseline): {len(items) / t_base:8.1f} items/s  ({t_base:.2f} s)")
    print(f"item_losses (ours, batched):     {len(items) / t_ours:8.1f} items/s  ({t_ours:.2f} s)")
    print(f"speed-up: {t_base / t_ours:.2f}x; largest relative difference in summed nats: {worst:.2e}")


if __name__ == "__main__":
    main()
