"""The foundation's must-shows: quickstart offline, kill -9 and rerun, Ray == local, bad input accounted
for, invalid recipes rejected before any work. Real subprocesses, real Parquet, a real Ray cluster."""

import gzip
import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from curate.manifest import read_manifest
from curate.schema import SCHEMA_VERSION
from recipes.engine import run_recipe
from recipes.schema import RecipeError, load_recipe

_SCRIPT = Path(sys.executable).with_name("textbooks")
TEXTBOOKS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "recipes.cli"]
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def run_cli(*args, cwd=None, check=True, **kwargs):
    result = subprocess.run([*TEXTBOOKS, *args], capture_output=True, text=True, cwd=cwd, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"textbooks {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def rows(shard_dir: Path) -> list[tuple[str, str]]:
    pairs = []
    for path in sorted((shard_dir / "data").glob("*.parquet")):
        table = pq.read_table(path, columns=["id", "text"])
        pairs.extend(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True))
    return sorted(pairs)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    # 16 small tasks, so that the kill test below can compare against this uninterrupted run: which copy
    # of an exact duplicate is kept follows the stream order, and that depends on the number of tasks
    run_cli("run", "quickstart", "--set", f"out={out}", "--set", "tasks=16", cwd=out)
    return out


def test_quickstart_offline_and_loadable(quickstart):
    import datasets
    import duckdb

    curated = quickstart / "curated"
    manifest = read_manifest(curated)
    assert manifest["rows"] > 1000  # the stdlib has ~1,800 modules; a few are dropped with reasons
    files = [str(p) for p in sorted((curated / "data").glob("*.parquet"))]
    assert [s["path"] for s in manifest["shards"]] == [f"data/{Path(f).name}" for f in files]
    hf = datasets.load_dataset("parquet", data_files=files, split="train")
    assert hf.num_rows == manifest["rows"]
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet({files!r})").fetchall()[0][0] == manifest["rows"]
    assert datasets.load_dataset(str(curated), split="train").num_rows == manifest["rows"]  # via the card
    # every input is accounted for in the filter stage, with reasons
    filtered = read_manifest(quickstart / "filtered")
    n_inputs = len(PythonSourceReaderFiles.stdlib())
    assert filtered["rows"] + filtered["excluded_rows"] + filtered["unreadable_inputs"] == n_inputs
    assert filtered["drop_reasons"] and all(n > 0 for n in filtered["drop_reasons"].values())
    assert manifest["drop_reasons"].get("exact_duplicate", 0) > 0
    assert manifest["recipe_hash"] and manifest["schema_version"] == SCHEMA_VERSION
    # the quality stages and the closing audit ran too, offline
    quality = read_manifest(quickstart / "quality")
    assert 0 < quality["rows"] < manifest["rows"] and quality["drop_reasons"].get("low_quality", 0) > 0
    # the card's configs make load_dataset(DIR) work; datasets caches a local directory by its name only,
    # so an earlier run's "quality" would answer from the cache without force_redownload
    loaded = datasets.load_dataset(
        str(quickstart / "quality"),
        split="train",
        download_mode="force_redownload",
        cache_dir=str(quickstart / ".hf-cache"),
    )
    assert loaded.num_rows == quality["rows"]
    split = json.loads((quickstart / "decontam" / "split.json").read_text())
    assert split["benchmarks"]["humaneval"]["n_items"] == 164


class PythonSourceReaderFiles:
    @staticmethod
    def stdlib():
        from curate.readers import PythonSourceReader

        return PythonSourceReader.preset("stdlib").list_files()


