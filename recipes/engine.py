"""Run a recipe: each pipeline stage becomes a datatrove pipeline on the executor it names, each job
stage a function call. Every pipeline stage writes a shard directory with a manifest and a dataset
card; its ``.logs/`` completion markers make a rerun of a killed run skip finished tasks and redo the
rest, with identical output.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recipes.registry import resolve
from recipes.schema import JobStage, PipelineStage, Recipe, check_inputs, load_recipe

STAMP = "stage.json"
#: the file a run holds an exclusive lock on, in every output directory it writes
LOCK = ".textbooks.lock"
#: a stage does not start on a file system with less free space than this
MIN_FREE_BYTES = 16 * 2**20


_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class OutputError(RuntimeError):
    """An output directory that cannot be written: read-only, full, or in use by another run."""


#: a stage's file listing, written at its first run (next to the completion markers) and reused by reruns
LISTING = "listing.json"


@dataclass
class StageResult:
    """What one stage did: for pipeline stages the manifest, for job stages the job's summary."""

    name: str
    kind: str
    output: str | None = None
    wall_time_s: float = 0.0
    manifest: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    skipped_tasks: int = 0


@dataclass
class RunResult:
    recipe: str
    stages: list[StageResult] = field(default_factory=list)

    def stage(self, name: str) -> StageResult:
        return next(s for s in self.stages if s.name == name)


def _step_label(uses: str, name: str | None, taken: set[str]) -> str:
    label = name or uses.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    base, n = label, 2
    while label in taken:
        label, n = f"{base}_{n}", n + 1
    taken.add(label)
    return label


def build_pipeline(stage: PipelineStage, recipe: Recipe) -> list:
    """The datatrove pipeline of a stage: reader, steps (filters get exclusion writers), shard writer.

    Example:
        >>> recipe = load_recipe("quickstart")
        >>> [type(s).__name__ for s in build_pipeline(recipe.stages[0], recipe)][:2]
        ['PythonSourceReader', 'EncodingFilter']
    """
    from datatrove.pipeline.filters.base_filter import BaseFilter

    from curate.accounting import READ_STEP, AccountedReader
    from curate.shards import (
        DATA_DIR,
        EXCLUDED_DIR,
        LOGS_DIR,
        UNREADABLE_DIR,
        ExclusionWriter,
        ShardReader,
        ShardWriter,
    )

    out = Path(stage.output)
    spec = stage.input
    if spec.uses is not None:
        reader = resolve(spec.uses, "steps")(**spec.with_)
    else:
        source = spec.path if spec.path is not None else _stage_by_name(recipe, spec.from_).output
        reader = ShardReader(source)
    if isinstance(reader, AccountedReader):  # every input ends kept, excluded or unreadable
        if reader.unreadable_folder is None:
            reader.unreadable_folder = str(out / UNREADABLE_DIR)
        if reader.exclusion_writer is None:
            reader.exclusion_writer = ExclusionWriter(str(out / EXCLUDED_DIR / READ_STEP), READ_STEP)
        reader.listing_file = str(out / LOGS_DIR / LISTING)
    pipeline = [reader]
    taken: set[str] = set()
    for step_spec in stage.steps:
        label = _step_label(step_spec.uses, step_spec.name, taken)
        step = resolve(step_spec.uses, "steps")(**step_spec.with_)
        if isinstance(step, BaseFilter) and step.exclusion_writer is None:
            step.exclusion_writer = ExclusionWriter(str(out / EXCLUDED_DIR / label), label)
        pipeline.append(step)
    writer_kwargs = {"max_shard_bytes": stage.max_shard_bytes} if stage.max_shard_bytes else {}
    pipeline.append(ShardWriter(str(out / DATA_DIR), **writer_kwargs))
    return pipeline


def _stage_by_name(recipe: Recipe, name: str) -> PipelineStage:
    return next(s for s in recipe.stages if s.name == name)


