"""Lightly edited and rephrased copies: recall at a clean false-positive budget, AST vs normalised-unit
embedding vs both, on the planted corpus of ``benchmarks/planted_corpus.py``.

Every tier's documents are scored by the AST match (``decontam.ast_match`` defaults) and, for the clean,
edited and rephrased tiers, by the embedding of the normal form of each function unit
(``decontam.normalise.normalise_code``; MiniLM, offline) against the normal forms of the HumanEval +
MBPP-test solutions; a document is as near as its nearest unit. Printed: each rule's clean-file FP and
recall per edited tier, and the best rule of each kind with clean FP <= 1%.

    TEXTBOOKS_MBPP_PATH=../shared/data/mbpp.jsonl python benchmarks/bench_decontam_rephrase.py [--clean 600]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_decontam_planted import doc_scores  # noqa: E402
from planted_corpus import build_corpus  # noqa: E402

from decontam.ast_match import AstMatchIndex, parse_document  # noqa: E402
from decontam.eval_sets import load_benchmark  # noqa: E402
from decontam.normalise import normalise_code  # noqa: E402

TIERS = ("edited", "rephrased")
TAUS = (0.95, 0.9, 0.85, 0.8)
THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3)


def normalised_units(docs, min_nodes: int) -> tuple[list[str], np.ndarray]:
    """Normal forms of every function/method unit with ``min_nodes`` nodes, and the document of each,
    through the audit's own :func:`decontam.embedding.unit_texts` (a unit table as the audit builds it)."""
    from types import SimpleNamespace

    from decontam.embedding import unit_texts

    parsed = [parse_document(doc.text, doc.id).units for doc in docs]
    units = [(k, u) for k, doc_units in enumerate(parsed) for u in doc_units]
    table = SimpleNamespace(
        doc_ids=[doc.id for doc in docs],
        unit_doc=[k for k, _ in units],
        unit_kind=[u.kind for _, u in units],
        unit_seq=[u.sequence for _, u in units],
        unit_lineno=[u.lineno for _, u in units],
        unit_end=[u.end_lineno for _, u in units],
    )
    picked, texts = unit_texts(table, {doc.id: doc.text for doc in docs}, min_nodes)
    return texts, np.asarray([table.unit_doc[u] for u in picked], dtype=np.int64)


def embedding_doc_distance(docs, items, min_nodes: int) -> np.ndarray:
    """Distance of every document's nearest unit to its nearest item (inf: no unit)."""
    from curate.embed import SentenceEmbedder
    from decontam.embedding import embedding_neighbours

    embedder = SentenceEmbedder()
    texts, owner = normalised_units(docs, min_nodes)
    item_texts = []
    for item in items:
        try:
            item_texts.append(normalise_code(item.solution))
        except (SyntaxError, ValueError, RecursionError):
            continue
    t0 = time.perf_counter()
    unit_vectors, bench_vectors = embedder.transform(texts), embedder.transform(item_texts)
    print(f"embedded {len(texts)} units + {len(item_texts)} items in {time.perf_counter() - t0:.0f}s")
    res = embedding_neighbours(unit_vectors, bench_vectors, k=1)
    best = np.full(len(docs), np.inf, dtype=np.float32)
    np.minimum.at(best, owner, res.doc_dist)
    return best


def rule_rows(ast_score, emb_dist, tiers):
    """(rule, clean FP, recall per tier) for AST alone, embedding alone and AST or embedding."""
    clean = tiers == "clean"
    rules = [(f"AST tau {t}", ast_score >= t) for t in TAUS]
    rules += [(f"embedding {d}", emb_dist <= d) for d in THRESHOLDS]
    rules += [
        (f"AST tau {t} or embedding {d}", (ast_score >= t) | (emb_dist <= d))
        for t in TAUS
        for d in THRESHOLDS
    ]
    return [(name, hit[clean].mean(), [hit[tiers == t].mean() for t in TIERS]) for name, hit in rules]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clean", type=int, default=600)
    args = parser.parse_args()
    benchmarks = {"humaneval": load_benchmark("humaneval"), "mbpp": load_benchmark("mbpp", split="test")}
    docs = [d for d in build_corpus(benchmarks, n_clean=args.clean) if d.tier in ("clean", *TIERS)]
    tiers = np.array([d.tier for d in docs])
    print({t: int((tiers == t).sum()) for t in ("clean", *TIERS)})
    ast_score, _ = doc_scores(sys.modules["decontam.ast_match"], docs, benchmarks)
    items = [item for group in benchmarks.values() for item in group]
    emb_dist = embedding_doc_distance(docs, items, AstMatchIndex().min_nodes)
    rows = rule_rows(ast_score, emb_dist, tiers)
    print(f"\n{'rule':<36} {'clean FP':>9} " + " ".join(f"{t:>10}" for t in TIERS))
    for name, fp, recalls in rows:
        print(f"{name:<36} {fp:9.4f} " + " ".join(f"{r:10.3f}" for r in recalls))
    print("\nbest rule of each kind with clean FP <= 1% (by mean recall over the edited tiers):")
    for kind in ("AST tau", "embedding", "AST tau {} or"):
        prefix = kind.split(" {}")[0]
        pool = [r for r in rows if r[0].startswith(prefix) and r[1] <= 0.01]
        if kind == "AST tau":
            pool = [r for r in pool if " or " not in r[0]]
        if pool:
            name, fp, recalls = max(pool, key=lambda r: (np.mean(r[2]), -r[1]))
            print(
                f"  {name:<36} FP {fp:.4f}  "
                + "  ".join(f"{t} {r:.3f}" for t, r in zip(TIERS, recalls, strict=True))
            )


if __name__ == "__main__":
    main()
