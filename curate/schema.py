"""The on-disk shard schema: one explicit, versioned pyarrow schema for every Parquet shard.

A document in flight is a datatrove ``Document(text, id, metadata)``. On disk it becomes one row of
:data:`SHARD_SCHEMA`. Metadata keys that name a column become that column; every other key is kept,
losslessly, in the ``extra`` JSON column, so no step can lose information by writing a shard.

Columns a user filters on are real, typed columns (never strings of JSON):

================== ========= ========================================================================
column             type      meaning
================== ========= ========================================================================
id                 string    stable id: the same input always gives the same id (hash of repo + path, ...)
text               string    the document's text (valid UTF-8)
source             string    where it came from: ``stdlib``, ``site-packages``, ``jsonl``, ``stackexchange``
repo               string    repository / package / dataset the document belongs to
path               string    path of the file inside ``repo``
license            string    licence hint (SPDX-like), when one could be found
size_bytes         int64     size of the original file in bytes
quality_score      float32   classifier score in [0, 1] (curate-quality)
quality_label      string    label given by a labeler (LLM or heuristic)
label_source       string    which labeler produced ``quality_label`` (model name or ``heuristic``)
quality_label_soft float32   the LLM labeler's soft label: P(high), or the expected 0-5 score, from logprobs
label_score        float32   the labeler's own score in [0, 1] (heuristic labeler), next to ``quality_label``
label_error        string    why a document has no label: the request's error, ``unparseable``, ``ambiguous``, ``truncated``
label_raw          string    the labeler's raw answer when it could not be parsed (first 2000 characters)
cluster_id         string    near-duplicate cluster id (curate near-dedup)
duplicate_of       string    id of the kept document a duplicate was dropped for (exact and near dedup)
filter_reason      string    why a document was dropped (exclusion shards only)
filter_step        string    which step dropped it (exclusion shards only)
model              string    model that generated or scored the row (synth, LLM labels)
prompt_hash        string    hash of the prompt that generated the row (synth)
constraints        list      the constraint tuple of a generated row as ``[{key, value}, ...]`` (a dict in metadata)
extra              string    JSON object of any other metadata (kept losslessly)
================== ========= ========================================================================

Bump :data:`SCHEMA_VERSION` whenever a column is added, removed or changes type, and note it here.

Version history:
  1 - initial schema.
  2 - ``quality_label_soft``, ``label_score``, ``label_error``, ``label_raw`` and ``duplicate_of`` become
      columns (they were keys of the ``extra`` JSON); :func:`upgrade_table` reads a version 1 table into
      this schema.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 2
SCHEMA_VERSION_KEY = b"textbooks.schema_version"

SHARD_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("repo", pa.string()),
        pa.field("path", pa.string()),
        pa.field("license", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("quality_score", pa.float32()),
        pa.field("quality_label", pa.string()),
        pa.field("label_source", pa.string()),
        pa.field("quality_label_soft", pa.float32()),
        pa.field("label_score", pa.float32()),
        pa.field("label_error", pa.string()),
        pa.field("label_raw", pa.string()),
        pa.field("cluster_id", pa.string()),
        pa.field("duplicate_of", pa.string()),
        pa.field("filter_reason", pa.string()),
        pa.field("filter_step", pa.string()),
        pa.field("model", pa.string()),
        pa.field("prompt_hash", pa.string()),
        # a list of {key, value} structs rather than a map: HF datasets has no map type
        pa.field("constraints", pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))),
        pa.field("extra", pa.string()),
    ],
    metadata={SCHEMA_VERSION_KEY: str(SCHEMA_VERSION)},
)

#: metadata keys that are stored as their own column
COLUMN_KEYS = tuple(name for name in SHARD_SCHEMA.names if name not in ("id", "text", "extra"))

# Keys datatrove's readers add that carry no information once a row is on disk.
_DROPPED_KEYS = frozenset({"file_path"})


def _json_default(value: Any) -> Any:
    """Make numpy scalars/arrays and other odd values JSON-serialisable instead of failing a write."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _column_kind(kind: pa.DataType) -> str:
    if pa.types.is_string(kind):
        return "string"
    if pa.types.is_integer(kind):
        return "integer"
    return "float" if pa.types.is_floating(kind) else "other"


_COLUMN_KINDS = {key: _column_kind(SHARD_SCHEMA.field(key).type) for key in COLUMN_KEYS}
_STRING_COLUMNS = tuple(key for key, kind in _COLUMN_KINDS.items() if kind == "string")


def _coerce(value: Any, kind: str) -> Any:
    """``value`` as the Python type of a column of ``kind``; ValueError/TypeError when it is not one."""
    if kind == "string":
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise TypeError(f"expected a string, got {type(value).__name__}")
    if kind == "integer":
        if isinstance(value, bool):
            raise TypeError("expected an integer, got bool")
        number = int(value) if isinstance(value, (int, str)) else value
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        if not isinstance(number, int) or not -(2**63) <= number < 2**63:
            raise ValueError(f"expected a 64-bit integer, got {value!r}")
        return number
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"expected a number, got {type(value).__name__}")
        return float(value)
    return value


