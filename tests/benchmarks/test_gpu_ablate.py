"""``TINY=1 bash benchmarks/gpu/ablate.sh`` runs the GPU ablation's whole path on CPU (toy data prepared by
``ablate_prep.py --toy``, tiny preset): every variant x 3 seeds, the table and the JSON, so the GPU run
does not fail for a silly reason."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # ~1-2 min on the 2-core VM
def test_tiny_gpu_ablation_runs_end_to_end_on_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "TINY": "1", "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env.pop("PYTHONPATH", None)  # the script sets it itself
    done = subprocess.run(["bash", str(REPO / "benchmarks/gpu/ablate.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "ablate_gpu.json").read_text())
    assert {(r["variant"], r["seed"]) for r in result["runs"]} == {
        (v, s) for v in ("unfiltered", "filtered", "random-filtered") for s in (0, 1, 2)
    }
    assert {r["tokens"] for r in result["runs"]} == {2048}  # equal tokens for every run
    assert all(0 < r["final"]["humaneval_bpc"] < 20 for r in result["runs"])
    assert result["variants"]["filtered"]["humaneval_bpc"]["n"] == 3
    table = (tmp_path / "out" / "ablate_gpu.md").read_text()
    assert "| filtered (" in table and "filtered vs random-filtered humaneval_bpc" in table
