"""Evaluate a saved quality classifier on labelled examples it never saw (``textbooks eval-filter``).

Positives (textbook-like code) and negatives (boilerplate) come from a directory of ``.py`` files or a
JSONL file with a ``text`` field (and ``id`` or ``path``). The report gives ROC-AUC, PR-AUC, the keep
rate of each side at the classifier's threshold, the worst-ranked positives and the best-ranked
negatives, and (with ``report_dir``) ``report.html`` with the two score histograms plus
``summary.json``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

MAX_FILE_BYTES = 4_000_000


def read_examples(source: str | os.PathLike) -> list[dict[str, str]]:
    """``{"id", "text"}`` rows from a directory of ``.py`` files (recursive) or a JSONL file.

    Unreadable and non-UTF-8 files, files over 4 MB and JSONL lines that are not an object with a
    string ``text`` are skipped.

    Example:
        >>> read_examples("positives.jsonl")[0].keys()  # doctest: +SKIP
        dict_keys(['id', 'text'])
    """
    path = Path(source)
    rows: list[dict[str, str]] = []
    if path.is_dir():
        for file in sorted(path.rglob("*.py")):
            try:
                if file.is_file() and file.stat().st_size <= MAX_FILE_BYTES:
                    rows.append({"id": file.relative_to(path).as_posix(), "text": file.read_text("utf-8")})
            except (OSError, UnicodeDecodeError):
                continue
        return rows
    with open(path, encoding="utf-8", errors="replace") as fh:
        for k, line in enumerate(fh):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("text"), str):
                rows.append({"id": str(record.get("id") or record.get("path") or k), "text": record["text"]})
    return rows


def score_texts(model_path: str | os.PathLike, texts: list[str]) -> tuple[np.ndarray, float]:
    """Scores of ``texts`` by a saved classifier (featurized or embeddings) and its threshold."""
    from curate.classifier import ClassifierFilter

    step = ClassifierFilter(str(model_path))
    clf = step.classifier
    if clf.featurizer is not None:
        return clf.quality_score(texts), float(clf.threshold)
    X, _ = step.store.embed([f"eval-{k}" for k in range(len(texts))], texts)
    return clf.quality_score(X), float(clf.threshold)


def _histogram_png(pos: np.ndarray, neg: np.ndarray, threshold: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    bins = np.linspace(0, 1, 41)
    ax.hist(pos, bins=bins, alpha=0.6, label=f"positives ({len(pos)})")
    ax.hist(neg, bins=bins, alpha=0.6, label=f"negatives ({len(neg)})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("quality score")
    ax.set_ylabel("files")
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _write_report(report_dir: Path, summary: dict[str, Any], pos: np.ndarray, neg: np.ndarray) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    rows = "".join(
        f"<tr><td>{html.escape(kind)}</td><td>{html.escape(r['id'])}</td><td>{r['score']:.4f}</td></tr>"
        for kind in ("worst_positives", "best_negatives")
        for r in summary[kind]
    )
    metrics = "".join(
        f"<tr><td>{k}</td><td>{summary[k]}</td></tr>"
        for k in (
            "roc_auc",
            "pr_auc",
            "threshold",
            "positive_keep_rate",
            "negative_keep_rate",
            "n_pos",
            "n_neg",
        )
    )
    page = (
        f"<html><head><meta charset='utf-8'><title>filter evaluation</title></head><body>"
        f"<h1>Quality filter evaluation</h1><p>model: {html.escape(summary['model'])}</p>"
        f"<table border=1>{metrics}</table>"
        f"<img src='data:image/png;base64,{_histogram_png(pos, neg, summary['threshold'])}'>"
        f"<h2>Misranked files</h2><table border=1><tr><th>list</th><th>id</th><th>score</th></tr>{rows}</table>"
        f"</body></html>"
    )
    out = report_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out


def evaluate_filter(
    model_path: str,
    positives: str,
    negatives: str,
    report_dir: str | None = None,
    show: int = 10,
) -> dict[str, Any]:
    """JOB: ROC-AUC, PR-AUC and keep rates of a saved classifier on positives vs negatives.

    Example (recipe)::

        - name: eval
          job: eval_filter
          with: {model_path: ${out}/classifier/model.joblib, positives: dev/keon.jsonl, negatives: dev/boilerplate.jsonl,
                 report_dir: ${out}/eval-filter}

    Example (Python):
        >>> summary = evaluate_filter("out/classifier/model.joblib", "pos.jsonl", "neg/")  # doctest: +SKIP
        >>> summary["roc_auc"]  # doctest: +SKIP
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    pos_rows, neg_rows = read_examples(positives), read_examples(negatives)
    if not pos_rows or not neg_rows:
        raise ValueError(f"need positives and negatives: read {len(pos_rows)} and {len(neg_rows)} examples")
    scores, threshold = score_texts(model_path, [r["text"] for r in pos_rows + neg_rows])
    y = np.r_[np.ones(len(pos_rows)), np.zeros(len(neg_rows))]
    pos, neg = scores[: len(pos_rows)], scores[len(pos_rows) :]
    worst = np.argsort(pos, kind="stable")[:show]
    best = np.argsort(-neg, kind="stable")[:show]
    summary = {
        "model": str(model_path),
        "n_pos": len(pos_rows),
        "n_neg": len(neg_rows),
        "roc_auc": round(float(roc_auc_score(y, scores)), 4),
        "pr_auc": round(float(average_precision_score(y, scores)), 4),
        "threshold": threshold,
        "positive_keep_rate": round(float((pos >= threshold).mean()), 4),
        "negative_keep_rate": round(float((neg >= threshold).mean()), 4),
        "worst_positives": [{"id": pos_rows[i]["id"], "score": round(float(pos[i]), 4)} for i in worst],
        "best_negatives": [{"id": neg_rows[i]["id"], "score": round(float(neg[i]), 4)} for i in best],
    }
    if report_dir:
        summary["report"] = str(_write_report(Path(report_dir), summary, pos, neg))
    return summary
