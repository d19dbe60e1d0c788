"""A hostile tree and damaged files through real recipes on the CLI (subprocesses with a timeout: no hang,
exit 0: no crash): every input is kept, excluded with a step and reason, or unreadable with its path and
error. Then kill -9, change the tree, rerun: nothing read twice, nothing silently skipped. A full or
read-only output fails fast with the path on the terminal and no orphan process."""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from curate.manifest import read_manifest

_SCRIPT = Path(sys.executable).with_name("textbooks")
TEXTBOOKS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "recipes.cli"]
STDLIB = Path(sysconfig.get_paths()["stdlib"])
GOOD = (STDLIB / "textwrap.py").read_text()


def cli(*args, cwd, timeout=300, env=None):
    return subprocess.run(
        [*TEXTBOOKS, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )


def outcomes(stage_dir: Path) -> dict[str, tuple[str, str]]:
    """path (as stored) -> (kept | excluded | unreadable, reason)."""
    result = {}
    for kind, folder in (("kept", "data"), ("excluded", "excluded")):
        for path in sorted((stage_dir / folder).rglob("*.parquet")):
            table = pq.read_table(path, columns=["path", "filter_reason", "extra"]).to_pylist()
            for row in table:
                key = row["path"] or json.loads(row["extra"] or "{}").get("row")
                assert key not in result, f"{key} accounted twice"
                result[key] = (kind, row["filter_reason"] or "")
    for record in read_manifest(stage_dir)["unreadable"]:
        result[record["path"]] = ("unreadable", record["error"])
    return result


def make_hostile_tree(root: Path) -> dict[str, tuple[str, str]]:
    """The tree, and what must become of each file: (outcome, a word of its reason)."""
    src = root / "src"
    src.mkdir()
    (src / "good.py").write_text(GOOD)
    (src / "dup.py").write_text(GOOD)  # an exact duplicate: excluded by the second stage
    (src / "bom.py").write_bytes(b"\xef\xbb\xbf" + b"def f():\n    return 1\n")
    (src / "latin1.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    (src / "syntax.py").write_text("def broken(:\n")
    (src / os.fsdecode(b"n\xe9e.py")).write_text("x = 'odd name'\n")
    os.mkfifo(src / "f.py")
    (src / "zero.py").symlink_to("/dev/zero")
    with open(src / "sparse.py", "wb") as f:
        f.truncate(8 * 2**30)  # 8 GB, sparse
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "s.py"))
    sock.close()
    (src / "loop.py").symlink_to(src / "loop.py")
    return {
        "dup.py": ("kept", ""),  # the first copy in listing order
        "bom.py": ("kept", ""),  # the BOM is stripped: valid code, not a syntax error
        "n\\xe9e.py": ("kept", ""),
        "good.py": ("excluded", "exact_duplicate"),
        "latin1.py": ("excluded", "invalid_utf8"),
        "syntax.py": ("excluded", "syntax_error"),
        f"{src}/f.py": ("unreadable", "FIFO"),
        f"{src}/zero.py": ("unreadable", "character device"),
        f"{src}/sparse.py": ("unreadable", "too large"),
        f"{src}/s.py": ("unreadable", "No such device"),
        f"{src}/loop.py": ("unreadable", "symbolic links"),
    }


def make_damaged_files(root: Path) -> None:
    jsonl = root / "jsonl"
    jsonl.mkdir()
    lines = [
        b'{"text": "a = 1", "path": "j1"}',
        b'{"text": "caf\xe9", "path": "j2"}',  # one bad byte: only this line is lost
        b'{"text": "b = 2", "path": "j3", "size_bytes": "big", "quality_score": "high"}',
        b'{"text": "", "path": "j4"}',
        b"[1, 2, 3]",
        b'{"text": "c = 3", "path": "j6"}',
        b'{"text": "trunc',
    ]
    (jsonl / "rows.jsonl").write_bytes(b"\n".join(lines))
    (jsonl / "rows.jsonl.gz").write_bytes(gzip.compress(b'{"text": "g = 1", "path": "g1"}\n'))
    parquet = root / "parquet"
    parquet.mkdir()
    pq.write_table(
        pa.table({"content": ["p = 1", ""], "max_stars_repo_path": ["p1", "p2"], "size": ["10", "big"]}),
        parquet / "stack.parquet",
    )
    pq.write_table(pa.table({"code": ["q = 1"], "max_stars_repo_path": ["p3"]}), parquet / "other.parquet")
    (parquet / "corrupt.parquet").write_bytes(b"PAR1" + os.urandom(500) + b"PAR1")
    posts = root / "posts"
    posts.mkdir()
    rows = [
        '<row Id="1" PostTypeId="1" Title="t1" Body="&lt;p&gt;q1&lt;/p&gt;" Tags="&lt;python&gt;" Score="3" AcceptedAnswerId="2" />',
        '<row Id="2" PostTypeId="2" ParentId="1" Body="&lt;p&gt;a1&lt;/p&gt;" Score="5" />',
        '<row Id="3" PostTypeId="1" Title="t3" Body="q3" Tags="&lt;python&gt;" Score="1" />',
        '<row Id="4" PostTypeId="1" Title="cut & here" Body="q4" Tags="&lt;python&gt;" />',  # bare &
        '<row Id="5" PostTypeId="2" ParentId="3" Body="a3" Score="1" />',
    ]
    (posts / "Posts.xml").write_text("<posts>\n" + "\n".join(rows) + "\n</posts>\n")
    truncated = "<posts>\n" + "\n".join(rows[:3]) + '\n<row Id="6" PostTypeId="1" Ti'
    (posts / "Truncated.xml").write_text(truncated)


def hostile_recipe(root: Path, out: Path) -> dict:
    posts = root / "posts"
    return {
        "name": "hostile",
        "stages": [
            {
                "name": "read",
                "input": {"uses": "python_source", "with": {"paths": [str(root / "src")], "use_git": False}},
                "steps": [{"uses": "encoding"}, {"uses": "python_syntax"}],
                "output": str(out / "read"),
                "executor": {"tasks": 3, "workers": 2},
            },
            {
                "name": "dedup",
                "input": {"from": "read"},
                "steps": [{"uses": "exact_dedup"}],
                "output": str(out / "dedup"),
            },
            {
                "name": "jsonl",
                "input": {"uses": "jsonl_source", "with": {"data_folder": str(root / "jsonl")}},
                "output": str(out / "jsonl"),
                "executor": {"tasks": 2},
            },
            {
                "name": "parquet",
                "input": {
                    "uses": "parquet_source",
                    "with": {"data_folder": str(root / "parquet"), "columns": "the-stack"},
                },
                "output": str(out / "parquet"),
            },
            {
                "name": "posts",
                "input": {"uses": "stackexchange", "with": {"path": str(posts / "Posts.xml")}},
                "output": str(out / "posts"),
            },
            {
                "name": "truncated",
                "input": {"uses": "stackexchange", "with": {"path": str(posts / "Truncated.xml")}},
                "output": str(out / "truncated"),
            },
        ],
    }


def test_hostile_tree_and_damaged_files_every_input_accounted(tmp_path):
    expected = make_hostile_tree(tmp_path)
    make_damaged_files(tmp_path)
    out = tmp_path / "out"
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(hostile_recipe(tmp_path, out)))
    result = cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    read = read_manifest(out / "read")
    assert read["listed_inputs"] == len(expected) == read["accounted_inputs"]
    final = outcomes(out / "read")
    after_dedup = outcomes(out / "dedup")
    final.update({path: after_dedup[path] for path, (kind, _) in final.items() if kind == "kept"})
    assert final.keys() == expected.keys()
    for name, (kind, word) in expected.items():
        assert final[name][0] == kind and word in final[name][1], (name, final[name])
    dedup = read_manifest(out / "dedup")
    assert dedup["rows"] + dedup["excluded_rows"] == read["rows"]

    jsonl = read_manifest(out / "jsonl")
    assert (jsonl["rows"], jsonl["excluded_rows"], jsonl["unreadable_inputs"]) == (4, 1, 3)
    assert sorted(u["path"].rsplit(":", 1)[-1] for u in jsonl["unreadable"]) == ["2", "5", "7"]
    kept = pq.read_table(out / "jsonl" / "data").to_pylist()
    j3 = next(r for r in kept if r["path"] == "j3")
    assert j3["size_bytes"] is None and "invalid_columns" in j3["extra"] and "big" in j3["extra"]

    parquet = read_manifest(out / "parquet")
    assert (parquet["rows"], parquet["excluded_rows"], parquet["unreadable_inputs"]) == (1, 2, 1)
    assert parquet["drop_reasons"] == {"empty_text": 1, "missing_text_column": 1}

    posts = read_manifest(out / "posts")  # q1 (answered) stands; q3 has no answer before the damage
    assert (posts["rows"], posts["excluded_rows"], posts["unreadable_inputs"]) == (1, 1, 1)
    assert posts["drop_reasons"] == {"no_answer": 1} and "damaged XML" in posts["unreadable"][0]["error"]
    truncated = read_manifest(out / "truncated")
    assert (truncated["rows"], truncated["excluded_rows"], truncated["unreadable_inputs"]) == (1, 1, 1)


