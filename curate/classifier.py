"""The quality classifier (phi-1's filter): learn LLM (or heuristic) labels from embeddings, then filter.

phi-1 labeled a ~100k-file sample of The Stack for educational value with GPT-4, trained a random
forest on CodeGen embeddings of those files, and kept the files the forest scored as educational.
This module provides the three pieces:

* :class:`QualityClassifier` - a scikit-learn-style estimator (random forest, LightGBM or logistic
  regression) with stratified cross-validation, a threshold chosen for a target precision or keep
  rate, and ``save``/``load`` that keep its metadata (embedder, label source, metrics, versions).
* :func:`train_quality_classifier` - the recipe job: labeled shards in, a saved classifier and its
  cross-validated metrics out (also merged into the input shard directory's ``manifest.json``).
* :class:`ClassifierFilter` - a datatrove ``BaseFilter`` that scores every document
  (``quality_score``), keeps those at or above the threshold and drops the rest as ``low_quality``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from pydantic import BaseModel, ConfigDict, Field

from curate.embed import (
    CausalLMEmbedder,
    EmbeddingStore,
    SentenceEmbedder,
    _as_embedder,
    make_embedder,
)
from curate.extras import missing_extra_base, require_extra

try:  # scikit-learn is the [embed] extra: without it the module imports and its configs validate,
    # while creating a QualityClassifier raises MissingExtraError (it must subclass the real base to
    # stay a scikit-learn estimator: clone, get_params, Pipeline and cross_val_score rely on it)
    from sklearn.base import BaseEstimator, ClassifierMixin
except ModuleNotFoundError:
    BaseEstimator = missing_extra_base("embed", "sklearn", "BaseEstimator")
    ClassifierMixin = missing_extra_base("embed", "sklearn", "ClassifierMixin")

KINDS = ("random_forest", "lightgbm", "logistic")
_POSITIVE = {"high", "yes", "true", "1", "educational", "good"}
_NEGATIVE = {"low", "no", "false", "0", "not_educational", "bad"}


def label_to_target(label: Any, cutoff: float = 3.0) -> int | None:
    """Map a ``quality_label`` to 1 (educational) / 0, or None when it is not a usable label.

    Binary labels (``high``/``low``, ``yes``/``no``) map directly; a numeric 0-5 score (FineWeb-Edu
    style) is positive at or above ``cutoff``.

    Example:
        >>> label_to_target("high"), label_to_target("low"), label_to_target("4"), label_to_target("unparsed")
        (1, 0, 1, None)
    """
    if label is None:
        return None
    text = str(label).strip().lower()
    if text in _POSITIVE and text not in ("1", "0"):
        return 1
    if text in _NEGATIVE and text not in ("1", "0"):
        return 0
    try:
        value = float(text)
    except ValueError:
        return None
    if not np.isfinite(value):
        return None
    return int(value >= cutoff)


def embedder_spec(embedder) -> dict[str, Any]:
    """Plain-data description of an embedder, enough to rebuild it with :func:`curate.embed.make_embedder`."""
    if isinstance(embedder, CausalLMEmbedder):
        return {"kind": "causal_lm", "model": embedder.model, "model_id": embedder.model_id}
    if isinstance(embedder, SentenceEmbedder):
        options = {k: getattr(embedder, k) for k in ("max_tokens", "max_chunks") if getattr(embedder, k)}
        return {
            "kind": "sentence",
            "model": embedder.model,
            "model_id": embedder.model_id,
            "options": options,
        }
    return {
        "kind": type(embedder).__name__,
        "model": getattr(embedder, "model", None),
        "model_id": embedder.model_id,
    }


def _cut_points(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, precision, recall) at every cut between distinct scores, highest threshold first."""
    order = np.argsort(-scores, kind="stable")
    s_sorted, y_sorted = scores[order], y[order]
    tp = np.cumsum(y_sorted)
    kept = np.arange(1, len(y) + 1)
    # only cut between distinct scores: every doc with score >= t is kept
    last_of_run = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    return s_sorted[last_of_run], (tp / kept)[last_of_run], (tp / max(1, int(y.sum())))[last_of_run]


