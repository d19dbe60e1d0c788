"""Tokenization + packing throughput on 2 cores: ``train.prepare.prepare_tokens`` vs the nanoGPT
``prepare.py`` recipe (``datasets.map(num_proc=2)`` to tokenize, then a ``np.memmap`` written shard by
shard), on the same shards with the same tokenizer. Both outputs are compared token for token.

    python benchmarks/bench_train_prepare.py                                  # quickstart shards if present
    python benchmarks/bench_train_prepare.py --shards DIR --tokenizer TOKDIR --workers 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUICKSTART = Path("textbooks-out/quickstart/curated")


def stdlib_shards(out: Path) -> Path:
    import sysconfig

    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.schema import SHARD_SCHEMA

    files = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))[:1500]
    rows = [{"id": str(p), "text": p.read_text(errors="replace")} for p in files]
    (out / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=SHARD_SCHEMA),
        out / "data" / "000_00000.parquet",
        row_group_size=200,
    )
    return out


def nanogpt_prepare(shards: Path, tokenizer: str, out: Path, num_proc: int) -> np.ndarray:
    """nanoGPT's data/openwebtext/prepare.py, with our tokenizer in place of tiktoken."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    from train.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer)
    eos = tok.eos_token_id
    backend_json = tok.backend_tokenizer.to_str()

    def process(batch):
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(backend_json)
        backend.encode_special_tokens = True
        ids = [
            e.ids + [eos] for e in backend.encode_batch([t for t in batch["text"]], add_special_tokens=False)
        ]
        return {"ids": ids, "len": [len(i) for i in ids]}

    files = sorted(str(p) for p in (shards / "data").glob("*.parquet"))
    # the text column read with pyarrow: datasets' parquet loader cannot type the shard schema's
    # map<string,string> column (load_dataset("parquet", ...) raises), even with columns=["text"]
    ds = Dataset(pa.concat_tables([pq.read_table(f, columns=["text"]) for f in files]))
    ds = ds.filter(lambda b: [bool(t) for t in b["text"]], batched=True, num_proc=num_proc)
    tokenized = ds.map(process, batched=True, remove_columns=ds.column_names, num_proc=num_proc)
    total = int(np.sum(tokenized["len"], dtype=np.uint64))
    arr = np.memmap(out / "train.bin", dtype=np.uint16, mode="w+", shape=(total,))
    idx = 0
    shards_n = 16
    for i in range(shards_n):
        batch = tokenized.shard(num_shards=shards_n, index=i, contiguous=True).with_format("numpy")
        chunk = np.concatenate(batch["ids"]) if len(batch) else np.zeros(0, np.uint16)
        arr[idx : idx + len(chunk)] = chunk
        idx += len(chunk)
    arr.flush()
    return np.memmap(out / "train.bin", dtype=np.uint16, mode="r")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", default=None)
    parser.add_argument(
        "--tokenizer", default=None, help="default: train a 4096-token BPE on the shards first"
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from train.prepare import TokenFile, prepare_tokens
    from train.tokenizer import train_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shards = (
            Path(args.shards)
            if args.shards
            else (QUICKSTART if (QUICKSTART / "data").is_dir() else stdlib_shards(work / "shards"))
        )
        tokenizer = args.tokenizer
        if tokenizer is None:
            tokenizer = train_tokenizer(shards, work / "tok", vocab_size=4096, max_docs=2000)["output_dir"]

        start = time.perf_counter()
        ours = prepare_tokens(shards, tokenizer, work / "ours", workers=args.workers)
        t_ours = time.perf_counter() - start

        (work / "nano").mkdir()
        start = time.perf_counter()
        theirs = nanogpt_prepare(shards, tokenizer, work / "nano", args.workers)
        t_nano = time.perf_counter() - start

        same = np.array_equal(np.asarray(TokenFile(work / "ours").tokens), np.asarray(theirs))
        n = ours["n_tokens"]
        print(f"\nshards {shards} | {ours['n_docs']} docs | {n:,} tokens | {args.workers} workers")
        print(
            f"ours (prepare_tokens)          {n / t_ours:>12,.0f} tokens/s   {t_ours:.1f} s (incl. checksum, offsets, provenance)"
        )
        print(f"nanoGPT prepare (datasets.map) {len(theirs) / t_nano:>12,.0f} tokens/s   {t_nano:.1f} s")
        print(f"ratio ours / nanoGPT-style: {t_nano / t_ours:.2f}x   identical tokens: {same}")


if __name__ == "__main__":
    main()
