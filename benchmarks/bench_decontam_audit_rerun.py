"""An audit with embeddings of 1,000 documents, run twice into the same output directory.

Baseline: the first run, which embeds every document (what every run cost before vectors were kept:
main recomputed them each time). Ours: the second run, which reuses the vectors the first one kept
under ``OUT/vectors`` (and any stored in the input's embeddings store) and computes none.

Corpus: stdlib files (half) and disguised HumanEval solutions (half), as a shard directory.

    python benchmarks/bench_decontam_audit_rerun.py [--docs 1000] [--view document|normalised_units]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from planted_corpus import clean_pools  # noqa: E402

from decontam.eval_sets import load_benchmark  # noqa: E402
from decontam.mutate import disguise  # noqa: E402
from decontam.report import decontam_audit  # noqa: E402


def write_corpus(folder: Path, n_docs: int) -> None:
    from datatrove.data import Document

    from curate.shards import ShardWriter

    std, _ = clean_pools(n_docs // 2, 0, seed=1)
    items = load_benchmark("humaneval")
    with ShardWriter(str(folder / "data")) as writer:
        for path, text in std:
            writer.write(Document(text=text, id=f"std/{path.name}", metadata={"path": str(path)}))
        for k in range(n_docs - len(std)):
            text = disguise(items[k % len(items)].solution, seed=k)
            writer.write(Document(text=text, id=f"copy/{k:04d}", metadata={"path": f"copy/{k:04d}.py"}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--view", default="document", choices=["document", "normalised_units"])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-decontam-rerun-"))
    write_corpus(root / "in", args.docs)
    print(f"{args.docs} documents, view={args.view}, cpu_count={os.cpu_count()}")
    times = []
    for run in ("first (computes every vector)", "second (vectors reused)"):
        t0 = time.perf_counter()
        job = decontam_audit(
            str(root / "in"),
            str(root / "out"),
            benchmarks=["humaneval"],
            rule="either",
            embedding_view=args.view,
        )
        times.append(time.perf_counter() - t0)
        import json

        summary = json.loads((root / "out" / "decontam.json").read_text())
        emb = summary["timings"]["embeddings"]
        print(
            f"{run:32s}: {times[-1]:7.1f} s  (vectors {emb['vectors']}, computed {emb['computed']}, "
            f"reused {emb['reused']}; removed at 0.95: {job['removed_docs']['0.95']})"
        )
    print(f"second run / first run: {times[1] / times[0]:.3f} ({times[0] / times[1]:.1f}x faster)")


if __name__ == "__main__":
    main()