def _stage_fingerprint(stage: PipelineStage | JobStage, recipe: Recipe) -> str:
    """Changes when anything that determines the stage's output changes (not the executor's size).

    A pipeline stage depends on its ``from:`` stage and on every job stage before it: jobs hand their
    results over by path (the quality stage reads the classifier the ``train`` job wrote), so a changed
    job must make later stages rerun rather than leave their old shards in place. A job stage depends on
    every stage before it.
    """
    return _fingerprints(recipe)[stage.name]


def _fingerprints(recipe: Recipe) -> dict[str, str]:
    """Every stage's fingerprint, computed in recipe order (each from those of earlier stages)."""
    done: dict[str, str] = {}
    jobs: list[str] = []  # fingerprints of the job stages seen so far
    for stage in recipe.stages:
        if isinstance(stage, JobStage):
            payload = stage.model_dump(by_alias=True)
            payload["before"] = list(done.values())
        else:
            payload = stage.model_dump(by_alias=True, exclude={"executor"})
            payload["tasks"] = stage.executor.tasks  # the number of tasks decides shard names
            if stage.input.from_:
                payload["upstream"] = done[stage.input.from_]
            if jobs:  # (absent otherwise, so recipes without jobs keep their fingerprints)
                payload["jobs_before"] = list(jobs)
        done[stage.name] = hashlib.sha256(
            json.dumps(payload, sort_keys=True, default=str).encode()
        ).hexdigest()
        if isinstance(stage, JobStage):
            jobs.append(done[stage.name])
    return done


def _clear_stage_output(out: Path) -> None:
    # only what a stage writes: never an arbitrary user directory
    from curate.manifest import MANIFEST_NAME
    from curate.shards import DATA_DIR, EXCLUDED_DIR, LOGS_DIR, UNREADABLE_DIR

    for name in (DATA_DIR, EXCLUDED_DIR, UNREADABLE_DIR, LOGS_DIR, "embeddings"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (MANIFEST_NAME, "README.md"):
        (out / name).unlink(missing_ok=True)


def _make_executor(stage: PipelineStage, pipeline: list, logs: Path):
    spec = stage.executor
    if spec.type == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(
            pipeline, tasks=spec.tasks, workers=spec.workers, logging_dir=str(logs), **spec.options
        )
    if spec.type == "ray":
        import ray
        from datatrove.executor.ray import RayPipelineExecutor

        options = dict(spec.options)
        init_options = options.pop("init", {"include_dashboard": False})
        if not ray.is_initialized():
            ray.init(ignore_reinit_error=True, **init_options)
        return RayPipelineExecutor(
            pipeline, tasks=spec.tasks, workers=spec.workers, logging_dir=str(logs), **options
        )
    from datatrove.executor.slurm import SlurmPipelineExecutor

    return SlurmPipelineExecutor(
        pipeline, tasks=spec.tasks, workers=spec.workers, logging_dir=str(logs), **spec.options
    )


def _output_dirs(recipe: Recipe) -> list[Path]:
    """Every directory a run writes: pipeline stages' outputs, jobs' ``output_dir`` / ``output_path`` parent."""
    dirs = []
    for stage in recipe.stages:
        if isinstance(stage, PipelineStage):
            dirs.append(Path(stage.output))
        elif stage.with_.get("output_dir"):
            dirs.append(Path(str(stage.with_["output_dir"])))
        elif stage.with_.get("output_path"):
            dirs.append(Path(str(stage.with_["output_path"])).parent)
    return sorted(set(dirs))


def _disk_problem(path: Path, error: OSError) -> OutputError:
    what = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
    }.get(error.errno, error.strerror or str(error))
    free = ""
    with contextlib.suppress(OSError):
        free = f" ({shutil.disk_usage(path if path.exists() else path.parent).free / 2**20:.0f} MiB free)"
    remedy = "free space" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
    return OutputError(
        f"cannot write {path}: {what}{free}; {remedy} or choose another output, then rerun "
        "(finished tasks are kept)"
    )


