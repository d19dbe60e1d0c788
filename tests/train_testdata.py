"""Test data for the train tests: a small shard directory of real stdlib source files."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.schema import SHARD_SCHEMA


def stdlib_files(n: int) -> list[Path]:
    """The first ``n`` stdlib modules of 2-60 kB, in name order (deterministic)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in sorted(root.glob("*.py")) if 2_000 < p.stat().st_size < 60_000]
    return files[:n]


def make_shards(out: Path, n_files: int = 40, rows_per_group: int = 8, n_shards: int = 2, texts=None) -> Path:
    """Write a shard directory ``out/data/*.parquet`` (SHARD_SCHEMA, several row groups)."""
    if texts is None:
        texts = [(p.name, p.read_text(encoding="utf-8", errors="replace")) for p in stdlib_files(n_files)]
    (out / "data").mkdir(parents=True, exist_ok=True)
    per_shard = -(-len(texts) // n_shards)
    for i in range(n_shards):
        part = texts[i * per_shard : (i + 1) * per_shard]
        rows = [{"id": name, "text": text, "source": "stdlib"} for name, text in part]
        table = pa.Table.from_pylist(rows, schema=SHARD_SCHEMA)
        pq.write_table(
            table, out / "data" / f"000_{i:05d}.parquet", row_group_size=rows_per_group, compression="zstd"
        )
    return out


def make_token_dir(root: Path, n_files: int, vocab_size: int) -> dict[str, str]:
    """Shards of ``n_files`` stdlib modules, a BPE tokenizer trained on them and their token file."""
    from train.prepare import prepare_tokens
    from train.tokenizer import train_tokenizer

    shards = make_shards(root / "shards", n_files=n_files)
    train_tokenizer(shards, root / "tok", vocab_size=vocab_size)
    prepare_tokens(shards, root / "tok", root / "tokens", workers=1)
    return {"shards": str(shards), "tokenizer": str(root / "tok"), "tokens": str(root / "tokens")}
