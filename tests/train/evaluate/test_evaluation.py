"""Canonical solutions pass through the whole harness: HumanEval 164/164, MBPP test split (11-510) in
both prompt formats. A broken item would be reported by id in the assertion message."""

import json
from pathlib import Path

import pytest

from train.evaluate import build_tasks, evaluate


def test_humaneval_canonical_164(tmp_path):
    s = evaluate("humaneval", canonical=True, output_dir=str(tmp_path), timeout_s=10)
    assert s["failed_tasks"] == [], f"HumanEval canonical solutions failing: {s['failed_tasks']}"
    assert s["problems"] == 164 and s["pass_at_k"]["pass@1"] == 1.0
    rows = [json.loads(line) for line in open(s["files"]["samples"])]
    assert len(rows) == 164 and all(
        r["prompt_format"] == "humaneval" and r["status"] == "passed" for r in rows
    )
    assert "| humaneval | humaneval |" in Path(s["files"]["markdown"]).read_text()


def test_mbpp_docstring_canonical_test_split(tmp_path, mbpp_path):
    s = evaluate(
        "mbpp",
        prompt_format="mbpp-docstring",
        canonical=True,
        mbpp_path=str(mbpp_path),
        output_dir=str(tmp_path),
    )
    assert s["problems"] == 500
    assert s["failed_tasks"] == [], f"MBPP items whose canonical code fails its tests: {s['failed_tasks']}"
    assert s["prompt_format"] == "mbpp-docstring"


def test_mbpp_3shot_canonical_subset(tmp_path, mbpp_path):
    s = evaluate(
        "mbpp",
        prompt_format="mbpp-3shot",
        canonical=True,
        mbpp_path=str(mbpp_path),
        output_dir=str(tmp_path),
        limit=60,
    )
    assert s["problems"] == 60 and s["failed_tasks"] == [], s["failed_tasks"]


@pytest.mark.slow
def test_mbpp_3shot_canonical_full(tmp_path, mbpp_path):
    s = evaluate(
        "mbpp", prompt_format="mbpp-3shot", canonical=True, mbpp_path=str(mbpp_path), output_dir=str(tmp_path)
    )
    assert s["problems"] == 500 and s["failed_tasks"] == [], s["failed_tasks"]


def test_mbpp_prompt_formats(mbpp_path):
    three = build_tasks("mbpp", "mbpp-3shot", mbpp_path=str(mbpp_path), limit=2)
    doc = build_tasks("mbpp", "mbpp-docstring", mbpp_path=str(mbpp_path), limit=2)
    assert [t.task_id for t in three] == ["mbpp/11", "mbpp/12"]
    p = three[0].prompt
    # tasks 2, 3, 4 as shots, in order, then the task itself left open after [BEGIN]
    assert p.count("[BEGIN]") == 4 and p.count("[DONE]") == 3 and p.endswith("[BEGIN]\n")
    assert p.index("similar elements") < p.index("non-prime") < p.index("heap queue")
    assert three[0].stop == ["[DONE]"]
    d = doc[0].prompt
    assert d.startswith("def remove_Occ(") and '"""' in d and "assert remove_Occ" in d
    assert all(t.prompt_format == "mbpp-docstring" for t in doc)