def choose_threshold(
    y: np.ndarray,
    scores: np.ndarray,
    target_precision: float | None = None,
    keep_rate: float | None = None,
    best_f1: bool = False,
) -> dict[str, Any]:
    """Pick the decision threshold on (out-of-fold) scores, by one stated rule.

    * ``target_precision``: the lowest threshold whose precision reaches the target (the most recall at
      that precision); if no threshold reaches it, the one with the best precision (``target_met`` False).
    * ``keep_rate``: the threshold that keeps about that fraction of the scored documents.
    * ``best_f1``: the threshold with the best F1 on the labels (the lowest one among ties).
    * none: 0.5.

    Example:
        >>> choose_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]), target_precision=1.0)["threshold"]
        0.8
        >>> choose_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]), best_f1=True)["threshold"]
        0.35
    """
    y = np.asarray(y).astype(int)
    scores = np.asarray(scores, dtype=float)
    if (target_precision is not None) + (keep_rate is not None) + bool(best_f1) > 1:
        raise ValueError("give one of target_precision, keep_rate, best_f1")
    if best_f1:
        thresholds, precision, recall = _cut_points(y, scores)
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        i = int(np.flatnonzero(f1 == f1.max()).max())
        return {"threshold": float(thresholds[i]), "rule": "best_f1", "target": None, "target_met": True}
    if target_precision is not None:
        thresholds, precision, _ = _cut_points(y, scores)
        ok = np.nonzero(precision >= target_precision)[0]
        if len(ok):
            i = ok.max()  # lowest threshold (most kept) that still meets the precision
            return {
                "threshold": float(thresholds[i]),
                "rule": "target_precision",
                "target": target_precision,
                "target_met": True,
            }
        i = int(np.argmax(precision))
        return {
            "threshold": float(thresholds[i]),
            "rule": "target_precision",
            "target": target_precision,
            "target_met": False,
        }
    if keep_rate is not None:
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
        # the k-th highest score keeps (at least) the k = keep_rate * n best documents
        k = max(1, int(round(keep_rate * len(scores))))
        threshold = float(np.sort(scores)[::-1][k - 1])
        return {"threshold": threshold, "rule": "keep_rate", "target": keep_rate, "target_met": True}
    return {"threshold": 0.5, "rule": "default", "target": None, "target_met": True}


