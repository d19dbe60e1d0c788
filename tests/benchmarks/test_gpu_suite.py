"""The GPU suite's smoke run: ``bash benchmarks/gpu/suite.sh --smoke`` runs every section's code on CPU
(tiny preset), imports nothing a stock CUDA PyTorch image lacks, and writes the JSON and the table."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_suite_smoke_runs_every_section_on_cpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "SUITE_DEADLINE_S": "500"}
    env.pop("PYTHONPATH", None)  # the script must set it itself (the GPU machine runs a copied repo)
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks/gpu/suite.sh"), "--smoke", "--out", str(tmp_path / "out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=560,
    )  # fmt: skip
    report = json.loads((tmp_path / "out" / "gpu_suite.json").read_text())
    status = {s["name"]: s["status"] for s in report["sections"]}
    assert done.returncode == 0, (status, done.stdout[-3000:], done.stderr[-3000:])
    assert status == {
        "env": "ok",
        "tiny/ours/eager": "ok",
        "tiny/trainer/eager": "ok",
        "generate": "ok",
        "tiny/ours/eager/ddp2": "skipped",  # no 2 GPUs here
    }
    results = {s["name"]: s.get("result", {}) for s in report["sections"]}
    for name in ("tiny/ours/eager", "tiny/trainer/eager"):
        r = results[name]
        assert r["imported_but_missing_on_gpu"] == []
        assert r["tokens_timed"] == 3 * 2 * 2 * 64 and r["tokens_per_s"] > 0
        assert math.isclose(r["tokens_per_s"], r["tokens_timed"] / r["seconds_timed"])
        assert r["mfu"] is None  # no peak FLOP/s for a CPU
    # random tokens: the loss starts at ln(vocab)
    assert abs(results["tiny/ours/eager"]["first_loss"] - math.log(4096)) < 0.3
    gen = results["generate"]
    assert gen["stops"]["new_tokens"] > 0 and 0 < gen["no_stops"]["new_tokens"] <= 6 * 8
    (comparison,) = report["comparisons"]
    assert comparison["preset"] == "tiny" and comparison["ratio"] > 0
    table = (tmp_path / "out" / "gpu_suite.md").read_text()
    assert "| tiny/ours/eager | 64 x 2 x 2 |" in table and "ours / Trainer =" in table
    assert "new tokens/s with the HumanEval stop strings" in table


@pytest.mark.slow  # ~2-3 min on the 2-core VM: six sections, each its own process
def test_speed_sections_run_every_technique_on_cpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "SUITE_DEADLINE_S": "500"}
    env.pop("PYTHONPATH", None)
    command = ["bash", str(REPO / "benchmarks/gpu/suite.sh"), "--smoke", "--speed", "--compile-backend", "eager",
               "--out", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=560)
    report = json.loads((tmp_path / "out" / "gpu_suite.json").read_text())
    status = {s["name"]: s["status"] for s in report["sections"]}
    assert done.returncode == 0, (status, done.stdout[-3000:], done.stderr[-3000:])
    names = ["env", "tiny/ours/eager", "tiny/trainer/eager", "tiny/ours/eager+chunked",
             "tiny/ours/eager+chunked+automb", "tiny/ours/compile+best"]  # fmt: skip
    assert list(status) == names and set(status.values()) == {"ok"}  # no flash-attn wheel on this VM
    results = {s["name"]: s["result"] for s in report["sections"]}
    # the probe found the largest micro batch (4 sequences fit on CPU): same sequences per step
    assert (
        results["tiny/ours/eager+chunked+automb"]["micro_batch"],
        results["tiny/ours/compile+best"]["accum"],
    ) == (4, 1)
    # random tokens: the chunked loss starts where the plain one does, at ln(vocab)
    assert (
        abs(results["tiny/ours/eager+chunked"]["first_loss"] - results["tiny/ours/eager"]["first_loss"])
        < 1e-3
    )
    table = (tmp_path / "out" / "gpu_suite.md").read_text()
    assert "tiny/ours/eager+chunked+automb: " in table and "x the plain eager loop" in table
