"""AST match rate throughput: ours (rapidfuzz cdist over one-character node-type strings) vs a plain-Python
Levenshtein over the same node sequences vs zss tree edit distance over the same ASTs, on the same pairs.

Pairs: stdlib function units (20-120 nodes) x HumanEval canonical solutions. Each method scores the
same first pairs; pairs/s is reported per method and ours is also shown on the full cross product,
with and without the indexed path (length-ratio bound + score_cutoff at 0.8).

    python benchmarks/bench_decontam_ast.py [--units 400] [--zss-pairs 150] [--py-pairs 3000]
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decontam.ast_match import AstMatchIndex, _encode, _strip_top, parse_document  # noqa: E402
from decontam.eval_sets import load_benchmark  # noqa: E402


def python_levenshtein(a: str, b: str) -> int:
    """Textbook two-row dynamic programme."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def zss_tree(node: ast.AST):
    """The same pruned AST (no contexts) as a zss tree labelled by node type."""
    from zss import Node

    root = Node(type(node).__name__)
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, ast.expr_context):
            root.addkid(zss_tree(child))
    return root


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=400)
    parser.add_argument("--zss-pairs", type=int, default=150)
    parser.add_argument("--py-pairs", type=int, default=3000)
    args = parser.parse_args()
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein
    from zss import simple_distance

    rng = np.random.default_rng(0)
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    units = []
    for path in files:
        source = path.read_text(encoding="utf-8", errors="replace")
        doc = parse_document(source)
        if doc.error:
            continue
        lines = source.splitlines()
        for u in doc.units:
            if u.kind != "module" and 20 <= len(u.sequence) <= 120:
                units.append((u.sequence, "\n".join(lines[u.lineno - 1 : u.end_lineno])))
    picked = [units[i] for i in rng.choice(len(units), size=min(args.units, len(units)), replace=False)]
    solutions = [item.solution for item in load_benchmark("humaneval")]
    sol_trees = [ast.parse(s) for s in solutions]
    sol_seqs = [_encode(_strip_top(t.body)) for t in sol_trees]
    pairs = [(i, j) for i in range(len(picked)) for j in range(len(solutions))]
    order = rng.permutation(len(pairs))
    pairs = [pairs[k] for k in order]
    print(
        f"{len(picked)} stdlib function units x {len(solutions)} HumanEval solutions = {len(pairs)} pairs; "
        f"cpu_count={os.cpu_count()}"
    )

    # plain Python Levenshtein on the first py-pairs pairs
    sub = pairs[: args.py_pairs]
    t0 = time.perf_counter()
    py_scores = [
        1 - python_levenshtein(picked[i][0], sol_seqs[j]) / max(len(picked[i][0]), len(sol_seqs[j]))
        for i, j in sub
    ]
    py_rate = len(sub) / (time.perf_counter() - t0)

    # zss tree edit distance on the first zss-pairs pairs (trees built outside the timer)
    zsub = pairs[: args.zss_pairs]
    unit_trees = {i: zss_tree(ast.parse(textwrap.dedent(picked[i][1])).body[-1]) for i, _ in zsub}
    sol_ztrees = {j: [zss_tree(n) for n in _strip_top(sol_trees[j].body)] for _, j in zsub}
    t0 = time.perf_counter()
    for i, j in zsub:
        simple_distance(unit_trees[i], sol_ztrees[j][-1])
    zss_rate = len(zsub) / (time.perf_counter() - t0)

    # ours, same pairs as the Python baseline (one cdist call per distinct unit row set)
    rows = sorted({i for i, _ in sub})
    t0 = time.perf_counter()
    matrix = process.cdist(
        [picked[i][0] for i in rows], sol_seqs, scorer=Levenshtein.normalized_similarity, workers=-1
    )
    elapsed = time.perf_counter() - t0
    row_of = {i: r for r, i in enumerate(rows)}
    ours_sub = [matrix[row_of[i], j] for i, j in sub]
    assert np.allclose(ours_sub, py_scores, atol=1e-6), "ours and the plain-Python scores differ"
    ours_rate_same = matrix.size / elapsed

    # ours on the full cross product, plain cdist and the indexed path (floor 0.8)
    seqs = [s for s, _ in picked]
    t0 = time.perf_counter()
    process.cdist(seqs, sol_seqs, scorer=Levenshtein.normalized_similarity, workers=-1)
    full_rate = len(seqs) * len(sol_seqs) / (time.perf_counter() - t0)
    index = AstMatchIndex(floor=0.8).fit(solutions)
    t0 = time.perf_counter()
    res = index.query(seqs)
    idx_rate = len(seqs) * len(sol_seqs) / (time.perf_counter() - t0)

    print(f"plain-Python Levenshtein : {py_rate:12,.0f} pairs/s  ({len(sub)} pairs)")
    print(f"zss tree edit distance   : {zss_rate:12,.0f} pairs/s  ({len(zsub)} pairs)")
    print(
        f"ours, cdist (same pairs) : {ours_rate_same:12,.0f} pairs/s  -> {ours_rate_same / py_rate:,.0f}x plain Python, "
        f"{ours_rate_same / zss_rate:,.0f}x zss"
    )
    print(
        f"ours, cdist (all pairs)  : {full_rate:12,.0f} pairs/s  -> {full_rate / py_rate:,.0f}x plain Python"
    )
    print(
        f"ours, index floor=0.8    : {idx_rate:12,.0f} effective pairs/s -> {idx_rate / py_rate:,.0f}x plain Python "
        f"({res.pairs_compared} of {len(seqs) * len(sol_seqs)} pairs left after the length bound)"
    )


if __name__ == "__main__":
    main()
