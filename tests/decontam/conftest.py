"""Fixtures for the decontam tests: stdlib files and a helper that writes shard directories (MBPP comes from
the shared ``mbpp_path`` fixture in ``tests/conftest.py``)."""

import sysconfig
from pathlib import Path

import pytest

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="session")
def stdlib_files() -> list[Path]:
    """Top-level stdlib modules, small to mid-sized, in a stable order."""
    files = sorted(p for p in STDLIB.glob("*.py") if 2_000 <= p.stat().st_size <= 60_000)
    assert len(files) > 50, f"too few stdlib files under {STDLIB}"
    return files


@pytest.fixture
def write_shards():
    """``write_shards(dir, [(id, text), ...])`` -> dir, a shard directory written with curate's ShardWriter."""
    from datatrove.data import Document

    from curate.shards import ShardWriter

    def write(folder: Path, docs) -> Path:
        with ShardWriter(str(folder / "data")) as writer:
            for doc_id, text in docs:
                writer.write(Document(text=text, id=doc_id, metadata={"source": "test"}))
        return folder

    return write
