"""Curation I/O: the quickstart stages (read -> heuristic filters -> exact dedup -> shards) vs a plain
datatrove pass (reader -> ParquetWriter) on the same files, same executor settings, one process.

    python benchmarks/bench_curate_io.py                  # stdlib + site-packages
    python benchmarks/bench_curate_io.py --inputs stdlib  # quicker

Prints docs/s and MB/s for both and the ratio ours / plain (target >= 0.5).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.writers.parquet import ParquetWriter

from curate.readers import PythonSourceReader, site_packages_roots, stdlib_root
from recipes.engine import run_recipe


def reader_kwargs(inputs: str) -> dict:
    if inputs == "stdlib":
        return {"preset": "stdlib"}
    return {
        "paths": [str(stdlib_root()), *map(str, site_packages_roots())],
        "source": "bench",
        "exclude": ["site-packages/*", "dist-packages/*"] if inputs == "stdlib" else [],
    }


def _plain_adapter(self, document) -> dict:
    return {"id": document.id, "text": document.text, "metadata": json.dumps(document.metadata)}


def plain_pass(inputs: str, out: Path, tasks: int, workers: int) -> float:
    # datatrove's writer infers the schema from the first row, which fails as soon as metadata keys vary
    # between files (a licence hint here, utf8_errors there): the plain pass stores metadata as JSON
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("metadata", pa.string())])
    writer = ParquetWriter(str(out / "data"), adapter=_plain_adapter, schema=schema)
    pipeline = [PythonSourceReader(**reader_kwargs(inputs)), writer]
    started = time.perf_counter()
    LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(out / ".logs")).run()
    return time.perf_counter() - started


def quickstart_pass(inputs: str, out: Path, tasks: int, workers: int, syntax_check: str) -> tuple[float, int]:
    started = time.perf_counter()
    result = run_recipe(
        "quickstart",
        overrides={
            "out": str(out),
            "tasks": tasks,
            "workers": workers,
            "stages.filter.input.with": reader_kwargs(inputs),
            "stages.filter.steps.6.with": {"check": syntax_check},  # the python_syntax step
        },
        only=["filter", "dedup"],  # the I/O stages; the quality and audit stages are benchmarked elsewhere
    )
    return time.perf_counter() - started, result.stage("dedup").manifest["rows"]


@contextlib.contextmanager
def quiet_stderr():
    """The executors' per-task logs (worker processes inherit fd 2) would bury the figures."""
    saved = os.dup(2)
    with open(os.devnull, "wb") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--inputs", choices=["stdlib", "stdlib+site-packages"], default="stdlib+site-packages"
    )
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--syntax-check", choices=["ast", "symtable"], default="ast")
    args = parser.parse_args()

    files = PythonSourceReader(**reader_kwargs(args.inputs)).list_files()
    total_bytes = sum(
        (Path(root) / rel).stat().st_size for root, rel, _ in files if (Path(root) / rel).is_file()
    )
    n_docs, megabytes = len(files), total_bytes / 1e6
    print(
        f"input: {args.inputs}: {n_docs} files, {megabytes:.1f} MB; tasks={args.tasks} workers={args.workers}"
    )
    work = Path(tempfile.mkdtemp(prefix="bench_curate_io_"))
    try:
        with quiet_stderr():
            plain_s = plain_pass(args.inputs, work / "plain", args.tasks, args.workers)
            ours_s, kept = quickstart_pass(
                args.inputs, work / "ours", args.tasks, args.workers, args.syntax_check
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, seconds in (
        ("plain datatrove (reader -> ParquetWriter)", plain_s),
        (f"ours (quickstart, syntax check: {args.syntax_check})", ours_s),
    ):
        print(f"{name:52s} {seconds:7.2f} s  {n_docs / seconds:8.0f} docs/s  {megabytes / seconds:7.2f} MB/s")
    print(f"kept {kept} of {n_docs} documents")
    print(f"ratio ours/plain (throughput): {plain_s / ours_s:.2f}x (target >= 0.5x)")


if __name__ == "__main__":
    main()
