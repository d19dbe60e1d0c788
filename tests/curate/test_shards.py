"""Shard writer and reader: a round trip keeps every row and its metadata; a full disk is an OSError."""

import errno
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from datatrove.data import Document

from curate.schema import SHARD_SCHEMA
from curate.shards import ShardReader, ShardWriter


def test_shard_writer_and_reader_round_trip(tmp_path):
    docs = [Document(f"x = {i}\n", f"id{i}", metadata={"source": "t", "path": f"{i}.py"}) for i in range(5)]
    writer = ShardWriter(str(tmp_path / "data"))
    list(writer.run(iter(docs), rank=3))
    [shard] = sorted((tmp_path / "data").glob("*.parquet"))
    assert shard.name == "000_00003.parquet"
    assert pq.read_schema(shard).equals(SHARD_SCHEMA, check_metadata=False)
    back = list(ShardReader(str(tmp_path)).run())
    assert [(d.id, d.text, d.metadata["path"]) for d in back] == [
        (d.id, d.text, d.metadata["path"]) for d in docs
    ]


_FULL_DISK_WRITE = """
import errno, os, sys, base64
from datatrove.data import Document
from datatrove.io import DataFolder
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem
from curate.shards import ShardWriter

class FullFile(MemoryFile):
    def write(self, data):
        if self.tell() + len(data) > int(sys.argv[1]):
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)

class FullFileSystem(MemoryFileSystem):
    def _open(self, path, mode="rb", **kwargs):
        return FullFile(self, path) if "w" in mode else super()._open(path, mode, **kwargs)

docs = [Document(base64.b64encode(os.urandom(60_000)).decode(), f"d{i}") for i in range(150)]
try:
    list(ShardWriter(DataFolder("/out", fs=FullFileSystem())).run(iter(docs)))
except OSError as error:
    print("raised", error.errno)
"""


@pytest.mark.parametrize("room", [1_000, 100_000, 1_000_000])
def test_a_full_disk_is_an_oserror_not_an_abort(room):
    # a pool worker killed by an abort loses its task and the run waits forever: the error must come
    # back as an exception, wherever in the file the space runs out
    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_WRITE, str(room)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"raised {errno.ENOSPC}"
