"""Prepare the GPU ablation's inputs here (full environment): the token files of an ablate-quickstart
run's variants and the benchmark items pre-encoded with its tokenizer, in one folder the GPU machine
reads with numpy alone (no datatrove, no tokenizer, no pydantic there).

    python benchmarks/gpu/ablate_prep.py --ablation textbooks-out/ablate-quickstart --out gpu-data/ablate --max-len 1024

Writes OUT/variants/<name>/{tokens.bin,doc_offsets.npy,header.json}, OUT/items.json, OUT/prep.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

LIMIT_BYTES = 40 * 2**20


def main() -> None:
    from train.evaluate.condloss import benchmark_items, encode_item
    from train.tokenizer import load_tokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--ablation", default="textbooks-out/ablate-quickstart")
    parser.add_argument("--out", default="gpu-data/ablate")
    parser.add_argument("--max-len", type=int, default=1024)
    args = parser.parse_args()
    src, out = Path(args.ablation), Path(args.out)
    config = json.loads((src / "config.json").read_text())
    names = list(config["variants"]) + [f"random-{v}" for v in config["random_controls"]]
    shutil.rmtree(out, ignore_errors=True)
    for name in names:
        target = out / "variants" / name
        target.mkdir(parents=True)
        for file in ("tokens.bin", "doc_offsets.npy", "header.json"):
            shutil.copy2(src / "tokens" / name / file, target / file)
    tok = load_tokenizer(config["tokenizer"] or src / "tokenizer")
    rows = []
    for bench in config["benchmarks"]:
        for item in benchmark_items(bench, mbpp_path=config.get("mbpp_path")):
            ids, n_context, chars, truncated = encode_item(tok, item, args.max_len)
            rows.append({"benchmark": bench, "id": item.id, "ids": ids, "n_context": n_context, "chars": chars,
                         "truncated": truncated})  # fmt: skip
    (out / "items.json").write_text(json.dumps(rows))
    meta = {"variants": names, "vocab_size": len(tok), "eos_id": tok.eos_token_id, "max_len": args.max_len,
            "source": str(src.resolve()), "pad_id": tok.pad_token_id or tok.eos_token_id or 0}  # fmt: skip
    (out / "prep.json").write_text(json.dumps(meta, indent=2))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB, variants {names}, {len(rows)} items")
    if size > LIMIT_BYTES:
        raise SystemExit(f"{out} is {size / 2**20:.1f} MiB, over the 40 MiB the GPU machine takes")


if __name__ == "__main__":
    main()
