"""Quality filter on code it never saw: feature candidates, trained like quickstart, scored on held-out sets.

Evaluation sets (``benchmarks/quality_sets.py`` documents the selection rule): positives = the dev set
(keon/algorithms, 376 files) and, as a second independent set, HumanEval's 164 prompt + solution
texts; negatives = boilerplate collected from this interpreter's site-packages (protoc output,
generated files, re-export ``__init__``s, data/codec tables, minified code; 80 per kind).

1. stdlib-trained (what ``textbooks run quickstart`` does): every stdlib ``.py`` file of at most
   1 MB that parses, heuristic labels on the same 50 % id-sample quickstart uses, one classifier per
   feature candidate; ROC-AUC on keon vs boilerplate and HumanEval vs boilerplate. The baseline is
   today's quickstart configuration: MiniLM embeddings of each file's first 64 tokens + random forest.
2. self-labelled: the offline labeler labels 30 % of the evaluation corpus itself (by id hash), the
   classifier trains on those, and the other 70 % are scored against the true labels.

    python benchmarks/bench_quality_filter.py [--skip-embedding]
"""

from __future__ import annotations

import argparse
import ast
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_sets import boilerplate_negatives, humaneval_positives, keon_positives  # noqa: E402

from curate.classifier import QualityClassifier  # noqa: E402
from curate.labelers import heuristic_score, in_sample  # noqa: E402

CANDIDATES = [
    ("structure", "random_forest"),
    ("structure", "lightgbm"),
    ("code_tokens", "logistic"),
    ("structure+code_tokens", "logistic"),
]


def stdlib_training_set(sample_rate: float = 0.5, threshold: float = 0.6) -> tuple[list[str], np.ndarray]:
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or not in_sample(path.relative_to(root).as_posix(), sample_rate):
            continue
        try:
            if path.stat().st_size > 1_000_000:
                continue
            text = path.read_text(encoding="utf-8")
            ast.parse(text)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue
        texts.append(text)
    y = np.array([int(heuristic_score(t) >= threshold) for t in texts])
    return texts, y


def embedding_scores(train: list[str], y: np.ndarray, evals: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Today's quickstart: MiniLM, first 64 tokens, random forest."""
    from curate.embed import SentenceEmbedder

    emb = SentenceEmbedder(max_tokens=64, max_chunks=1)
    clf = QualityClassifier(kind="random_forest").fit(emb.transform(train), y)
    return {name: clf.quality_score(emb.transform(texts)) for name, texts in evals.items()}


def stdlib_trained(evals: dict[str, list[dict]], with_embedding: bool) -> dict[str, dict[str, float]]:
    started = time.perf_counter()
    texts, y = stdlib_training_set()
    print(
        f"stdlib training set: {len(texts)} files, {y.mean():.1%} labelled high ({time.perf_counter() - started:.0f} s)"
    )
    table = {}
    eval_texts = {name: [r["text"] for r in rows] for name, rows in evals.items()}
    for featurizer, kind in CANDIDATES:
        t0 = time.perf_counter()
        clf = QualityClassifier(kind=kind, featurizer=featurizer).fit(texts, y)
        table[f"{featurizer} / {kind}"] = {
            name: roc_auc_score([r["label"] for r in evals[name]], clf.quality_score(eval_texts[name]))
            for name in evals
        } | {"seconds": time.perf_counter() - t0}
    if with_embedding:
        t0 = time.perf_counter()
        scores = embedding_scores(texts, y, eval_texts)
        table["embedding MiniLM t64-c1 / random_forest (today)"] = {
            name: roc_auc_score([r["label"] for r in evals[name]], scores[name]) for name in evals
        } | {"seconds": time.perf_counter() - t0}
    return table


def self_labelled(rows: list[dict], featurizer: str = "structure", kind: str = "random_forest") -> float:
    """Label 30 % of ``rows`` with the offline labeler, train, ROC-AUC on the other 70 % (true labels)."""
    train = [r for r in rows if in_sample(r["id"], 0.3)]
    test = [r for r in rows if not in_sample(r["id"], 0.3)]
    y = np.array([int(heuristic_score(r["text"]) >= 0.6) for r in train])
    clf = QualityClassifier(kind=kind, featurizer=featurizer).fit([r["text"] for r in train], y)
    return roc_auc_score([r["label"] for r in test], clf.quality_score([r["text"] for r in test]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-embedding", action="store_true", help="leave out today's embedding baseline")
    parser.add_argument("--per-kind", type=int, default=80, help="boilerplate files per kind")
    args = parser.parse_args()
    negatives = boilerplate_negatives(per_kind=args.per_kind)
    evals = {"keon": keon_positives() + negatives, "humaneval": humaneval_positives() + negatives}
    kinds = {
        k: sum(r.get("kind") == k for r in negatives) for k in dict.fromkeys(r["kind"] for r in negatives)
    }
    print(f"negatives: {len(negatives)} boilerplate files {kinds}")
    print("\n1. trained on stdlib heuristic labels (quickstart), ROC-AUC on held-out sets (target >= 0.85)")
    print(f"{'features / model':52s} {'keon':>7s} {'humaneval':>10s} {'time':>7s}")
    for name, row in stdlib_trained(evals, not args.skip_embedding).items():
        print(f"{name:52s} {row['keon']:7.4f} {row['humaneval']:10.4f} {row['seconds']:6.0f}s")
    print(
        "\n2. self-labelled: offline labels on 30 % of the corpus, ROC-AUC on the other 70 % (target >= 0.95)"
    )
    for name, rows in evals.items():
        print(f"{name:12s} structure / random_forest: {self_labelled(rows):.4f}")


if __name__ == "__main__":
    main()
