"""Readers never crash, never hang and never lose an input: property tests (hypothesis) on random bytes,
random truncation, random schemas and random trees with special files, plus fsspec ``memory://`` and
``file://`` inputs and datatrove's ``limit``/``skip``. Invariant: in = kept + excluded + unreadable."""

from __future__ import annotations

import gzip
import io
import json
import os
import socket
import threading
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.readers import (
    JsonlSourceReader,
    ParquetSourceReader,
    PythonSourceReader,
    StackExchangeReader,
)

PROPERTY = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
TIMEOUT_S = 60


class Recorded:
    """Run a reader (one task or several) in a thread with a timeout; collect kept, excluded, unreadable."""

    def __init__(self, reader, world_size: int = 1):
        self.kept, self.excluded, self.unreadable = [], [], []
        reader.exclusion_writer = self  # duck-typed: the reader calls write(document, rank)
        reader.record_unreadable = self._unreadable(reader)
        done = threading.Event()
        errors = []

        def work():
            try:
                for rank in range(world_size):
                    self.kept.extend(reader.run(rank=rank, world_size=world_size))
            except BaseException as error:  # noqa: BLE001 - reported below as the test failure
                errors.append(error)
            done.set()

        threading.Thread(target=work, daemon=True).start()
        assert done.wait(TIMEOUT_S), f"reader hung for {TIMEOUT_S}s"
        assert not errors, f"reader crashed: {errors[0]!r}"

    def _unreadable(self, reader):
        def record(path, error, **details):
            reader.stat_update("unreadable")
            self.unreadable.append({"path": path, "error": str(error), **details})

        return record

    def write(self, document, rank=0):
        self.excluded.append(document)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


# ------------------------------------------------------------------------------------------------ python trees

NAMES = st.sampled_from(["a.py", "b.py", "pkg/c.py", "pkg/sub/d.py", "e.py", "f.py", "g.txt"])
KINDS = st.sampled_from(
    ["bytes", "bom", "empty", "fifo", "dev_zero", "dangling", "socket", "bad_name", "sparse"]
)


def _make_entry(root: Path, name: str, kind: str, payload: bytes) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "bytes":
        path.write_bytes(payload)
    elif kind == "bom":
        path.write_bytes(b"\xef\xbb\xbf" + payload)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "dangling":
        path.symlink_to(root / "no-such-target")
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        try:
            server.bind(str(path))
        except OSError:  # path too long for AF_UNIX: a regular file instead
            path.write_bytes(payload)
        finally:
            server.close()
    elif kind == "bad_name":
        (path.parent / os.fsdecode(b"n\xff" + name.rsplit("/", 1)[-1].encode())).write_bytes(payload)
    elif kind == "sparse":
        with open(path, "wb") as f:
            f.truncate(2 * 2**20)


@PROPERTY
@given(
    entries=st.dictionaries(NAMES, st.tuples(KINDS, st.binary(max_size=300)), min_size=1, max_size=7),
    tasks=st.integers(1, 3),
)
def test_python_tree_every_file_is_kept_or_unreadable(tmp_path_factory, entries, tasks):
    root = tmp_path_factory.mktemp("tree")
    for name, (kind, payload) in entries.items():
        _make_entry(root, name, kind, payload)
    reader = PythonSourceReader(paths=[str(root)], max_file_bytes=2**20, use_git=False)
    listed = reader.list_inputs()
    run = Recorded(reader, world_size=tasks)
    assert len(run.kept) + len(run.excluded) + len(run.unreadable) == len(listed)
    for document in run.kept:
        assert not document.text.startswith("\ufeff")
        document.metadata["path"].encode("utf-8")  # storable as UTF-8
    special = {"fifo", "dev_zero", "socket", "sparse"}
    assert len(run.unreadable) >= sum(
        kind in special for name, (kind, _) in entries.items() if name.endswith(".py")
    )


def test_python_tree_bom_is_stripped_and_bad_name_is_lossless(tmp_path):
    (tmp_path / "bom.py").write_bytes(b"\xef\xbb\xbfx = 1\n")
    (tmp_path / os.fsdecode(b"caf\xe9.py")).write_bytes(b"y = 2\n")
    run = Recorded(PythonSourceReader(paths=[str(tmp_path)], use_git=False))
    by_path = {d.metadata["path"]: d for d in run.kept}
    assert by_path["bom.py"].text == "x = 1\n"
    odd = by_path["caf\\xe9.py"]
    assert bytes.fromhex(odd.metadata["path_bytes_hex"]) == b"caf\xe9.py"


