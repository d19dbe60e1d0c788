"""A curation recipe with its decontamination audit on real clusters: a Ray cluster of two nodes on this
machine (one killed mid-stage, then the recipe rerun) and Slurm scripts run by a stub sbatch/srun
(test code, put on PATH) - each against the local executor: same rows (sorted by id), same decisions."""

import json
import os
import stat
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from decontam.eval_sets import load_benchmark
from decontam.mutate import disguise
from recipes.engine import run_recipe

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def planted_src(tmp_path_factory) -> Path:
    """12 disguised HumanEval solutions as .py files (the contamination the audit must find)."""
    root = tmp_path_factory.mktemp("planted")
    for k, item in enumerate(load_benchmark("humaneval")[:40:3]):
        (root / f"copy_{k}.py").write_text("import os\n\n" + disguise(item.solution, seed=k) + "\n")
    return root


def recipe(out: Path, planted: Path, executor: dict) -> dict:
    """Curation (filters + exact dedup) then the decontamination stages, all on ``executor``."""
    return {
        "name": "cluster",
        "stages": [
            {
                "name": "filter",
                "input": {
                    "uses": "python_source",
                    "with": {"paths": [str(STDLIB / "json"), str(STDLIB / "email"), str(planted)]},
                },
                "steps": [{"uses": "code_size"}, {"uses": "python_syntax"}, {"uses": "exact_dedup"}],
                "output": str(out / "curated"),
                "executor": executor,
            },
            {
                "name": "decontam",
                "job": "decontam_audit",
                "with": {
                    "input_dir": str(out / "curated"),
                    "output_dir": str(out / "decontam"),
                    "benchmarks": ["humaneval"],
                    "rule": "ast",
                    "embeddings": False,
                    "taus": [0.9, 0.8],
                    "executor": executor,
                },
            },  # fmt: skip
        ],
    }


def outputs(out: Path) -> dict:
    """What must not depend on the executor: curated rows, scores and decisions, pruned rows (by id)."""

    def rows(folder: Path, columns=("id", "text")) -> list:
        files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
        return sorted(tuple(r[c] for c in columns) for f in files for r in pq.read_table(f).to_pylist())

    scores = pq.read_table(out / "decontam" / "scores.parquet").to_pylist()
    return {
        "curated": rows(out / "curated" / "data"),
        "scores": sorted(scores, key=lambda r: r["id"]),
        "split": json.loads((out / "decontam" / "split.json").read_text()),
        "kept": rows(out / "decontam" / "tau_0.8" / "data"),
        "removed": rows(out / "decontam" / "tau_0.8" / "excluded", ("id", "filter_reason")),
    }


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, planted_src) -> dict:
    out = tmp_path_factory.mktemp("local")
    run_recipe(recipe(out, planted_src, {"type": "local", "tasks": 3, "workers": 1}))
    found = outputs(out)
    assert len(found["removed"]) >= 10 and len(found["kept"]) >= 10  # the audit has something to decide
    return found


# ---------------------------------------------------------------------------------------------------
# Ray: two nodes on this machine
# ---------------------------------------------------------------------------------------------------
@pytest.fixture
def two_node_ray():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"head": 1}, "include_dashboard": False},
    )
    worker = cluster.add_node(num_cpus=1, resources={"worker": 1})
    ray.init(address=cluster.address)
    try:
        yield cluster, worker
    finally:
        ray.shutdown()
        cluster.shutdown()


RAY = {"type": "ray", "tasks": 3, "workers": 2, "options": {"cpus_per_task": 1, "mem_per_cpu_gb": 0.25}}


@pytest.mark.slow
@pytest.mark.ray
def test_two_node_ray_cluster_matches_local_and_survives_a_killed_node(
    tmp_path, planted_src, local_run, two_node_ray
):
    import ray

    cluster, worker = two_node_ray
    assert len(ray.nodes()) == 2
    run_recipe(recipe(tmp_path / "ray", planted_src, RAY))
    assert outputs(tmp_path / "ray") == local_run

    # kill the worker node's raylet once the audit's score stage has started, then rerun the recipe
    out = tmp_path / "killed"
    score_logs = out / "decontam" / ".logs" / "decontam-score"
    errors = []

    def run():
        try:
            run_recipe(recipe(out, planted_src, RAY))
        except Exception as error:  # noqa: BLE001 - the run may fail when its node dies: rerun below
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 300
    while not (score_logs / "executor.json").exists() and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert score_logs.exists() and not (out / "decontam" / "scores.parquet").exists()  # mid-stage
    cluster.remove_node(worker)  # the raylet and its workers die mid-stage
    cluster.add_node(num_cpus=1, resources={"worker": 1})  # a replacement joins, as an autoscaler's would
    thread.join(timeout=600)
    assert not thread.is_alive()
    run_recipe(recipe(out, planted_src, RAY))
    assert outputs(out) == local_run  # nothing lost, nothing duplicated


# ---------------------------------------------------------------------------------------------------
# Slurm: the executor's own scripts, run by a stub sbatch/srun
# ---------------------------------------------------------------------------------------------------
SBATCH = r'''#!{python}
"""Stub sbatch: runs the script now, once per array index (SLURM_ARRAY_TASK_ID), and prints a job id."""
import os, re, subprocess, sys
args, script = sys.argv[1:-1], sys.argv[-1]
text = open(script).read()
env = dict(os.environ, SLURM_NODELIST="localhost", SLURM_JOB_ID="1")
for arg in args:
    if arg.startswith("--export="):
        for pair in arg.split("=", 1)[1].split(",")[1:]:
            key, _, value = pair.partition("=")
            env[key] = value
array = re.search(r"#SBATCH --array=(\d+)-(\d+)", text)
for index in range(int(array.group(1)), int(array.group(2)) + 1) if array else [None]:
    if index is not None:
        env["SLURM_ARRAY_TASK_ID"] = str(index)
    with open(os.environ["STUB_SLURM_LOG"] + ".out", "a") as out:
        subprocess.run(["bash", script], env=env, check=True, stdout=out, stderr=out)
with open(os.environ["STUB_SLURM_LOG"], "a") as log:
    log.write(script + "\n")
print("Submitted batch job 1")
'''

SRUN = r"""#!/bin/bash
# stub srun: drop srun's own options (-l, -n N, --key=value), run the command
while [[ "$1" == -* ]]; do
  if [[ "$1" == "-n" || "$1" == "-N" ]]; then shift; fi
  shift
done
exec "$@"
"""

SCONTROL = """#!/bin/bash
# stub scontrol: `scontrol show hostnames NODELIST` (how datatrove expands the node list)
echo localhost
"""


@pytest.mark.slow
def test_slurm_scripts_under_a_stub_sbatch_match_local(tmp_path, planted_src, local_run, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = (("sbatch", SBATCH.format(python=sys.executable)), ("srun", SRUN), ("scontrol", SCONTROL))
    for name, text in stubs:
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv(
        "PATH", f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    monkeypatch.setenv("STUB_SLURM_LOG", str(tmp_path / "sbatch.log"))
    slurm = {"type": "slurm", "tasks": 3, "options": {"partition": "cpu", "time": "00:10:00"}}
    first = run_recipe(recipe(tmp_path / "slurm", planted_src, slurm))
    assert first.stage("filter").summary["submitted"]  # a pipeline stage submits; the rerun writes manifests
    run_recipe(recipe(tmp_path / "slurm", planted_src, slurm))
    assert outputs(tmp_path / "slurm") == local_run
    scripts = (tmp_path / "sbatch.log").read_text().splitlines()
    assert len(scripts) >= 4  # filter, score and a prune per tau were submitted as sbatch scripts