def test_kill_and_rerun_equals_uninterrupted(quickstart, tmp_path):
    out = tmp_path / "killed"
    # the whole quickstart, killed in its multi-task filter stage, then rerun to the end
    args = [*TEXTBOOKS, "run", "quickstart", "--set", f"out={out}", "--set", "tasks=16"]
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path, start_new_session=True
    )
    completions = out / "filtered" / ".logs" / "completions"
    deadline = time.time() + 300
    while time.time() < deadline and not (completions.is_dir() and len(list(completions.iterdir())) >= 2):
        time.sleep(0.1)
    done_at_kill = len(list(completions.iterdir())) if completions.is_dir() else 0
    os.killpg(process.pid, signal.SIGKILL)  # the CLI and the executor's workers: the group we started
    process.wait()
    assert 0 < done_at_kill < 16, f"kill did not land midway ({done_at_kill}/16 tasks done)"
    assert not (out / "curated" / "manifest.json").exists()
    run_cli("run", "quickstart", "--set", f"out={out}", "--set", "tasks=16", cwd=tmp_path)
    resumed = read_manifest(out / "filtered")
    assert resumed["resumed_tasks"] >= done_at_kill
    # equal to the uninterrupted (4-task) run: the curated shards and the final quality shards
    for stage in ("curated", "quality"):
        assert rows(out / stage) == rows(quickstart / stage), stage
        ids = [i for i, _ in rows(out / stage)]
        assert len(ids) == len(set(ids))


def small_recipe(out: Path, executor: dict) -> dict:
    return {
        "name": "small",
        "stages": [
            {
                "name": "filter",
                "input": {
                    "uses": "python_source",
                    "with": {"paths": [str(STDLIB / "json"), str(STDLIB / "email")]},
                },
                "steps": [{"uses": "code_size"}, {"uses": "python_syntax"}, {"uses": "exact_dedup"}],
                "output": str(out),
                "executor": executor,
            }
        ],
    }


@pytest.mark.ray
def test_ray_executor_matches_local(tmp_path):
    ray = pytest.importorskip("ray")
    run_recipe(small_recipe(tmp_path / "local", {"type": "local", "tasks": 3, "workers": 1}))
    try:
        run_recipe(
            small_recipe(
                tmp_path / "ray",
                {
                    "type": "ray",
                    "tasks": 3,
                    "options": {"init": {"num_cpus": 2, "include_dashboard": False}, "mem_per_cpu_gb": 0.5},
                },
            )
        )
    finally:
        ray.shutdown()
    local, on_ray = rows(tmp_path / "local"), rows(tmp_path / "ray")
    assert len(local) > 20 and on_ray == local
    assert read_manifest(tmp_path / "ray")["rows"] == read_manifest(tmp_path / "local")["rows"]


