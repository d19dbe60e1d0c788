"""The paper's scale: the full AST pruning pass over 880,000 function-level exercises vs HumanEval's 164
and MBPP's 974 solutions (phi-1 pruned CodeExercises, ~880k exercises, this way).

Exercises are made by sampling function units (3-30 lines) from this interpreter's stdlib and
site-packages and mutating them at the text level (identifiers renamed, comment lines inserted, a
line deleted or duplicated, so some no longer parse - those are recorded like any bad input). They are
written once as shards under ``--cache`` and reused. The timed pass is exactly what ``prune_shards``
runs before writing pruned copies: read shards -> parse into units (``--workers`` processes) ->
compare with the length-bounded rapidfuzz index (all cores) -> write the score columns
(``scores.parquet``, ``units.parquet``, ``items.parquet``). Times are printed at 88k, 220k and 880k.

    python benchmarks/bench_decontam_scale.py [--sizes 88000 220000 880000] [--workers 2]
"""

from __future__ import annotations

import argparse
import keyword
import os
import random
import re
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decontam.ast_match import parse_document  # noqa: E402
from decontam.eval_sets import load_benchmark  # noqa: E402
from decontam.prune import compute_scores, write_score_tables  # noqa: E402

MBPP = (Path(__file__).resolve().parents[1] / "../shared/data/mbpp.jsonl").resolve()
_IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_RESERVED = set(keyword.kwlist) | set(dir(__builtins__)) | {"self", "cls"}


def function_pool(max_files: int, seed: int) -> list[str]:
    """Function units (3-30 lines, dedented) from stdlib + site-packages files."""
    rng = random.Random(seed)
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    files = sorted({p for root in roots for p in root.rglob("*.py")})
    rng.shuffle(files)
    pool = []
    for path in files[:max_files]:
        try:
            source = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        doc = parse_document(source)
        lines = source.splitlines()
        for unit in doc.units:
            if unit.kind != "module" and 3 <= unit.end_lineno - unit.lineno + 1 <= 30:
                pool.append(textwrap.dedent("\n".join(lines[unit.lineno - 1 : unit.end_lineno])) + "\n")
    return pool


def mutate(source: str, rng: random.Random) -> str:
    names = sorted({n for n in _IDENT.findall(source) if n not in _RESERVED})
    for name in rng.sample(names, min(len(names), rng.randint(1, 3))):
        source = re.sub(rf"\b{name}\b", f"{name[:3]}_{rng.randrange(1000)}", source)
    lines = source.splitlines()
    r = rng.random()
    if r < 0.15 and len(lines) > 3:
        del lines[rng.randrange(1, len(lines))]
    elif r < 0.3 and len(lines) > 1:
        k = rng.randrange(1, len(lines))
        lines.insert(k, lines[k])
    if rng.random() < 0.3:
        k = rng.randrange(1, len(lines) + 1)
        indent = re.match(r"\s*", lines[k - 1]).group()
        lines.insert(k, f"{indent}# step {rng.randrange(100)}")
    return "\n".join(lines) + "\n"


def write_exercises(folder: Path, n: int, pool: list[str], seed: int) -> float:
    """Write n mutated exercises as shard-schema Parquet (1 file per 100k rows); returns MB of text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.schema import SHARD_SCHEMA

    rng = random.Random(seed)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    total = 0
    for part, start in enumerate(range(0, n, 100_000)):
        count = min(100_000, n - start)
        texts = [mutate(rng.choice(pool), rng) for _ in range(count)]
        total += sum(map(len, texts))
        columns = {f.name: pa.nulls(count, f.type) for f in SHARD_SCHEMA}
        columns["id"] = pa.array([f"ex-{start + i:07d}" for i in range(count)], pa.string())
        columns["text"] = pa.array(texts, pa.string())
        columns["source"] = pa.array(["bench-exercise"] * count, pa.string())
        pq.write_table(
            pa.table(columns, schema=SHARD_SCHEMA),
            folder / "data" / f"{part:05d}.parquet",
            compression="zstd",
        )
    (folder / "MB").write_text(f"{total / 1e6:.1f}")
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[88_000, 220_000, 880_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool-files", type=int, default=3000)
    parser.add_argument(
        "--cache", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "textbooks-bench-decontam")
    )
    args = parser.parse_args()
    benchmarks = {"humaneval": load_benchmark("humaneval")}
    if MBPP.is_file():
        benchmarks["mbpp"] = load_benchmark("mbpp", path=MBPP, split="all")
    print(
        f"benchmarks: {', '.join(f'{k} ({len(v)})' for k, v in benchmarks.items())}; "
        f"cpu_count={os.cpu_count()}, parse workers={args.workers}"
    )
    pool = None
    for n in args.sizes:
        folder = Path(args.cache) / f"exercises-{n}"
        if not (folder / "MB").is_file():
            if pool is None:
                t0 = time.perf_counter()
                pool = function_pool(args.pool_files, seed=0)
                print(
                    f"function pool: {len(pool)} units from {args.pool_files} files ({time.perf_counter() - t0:.0f}s)"
                )
            t0 = time.perf_counter()
            write_exercises(folder, n, pool, seed=n)
            print(f"wrote {n} exercises in {time.perf_counter() - t0:.0f}s (not timed below)")
        mb = float((folder / "MB").read_text())
        out = Path(args.cache) / f"scores-{n}"
        t0 = time.perf_counter()
        table, scores, timings = compute_scores(
            folder, benchmarks, floor=0.7, workers=args.workers, embeddings=False
        )
        t1 = time.perf_counter()
        write_score_tables(out, table, scores)
        total = time.perf_counter() - t0
        failures = sum(e is not None for e in table.doc_error)
        flagged = {k: int((s.doc_score >= 0.95).sum()) for k, s in scores.items()}
        pairs = sum(s.pairs_compared for s in scores.values())
        print(
            f"n={n:>7,}  {mb:6.1f} MB  units={len(table.unit_seq):>9,}  parse={timings['parse_s']:6.1f}s  "
            f"compare={timings['ast_compare_s']:5.1f}s ({pairs:,} pairs)  write={time.perf_counter() - t1:4.1f}s  "
            f"TOTAL={total:6.1f}s  parse failures={failures:,}  docs>=0.95={flagged}"
        )


if __name__ == "__main__":
    main()