def binary_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Precision, recall, F1, accuracy, ROC-AUC and the confusion matrix at ``threshold``."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

    y = np.asarray(y).astype(int)
    pred = (np.asarray(scores) >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    auc = float(roc_auc_score(y, scores)) if len(set(y.tolist())) == 2 else None
    return {
        "threshold": float(threshold),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "accuracy": float((pred == y).mean()),
        "roc_auc": auc,
        "keep_rate": float(pred.mean()),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }


class QualityClassifier(ClassifierMixin, BaseEstimator):
    """Binary educational-value classifier: a scikit-learn estimator (clone, ``Pipeline``, ``cross_val_score``).

    With ``featurizer=None`` ``X`` is a feature matrix (e.g. stored embeddings); with a featurizer
    (a name for :func:`curate.featurizers.make_featurizer` or a transformer) ``X`` is a list of texts
    or datatrove documents, featurized inside ``fit``/``predict_proba``. :meth:`quality_score` is the
    probability of class 1; ``score(X, y)`` is scikit-learn's accuracy, as for every classifier.

    Args:
        kind: ``"random_forest"`` (the paper), ``"lightgbm"`` or ``"logistic"`` (features max-abs scaled).
        featurizer: None, ``"structure"``, ``"code_tokens"``, ``"embedding"``, ``"structure+code_tokens"``,
            or a transformer object.
        threshold: score at or above which :meth:`predict` says 1 (set by :meth:`cross_validate` /
            :func:`train_quality_classifier` when a target is given).
        n_estimators: trees (random forest, LightGBM).
        max_depth: tree depth (None = unlimited for the forest, -1 for LightGBM).
        C: inverse regularisation (logistic regression).
        class_weight: ``"balanced"`` by default: labels are usually skewed toward "low".
        random_state: seed of the estimator and of the CV folds.
        n_jobs: parallel jobs for the forest / LightGBM.

    Example:
        >>> import numpy as np
        >>> from sklearn.model_selection import cross_val_score
        >>> X = np.random.default_rng(0).normal(size=(40, 8)); y = (X[:, 0] > 0).astype(int)
        >>> clf = QualityClassifier(kind="logistic").fit(X, y)
        >>> clf.predict_proba(X).shape, clf.quality_score(X[:2]).shape
        ((40, 2), (2,))
        >>> bool(cross_val_score(QualityClassifier(kind="logistic"), X, y, cv=3).mean() > 0.8)
        True
    """

    def __init__(
        self,
        kind: str = "random_forest",
        featurizer: Any = None,
        threshold: float = 0.5,
        n_estimators: int = 200,
        max_depth: int | None = None,
        C: float = 1.0,
        class_weight: str | None = "balanced",
        random_state: int = 0,
        n_jobs: int | None = None,
    ):
        self.kind = kind
        self.featurizer = featurizer
        self.threshold = threshold
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.C = C
        self.class_weight = class_weight
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _make_estimator(self):
        if self.kind == "random_forest":
            from sklearn.ensemble import RandomForestClassifier

            return RandomForestClassifier(
                n_estimators=self.n_estimators,
                max_depth=self.max_depth,
                class_weight=self.class_weight,
                random_state=self.random_state,
                n_jobs=self.n_jobs,
            )
        if self.kind == "lightgbm":
            from lightgbm import LGBMClassifier

            return LGBMClassifier(
                n_estimators=self.n_estimators,
                max_depth=-1 if self.max_depth is None else self.max_depth,
                class_weight=self.class_weight,
                random_state=self.random_state,
                n_jobs=self.n_jobs or 1,
                min_child_samples=5,
                verbose=-1,
            )
        if self.kind == "logistic":
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import MaxAbsScaler

            # max-abs scaling keeps sparse hashed features sparse and puts dense shares on one scale
            return make_pipeline(
                MaxAbsScaler(),
                LogisticRegression(
                    C=self.C, class_weight=self.class_weight, max_iter=2000, random_state=self.random_state
                ),
            )
        raise ValueError(f"unknown classifier kind {self.kind!r}: use one of {', '.join(KINDS)}")

    def _features(self, X):
        if getattr(self, "featurizer_", None) is not None:
            X = self.featurizer_.transform(X)
        return X if hasattr(X, "tocsr") else np.asarray(X, dtype=np.float32)

    def fit(self, X, y) -> QualityClassifier:
        """Featurize ``X`` (when a featurizer is set) and fit the estimator; returns self."""
        from sklearn.base import clone

        from curate.featurizers import make_featurizer

        self.featurizer_ = (
            None if self.featurizer is None else clone(make_featurizer(self.featurizer)).fit(X, y)
        )
        return self._fit_features(self._features(X), y)

    def _fit_features(self, F, y) -> QualityClassifier:
        y = np.asarray(y).astype(int)
        if len(set(y.tolist())) < 2:
            raise ValueError(
                "the labels hold a single class; a quality classifier needs both high and low examples"
            )
        self.estimator_ = self._make_estimator().fit(F, y)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = F.shape[1]
        return self

    def predict_proba(self, X) -> np.ndarray:
        """(n, 2) probabilities of classes [0 (low), 1 (high)]."""
        if not hasattr(self, "estimator_"):
            raise RuntimeError("QualityClassifier is not fitted: call fit() or QualityClassifier.load()")
        if (X.shape[0] if hasattr(X, "shape") else len(X)) == 0:
            return np.zeros((0, 2))
        proba = self.estimator_.predict_proba(self._features(X))
        cols = list(self.estimator_.classes_)
        return np.stack([proba[:, cols.index(0)], proba[:, cols.index(1)]], axis=1)

    def quality_score(self, X) -> np.ndarray:
        """Educational-value score in [0, 1] (the probability of class 1)."""
        return self.predict_proba(X)[:, 1]

    def predict(self, X) -> np.ndarray:
        return (self.quality_score(X) >= self.threshold).astype(int)

    def cross_validate(
        self,
        X,
        y,
        folds: int = 5,
        target_precision: float | None = None,
        keep_rate: float | None = None,
        best_f1: bool = False,
    ) -> dict[str, Any]:
        """Stratified k-fold CV; sets ``self.threshold`` from the out-of-fold scores; returns the metrics.

        ``X`` is featurized once (the featurizers are stateless: they learn nothing from the rows).
        ``folds`` is lowered to the size of the smaller class when there are fewer examples.
        """
        from sklearn.base import clone
        from sklearn.model_selection import StratifiedKFold

        from curate.featurizers import make_featurizer

        F = X if self.featurizer is None else clone(make_featurizer(self.featurizer)).fit(X, y).transform(X)
        F = F if hasattr(F, "tocsr") else np.asarray(F, dtype=np.float32)
        y = np.asarray(y).astype(int)
        minority = int(min(np.bincount(y, minlength=2)))
        if minority < 2:
            raise ValueError(
                f"cross-validation needs at least 2 examples of each class, got counts {np.bincount(y, minlength=2).tolist()}"
            )
        k = max(2, min(folds, minority))
        oof = np.zeros(len(y))
        per_fold = []
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=self.random_state)
        for train_idx, test_idx in splitter.split(np.zeros(len(y)), y):
            model = clone(self).set_params(featurizer=None)._fit_features(F[train_idx], y[train_idx])
            oof[test_idx] = model.quality_score(F[test_idx])
            per_fold.append(binary_metrics(y[test_idx], oof[test_idx], 0.5))
        if (
            target_precision is None and keep_rate is None and not best_f1
        ):  # no rule: the user's threshold stays
            choice = {"threshold": float(self.threshold), "rule": "fixed", "target": None, "target_met": True}
        else:
            choice = choose_threshold(y, oof, target_precision, keep_rate, best_f1)
        self.oof_scores_ = oof  # what the threshold was chosen on (benchmarks report its curves)
        self.threshold = choice["threshold"]
        metrics = binary_metrics(y, oof, self.threshold)
        metrics.update(
            {
                "folds": k,
                "n": int(len(y)),
                "n_high": int(y.sum()),
                "n_low": int(len(y) - y.sum()),
                "threshold_rule": choice,
                "per_fold_f1": [round(m["f1"], 4) for m in per_fold],
                "per_fold_roc_auc": [
                    None if m["roc_auc"] is None else round(m["roc_auc"], 4) for m in per_fold
                ],
            }
        )
        self.cv_metrics_ = metrics
        return metrics

    # ---- persistence -------------------------------------------------------------------------------

    @staticmethod
    def sidecar_path(path: str | os.PathLike) -> Path:
        return Path(str(path) + ".json")

    def save(self, path: str | os.PathLike, **metadata) -> Path:
        """Save the fitted estimator (joblib) and a JSON sidecar ``<path>.json`` with its metadata.

        Extra keyword arguments (``embedder=``, ``label_source=``, ...) are stored in the sidecar.
        """
        import joblib
        import sklearn

        if not hasattr(self, "estimator_"):
            raise RuntimeError("fit the classifier before saving it")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        params = self.get_params(deep=False)
        if not isinstance(params["featurizer"], (str, type(None))):  # an object: it lives in the joblib file
            params["featurizer"] = type(params["featurizer"]).__name__
        meta = {
            "format": "textbooks.quality_classifier/2",
            "params": params,
            "threshold": float(self.threshold),
            "n_features": int(self.n_features_in_),
            "metrics": getattr(self, "cv_metrics_", None),
            "sklearn_version": sklearn.__version__,
            "created_unix": round(time.time(), 3),
        }
        if self.kind == "lightgbm":
            import lightgbm

            meta["lightgbm_version"] = lightgbm.__version__
        meta.update(metadata)
        tmp = path.with_name(path.name + ".tmp")
        joblib.dump({"estimator": self.estimator_, "featurizer": getattr(self, "featurizer_", None)}, tmp)
        os.replace(tmp, path)
        self.sidecar_path(path).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        self.metadata_ = meta
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> QualityClassifier:
        """Load a classifier written by :meth:`save` (its metadata is on ``.metadata_``)."""
        require_extra("embed", cls.__name__, modules=("sklearn", "joblib"))
        import joblib

        meta = json.loads(cls.sidecar_path(path).read_text())
        saved = joblib.load(path)
        if not isinstance(saved, dict):  # format 1: the bare estimator of an embeddings classifier
            saved = {"estimator": saved, "featurizer": None}
        params = dict(meta["params"])
        if saved["featurizer"] is not None:
            params["featurizer"] = saved["featurizer"]
        clf = cls(**params)
        clf.threshold = meta["threshold"]
        clf.estimator_ = saved["estimator"]
        clf.featurizer_ = saved["featurizer"]
        clf.classes_ = np.array([0, 1])
        clf.n_features_in_ = meta["n_features"]
        clf.cv_metrics_ = meta.get("metrics")
        clf.metadata_ = meta
        return clf