SLOW_STEP = '''
import time
from datatrove.pipeline.base import PipelineStep


class SlowStep(PipelineStep):
    """Sleeps a little per document, so that a kill lands mid-run."""

    name = "slow"

    def run(self, data, rank=0, world_size=1):
        for document in data:
            time.sleep(0.02)
            yield document
'''


def test_kill_change_tree_rerun_reads_each_listed_file_once(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(240):
        (src / f"m{i:03d}.py").write_text(f"x = {i}\n")
    (tmp_path / "slow_step.py").write_text(SLOW_STEP)
    out = tmp_path / "out"
    recipe = {
        "name": "killme",
        "stages": [
            {
                "name": "read",
                "input": {"uses": "python_source", "with": {"paths": [str(src)], "use_git": False}},
                "steps": [{"uses": "slow_step:SlowStep"}],
                "output": str(out / "read"),
                "executor": {"tasks": 8, "workers": 1},
            }
        ],
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [*TEXTBOOKS, "run", str(tmp_path / "r.yaml")],
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    completions = out / "read" / ".logs" / "completions"
    deadline = time.monotonic() + 240
    while not (completions.is_dir() and len(list(completions.iterdir())) >= 2):
        assert time.monotonic() < deadline and proc.poll() is None, "run ended before the kill"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the run's own process group
    proc.wait()
    done = len(list(completions.iterdir()))
    assert done < 8
    # change the tree: delete and replace files of unfinished tasks, add a new one
    (src / "m239.py").unlink()
    (src / "m238.py").write_text("replaced = True\n")
    (src / "m999.py").write_text("added = True\n")
    result = cli("run", str(tmp_path / "r.yaml"), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = read_manifest(out / "read")
    assert manifest["listed_inputs"] == 240 == manifest["accounted_inputs"]
    table = pq.read_table(out / "read" / "data").to_pylist()
    paths = [r["path"] for r in table]
    assert len(paths) == len(set(paths)) == 239  # no file read twice
    assert "m999.py" not in paths  # not in the listing snapshot: the run's inputs are fixed at its start
    assert next(r["text"] for r in table if r["path"] == "m238.py") == "replaced = True\n"
    [gone] = manifest["unreadable"]
    assert gone["path"].endswith("m239.py") and "No such file" in gone["error"]


def _mount_tmpfs(path: Path, size: str, read_only: bool = False) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "20m"):
        pytest.skip("cannot mount a small tmpfs here (needs root in a mount namespace)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _session_processes(sid: int) -> list[str]:
    result = subprocess.run(["ps", "-e", "-o", "pid=,sid=,args="], capture_output=True, text=True)
    return [line for line in result.stdout.splitlines() if line.split()[1:2] == [str(sid)]]


@pytest.mark.parametrize("workers", [1, 2])
def test_full_disk_fails_fast_with_the_path_and_a_rerun_after_freeing_space_is_identical(
    tmp_path, small_disk, workers
):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(400):  # ~32 MB of base64 text: does not fit on the 20 MB disk even compressed
        (src / f"f{i:03d}.py").write_bytes(base64.b64encode(os.urandom(60_000)))
    recipe = {
        "name": "full",
        "stages": [
            {
                "name": "read",
                "input": {"uses": "python_source", "with": {"paths": [str(src)], "use_git": False}},
                "output": str(small_disk / "out"),
                "executor": {"tasks": 3, "workers": workers},
            }
        ],
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    proc = subprocess.Popen(
        [*TEXTBOOKS, "run", str(tmp_path / "r.yaml")],
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 1
    assert f"cannot write {small_disk / 'out'}" in (stdout + stderr).replace("\n", "")
    deadline = time.monotonic() + 10
    while _session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session_processes(proc.pid) == []  # no orphan left behind
    # free space (a bigger disk in the same place), rerun: the same shards as an uninterrupted run
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    assert cli("run", str(tmp_path / "r.yaml"), cwd=tmp_path).returncode == 0
    recipe["stages"][0]["output"] = str(tmp_path / "clean")
    (tmp_path / "clean.yaml").write_text(yaml.safe_dump(recipe))
    assert cli("run", str(tmp_path / "clean.yaml"), cwd=tmp_path).returncode == 0
    rerun = sorted(pq.read_table(small_disk / "out" / "data").to_pylist(), key=lambda r: r["id"])
    clean = sorted(pq.read_table(tmp_path / "clean" / "data").to_pylist(), key=lambda r: r["id"])
    assert len(rerun) == 400 and rerun == clean


def test_read_only_output_and_a_locked_output_fail_fast_naming_the_path(tmp_path):
    read_only = tmp_path / "ro"
    if not _mount_tmpfs(read_only, "1m", read_only=True):
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "a.py").write_text("a = 1\n")
        recipe = {
            "name": "ro",
            "stages": [
                {
                    "name": "read",
                    "input": {"uses": "python_source", "with": {"paths": [str(tmp_path / "src")]}},
                    "output": str(read_only / "out"),
                }
            ],
        }
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
        result = cli("run", str(tmp_path / "r.yaml"), cwd=tmp_path, timeout=120)
        message = (result.stdout + result.stderr).replace("\n", "")
        assert (
            result.returncode == 1 and f"cannot write {read_only}/out" in message and "read-only" in message
        )
    finally:
        subprocess.run(["umount", "-l", str(read_only)], capture_output=True)
    # a second run on an output directory another run holds: a clear message, nothing written
    import fcntl

    from recipes.engine import LOCK, OutputError, run_recipe

    recipe["stages"][0]["output"] = str(tmp_path / "busy")
    (tmp_path / "busy").mkdir()
    with open(tmp_path / "busy" / LOCK, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242")
        held.flush()
        with pytest.raises(OutputError, match="in use by another textbooks run .pid 4242"):
            run_recipe(recipe)
    assert not (tmp_path / "busy" / "data").exists()
    assert run_recipe(recipe).stage("read").manifest["rows"] == 1  # free again once the holder is gone
