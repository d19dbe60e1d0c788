"""Which stages a rerun of a finished recipe resumes and which it redoes."""

import shutil
import sysconfig
from pathlib import Path

from recipes.engine import run_recipe

JSON_PKG = Path(sysconfig.get_paths()["stdlib"]) / "json"


def recipe(tmp_path: Path, vocab_size: int, max_bytes: int = 100_000) -> dict:
    """read -> a job writing to an output_dir -> a stage downstream of `read` (not of the job)."""
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
                "job": "train_tokenizer",
                "with": {
                    "shards": str(tmp_path / "read"),
                    "output_dir": str(tmp_path / "tok"),
                    "vocab_size": vocab_size,
                },
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
    first = run_recipe(recipe(tmp_path, 400))
    assert first.stage("job").skipped_tasks == 0
    vocab = tmp_path / "tok" / "tokenizer.json"
    written = vocab.stat().st_mtime_ns

    # nothing changed: every stage is resumed, the finished job is not run again
    same = run_recipe(recipe(tmp_path, 400))
    assert same.stage("read").skipped_tasks == 2 and same.stage("after").skipped_tasks == 2
    assert same.stage("job").skipped_tasks == 1 and vocab.stat().st_mtime_ns == written
    assert same.stage("job").summary["vocab_size"] == first.stage("job").summary["vocab_size"]
    assert run_recipe(recipe(tmp_path, 400), fresh=True).stage("job").skipped_tasks == 0

    # a damaged completion record (a crash mid-write, a hand edit) means "run it", never a crash
    (tmp_path / "tok" / ".logs" / "job-job.json").write_text('{"fingerprint": "trunc')
    assert run_recipe(recipe(tmp_path, 400)).stage("job").skipped_tasks == 0
    assert run_recipe(recipe(tmp_path, 400)).stage("job").skipped_tasks == 1

    # a changed job: it reruns, and so does the stage after it (it may read what the job wrote), not the one before
    changed = run_recipe(recipe(tmp_path, 420))
    assert changed.stage("read").skipped_tasks == 2
    assert changed.stage("job").skipped_tasks == 0 and changed.stage("after").skipped_tasks == 0

    # a changed upstream stage definition reruns everything downstream of it
    downstream = run_recipe(recipe(tmp_path, 420, max_bytes=5_000))
    assert downstream.stage("read").skipped_tasks == 2 and downstream.stage("after").skipped_tasks == 0
    assert downstream.stage("after").manifest["drop_reasons"].get("too_large", 0) > 0

    # the job's output removed by hand: it runs again
    shutil.rmtree(tmp_path / "tok")
    assert run_recipe(recipe(tmp_path, 420, max_bytes=5_000)).stage("job").skipped_tasks == 0
    assert vocab.is_file()
