"""Prepare the GPU ablation's inputs here (full environment): the token files of an ablate-quickstart
run's variants and the benchmark items pre-encoded with its tokenizer, in one folder the GPU machine
reads with numpy alone (no datatrove, no tokenizer, no pydantic there).

    python benchmarks/gpu/ablate_prep.py --ablation textbooks-out/ablate-quickstart --out gpu-data/ablate --max-len 1024
    python benchmarks/gpu/ablate_prep.py --toy /tmp/toy-ablation --out /tmp/toy-data --max-len 128   # CPU check

``--quickstart DIR`` builds the ablation's data from a quickstart output (``textbooks run quickstart``:
``curated/`` unfiltered, ``quality/`` filtered; tokenizer of 4,096 tokens, token files and the random
control, as ``ablate-quickstart`` makes them, without its CPU training) in ``--ablation``'s folder.
``--toy DIR`` first builds a tiny ablation folder in DIR (stdlib modules as ``unfiltered``, the shorter
half as ``filtered``, its random control, a 512-token BPE) so the whole GPU path runs on CPU in a minute.

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


def stdlib_variants(root: Path, n_files: int = 40) -> dict[str, str]:
    """Toy shard directories: stdlib modules as ``unfiltered``, the shorter half as ``filtered``."""
    import sysconfig

    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.schema import SHARD_SCHEMA

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in sorted(stdlib.glob("*.py")) if 2_000 < p.stat().st_size < 60_000][:n_files]
    texts = [(p.name, p.read_text(encoding="utf-8", errors="replace")) for p in files]
    variants = {"unfiltered": texts, "filtered": sorted(texts, key=lambda t: len(t[1]))[: n_files // 2]}
    for name, rows in variants.items():
        (root / "shards" / name / "data").mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(
            [{"id": i, "text": t, "source": "stdlib"} for i, t in rows], schema=SHARD_SCHEMA
        )
        pq.write_table(table, root / "shards" / name / "data" / "000_00000.parquet")
    return {name: str(root / "shards" / name) for name in variants}


def make_ablation_data(root: Path, variants: dict[str, str], vocab_size: int) -> Path:
    """An ablation folder without training (config.json, tokenizer/, tokens/<variant>/, the random
    control of ``filtered`` drawn from ``unfiltered``), as ``train.ablate`` makes it."""
    import os

    from train.ablate import AblationConfig, _write_json, ensure_tokenizer, prepare_variants

    benchmarks = ["humaneval"] + (["mbpp"] if os.environ.get("TEXTBOOKS_MBPP_PATH") else [])
    if "mbpp" not in benchmarks:
        print("note: MBPP left out (set TEXTBOOKS_MBPP_PATH to score it)", flush=True)
    cfg = AblationConfig(output_dir=str(root), variants=variants, random_controls={"filtered": "unfiltered"},
                         token_budget=64, vocab_size=vocab_size, benchmarks=benchmarks, tokenizer_from="unfiltered",
                         train={"preset": "tiny", "seq_len": 64, "global_batch_size": 1})  # fmt: skip
    prepare_variants(cfg, root, ensure_tokenizer(cfg, root))
    _write_json(root / "config.json", cfg.model_dump())
    return root


def main() -> None:
    from train.evaluate.condloss import benchmark_items, encode_item
    from train.tokenizer import load_tokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--ablation", default="textbooks-out/ablate-quickstart")
    parser.add_argument("--out", default="gpu-data/ablate")
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--toy", default=None, help="build a tiny ablation here first and prepare it")
    parser.add_argument("--quickstart", default=None,
                        help="build the ablation data (no training) from a quickstart output: curated/ and quality/")  # fmt: skip
    args = parser.parse_args()
    src, out = Path(args.ablation), Path(args.out)
    if args.toy:
        src = make_ablation_data(Path(args.toy), stdlib_variants(Path(args.toy)), vocab_size=512)
    elif args.quickstart:
        variants = {"unfiltered": f"{args.quickstart}/curated", "filtered": f"{args.quickstart}/quality"}
        src = make_ablation_data(src, variants, vocab_size=4096)
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
