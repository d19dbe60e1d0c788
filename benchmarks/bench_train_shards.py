"""Tokenization throughput: the datatrove stages (``train.shards.tokenize_shards``: ordered
``DocumentTokenizer`` on N tasks + merger) vs the flat format's process pool (``prepare_tokens``), on
the same shards with the same tokenizer, in one process; both outputs compared document for document.

    PYTHONPATH=. python benchmarks/bench_train_shards.py --files 1500 --parallel 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def stdlib_shards(out: Path, n_files: int, n_shards: int) -> Path:
    """The first ``n_files`` stdlib modules as ``n_shards`` Parquet files (so tasks have files to split)."""
    import sysconfig

    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.schema import SHARD_SCHEMA

    files = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))[:n_files]
    rows = [{"id": str(p), "text": p.read_text(errors="replace")} for p in files]
    (out / "data").mkdir(parents=True, exist_ok=True)
    per = -(-len(rows) // n_shards)
    for i in range(n_shards):
        table = pa.Table.from_pylist(rows[i * per : (i + 1) * per], schema=SHARD_SCHEMA)
        pq.write_table(table, out / "data" / f"000_{i:05d}.parquet", row_group_size=200)
    return out


def main() -> None:
    import numpy as np

    from train.prepare import TokenFile, prepare_tokens
    from train.shards import open_tokens, tokenize_shards
    from train.tokenizer import train_tokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1500)
    parser.add_argument("--parallel", type=int, default=2, help="worker processes / datatrove tasks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shards = stdlib_shards(root / "shards", args.files, n_shards=4 * args.parallel)
        train_tokenizer(shards, root / "tok", vocab_size=4096, max_docs=300)
        t0 = time.perf_counter()
        flat = prepare_tokens(shards, root / "tok", root / "flat", workers=args.parallel)
        flat_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        tokenize_shards(shards, root / "tok", root / "ds", tasks=args.parallel, workers=args.parallel)
        ds_s = time.perf_counter() - t0
        a, b = TokenFile(root / "flat"), open_tokens(root / "ds")
        docs = [sorted(np.asarray(f.tokens[x:y]).tobytes() for x, y in zip(f.offsets[:-1], f.offsets[1:], strict=True))
                for f in (a, b)]  # fmt: skip
    n = flat["n_tokens"]
    print(
        f"{n:,} tokens, {args.files} files, {args.parallel} processes; same documents: {docs[0] == docs[1]}"
    )
    print(f"prepare_tokens (flat):      {flat_s:6.1f} s  {n / flat_s:10,.0f} tokens/s")
    print(f"tokenize_shards (datatrove): {ds_s:6.1f} s  {n / ds_s:10,.0f} tokens/s")
    print(f"datatrove / flat throughput: {flat_s / ds_s:.2f}x")


if __name__ == "__main__":
    main()