@contextlib.contextmanager
def output_lock(recipe: Recipe, min_free_bytes: int = MIN_FREE_BYTES):
    """Hold an exclusive lock on each output directory of a run; fail fast, naming the path, when one is
    locked by another run, read-only or (nearly) full. A lock dies with its process (``flock``), so a
    killed run never leaves a stale one.

    Example:
        >>> with output_lock(load_recipe("quickstart", {"out": "/tmp/qs"})):  # doctest: +SKIP
        ...     pass
    """
    import fcntl

    with contextlib.ExitStack() as stack:
        for folder in _output_dirs(recipe):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)  # unbuffered: closing cannot fail
            except OSError as error:
                raise _disk_problem(folder, error) from None
            stack.callback(os.close, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise OutputError(
                    f"{folder} is in use by another textbooks run (pid {owner}); "
                    "wait for it to finish or choose another output"
                ) from None
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
                if shutil.disk_usage(folder).free < min_free_bytes:
                    raise OSError(errno.ENOSPC, "no space left")
            except OSError as error:
                raise _disk_problem(folder, error) from None
        yield


def _completed(logs: Path) -> int:
    folder = logs / "completions"
    return len(list(folder.iterdir())) if folder.is_dir() else 0


def _run_executor(executor, stage: PipelineStage, logs: Path, on_progress) -> None:
    """Run the stage's executor, reporting completed tasks; a write that fails for lack of space or
    permission becomes an :class:`OutputError` naming the output directory."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            on_progress(_completed(logs), stage.executor.tasks)

    poller = threading.Thread(target=poll, daemon=True) if on_progress else None
    if poller:
        poller.start()
    try:
        executor.run()
    except OSError as error:
        if error.errno in _DISK_ERRORS:
            raise _disk_problem(Path(stage.output), error) from None
        raise
    finally:
        stop.set()
        if poller:
            poller.join()


def run_stage(
    stage: PipelineStage,
    recipe: Recipe,
    fresh: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> StageResult:
    """Run one pipeline stage (resuming a killed run) and write its manifest and dataset card."""
    from curate.accounting import AccountedReader
    from curate.manifest import write_manifest
    from curate.shards import LOGS_DIR

    out = Path(stage.output)
    logs = out / LOGS_DIR
    fingerprint = _stage_fingerprint(stage, recipe)
    stamp = logs / STAMP
    if fresh or (stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") != fingerprint):
        _clear_stage_output(out)  # a different stage definition: earlier outputs and markers are stale
    logs.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"fingerprint": fingerprint, "stage": stage.name}))
    skipped = _completed(logs)
    pipeline = build_pipeline(stage, recipe)
    listed, notes = None, []
    if isinstance(pipeline[0], AccountedReader):  # once, before any task: every task and rerun read it
        listed = len(pipeline[0].snapshot_listing())
        notes = [] if listed else [pipeline[0].empty_listing_note()]  # legitimate, never silent
    executor = _make_executor(stage, pipeline, logs)
    started = time.perf_counter()
    _run_executor(executor, stage, logs, on_progress)
    if stage.executor.type == "slurm":
        return StageResult(
            stage.name,
            "pipeline",
            str(out),
            time.perf_counter() - started,
            summary={
                "submitted": True,
                "note": "rerun the recipe after the jobs finish to write the manifest",
            },
        )
    incomplete = stage.executor.tasks - _completed(logs)
    if incomplete and shutil.disk_usage(out).free < MIN_FREE_BYTES:
        raise _disk_problem(out, OSError(errno.ENOSPC, "no space left on device"))
    if incomplete:
        raise RuntimeError(f"stage {stage.name!r}: {incomplete} task(s) failed; see {logs}/logs/")
    if on_progress:
        on_progress(stage.executor.tasks, stage.executor.tasks)
    wall = time.perf_counter() - started
    inputs = [stage.input.uses or stage.input.from_ or stage.input.path]
    manifest = write_manifest(
        out,
        stage=stage.name,
        recipe=recipe.model_dump(by_alias=True),
        wall_time_s=wall,
        inputs=inputs,
        extra={
            "recipe_name": recipe.name,
            "executor": stage.executor.model_dump(),
            "resumed_tasks": skipped,
            **({} if listed is None else {"listed_inputs": listed}),  # the listing snapshot's size
            **({"notes": notes} if notes else {}),
        },
    )
    return StageResult(stage.name, "pipeline", str(out), wall, manifest=manifest, skipped_tasks=skipped)


def _job_stamp(stage: JobStage) -> Path | None:
    """Where a finished job records its fingerprint and summary: under the ``output_dir`` (or beside the
    ``output_path``) it was given. A job with neither has nowhere to record it and always runs."""
    from curate.shards import LOGS_DIR

    if stage.with_.get("output_dir"):
        return Path(stage.with_["output_dir"]) / LOGS_DIR / f"job-{stage.name}.json"
    if stage.with_.get("output_path"):
        return Path(stage.with_["output_path"]).parent / LOGS_DIR / f"job-{stage.name}.json"
    return None


def _read_stamp(stamp: Path) -> dict:
    """A job's completion record; a missing or damaged one (a crash mid-write, an edit) means: run it."""
    try:
        record = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _job_output_exists(stage: JobStage) -> bool:
    target = stage.with_.get("output_dir") or stage.with_.get("output_path")
    return bool(target) and Path(target).exists()


def run_job(
    stage: JobStage, recipe: Recipe | None = None, fresh: bool = False, dry_run: bool = False
) -> StageResult:
    """Run one job stage; in a dry run, only jobs that take a ``dry_run`` argument run (with it set).

    A job that finished before with the same fingerprint (its arguments and every earlier stage) and whose
    output is still there is not run again: its recorded summary is returned, with ``skipped_tasks=1``.
    ``fresh`` runs it regardless.
    """
    import inspect

    started = time.perf_counter()
    function = resolve(stage.job, "jobs")
    kwargs = dict(stage.with_)
    if dry_run:
        if "dry_run" not in inspect.signature(function).parameters:
            return StageResult(stage.name, "job", None, 0.0, summary={"skipped": "dry run"})
        kwargs["dry_run"] = True
    stamp = _job_stamp(stage) if recipe is not None and not dry_run else None
    fingerprint = _stage_fingerprint(stage, recipe) if stamp else None
    if stamp and not fresh and _job_output_exists(stage):
        recorded = _read_stamp(stamp)
        if recorded.get("fingerprint") == fingerprint and "summary" in recorded:
            return StageResult(stage.name, "job", None, 0.0, summary=recorded["summary"], skipped_tasks=1)
    if stamp:
        stamp.unlink(missing_ok=True)  # a rerun that dies midway must not look finished
    summary = function(**kwargs)
    summary = summary if isinstance(summary, dict) else {"result": summary}
    if stamp:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"fingerprint": fingerprint, "stage": stage.name, "summary": summary}, default=str)
        tmp = stamp.with_name(stamp.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(stamp)
        summary = json.loads(text)["summary"]  # the same (JSON) form a skipped rerun returns
    return StageResult(stage.name, "job", None, time.perf_counter() - started, summary=summary)


def _paid_steps(pipeline: list) -> list:
    """Steps that would spend money (LLM calls): they expose ``estimate_cost``. The reader counts too:
    a generating reader (``synth_generate``) is where a synth stage spends."""
    return [step for step in pipeline[:-1] if callable(getattr(step, "estimate_cost", None))]


def estimate_stage(stage: PipelineStage, recipe: Recipe) -> StageResult:
    """Dry run of a stage with LLM steps: read its input, estimate each paid step's cost and write its
    Batch API request files (``OUT/batch_requests/<step>/``); send nothing and write no shards."""
    from curate.accounting import AccountedReader

    pipeline = build_pipeline(stage, recipe)
    reader = pipeline[0]
    if isinstance(reader, AccountedReader):  # an estimate writes no listing and no exclusion shards
        reader.listing_file, reader.exclusion_writer = None, None
    tasks = stage.executor.tasks
    paid = _paid_steps(pipeline)
    # a paid reader is not run: reading is what would spend (it estimates its own requests)
    documents = [] if reader in paid else [d for rank in range(tasks) for d in reader.run(rank=rank, world_size=tasks)]
    estimates = {}
    for step in paid:
        label = type(step).__name__
        estimate = step.estimate_cost(documents)
        if callable(getattr(step, "write_batch_files", None)):
            folder = Path(stage.output) / "batch_requests" / label
            estimate["batch_files"] = [str(p) for p in step.write_batch_files(documents, str(folder))]
        estimates[label] = estimate
    return StageResult(
        stage.name,
        "pipeline",
        None,
        0.0,
        summary={"dry_run": True, "documents": len(documents), "estimates": estimates},
    )


def run_recipe(
    ref: str | Path | dict | Recipe,
    overrides: list[str] | dict[str, Any] | None = None,
    fresh: bool = False,
    only: list[str] | None = None,
    dry_run: bool = False,
    on_stage: Callable[[str, str], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> RunResult:
    """Validate a recipe, then run its stages in order.

    Args:
        ref: a recipe path, a bundled recipe name, a dict, or a loaded :class:`Recipe`.
        overrides: ``["tasks=4"]`` or ``{"tasks": 4}``: variables, or ``stages.NAME.key`` paths.
        fresh: discard earlier outputs and completion markers instead of resuming.
        only: run only these stage names (their inputs must exist).
        dry_run: spend nothing: stages without LLM steps run (they are offline and free), the first stage
            with LLM steps is estimated (cost, Batch API request files) instead of run and every later
            stage is skipped; job stages run only if they take a ``dry_run`` argument (set to true).

    Example:
        >>> result = run_recipe("quickstart", overrides={"out": "/tmp/qs"})  # doctest: +SKIP
        >>> result.stage("dedup").manifest["rows"]  # doctest: +SKIP
        1702
    """
    # validated once: a recipe loaded here (or by `textbooks run`) has its inputs checked while loading
    recipe = ref if isinstance(ref, Recipe) else load_recipe(ref, overrides, check_inputs_exist=True)
    check_inputs(recipe)
    from curate.llm.serve import stop_local_servers

    with output_lock(recipe):
        try:
            return _run_stages(recipe, fresh, only, dry_run, on_stage, on_progress)
        finally:  # the local LLM servers steps with `base_url: local` started end with the run
            stop_local_servers()


def _run_stages(recipe: Recipe, fresh, only, dry_run, on_stage, on_progress) -> RunResult:
    result = RunResult(recipe.name)
    estimated = False
    for stage in recipe.stages:
        if only and stage.name not in only:
            continue
        if on_stage:
            on_stage(stage.name, "job" if isinstance(stage, JobStage) else "pipeline")
        if dry_run and estimated:
            result.stages.append(
                StageResult(stage.name, "skipped", summary={"skipped": "after a dry-run estimate"})
            )
        elif isinstance(stage, JobStage):
            result.stages.append(run_job(stage, recipe, fresh=fresh, dry_run=dry_run))
        elif dry_run and _paid_steps(build_pipeline(stage, recipe)):
            result.stages.append(estimate_stage(stage, recipe))
            estimated = True
        else:
            progress = (
                (lambda done, total, _n=stage.name: on_progress(_n, done, total)) if on_progress else None
            )
            result.stages.append(run_stage(stage, recipe, fresh=fresh, on_progress=progress))
    return result
