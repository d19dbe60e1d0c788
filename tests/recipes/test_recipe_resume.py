"""Which stages a rerun of a finished recipe resumes and which it redoes."""

import sysconfig
from pathlib import Path

from recipes.engine import run_recipe

JSON_PKG = Path(sysconfig.get_paths()["stdlib"]) / "json"


def recipe(tmp_path: Path, job_source: Path, max_bytes: int = 100_000) -> dict:
    """read -> a job that writes a file by path -> a stage downstream of `read` (not of the job)."""
    return {
        "name": "resume",
        "stages": [
            {
                "name": "read",
                "input": {"uses": "python_source", "with": {"paths": [str(JSON_PKG)]}},
                "output": str(tmp_path / "read"),
                "executor": {"tasks": 2, "workers": 1},
            },
            {
                "name": "job",
                "job": "shutil:copyfile",
                "with": {"src": str(job_source), "dst": str(tmp_path / "f")},
            },
            {
                "name": "after",
                "input": {"from": "read"},
                "steps": [{"uses": "code_size", "with": {"max_bytes": max_bytes}}],
                "output": str(tmp_path / "after"),
                "executor": {"tasks": 2, "workers": 1},
            },
        ],
    }


def test_rerun_resumes_unchanged_stages_and_redoes_what_a_changed_job_feeds(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("a")
    second.write_text("b")
    run_recipe(recipe(tmp_path, first))

    same = run_recipe(recipe(tmp_path, first))
    assert same.stage("read").skipped_tasks == 2 and same.stage("after").skipped_tasks == 2

    # a changed job: the stage after it reruns (it may read what the job wrote), the one before does not
    changed = run_recipe(recipe(tmp_path, second))
    assert changed.stage("read").skipped_tasks == 2
    assert changed.stage("after").skipped_tasks == 0
    assert (tmp_path / "f").read_text() == "b"

    # a changed upstream stage definition reruns everything downstream of it
    downstream = run_recipe(recipe(tmp_path, second, max_bytes=5_000))
    assert downstream.stage("read").skipped_tasks == 2 and downstream.stage("after").skipped_tasks == 0
    assert downstream.stage("after").manifest["drop_reasons"].get("too_large", 0) > 0