def test_python_reader_limit_skip_and_one_unreadable_counted_once(tmp_path):
    for i in range(12):
        (tmp_path / f"m{i:02d}.py").write_text(f"x = {i}\n")
    os.mkfifo(tmp_path / "pipe.py")
    reader = PythonSourceReader(paths=[str(tmp_path)], use_git=False, limit=3, skip=2)
    run = Recorded(reader)
    assert [d.metadata["path"] for d in run.kept] == ["m02.py", "m03.py", "m04.py"]
    reader = PythonSourceReader(paths=[str(tmp_path)], use_git=False)
    run = Recorded(reader)
    assert len(run.unreadable) == 1 and reader.stats["unreadable"].total == 1


def test_python_tree_from_memory_and_file_urls(tmp_path):
    memory = fsspec.filesystem("memory")
    memory.pipe("/tree10/pkg/a.py", b"a = 1\n")
    memory.pipe("/tree10/pkg/b.py", b"\xef\xbb\xbfb = 2\n")
    memory.pipe("/tree10/notes.txt", b"not python")
    run = Recorded(PythonSourceReader(paths=["memory://tree10"], repo="mem"))
    assert sorted((d.metadata["path"], d.text) for d in run.kept) == [
        ("pkg/a.py", "a = 1\n"),
        ("pkg/b.py", "b = 2\n"),
    ]
    (tmp_path / "c.py").write_text("c = 3\n")
    run = Recorded(PythonSourceReader(paths=[f"file://{tmp_path}"], use_git=False))
    assert [d.text for d in run.kept] == ["c = 3\n"]


# ------------------------------------------------------------------------------------------------ JSONL

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
ROWS = st.dictionaries(
    st.sampled_from(["text", "id", "content", "size_bytes", "quality_score", "repo", "metadata", "x"]),
    JSON_VALUES,
    max_size=5,
)
LINES = st.one_of(ROWS.map(lambda r: json.dumps(r).encode()), st.binary(max_size=60))


def _lines(data: bytes) -> int:
    return sum(1 for line in data.split(b"\n") if line.strip())


@PROPERTY
@given(
    lines=st.lists(LINES, max_size=12),
    cut=st.floats(0, 1),
    gz=st.booleans(),
    columns=st.sampled_from(["default", "the-stack"]),
)
def test_jsonl_every_line_is_kept_excluded_or_unreadable(tmp_path_factory, lines, cut, gz, columns):
    folder = tmp_path_factory.mktemp("jsonl")
    data = b"\n".join(line.replace(b"\n", b" ") for line in lines)
    data = data[: int(len(data) * cut)] if cut < 0.5 else data  # random truncation, half the time
    name = "rows.jsonl.gz" if gz else "rows.jsonl"
    (folder / name).write_bytes(gzip.compress(data) if gz else data)
    run = Recorded(JsonlSourceReader(str(folder), columns=columns, max_line_bytes=40))
    assert len(run.kept) + len(run.excluded) + len(run.unreadable) == _lines(data)
    for document in run.excluded:
        assert document.metadata["filter_reason"] in {
            "missing_text_column",
            "empty_text",
            "text_not_a_string",
        }


def test_jsonl_bad_byte_loses_only_its_line_and_columns_are_coerced(tmp_path):
    rows = [
        b'{"text": "a", "size_bytes": "12"}',
        b'{"text": "caf\xe9"}',  # one bad byte: this line only
        b'{"text": "b", "size_bytes": "big", "quality_score": "high"}',
        b'{"text": ""}',
        b'{"id": "no-text"}',
        b'{"text": "c"}',
    ]
    (tmp_path / "x.jsonl").write_bytes(b"\n".join(rows) + b"\n")
    run = Recorded(JsonlSourceReader(str(tmp_path)))
    assert [d.text for d in run.kept] == ["a", "b", "c"]
    assert run.kept[0].metadata["size_bytes"] == 12
    assert set(run.kept[1].metadata["invalid_columns"]) == {"size_bytes", "quality_score"}
    assert [d.metadata["filter_reason"] for d in run.excluded] == ["empty_text", "missing_text_column"]
    assert len(run.unreadable) == 1 and run.unreadable[0]["path"].endswith("x.jsonl:2")


