"""The shard schema: typed columns users filter on, the version 1 -> 2 upgrade, and loading shards in
datasets / pandas / polars / duckdb with a typed ``label_score``."""

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datatrove.data import Document
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.schema import (
    SCHEMA_VERSION,
    SHARD_SCHEMA,
    document_to_row,
    row_to_metadata,
    schema_version_of,
    upgrade_table,
)
from curate.shards import ShardReader, ShardWriter, read_shard_table

V1_COLUMNS = [
    "id", "text", "source", "repo", "path", "license", "size_bytes", "quality_score", "quality_label",
    "label_source", "cluster_id", "filter_reason", "filter_step", "model", "prompt_hash", "constraints", "extra",
]  # fmt: skip


def _labeled_docs(n=40):
    docs = []
    for i in range(n):
        metadata = {"source": "stdlib", "license": "PSF-2.0", "quality_label": "high" if i % 2 else "low"}
        if i % 5 == 0:
            metadata["label_error"] = "unparseable"
            metadata["label_raw"] = "I think it is good"
        else:
            metadata["label_score"] = i / n
        if i % 7 == 0:
            metadata["duplicate_of"] = "doc0"
        metadata["custom"] = {"nested": [i]}
        docs.append(Document(f"def f{i}():\n    return {i}\n", f"doc{i}", metadata=metadata))
    return docs


@pytest.fixture
def shard_dir(tmp_path):
    list(ShardWriter(str(tmp_path / "shards" / "data")).run(iter(_labeled_docs()), rank=0))
    return tmp_path / "shards"


def test_filter_fields_are_typed_columns_not_json(shard_dir):
    table = read_shard_table(shard_dir)
    assert table.schema.field("label_score").type == pa.float32()
    assert table.schema.field("label_error").type == pa.string()
    assert table.schema.field("quality_label_soft").type == pa.float32()
    assert (
        schema_version_of(pq.read_schema(next((shard_dir / "data").glob("*.parquet")))) == SCHEMA_VERSION == 2
    )
    for extra in table.column("extra").to_pylist():
        assert set(json.loads(extra)) == {"custom"}  # nothing a user filters on hides in the JSON
    assert table.column("label_error").to_pylist().count("unparseable") == 8
    assert table.column("duplicate_of").to_pylist().count("doc0") == 6


def test_shards_load_with_typed_label_score_everywhere(shard_dir):
    import duckdb
    import pandas as pd
    import polars as pl
    from datasets import Value, load_dataset

    files = str(shard_dir / "data" / "*.parquet")
    expected = sum(1 for i in range(40) if i % 5 and i / 40 > 0.5)

    frame = pd.read_parquet(shard_dir / "data")
    assert str(frame["label_score"].dtype) == "float32" and (frame["label_score"] > 0.5).sum() == expected

    lazy = pl.scan_parquet(files)
    assert lazy.collect_schema()["label_score"] == pl.Float32
    assert lazy.filter(pl.col("label_score") > 0.5).collect().height == expected

    typename, count = duckdb.sql(
        f"select typeof(any_value(label_score)), count(*) filter (where label_score > 0.5) from '{files}'"
    ).fetchall()[0]
    assert typename == "FLOAT" and count == expected

    dataset = load_dataset("parquet", data_files=files, split="train", cache_dir=str(shard_dir / ".hf"))
    assert dataset.features["label_score"] == Value("float32")
    assert (
        len(dataset.filter(lambda row: row["label_score"] is not None and row["label_score"] > 0.5))
        == expected
    )


def _write_v1(path, rows):
    """A shard exactly as schema version 1 wrote it: no label columns, the values inside ``extra``."""
    v1 = pa.schema(
        [SHARD_SCHEMA.field(name) for name in V1_COLUMNS], metadata={"textbooks.schema_version": "1"}
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=v1), path)