def _read_labeled(
    input_dir: str | os.PathLike, cutoff: float
) -> tuple[list[str], list[str], np.ndarray, Counter, Counter]:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    root = Path(input_dir)
    data = root / "data" if (root / "data").is_dir() else root
    dataset = ds.dataset(str(data), format="parquet")
    table = dataset.to_table(
        columns=["id", "text", "quality_label", "label_source"], filter=pc.field("quality_label").is_valid()
    )
    ids, texts, targets = [], [], []
    unusable: Counter = Counter()
    for doc_id, text, label in zip(
        table.column("id").to_pylist(),
        table.column("text").to_pylist(),
        table.column("quality_label").to_pylist(),
        strict=True,
    ):
        target = label_to_target(label, cutoff)
        if target is None:
            unusable[str(label)[:40]] += 1
            continue
        ids.append(doc_id)
        texts.append(text or "")
        targets.append(target)
    sources = Counter(s for s in table.column("label_source").to_pylist() if s)
    return ids, texts, np.asarray(targets, dtype=int), sources, unusable


def train_quality_classifier(
    input_dir: str | list[str],
    output_path: str,
    embedder: Any = None,
    kind: str = "random_forest",
    target_precision: float | None = None,
    keep_rate: float | None = None,
    best_f1: bool = False,
    folds: int = 5,
    label_cutoff: float = 3.0,
    random_state: int = 0,
    update_manifest: bool = True,
    featurizer: str = "embedding",
    **params,
) -> dict[str, Any]:
    """JOB: train a quality classifier from the labeled rows of a shard directory and save it.

    Rows with a ``quality_label`` are the training set (``high``/``low`` or a 0-5 score, positive at
    ``label_cutoff``). Embeddings stored under ``input_dir/embeddings/<model_id>/`` (by the ``embed``
    step) are reused; only missing ones are computed. Stratified k-fold CV gives the metrics and the
    threshold (by one rule: ``target_precision``, ``keep_rate`` or ``best_f1``), then the model is refit on every row and
    saved to ``output_path`` (+ ``output_path.json`` metadata). The metrics are also merged into
    ``input_dir/manifest.json`` under ``quality_classifier``.

    Args:
        input_dir: a labeled shard directory, or a list of them (one classifier for several sources).
        embedder: None (offline default), a model name/path, or a dict for :func:`curate.embed.make_embedder`.
        featurizer: what the classifier sees: ``"embedding"`` (the paper; stored vectors reused, the
            ``embedder``'s), or a text featurizer of :func:`curate.featurizers.make_featurizer`
            (``"structure"``, ``"code_tokens"``, ``"structure+code_tokens"``), saved with the model.
        params: more :class:`QualityClassifier` parameters (``n_estimators``, ``C``, ...).

    Returns:
        a JSON-serialisable summary: metrics, threshold, counts, paths.

    Example (recipe)::

        - name: train
          job: train_quality_classifier
          with: {input_dir: ${out}/labeled, output_path: ${out}/classifier/model.joblib, target_precision: 0.9}

    Example (Python):
        >>> summary = train_quality_classifier("out/labeled", "out/classifier/model.joblib")  # doctest: +SKIP
        >>> summary["metrics"]["f1"]  # doctest: +SKIP
    """
    require_extra("embed", "train_quality_classifier()", modules=("sklearn",))  # before reading or embedding
    started = time.time()
    emb = _as_embedder(embedder)
    input_dirs = [input_dir] if isinstance(input_dir, (str, os.PathLike)) else list(input_dir)
    ids, parts, targets, computed = [], [], [], 0
    sources: Counter = Counter()
    unusable: Counter = Counter()
    for folder in input_dirs:  # e.g. The Stack and StackOverflow, labeled separately
        dir_ids, texts, y, dir_sources, dir_unusable = _read_labeled(folder, label_cutoff)
        if not dir_ids:
            continue
        if featurizer == "embedding":
            x, n_new = EmbeddingStore(folder, emb).embed(dir_ids, texts)
        else:  # texts, featurized by the classifier itself
            x, n_new = np.asarray(texts, dtype=object), 0
        ids += dir_ids
        parts.append(x)
        targets.append(y)
        computed += n_new
        sources.update(dir_sources)
        unusable.update(dir_unusable)
    if not ids:
        raise ValueError(f"no labeled rows (quality_label) in {input_dirs}: run a labeler step first")
    X, y = np.concatenate(parts), np.concatenate(targets)
    if featurizer != "embedding":
        X = X.tolist()
    text_featurizer = None if featurizer == "embedding" else featurizer
    clf = QualityClassifier(kind=kind, featurizer=text_featurizer, random_state=random_state, **params)
    metrics = clf.cross_validate(X, y, folds, target_precision, keep_rate, best_f1)
    clf.fit(X, y)
    label_source = ",".join(sorted(sources)) or None
    spec = embedder_spec(emb) if featurizer == "embedding" else None
    clf.save(
        output_path,
        embedder=spec,
        label_source=label_source,
        label_sources=dict(sources),
        unusable_labels=dict(unusable),
        trained_on=[str(d) for d in input_dirs],
    )
    summary = {
        "model_path": str(output_path),
        "kind": kind,
        "featurizer": featurizer,
        "embedder": spec,
        "label_source": label_source,
        "n_labeled": len(ids),
        "unusable_labels": int(sum(unusable.values())),
        "embeddings_computed": computed,
        "embeddings_reused": len(ids) - computed,
        "threshold": float(clf.threshold),
        "metrics": metrics,
        "wall_time_s": round(time.time() - started, 3),
    }
    if update_manifest:
        for folder in input_dirs:
            _merge_into_manifest(folder, {"quality_classifier": summary})
    return summary