def test_jsonl_limit_and_skip_are_datatrove_s(tmp_path):
    (tmp_path / "r.jsonl").write_text(
        "".join(json.dumps({"text": f"t{i}", "id": str(i)}) + "\n" for i in range(50))
    )
    run = Recorded(JsonlSourceReader(str(tmp_path), limit=5, skip=10))
    assert [d.id for d in run.kept] == ["10", "11", "12", "13", "14"]


def test_jsonl_and_parquet_from_memory_and_file_urls(tmp_path):
    memory = fsspec.filesystem("memory")
    memory.pipe("/rows10/a.jsonl", b'{"text": "m1"}\n{"text": ""}\n')
    run = Recorded(JsonlSourceReader("memory://rows10"))
    assert [d.text for d in run.kept] == ["m1"] and len(run.excluded) == 1
    buffer = io.BytesIO()
    pq.write_table(pa.table({"content": ["p1", "p2"], "hexsha": ["h1", "h2"]}), buffer)
    memory.pipe("/pq10/part.parquet", buffer.getvalue())
    run = Recorded(ParquetSourceReader("memory://pq10", columns="the-stack"))
    assert [d.id for d in run.kept] == ["h1", "h2"]
    pq.write_table(pa.table({"text": ["f1"]}), tmp_path / "f.parquet")
    (tmp_path / "f.jsonl").write_text('{"text": "j1"}\n')
    assert [d.text for d in Recorded(ParquetSourceReader(f"file://{tmp_path}")).kept] == ["f1"]
    assert [
        d.text for d in Recorded(JsonlSourceReader(f"file://{tmp_path}", glob_pattern="*.jsonl")).kept
    ] == ["j1"]


def test_jsonl_special_files_are_rejected_before_reading(tmp_path):
    os.mkfifo(tmp_path / "fifo.jsonl")
    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")
    with open(tmp_path / "sparse.jsonl", "wb") as f:
        f.truncate(3 * 2**20)  # one 3 MiB "line" of NULs, over max_line_bytes
    run = Recorded(JsonlSourceReader(str(tmp_path), max_line_bytes=2**20))
    assert run.kept == [] and len(run.unreadable) == 3
    assert sum("not a regular file" in u["error"] for u in run.unreadable) == 2


# ------------------------------------------------------------------------------------------------ Parquet

PARQUET_COLUMNS = {
    "text": st.one_of(st.none(), st.text(max_size=10)),
    "content": st.one_of(st.none(), st.text(max_size=10)),
    "id": st.one_of(st.none(), st.text(max_size=5)),
    "size_bytes": st.one_of(st.none(), st.text(max_size=4)),
    "quality_score": st.one_of(st.none(), st.text(max_size=4)),
    "n": st.one_of(st.none(), st.integers(-5, 5)),
}


@st.composite
def tables(draw):
    names = draw(st.lists(st.sampled_from(sorted(PARQUET_COLUMNS)), min_size=1, max_size=4, unique=True))
    n_rows = draw(st.integers(0, 6))
    return pa.table({name: [draw(PARQUET_COLUMNS[name]) for _ in range(n_rows)] for name in names})


@PROPERTY
@given(
    parts=st.lists(tables(), min_size=1, max_size=3),
    cut=st.floats(0, 1),
    columns=st.sampled_from(["default", "the-stack"]),
)
def test_parquet_random_schemas_and_truncation_are_accounted(tmp_path_factory, parts, cut, columns):
    folder = tmp_path_factory.mktemp("parquet")
    for i, table in enumerate(parts):
        pq.write_table(table, folder / f"p{i}.parquet")
    victim = folder / "p0.parquet"
    if cut < 0.3:  # random truncation of the first file
        victim.write_bytes(victim.read_bytes()[: int(victim.stat().st_size * cut / 0.3)])
    run = Recorded(ParquetSourceReader(str(folder), columns=columns))
    whole = sum(t.num_rows for t in (parts if cut >= 0.3 else parts[1:]))
    in_victim = len(run.kept) + len(run.excluded) - whole
    if cut < 0.3:
        assert len(run.unreadable) == 1 and in_victim == 0
    else:
        assert run.unreadable == [] and in_victim == 0


# ------------------------------------------------------------------------------------------------ Stack Exchange


