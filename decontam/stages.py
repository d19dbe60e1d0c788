"""The decontamination audit as stages on any datatrove executor: score (map, N tasks), reduce (one
process, score columns only), prune (N tasks per tau).

``executor`` is the recipe's executor block: ``{type: local|ray|slurm, tasks, workers, options}``.
On Slurm the stages are submitted and the audit returns ``submitted``; rerun it once the jobs are done
(finished tasks are skipped) to reduce and prune.

Example:
    >>> summary = run_audit_stages("out/curated", "out/decontam", {"humaneval": {}}, taus=[0.9],
    ...                            rule="ast", executor={"type": "local", "tasks": 4})  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from decontam.reduce import DecontamPrune, reduce_scores
from decontam.score import SCORE_SHARDS, AuditShardReader, DecontamScorer, list_input_files

STAGE_LOGS = ".logs"


def make_executor(pipeline: list, spec: dict[str, Any] | None, logs: Path, job_name: str = "decontam"):
    """A datatrove executor for ``pipeline`` from an executor block (default: local, 2 tasks).

    Example:
        >>> make_executor([], {"type": "local", "tasks": 2}, Path("/tmp/logs")).world_size
        2
    """
    spec = dict(spec or {})
    kind, tasks, workers = spec.get("type", "local"), int(spec.get("tasks", 2)), int(spec.get("workers", -1))
    options = dict(spec.get("options") or {})
    if kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        options.setdefault("start_method", "fork")  # a forkserver re-imports everything per task: seconds
        return LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logs), **options)
    if kind == "ray":
        import ray
        from datatrove.executor.ray import RayPipelineExecutor

        init = options.pop("init", {"include_dashboard": False})
        workers = workers if workers > 0 else tasks  # datatrove's Ray executor submits `workers` at a time
        if not ray.is_initialized():
            ray.init(ignore_reinit_error=True, **init)
        return RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logs), **options)
    if kind == "slurm":
        from datatrove.executor.slurm import SlurmPipelineExecutor

        options.setdefault("time", "04:00:00")
        options.setdefault("partition", "cpu")
        return SlurmPipelineExecutor(
            pipeline, tasks=tasks, workers=workers, logging_dir=str(logs), job_name=job_name, **options
        )
    raise ValueError(f"executor.type must be local, ray or slurm, not {kind!r}")


def _completed(logs: Path) -> int:
    folder = logs / "completions"
    return len(list(folder.iterdir())) if folder.is_dir() else 0


def run_stage(pipeline: list, spec, logs: Path, fingerprint: str, outputs: Sequence[Path], name: str) -> bool:
    """Run one stage, resuming a killed run (finished tasks skipped) unless its definition changed, in
    which case its ``outputs`` and completion markers are cleared first. True when every task finished."""
    stamp = logs / "fingerprint.json"
    if not stamp.is_file() or json.loads(stamp.read_text()).get("fingerprint") != fingerprint:
        for folder in [logs, *outputs]:
            shutil.rmtree(folder, ignore_errors=True)
    logs.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"fingerprint": fingerprint}))
    (logs / "resumed.json").write_text(json.dumps({"tasks_done_before": _completed(logs)}))
    executor = make_executor(pipeline, spec, logs, job_name=name)
    executor.run()
    missing = executor.world_size - _completed(logs)
    if missing and (spec or {}).get("type", "local") != "slurm":
        raise RuntimeError(f"stage {name}: {missing} task(s) failed; see {logs}/logs/ (rerun resumes)")
    return not missing


def _fingerprint(payload: dict[str, Any], input_dir: str) -> str:
    """Changes with the stage's settings and with the input files (path, size, mtime)."""
    files = [
        (key, os.stat(path).st_size, os.stat(path).st_mtime_ns) for path, key in list_input_files(input_dir)
    ]
    text = json.dumps({"payload": payload, "files": files}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def run_audit_stages(
    input_dir: str,
    output_dir: str,
    benchmarks: dict[str, dict],
    taus: Sequence[float],
    rule: str,
    threshold: float,
    floor: float,
    embeddings: bool = False,
    embedder: Any = None,
    embedding_view: str = "document",
    ngram: bool = True,
    write_shards: bool = True,
    min_nodes: int = 10,
    max_bytes: int = 2_000_000,
    llm: Any = None,
    llm_k: int = 3,
    embed_k: int = 5,
    executor: dict[str, Any] | None = None,
    behaviour: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score, reduce and prune; returns the reduce's counts plus ``timings`` and the prune counts, or
    ``{"submitted": True}`` while Slurm jobs are still running. ``behaviour``: options of the
    behavioural measure (:class:`decontam.score.BehaviourMeasure`), None when the rule does not use it."""
    out, logs = Path(output_dir), Path(output_dir) / STAGE_LOGS
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, Any] = {}
    scorer = DecontamScorer(
        str(out), benchmarks, floor=floor, min_nodes=min_nodes, max_bytes=max_bytes, embeddings=embeddings,
        embedder=embedder, embedding_view=embedding_view, embed_k=embed_k, ngram=ngram, judge_k=llm_k,
        input_dir=str(input_dir), behaviour=behaviour,
    )  # fmt: skip
    payload = {k: v for k, v in vars(scorer).items() if not k.startswith("_") and k != "embedder"}
    payload["embedder"] = type(embedder).__name__ if embedder is not None else None
    payload["tasks"] = (executor or {}).get("tasks", 2)
    score_executor = dict(executor or {})
    if embeddings and score_executor.get("type", "local") == "local":
        # torch's thread pools do not survive a fork of a process that already used them
        score_executor["options"] = {"start_method": "forkserver", **(score_executor.get("options") or {})}
    t0 = time.perf_counter()
    done = run_stage(
        [AuditShardReader(str(input_dir)), scorer], score_executor, logs / "decontam-score",
        _fingerprint(payload, str(input_dir)), [out / SCORE_SHARDS], "decontam-score",
    )  # fmt: skip
    timings["score_s"] = round(time.perf_counter() - t0, 3)
    resumed = json.loads((logs / "decontam-score" / "resumed.json").read_text())["tasks_done_before"]
    timings["score_tasks_reused"] = resumed  # finished tasks of an earlier run with the same settings
    if not done:
        return {"submitted": True, "note": "score jobs submitted: rerun the audit once they finish"}
    t0 = time.perf_counter()
    counts = reduce_scores(out, input_dir, benchmarks, taus, rule, threshold, embeddings, llm, llm_k, embed_k)
    timings["reduce_s"] = round(time.perf_counter() - t0, 3)
    if write_shards:
        t0 = time.perf_counter()
        if not prune_stages(input_dir, out, taus, executor, counts):
            return {"submitted": True, "note": "prune jobs submitted: rerun the audit once they finish"}
        timings["write_shards_s"] = round(time.perf_counter() - t0, 3)
    counts["timings"] = timings
    return counts


def prune_stages(input_dir, out: Path, taus, executor, counts) -> bool:
    """One prune pipeline per tau (reader -> :class:`DecontamPrune` -> shard writer) and its manifest."""
    from curate.shards import ExclusionWriter, ShardWriter
    from decontam.prune import tau_key, write_tau_manifest

    decisions = hashlib.sha256((out / "scores.parquet").read_bytes()).hexdigest()
    for tau in taus:
        key = tau_key(tau)
        tau_dir = out / f"tau_{key}"
        t0 = time.perf_counter()
        pipeline = [
            AuditShardReader(str(input_dir), full_rows=True),
            DecontamPrune(str(out), tau, ExclusionWriter(str(tau_dir / "excluded" / "decontam"), "decontam")),
            ShardWriter(str(tau_dir / "data")),
        ]
        fingerprint = _fingerprint({"decisions": decisions, "tau": key, "executor": executor}, str(input_dir))
        logs = out / STAGE_LOGS / f"decontam-prune-{key}"
        if not run_stage(pipeline, executor, logs, fingerprint, [tau_dir], f"decontam-prune-{key}"):
            return False
        decision = {"tau": float(key), "rule": counts["rule"], "embedding_threshold": counts["threshold"],
                    **counts["taus"][key]}  # fmt: skip
        write_tau_manifest(tau_dir, input_dir, t0, decision)
    return True
