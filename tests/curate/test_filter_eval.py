"""`textbooks eval-filter`: metrics, misranked files and the HTML report, on directories and JSONL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from curate.classifier import QualityClassifier
from curate.filter_eval import evaluate_filter, read_examples

sys.path.insert(0, str(Path(__file__).parent))
from test_featurizers import HIGH, LOW, _texts_and_labels  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_eval_filter_cli_reports_metrics_and_html(tmp_path):
    texts, y = _texts_and_labels()
    model = QualityClassifier(kind="logistic", featurizer="structure").fit(texts, y)
    model.threshold = 0.5
    model.save(tmp_path / "model.joblib")
    pos_dir = tmp_path / "pos"
    (pos_dir / "sub").mkdir(parents=True)
    for k, text in enumerate(HIGH):
        (pos_dir / "sub" / f"p{k}.py").write_text(text)
    (pos_dir / "bad.py").write_bytes(b"\xff\xfe not utf-8")  # skipped, not a crash
    neg = tmp_path / "neg.jsonl"
    lines = [json.dumps({"path": f"n{k}.py", "text": t}) for k, t in enumerate(LOW)]
    neg.write_text("\n".join(lines + ["not json", json.dumps({"text": 3})]) + "\n")
    assert len(read_examples(pos_dir)) == 3 and len(read_examples(neg)) == 3

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "recipes.cli", "eval-filter", str(tmp_path / "model.joblib")]
    args += ["--positives", str(pos_dir), "--negatives", str(neg), "--report", str(tmp_path / "rep")]
    out = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ROC-AUC" in out.stdout and "worst-ranked positives" in out.stdout and "n0.py" in out.stdout
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["roc_auc"] == 1.0 and summary["n_pos"] == 3 and summary["n_neg"] == 3
    assert summary["negative_keep_rate"] == 0.0 and summary["positive_keep_rate"] == 1.0
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "data:image/png;base64," in page and "sub/p0.py" in page
    # the Python job gives the same numbers; scores agree with the model's own
    again = evaluate_filter(str(tmp_path / "model.joblib"), str(pos_dir), str(neg))
    assert again["roc_auc"] == summary["roc_auc"]
    worst = min(model.quality_score(HIGH))
    assert np.isclose(again["worst_positives"][0]["score"], round(float(worst), 4))