def _posts(n: int) -> tuple[bytes, list[tuple[int, bool]]]:
    """A Posts.xml with n python questions (odd ones answered); [(end offset of a question row, answered)]."""
    out, questions = [b'<?xml version="1.0" encoding="utf-8"?>\n<posts>\n'], []
    for q in range(1, n + 1):
        row = f'  <row Id="{q * 10}" PostTypeId="1" Title="q{q}" Body="&lt;p&gt;b{q}&lt;/p&gt;" Tags="&lt;python&gt;" Score="1" />\n'
        out.append(row.encode())
        questions.append((sum(map(len, out)), q % 2 == 1))
        if q % 2:
            answer = f'  <row Id="{q * 10 + 1}" PostTypeId="2" ParentId="{q * 10}" Body="a{q}" Score="2" />\n'
            out.append(answer.encode())
    out.append(b"</posts>\n")
    return b"".join(out), questions


@PROPERTY
@given(n=st.integers(1, 8), cut=st.floats(0, 1.2), ampersand=st.booleans(), tasks=st.integers(1, 2))
def test_stackexchange_keeps_complete_posts_before_damage(tmp_path_factory, n, cut, ampersand, tasks):
    data, questions = _posts(n)
    end = min(len(data), int(len(data) * cut))
    damaged = data[:end] + (b" & " + data[end:] if ampersand and end < len(data) else b"")
    path = tmp_path_factory.mktemp("se") / "Posts.xml"
    path.write_bytes(damaged)
    run = Recorded(StackExchangeReader(str(path), tags=["python"]), world_size=tasks)
    complete = [answered for offset, answered in questions if offset <= end]
    # every question whose row is complete before the damage (+1: a row cut just before its newline)
    assert len(complete) <= len(run.kept) + len(run.excluded) <= len(complete) + 1
    if damaged.rstrip() != data.rstrip():
        assert len(run.unreadable) == 1 and "damaged XML" in run.unreadable[0]["error"]
    else:
        assert run.unreadable == [] and len(run.kept) == (n + 1) // 2


def test_stackexchange_bare_ampersand_keeps_posts_before_it(tmp_path):
    data, _ = _posts(4)
    marker = b'<row Id="30"'
    path = tmp_path / "Posts.xml"
    path.write_bytes(data.replace(marker, b"& " + marker))
    run = Recorded(StackExchangeReader(str(path), tags=["python"]))
    assert [d.metadata["path"] for d in run.kept] == ["questions/10"]
    assert [d.metadata["filter_reason"] for d in run.excluded] == ["no_answer"]  # q20 has no answer
    assert len(run.unreadable) == 1 and ":" in run.unreadable[0]["path"]


# ------------------------------------------------------------------------------------------------ HF datasets


def test_hf_reader_records_files_with_different_schemas(tmp_path):
    from curate.readers import HFDatasetSourceReader

    (tmp_path / "a.jsonl").write_text('{"text": "a", "n": 1}\n')
    (tmp_path / "b.jsonl").write_text('{"text": "b", "n": {"nested": true}}\n')
    files = [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    run = Recorded(
        HFDatasetSourceReader(
            "json", {"data_files": files, "split": "train", "cache_dir": str(tmp_path / "c")}
        )
    )
    # datasets cannot build one table from both files: recorded (with the cause), not a crash
    assert run.kept == [] and len(run.unreadable) == 1
    assert run.unreadable[0]["path"] == "json" and "caused by" in run.unreadable[0]["error"]


def test_stackexchange_fifo_and_out_of_range_ids_are_recorded(tmp_path):
    os.mkfifo(tmp_path / "fifo.xml")
    run = Recorded(StackExchangeReader(str(tmp_path / "fifo.xml")))
    assert run.kept == [] and "not a regular file" in run.unreadable[0]["error"]
    (tmp_path / "Posts.xml").write_text(
        '<posts><row Id="99999999999999999999999" PostTypeId="1" Title="x" Tags="&lt;python&gt;" />'
        '<row Id="5" PostTypeId="1" Title="y" Tags="&lt;python&gt;" Score="999999999999999999999999" /></posts>'
    )
    run = Recorded(StackExchangeReader(str(tmp_path / "Posts.xml"), require_answer=False))
    assert [d.metadata["path"] for d in run.kept] == ["questions/5"]
    assert len(run.unreadable) == 1 and "integer Id" in run.unreadable[0]["error"]