def test_version_1_shards_read_as_version_2(tmp_path):
    (tmp_path / "data").mkdir()
    rows = [
        {"id": "a", "text": "x = 1", "source": "stdlib",
         "extra": json.dumps({"label_score": 0.82, "label_error": None, "n": 3})},
        {"id": "b", "text": "y = 2", "extra": json.dumps({"label_error": "timeout", "duplicate_of": "a"})},
        {"id": "c", "text": "z = 3", "extra": json.dumps({"label_score": "not a number"})},
        {"id": "d", "text": "", "extra": None},
    ]  # fmt: skip
    _write_v1(tmp_path / "data" / "000.parquet", rows)
    table = read_shard_table(tmp_path)
    assert table.schema.equals(SHARD_SCHEMA)
    by_id = {row["id"]: row for row in table.to_pylist()}
    assert math.isclose(by_id["a"]["label_score"], 0.82, rel_tol=1e-6)
    assert json.loads(by_id["a"]["extra"]) == {"n": 3} and by_id["a"]["label_error"] is None
    assert by_id["b"]["label_error"] == "timeout" and by_id["b"]["duplicate_of"] == "a"
    # a value that does not fit the typed column is kept, not lost
    assert by_id["c"]["label_score"] is None
    assert json.loads(by_id["c"]["extra"])["invalid_columns"]["label_score"]["value"] == "not a number"
    assert by_id["d"]["extra"] is None and by_id["d"]["source"] is None
    # the datatrove reader restores the same metadata from either version
    docs = {d.id: d.metadata for d in ShardReader(str(tmp_path)).run()}
    assert math.isclose(docs["a"]["label_score"], 0.82) and docs["b"]["duplicate_of"] == "a"


def test_upgrade_leaves_a_current_table_alone():
    table = pa.Table.from_pylist(
        [document_to_row(Document("t", "i", {"label_score": 0.5}))], schema=SHARD_SCHEMA
    )
    assert upgrade_table(table) is table


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=20),
)
_keys = st.sampled_from(
    ["label_score", "label_error", "duplicate_of", "size_bytes", "quality_score", "source", "x"]
)
_NUMERIC = {"label_score": float, "quality_score": float, "size_bytes": int}


def _fits(key, value):
    """Whether ``value`` has a type its column takes as it is (numbers for numbers, scalars for strings)."""
    if isinstance(value, bool):
        return False
    if key not in _NUMERIC:
        return isinstance(value, (str, int, float))
    if not isinstance(value, (int, float)):
        return False
    return _NUMERIC[key] is float or (float(value).is_integer() and -(2**63) <= value < 2**63)


def _same(got, value, key):
    if key not in _NUMERIC:
        return got == str(value)
    if _NUMERIC[key] is int:
        return got == int(float(value)) if isinstance(value, float) else got == int(value)
    expected = float(np.float32(float(value)))
    return (math.isnan(expected) and math.isnan(got)) or math.isclose(got, expected, rel_tol=1e-6)


@settings(max_examples=300, deadline=None)
@given(metadata=st.dictionaries(_keys, _scalars, max_size=7))
def test_any_metadata_writes_and_nothing_is_lost(metadata):
    """Hostile metadata (wrong types and out-of-range values for typed columns) never fails a write, and
    every value comes back: typed in its column, or set aside as it was under ``invalid_columns``."""
    row = document_to_row(Document("t", "i", metadata=dict(metadata)))
    back = row_to_metadata(pa.Table.from_pylist([row], schema=SHARD_SCHEMA).to_pylist()[0])
    invalid = back.get("invalid_columns", {})
    for key, value in metadata.items():
        if key == "x":
            assert back[key] == value  # not a column: kept in extra as it was
        elif value is None:
            assert key not in back and key not in invalid  # an empty typed cell
        elif key in invalid:
            assert invalid[key]["value"] == value and key not in back and not _fits(key, value)
        else:
            assert _same(back[key], value, key), (key, value, back[key])


def test_schema_round_trip_keeps_every_metadata_key():
    document = Document(
        "x = 1",
        "id1",
        metadata={
            "source": "stdlib",
            "size_bytes": 5,
            "quality_score": 0.5,
            "constraints": {"topic": "loops"},
            "custom": [1, 2],
        },
    )
    row = document_to_row(document)
    table = pa.Table.from_pylist([row], schema=SHARD_SCHEMA)
    back = row_to_metadata(table.to_pylist()[0])
    assert (
        back["source"] == "stdlib" and back["custom"] == [1, 2] and back["constraints"] == {"topic": "loops"}
    )
    assert table.schema.metadata[b"textbooks.schema_version"] == str(SCHEMA_VERSION).encode()
