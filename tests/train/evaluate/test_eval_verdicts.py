"""Evaluation records how each verdict was reached and which tasks a samples file left out."""

import json

from train.evaluate import evaluate
from train.evaluate.tasks import build_tasks

ALWAYS_EQUAL = "    class Yes:\n        def __eq__(self, o):\n            return True\n    return Yes()\n"


def test_partial_samples_file_names_the_missing_tasks_and_marks_isolation(tmp_path):
    tasks = build_tasks("humaneval", limit=5)
    rows = [
        {"task_id": tasks[0].task_id, "completion": tasks[0].canonical},
        {"task_id": tasks[0].task_id, "completion": ALWAYS_EQUAL},
        {"task_id": tasks[2].task_id, "completion": tasks[2].canonical},
        {"task_id": tasks[3].task_id, "completion": "    return None\n"},
    ]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = evaluate("humaneval", samples=str(samples), limit=5, timeout_s=5, output_dir=str(tmp_path))
    assert summary["missing_tasks"] == [tasks[1].task_id, tasks[4].task_id]
    assert any(tasks[1].task_id in n and "not scored" in n for n in summary["notes"])
    assert summary["problems"] == 3 and summary["samples"] == 4
    assert summary["isolation_counts"] == {"separate-processes": 4}
    out = [json.loads(line) for line in open(summary["files"]["samples"])]
    assert [r["isolation"] for r in out] == ["separate-processes"] * 4
    assert [r["passed"] for r in out] == [True, False, True, False]
    assert out[1]["error_type"] == "NotPlainData"
    assert "Not scored (no samples): 2 tasks" in open(summary["files"]["markdown"]).read()


def test_single_process_tasks_are_counted(tmp_path):
    problem = {
        "task_id": "toy/0",
        "prompt": "class Box:\n    def __init__(self, v):\n        self.v = v\n\n\ndef unbox(b):\n",
        "canonical_solution": "    return b.v\n",
        "test": "def check(candidate):\n    assert candidate(Box(3)) == 3\n",
        "entry_point": "unbox",
    }
    problems = tmp_path / "toy.jsonl"
    problems.write_text(json.dumps(problem) + "\n")
    summary = evaluate(
        "humaneval", canonical=True, problem_file=str(problems), timeout_s=5, output_dir=str(tmp_path)
    )
    assert summary["pass_at_k"]["pass@1"] == 1.0
    assert summary["isolation_counts"] == {"single-process": 1}
    assert "Box" in summary["single_process_tasks"]["toy/0"]
