"""Shard writer and reader: a round trip keeps every row and its metadata."""

import pyarrow.parquet as pq
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
