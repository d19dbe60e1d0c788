"""Precision and recall of the AST measure on a planted corpus (benchmarks/planted_corpus.py).

Baseline: the AST match of version 0.1 (plain rate, annotations in the shape, every helper of a solution
indexed, ``min_nodes=8``), loaded from ``git show 0d694f0:decontam/ast_match.py`` into this process;
previous: the size-aware measure before the statement normal form (``019a16b``). Ours: the current
:class:`decontam.ast_match.AstMatchIndex` defaults. All score the same documents against HumanEval +
MBPP (test split). Then the calibration curve: clean-file false positives
and items left unindexed for a grid of ``min_nodes`` / ``size_discount``.

    TEXTBOOKS_MBPP_PATH=../shared/data/mbpp.jsonl python benchmarks/bench_decontam_planted.py [--clean 600]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from planted_corpus import TIERS, build_corpus  # noqa: E402

from decontam.ast_match import AstMatchIndex, parse_document  # noqa: E402
from decontam.eval_sets import load_benchmark  # noqa: E402

TAUS = (0.95, 0.9, 0.85, 0.8)


V01_REF = "0d694f0"  # the AST match of version 0.1 (plain rate, annotations in the shape, every helper)
PREVIOUS_REF = "019a16b"  # size-aware rate and shape rules, before the statement normal form


def baseline_module(ref: str = V01_REF):
    """``decontam/ast_match.py`` as of ``ref``, imported under another name (None if git cannot show it)."""
    try:
        source = subprocess.run(
            ["git", "show", f"{ref}:decontam/ast_match.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / f"ast_match_{ref}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"ast_match_{ref}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def doc_scores(module, docs, benchmarks, **index_kwargs) -> tuple[np.ndarray, int]:
    """Best AST rate of every document over every benchmark, and how many items were too small."""
    parsed = [module.parse_document(d.text, d.id) for d in docs]
    seqs = [u.sequence for p in parsed for u in p.units]
    owner = np.repeat(np.arange(len(parsed)), [len(p.units) for p in parsed])
    best = np.zeros(len(docs), dtype=np.float32)
    too_small = 0
    for items in benchmarks.values():
        index = module.AstMatchIndex(floor=0.7, **index_kwargs).fit([i.solution for i in items])
        np.maximum.at(best, owner, index.query(seqs).query_score)
        too_small += len(index.too_small_)
    return best, too_small


def print_rates(name: str, scores: np.ndarray, tiers: np.ndarray, too_small: int) -> None:
    print(f"\n{name} ({too_small} benchmark items too small to index)")
    print("tau   " + " ".join(f"{t:>9}" for t in ("clean FP",) + TIERS))
    for tau in TAUS:
        cells = [np.mean(scores[tiers == t] >= tau) for t in ("clean",) + TIERS]
        print(f"{tau:<5} " + " ".join(f"{c:9.3f}" for c in cells))


def calibration(docs, benchmarks, tiers, grid_min_nodes=(8, 10, 12), grid_discounts=(0, 4, 6, 8)) -> None:
    print(
        "\ncalibration: clean-file FP at tau 0.9 / 0.8, renamed recall at 0.95, edited / rephrased recall"
        " at 0.9, by min_nodes x size_discount"
    )
    for min_nodes in grid_min_nodes:
        for discount in grid_discounts:
            scores, small = doc_scores(
                sys.modules["decontam.ast_match"],
                docs,
                benchmarks,
                min_nodes=min_nodes,
                helper_min_nodes=2 * min_nodes,
                size_discount=discount,
            )
            fp9, fp8 = (np.mean(scores[tiers == "clean"] >= t) for t in (0.9, 0.8))
            rec = np.mean(scores[tiers == "renamed"] >= 0.95)
            edited, rephrased = (np.mean(scores[tiers == t] >= 0.9) for t in ("edited", "rephrased"))
            print(
                f"min_nodes={min_nodes:<3} size_discount={discount}: FP@0.9 {fp9:.4f}  FP@0.8 {fp8:.4f}  "
                f"renamed@0.95 {rec:.3f}  edited@0.9 {edited:.3f}  rephrased@0.9 {rephrased:.3f}  "
                f"unindexed items {small}"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clean", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0, help="which clean files and hosts are sampled")
    parser.add_argument("--no-calibration", action="store_true")
    parser.add_argument("--min-nodes", type=int, nargs="+", default=[8, 10, 12], help="calibration grid")
    parser.add_argument("--discounts", type=int, nargs="+", default=[0, 4, 6, 8], help="calibration grid")
    args = parser.parse_args()
    benchmarks = {"humaneval": load_benchmark("humaneval"), "mbpp": load_benchmark("mbpp", split="test")}
    t0 = time.perf_counter()
    docs = build_corpus(benchmarks, n_clean=args.clean, seed=args.seed)
    tiers = np.array([d.tier for d in docs])
    counts = {t: int((tiers == t).sum()) for t in ("clean",) + TIERS}
    print(f"corpus: {counts} built in {time.perf_counter() - t0:.1f}s")
    assert all(parse_document(d.text).error is None for d in docs if d.tier != "clean")
    base = baseline_module(V01_REF)
    if base is not None:
        t0 = time.perf_counter()
        scores, small = doc_scores(base, docs, benchmarks, min_nodes=8)
        label = f"baseline: version 0.1's AST match ({V01_REF}, min_nodes=8; {time.perf_counter() - t0:.1f}s)"
        print_rates(label, scores, tiers, small)
    previous = baseline_module(PREVIOUS_REF)
    if previous is not None:
        t0 = time.perf_counter()
        scores, small = doc_scores(previous, docs, benchmarks)
        label = f"previous: before the statement normal form ({PREVIOUS_REF}, its defaults; {time.perf_counter() - t0:.1f}s)"
        print_rates(label, scores, tiers, small)
    t0 = time.perf_counter()
    scores, small = doc_scores(sys.modules["decontam.ast_match"], docs, benchmarks)
    defaults = AstMatchIndex()
    print_rates(
        f"ours: min_nodes={defaults.min_nodes}, helper_min_nodes={defaults.helper_min_nodes}, "
        f"size_discount={defaults.size_discount} ({time.perf_counter() - t0:.1f}s)",
        scores,
        tiers,
        small,
    )
    if not args.no_calibration:
        calibration(docs, benchmarks, tiers, args.min_nodes, args.discounts)


if __name__ == "__main__":
    main()