def _merge_into_manifest(shard_dir: str | os.PathLike, extra: dict[str, Any]) -> None:
    from curate.manifest import MANIFEST_NAME, write_manifest

    path = Path(shard_dir) / MANIFEST_NAME
    if path.is_file():
        manifest = json.loads(path.read_text())
        manifest.update(extra)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    else:
        write_manifest(shard_dir, extra=extra)


class ClassifierFilter(BaseFilter):
    """Score every document with a saved :class:`QualityClassifier`; keep those at/above the threshold.

    Writes ``quality_score`` on every document (kept or dropped) and drops the rest with reason
    ``low_quality`` (the recipe engine supplies the exclusion writer). A classifier with a text
    featurizer (``structure``, ``code_tokens``...) scores the texts directly; for an embeddings
    classifier, vectors stored under ``embeddings_dir`` are reused and the others computed in batches
    with the classifier's embedder.

    Args:
        model_path: a classifier saved by :meth:`QualityClassifier.save` / :func:`train_quality_classifier`.
        threshold: override the saved threshold.
        embeddings_dir: a shard directory with stored embeddings (``embeddings/<model_id>/``) to reuse.
        embedder: override the embedder recorded with the classifier (must produce the same features).
        batch_size: documents scored per batch.

    Example (recipe)::

        steps:
          - {uses: classifier_filter, with: {model_path: ${out}/classifier/model.joblib, embeddings_dir: ${out}/labeled}}
    """

    name = "🎓 Quality classifier"

    def __init__(
        self,
        model_path: str,
        threshold: float | None = None,
        embeddings_dir: str | None = None,
        embedder: Any = None,
        batch_size: int = 256,
        exclusion_writer=None,
    ):
        super().__init__(exclusion_writer=exclusion_writer, batch_size=batch_size)
        self.model_path = str(model_path)
        self.threshold = threshold
        self.embeddings_dir = embeddings_dir
        self.embedder = embedder

    def __getstate__(self):
        state = self.__dict__.copy()
        for key in ("_clf", "_store"):
            state.pop(key, None)
        return state

    @property
    def classifier(self) -> QualityClassifier:
        if getattr(self, "_clf", None) is None:
            self._clf = QualityClassifier.load(self.model_path)
        return self._clf

    @property
    def store(self) -> EmbeddingStore:
        """Vectors of ``embeddings_dir`` for the classifier's embedder (stored ones read once per process)."""
        if getattr(self, "_store", None) is None:
            embedder = self.embedder
            if embedder is None:  # the embedder the classifier was trained on
                spec = self.classifier.metadata_.get("embedder") or {}
                embedder = make_embedder(
                    spec.get("model"), kind=spec.get("kind", "sentence"), **spec.get("options", {})
                )
            self._store = EmbeddingStore(self.embeddings_dir, embedder)
        return self._store

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        clf = self.classifier
        threshold = clf.threshold if self.threshold is None else self.threshold
        if clf.featurizer is not None:  # the classifier featurizes the texts itself
            with self.track_time("score"):
                scores = clf.quality_score(batch) if batch else np.zeros(0)
        else:  # an embeddings classifier: stored vectors reused, the rest computed
            X, computed = self.store.embed([str(d.id) for d in batch], [d.text for d in batch])
            self.stat_update("embeddings_reused", value=len(batch) - computed)
            self.stat_update("embeddings_computed", value=computed)
            scores = clf.quality_score(X) if len(batch) else np.zeros(0)
        results: list[bool | tuple[bool, str]] = []
        for d, s in zip(batch, scores, strict=True):
            d.metadata["quality_score"] = float(s)
            results.append(True if s >= threshold else (False, "low_quality"))
        return results


class TrainQualityClassifierConfig(BaseModel):
    """The ``with:`` of the ``train_quality_classifier`` recipe job: its own arguments plus the
    :class:`QualityClassifier` parameters it passes on (so a typo such as ``kind: random_forrest`` or
    ``fold: 3`` fails at ``textbooks validate``, not after earlier stages ran).

    Example:
        >>> TrainQualityClassifierConfig(input_dir="out/labeled", output_path="m.joblib", kind="logistic").folds
        5
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    input_dir: str | list[str]
    output_path: str
    embedder: Any = None
    kind: Literal["random_forest", "lightgbm", "logistic"] = "random_forest"
    target_precision: float | None = Field(None, gt=0, le=1)
    keep_rate: float | None = Field(None, gt=0, le=1)
    best_f1: bool = False
    folds: int = Field(5, ge=2)
    label_cutoff: float = 3.0
    random_state: int = 0
    update_manifest: bool = True
    featurizer: str = "embedding"
    # QualityClassifier parameters
    threshold: float = 0.5
    n_estimators: int = Field(200, ge=1)
    max_depth: int | None = None
    C: float = Field(1.0, gt=0)
    class_weight: str | None = "balanced"
    n_jobs: int | None = None