def coerce_columns(metadata: dict[str, Any]) -> dict[str, Any]:
    """Coerce the metadata keys that are shard columns to their column's type, in place.

    A value that cannot be coerced (``size_bytes: "big"``) leaves its column and is kept, with the
    error, under ``invalid_columns`` (so in ``extra``): the row is kept and the failure recorded.

    Example:
        >>> metadata = {"size_bytes": "12", "quality_score": "high", "repo": 7}
        >>> coerce_columns(metadata)["size_bytes"], metadata["repo"], metadata["invalid_columns"]
        (12, '7', {'quality_score': {'value': 'high', 'error': "could not convert string to float: 'high'"}})
    """
    invalid = {}
    for key, kind in _COLUMN_KINDS.items():
        value = metadata.get(key)
        if value is None or kind == "other":
            continue
        try:
            metadata[key] = _coerce(value, kind)
        except (TypeError, ValueError, OverflowError) as error:
            invalid[key] = {"value": metadata.pop(key), "error": str(error)}
    if isinstance(metadata.get("constraints"), (list, str, int, float)):
        invalid["constraints"] = {"value": metadata.pop("constraints"), "error": "expected a mapping"}
    if invalid:
        earlier = metadata.get("invalid_columns")
        metadata["invalid_columns"] = {**(earlier if isinstance(earlier, dict) else {}), **invalid}
    return metadata


def _valid_unicode(text: str) -> str:
    """Text that pyarrow can store: lone surrogates (a surrogate-escaped byte) become ``\\xNN`` escapes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def document_to_row(document) -> dict[str, Any]:
    """Turn a datatrove ``Document`` into a row of :data:`SHARD_SCHEMA`.

    Example:
        >>> from datatrove.data import Document
        >>> row = document_to_row(Document(text="x = 1", id="a", metadata={"source": "stdlib", "n": 3}))
        >>> row["source"], row["extra"]
        ('stdlib', '{"n": 3}')
    """
    metadata = coerce_columns(dict(document.metadata or {}))
    row: dict[str, Any] = {"id": _valid_unicode(str(document.id)), "text": _valid_unicode(document.text)}
    extra = {}
    for key, value in metadata.items():
        if key in COLUMN_KEYS:
            row[key] = value
        elif key not in _DROPPED_KEYS:
            extra[key] = value
    constraints = row.get("constraints")
    if constraints is not None:
        row["constraints"] = [{"key": str(k), "value": str(v)} for k, v in dict(constraints).items()]
    for key in _STRING_COLUMNS:
        if row.get(key) is not None:
            row[key] = _valid_unicode(str(row[key]))
    row["extra"] = _valid_unicode(json.dumps(extra, sort_keys=True, default=_json_default)) if extra else None
    return row


def row_to_metadata(row: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`document_to_row` for everything but ``id`` and ``text``.

    Example:
        >>> row_to_metadata({"source": "stdlib", "repo": None, "extra": '{"n": 3}'})
        {'source': 'stdlib', 'n': 3}
    """
    metadata = {k: v for k, v in row.items() if k in COLUMN_KEYS and v is not None}
    if isinstance(metadata.get("constraints"), list):
        metadata["constraints"] = {item["key"]: item["value"] for item in metadata["constraints"]}
    extra = row.get("extra")
    if extra:
        metadata.update(json.loads(extra))
    return metadata


def schema_version_of(schema: pa.Schema) -> int:
    """The shard schema version a Parquet file was written with (1 for files that do not say).

    Example:
        >>> schema_version_of(SHARD_SCHEMA) == SCHEMA_VERSION
        True
    """
    raw = (schema.metadata or {}).get(SCHEMA_VERSION_KEY, b"1")
    return int(raw.decode() if isinstance(raw, bytes) else raw)


def upgrade_table(table: pa.Table) -> pa.Table:
    """A shard table of any earlier schema version, in the current :data:`SHARD_SCHEMA`.

    Keys of the ``extra`` JSON that have since become columns move into their typed column; every
    other key stays in ``extra``. A current-version table comes back unchanged.

    Example:
        >>> old = pa.table({"id": ["a"], "text": ["x = 1"], "extra": ['{"label_score": 0.82, "n": 3}']})
        >>> new = upgrade_table(old)
        >>> new.column("label_score").type, new.column("label_score")[0].as_py() > 0.8, new.column("extra")[0]
        (DataType(float), True, <pyarrow.StringScalar: '{"n": 3}'>)
    """
    if schema_version_of(table.schema) == SCHEMA_VERSION and table.schema.names == SHARD_SCHEMA.names:
        return table
    rows = []
    for row in table.to_pylist():
        metadata = row_to_metadata(row)
        rows.append(document_to_row(_RowDocument(row.get("text") or "", row.get("id") or "", metadata)))
    return pa.Table.from_pylist(rows, schema=SHARD_SCHEMA)


class _RowDocument:
    """The three attributes :func:`document_to_row` reads, without importing datatrove."""

    def __init__(self, text: str, id: str, metadata: dict[str, Any]):
        self.text, self.id, self.metadata = text, id, metadata