def make_bad_corpus(root: Path) -> dict[str, int]:
    src = root / "src"
    src.mkdir()
    (src / "good.py").write_text(Path(STDLIB / "textwrap.py").read_text())
    (src / "latin1.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    (src / "binary.py").write_bytes(bytes(range(256)) * 40)  # not UTF-8 at all
    (src / "nul.py").write_bytes(b"\x00\x01ELF\x00" * 100)  # valid UTF-8, but binary
    (src / "one_line.py").write_text("x = '" + "a" * (50 * 2**20) + "'")
    (src / "syntax.py").write_text("def broken(:\n    return\n")
    (src / "nested.py").write_text("x = " + "(\n" * 5000 + "1" + "\n)" * 5000 + "\n")  # reaches the parser
    (src / "long_unary.py").write_text("x = " + "-" * 5000 + "1\n")  # one 5,005-char line
    (src / "empty.py").write_text("")
    (src / "loop.py").symlink_to(src / "loop.py")
    jsonl = root / "jsonl"
    jsonl.mkdir()
    payload = "".join(json.dumps({"text": f"x = {i}\n", "id": f"j{i}"}) + "\n" for i in range(2000)).encode()
    compressed = gzip.compress(payload)
    (jsonl / "truncated.jsonl.gz").write_bytes(compressed[: len(compressed) // 2])
    parquet = root / "parquet"
    parquet.mkdir()
    import pyarrow as pa

    pq.write_table(pa.table({"text": ["a = 1\n", "b = 2\n"], "id": ["p1", "p2"]}), parquet / "good.parquet")
    (parquet / "corrupt.parquet").write_bytes(b"PAR1" + os.urandom(2000) + b"PAR1")
    return {"py_files": 10}


def test_bad_input_corpus_every_input_accounted_for(tmp_path):
    expected = make_bad_corpus(tmp_path)
    out = tmp_path / "out"
    recipe = {
        "name": "bad-input",
        "stages": [
            {
                "name": "py",
                "input": {"uses": "python_source", "with": {"paths": [str(tmp_path / "src")]}},
                "steps": [
                    {"uses": "encoding"},
                    {"uses": "code_size"},
                    {"uses": "line_length"},
                    {"uses": "python_syntax"},
                ],
                "output": str(out / "py"),
                "executor": {"tasks": 2},
            },
            {
                "name": "jsonl",
                "input": {"uses": "jsonl_source", "with": {"data_folder": str(tmp_path / "jsonl")}},
                "output": str(out / "jsonl"),
            },
            {
                "name": "parquet",
                "input": {"uses": "parquet_source", "with": {"data_folder": str(tmp_path / "parquet")}},
                "output": str(out / "parquet"),
            },
        ],
    }
    result = run_recipe(recipe)
    py = result.stage("py").manifest
    assert py["rows"] + py["excluded_rows"] + py["unreadable_inputs"] == expected["py_files"]
    assert py["rows"] == 1  # only good.py survives
    assert py["unreadable"][0]["path"].endswith("loop.py")
    assert py["drop_reasons"] == {
        "binary": 1,
        "invalid_utf8": 2,
        "empty": 1,
        "too_large": 1,
        "max_line_length": 1,
        "syntax_error": 1,
        "too_deeply_nested": 1,
    }
    assert sum(py["drop_reasons"].values()) == py["excluded_rows"] == 8
    jsonl = result.stage("jsonl").manifest
    assert 0 < jsonl["rows"] < 2000 and jsonl["unreadable_inputs"] == 1
    assert "truncated.jsonl.gz" in jsonl["unreadable"][0]["path"]
    assert jsonl["unreadable"][0]["documents_read"] == jsonl["rows"]
    parquet = result.stage("parquet").manifest
    assert parquet["rows"] == 2 and parquet["unreadable_inputs"] == 1
    assert parquet["unreadable"][0]["path"].endswith("corrupt.parquet")


@pytest.mark.parametrize(
    "mutate, key, words",
    [
        (
            lambda r: r["stages"][0]["steps"].append({"uses": "pythn_syntax"}),
            "stages[0].steps[1].uses",
            "python_syntax",
        ),
        (lambda r: r["stages"][0]["executor"].update(tasks="many"), "stages[0].executor.tasks", "integer"),
        (lambda r: r["stages"][0].pop("input"), "stages[0].input", "required"),
        (
            lambda r: r["stages"][0]["steps"][0]["with"].update(max_byte=3),
            "stages[0].steps[0].with.max_byte",
            "max_bytes",
        ),
        (
            lambda r: r["stages"][0]["steps"][0]["with"].update(max_bytes="big"),
            "stages[0].steps[0].with.max_bytes",
            "wrong type",
        ),
    ],
)
def test_invalid_recipe_names_the_key_before_any_work(tmp_path, mutate, key, words):
    recipe = {
        "name": "bad",
        "stages": [
            {
                "name": "filter",
                "input": {"uses": "python_source", "with": {"preset": "stdlib"}},
                "steps": [{"uses": "code_size", "with": {}}],
                "output": str(tmp_path / "out"),
                "executor": {"tasks": 1},
            }
        ],
    }
    mutate(recipe)
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert any(k == key and words in m for k, m in info.value.problems), info.value.problems
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = run_cli("run", str(path), check=False)
    assert result.returncode == 2 and key in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_validate_and_list():
    assert "ok" in run_cli("validate", "quickstart").stdout
    listing = run_cli("list").stdout
    assert "quickstart" in listing and "python_syntax" in listing and "exact_dedup" in listing
