"""13-gram overlap between training text and benchmark items, vectorised with numpy.

Normalisation and tokenisation (the same for benchmark items and training text):

* the text is UTF-8 encoded and ASCII letters are lower-cased (``bytes.lower``); nothing else changes,
  so byte positions are preserved and evidence offsets point into the original text;
* a *token* is a maximal run of word bytes: ``[A-Za-z0-9_]`` and every byte >= 0x80 (so non-ASCII
  letters stay inside words); whitespace, punctuation and operators are separators.

So ``total=sum( x )`` and ``Total = sum(x)`` both give ``total sum x``: formatting, spacing, case and
punctuation changes do not hide a copy, while identifier renames do (the AST measure covers those).

Index: for each benchmark item, the prompt and the solution are indexed separately (HumanEval's
solution field is the canonical body, so it does not repeat the prompt). Every window of ``n`` (13)
tokens is an index key; an item field shorter than ``n`` tokens (but at least ``min_tokens``) is indexed
by its whole token sequence instead (about a third of MBPP task texts are shorter than 13 words).
Keys made only of generic idioms are dropped: any window contained in an allow-list snippet
(:data:`DEFAULT_ALLOW_LIST` plus yours), and, when ``generic_min_items`` is set, any window shared by
that many distinct benchmark items.

Scan: texts are concatenated in batches of about 1 MB (large enough to amortise numpy call overhead, small enough to stay in cache); token hashes are computed for the whole batch at
once (per-byte random table x per-position multiplier, summed per token with ``np.add.reduceat``), n-gram
hashes are a vectorised sum of shifted token hashes times per-offset multipliers, membership is a
``np.searchsorted`` into the sorted key array, and every candidate hit is verified against the exact
token tuple (hash collisions cannot create evidence). Windows crossing a document boundary are discarded.
Overlapping hits of one (document, item, field) are merged into one evidence span.

Example:
    >>> from decontam.eval_sets import load_benchmark
    >>> index = NgramIndex().fit(load_benchmark("humaneval"))
    >>> item = load_benchmark("humaneval")[0]
    >>> hits = index.scan_texts(["# copied\\n" + item.solution], ["doc-1"])
    >>> sorted({(h.item_id, h.field) for h in hits if h.item_id == "HumanEval/0"})
    [('HumanEval/0', 'prompt'), ('HumanEval/0', 'solution')]
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import numpy as np

# Generic code idioms whose windows are never evidence of contamination on their own.
DEFAULT_ALLOW_LIST: tuple[str, ...] = (
    "if __name__ == '__main__':\n    import doctest\n    doctest.testmod()",
    "def __init__(self, *args, **kwargs):\n    super().__init__(*args, **kwargs)",
    *(
        f"for i in range(len({v})):\n    for j in range(i + 1, len({v})):\n        if {v}[i] > {v}[j]:\n"
        f"            {v}[i], {v}[j] = {v}[j], {v}[i]"
        for v in ("arr", "nums", "numbers", "lst", "l", "a", "list1", "test_list", "s", "string")
    ),
    *(
        f"for i in range(0, len({v})):\n    for j in range(0, len({v}) - i - 1):\n        if {v}[j] > {v}[j + 1]:\n"
        f"            {v}[j], {v}[j + 1] = {v}[j + 1], {v}[j]"
        for v in ("arr", "nums", "numbers", "lst", "l", "a", "list1", "test_list")
    ),
    *(
        f"for i in range(n):\n    for j in range(n):\n        for k in range(n):\n            {m}[i][j] += a[i][k] * b[k][j]"
        for m in ("c", "result", "res")
    ),
    "import sys\nimport os\nimport re\nimport math\nimport heapq\nimport collections\nimport itertools\nimport functools",
)

_WORD = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _WORD[_c] = True
_WORD[0x80:] = True
_TOKEN_RE = re.compile(rb"[A-Za-z0-9_\x80-\xff]+")

_RNG = np.random.default_rng(0x136E6772)  # fixed seed: hashes are stable across runs and processes
_BYTE_TABLE = _RNG.integers(1, 2**63, size=256, dtype=np.uint64)
# odd multipliers are invertible mod 2^64, which lets a window hash be cut out of a prefix sum
_BYTE_MULT = np.uint64(0x9E3779B97F4A7C15)
_GRAM_MULT = np.uint64(0xD6E8FEB86659FD93)
_PREFILTER_BITS = 22  # membership prefilter: a 4 MB table indexed by the top 22 bits of a hash


class _Powers:
    """Cached ``m**k`` and ``m**-k`` (mod 2^64) for k = 0..size-1."""

    def __init__(self, mult: np.uint64):
        self.mult = mult
        self.inv = np.uint64(pow(int(mult), -1, 2**64))
        self.fwd = np.ones(1, dtype=np.uint64)
        self.bwd = np.ones(1, dtype=np.uint64)

    def get(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        # grow by doubling: powers[k:2k] = powers[:k] * m**k (vector multiplies, no slow cumprod)
        while len(self.fwd) < size:
            self.fwd = np.concatenate([self.fwd, self.fwd * self.fwd[-1] * self.mult])
            self.bwd = np.concatenate([self.bwd, self.bwd * self.bwd[-1] * self.inv])
        return self.fwd, self.bwd


_BYTE_POWERS = _Powers(_BYTE_MULT)
_GRAM_POWERS = _Powers(_GRAM_MULT)


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """Normalised tokens of ``text`` with their character offsets ``(token, start, end)``.

    Example:
        >>> tokenize("Total = sum(x)")
        [('total', 0, 5), ('sum', 8, 11), ('x', 12, 13)]
    """
    raw = text.encode("utf-8", "surrogatepass")
    out = []
    for m in _TOKEN_RE.finditer(raw.lower()):
        start = len(raw[: m.start()].decode("utf-8", "ignore"))
        end = start + len(raw[m.start() : m.end()].decode("utf-8", "ignore"))
        out.append((m.group().decode("utf-8", "replace"), start, end))
    return out


def _token_spans(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end byte offsets of every token in the uint8 array ``a``."""
    w = _WORD[a].view(np.int8)
    d = np.diff(w, prepend=np.int8(0), append=np.int8(0))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def _prefix(values: np.ndarray, powers: _Powers) -> np.ndarray:
    """``prefix[i] = sum_{k<i} values[k] * m**k`` (mod 2^64), length ``len(values) + 1``."""
    fwd, _ = powers.get(len(values) + 1)
    prefix = np.zeros(len(values) + 1, dtype=np.uint64)
    np.cumsum(values * fwd[: len(values)], out=prefix[1:])
    return prefix


def _cut(prefix: np.ndarray, starts: np.ndarray, ends: np.ndarray, powers: _Powers) -> np.ndarray:
    """Position-independent hash ``sum_k values[start + k] * m**k`` of each window, from its prefix sums."""
    _, bwd = powers.get(len(prefix))
    return (prefix[ends] - prefix[starts]) * bwd[starts]


def _token_hashes(a: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hash of each token's bytes."""
    if len(starts) == 0:
        return np.zeros(0, dtype=np.uint64)
    hashes = _cut(_prefix(_BYTE_TABLE[a], _BYTE_POWERS), starts, ends, _BYTE_POWERS)
    # splitmix-style finaliser so token hashes are well spread before they are combined
    hashes ^= hashes >> np.uint64(31)
    hashes *= np.uint64(0xBF58476D1CE4E5B9)
    hashes ^= hashes >> np.uint64(29)
    return hashes


def _gram_hashes(prefix: np.ndarray, n: int) -> np.ndarray:
    """Hash of every window of ``n`` consecutive tokens, from the token-hash prefix sums."""
    count = len(prefix) - n
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    return (prefix[n:] - prefix[:count]) * _GRAM_POWERS.get(len(prefix))[1][:count]


def _hash_tuple(tokens: tuple[bytes, ...]) -> int:
    """Hash of one token tuple, identical to what the vectorised scan computes for it."""
    buf = b" ".join(tokens)
    a = np.frombuffer(buf, dtype=np.uint8)
    starts, ends = _token_spans(a)
    return int(_gram_hashes(_prefix(_token_hashes(a, starts, ends), _GRAM_POWERS), len(tokens))[0])


@dataclass
class NgramMatch:
    """Evidence of an n-gram overlap.

    ``start``/``end`` are character offsets into the training document's text of the merged span of
    overlapping matched windows; ``ngram`` is the first matched window (normalised tokens joined by a
    space); ``windows`` is how many windows the span holds; ``n`` the window length in tokens.
    """

    doc_id: str
    benchmark: str
    item_id: str
    field: str
    ngram: str
    start: int
    end: int
    windows: int
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


class NgramIndex:
    """Index of benchmark n-grams (prompt and solution separately) and a streaming scanner.

    Args:
        n: window length in tokens (13, as in phi-1 / GPT-3).
        min_tokens: item fields shorter than this many tokens are not indexed (too generic to be
            evidence); fields between ``min_tokens`` and ``n - 1`` tokens are indexed whole.
        allow_list: generic code snippets; index windows contained in them are dropped.
        generic_min_items: drop windows shared by at least this many distinct items (None = keep).
        fields: which item fields to index (``prompt``, ``solution``).

    Example:
        >>> index = NgramIndex(n=3, min_tokens=2).fit_texts([("b", "b/1", "solution", "x = a + b * c")])
        >>> [(m.item_id, m.ngram) for m in index.scan_texts(["y = A+b*c"], ["d"])]
        [('b/1', 'a b c')]
    """

    def __init__(
        self,
        n: int = 13,
        min_tokens: int = 5,
        allow_list: Iterable[str] = DEFAULT_ALLOW_LIST,
        generic_min_items: int | None = None,
        fields: tuple[str, ...] = ("prompt", "solution"),
    ):
        self.n = n
        self.min_tokens = min_tokens
        self.allow_list = tuple(allow_list)
        self.generic_min_items = generic_min_items
        self.fields = fields

    # ---- building -------------------------------------------------------------------------------
    def fit(self, items) -> NgramIndex:
        """Index :class:`~decontam.eval_sets.BenchmarkItem` objects."""
        records = []
        for item in items:
            for name in self.fields:
                if name == "prompt":
                    text = item.prompt
                else:
                    text = (
                        item.extra.get("canonical_solution", item.solution) if item.extra else item.solution
                    )
                records.append((item.benchmark, item.id, name, text or ""))
        return self.fit_texts(records)

    def fit_texts(self, records: Iterable[tuple[str, str, str, str]]) -> NgramIndex:
        """Index ``(benchmark, item_id, field, text)`` records."""
        entries: dict[tuple[bytes, ...], set[tuple[str, str, str]]] = defaultdict(set)
        self.too_short_: list[tuple[str, str]] = []
        for benchmark, item_id, field, text in records:
            toks = tuple(_TOKEN_RE.findall(text.encode("utf-8", "surrogatepass").lower()))
            if len(toks) < self.min_tokens:
                if toks or text.strip():
                    self.too_short_.append((item_id, field))
                continue
            width = min(self.n, len(toks))
            for i in range(len(toks) - width + 1):
                entries[toks[i : i + width]].add((benchmark, item_id, field))
        allowed = self._allowed_windows({len(k) for k in entries})
        self.dropped_allow_list_ = 0
        self.dropped_generic_ = 0
        self.keys_: dict[int, dict[int, list]] = {}  # length -> hash -> [(tokens, owners)]
        for toks, owners in entries.items():
            if toks in allowed:
                self.dropped_allow_list_ += 1
                continue
            if self.generic_min_items and len({o[1] for o in owners}) >= self.generic_min_items:
                self.dropped_generic_ += 1
                continue
            bucket = self.keys_.setdefault(len(toks), {})
            bucket.setdefault(_hash_tuple(toks), []).append((toks, sorted(owners)))
        self.sorted_hashes_ = {
            length: np.sort(np.fromiter(bucket, dtype=np.uint64, count=len(bucket)))
            for length, bucket in self.keys_.items()
        }
        # one bit table for all widths: a window whose top bits miss it cannot be a key
        self.prefilter_ = np.zeros(2**_PREFILTER_BITS, dtype=bool)
        for keys in self.sorted_hashes_.values():
            self.prefilter_[keys >> np.uint64(64 - _PREFILTER_BITS)] = True
        return self

    def _allowed_windows(self, lengths: set[int]) -> set[tuple[bytes, ...]]:
        allowed = set()
        for snippet in self.allow_list:
            toks = tuple(_TOKEN_RE.findall(snippet.encode("utf-8").lower()))
            for width in lengths:
                for i in range(len(toks) - width + 1):
                    allowed.add(toks[i : i + width])
        return allowed

    @property
    def n_keys(self) -> int:
        return sum(len(b) for b in self.keys_.values())

    # ---- scanning -------------------------------------------------------------------------------
    def scan_texts(self, texts: list[str], ids: list[str]) -> list[NgramMatch]:
        """Scan one batch of documents; returns merged evidence spans, ordered by document."""
        encoded = [(t or "").encode("utf-8", "surrogatepass") for t in texts]
        # a newline between documents keeps tokens apart; windows across the boundary are dropped below
        buf = b"\n".join(encoded).lower()
        doc_starts = np.zeros(len(encoded), dtype=np.int64)
        if len(encoded) > 1:
            np.cumsum(np.fromiter((len(e) + 1 for e in encoded[:-1]), dtype=np.int64), out=doc_starts[1:])
        a = np.frombuffer(buf, dtype=np.uint8)
        starts, ends = _token_spans(a)
        token_prefix = _prefix(_token_hashes(a, starts, ends), _GRAM_POWERS)
        raw: list[tuple[int, int, int, tuple, list]] = []  # (doc, first token, width, tokens, owners)
        for width, keys in self.sorted_hashes_.items():
            grams = _gram_hashes(token_prefix, width)
            if len(grams) == 0 or len(keys) == 0:
                continue
            candidates = np.flatnonzero(self.prefilter_[grams >> np.uint64(64 - _PREFILTER_BITS)])
            pos = np.minimum(np.searchsorted(keys, grams[candidates]), len(keys) - 1)
            candidates = candidates[keys[pos] == grams[candidates]]
            if len(candidates) == 0:
                continue
            first_doc = np.searchsorted(doc_starts, starts[candidates], side="right") - 1
            last_doc = np.searchsorted(doc_starts, starts[candidates + width - 1], side="right") - 1
            bucket = self.keys_[width]
            same = first_doc == last_doc
            for cand, doc in zip(candidates[same].tolist(), first_doc[same].tolist(), strict=True):
                toks = tuple(buf[starts[k] : ends[k]] for k in range(cand, cand + width))
                for key_toks, owners in bucket.get(int(grams[cand]), ()):
                    if key_toks == toks:  # exact verification
                        raw.append((doc, cand, width, toks, owners))
        return self._merge(raw, encoded, ids, doc_starts, starts, ends)

    def _merge(self, raw, encoded, ids, doc_starts, starts, ends) -> list[NgramMatch]:
        """Merge overlapping/adjacent windows of one (doc, item, field) into evidence spans."""
        windows: dict[tuple, list] = defaultdict(list)
        for doc, first, width, toks, owners in raw:
            for benchmark, item_id, field in owners:
                windows[(doc, benchmark, item_id, field)].append((first, first + width - 1, toks, width))
        out = []
        for (doc, benchmark, item_id, field), found in windows.items():
            found.sort()
            spans = []
            for first, last, toks, width in found:
                if spans and first <= spans[-1][1] + 1:
                    spans[-1][1] = max(spans[-1][1], last)
                    spans[-1][2] += 1
                else:
                    spans.append([first, last, 1, toks, width])
            base = int(doc_starts[doc])
            raw_doc = encoded[doc]
            for first, last, count, toks, width in spans:
                b_start, b_end = int(starts[first]) - base, int(ends[last]) - base
                c_start = len(raw_doc[:b_start].decode("utf-8", "ignore"))
                c_end = c_start + len(raw_doc[b_start:b_end].decode("utf-8", "ignore"))
                ngram = b" ".join(toks).decode("utf-8", "replace")
                out.append(
                    NgramMatch(str(ids[doc]), benchmark, item_id, field, ngram, c_start, c_end, count, width)
                )
        out.sort(key=lambda m: (m.doc_id, m.start, m.benchmark, m.item_id, m.field))
        return out

    def scan_batches(self, batches: Iterable[tuple[list[str], list[str]]]) -> Iterator[NgramMatch]:
        """Scan an iterable of ``(texts, ids)`` batches, yielding evidence as it is found."""
        for texts, ids in batches:
            yield from self.scan_texts(texts, ids)

    def scan_shards(self, shard_dir: str, batch_bytes: int = 2**20) -> Iterator[NgramMatch]:
        """Stream a shard directory's ``data/*.parquet`` (or a folder of Parquet files) in batches of
        about ``batch_bytes`` of text, yielding evidence; memory stays bounded by the batch size."""
        yield from self.scan_batches(iter_text_batches(shard_dir, batch_bytes))


def iter_text_batches(shard_dir: str, batch_bytes: int = 2**20) -> Iterator[tuple[list[str], list[str]]]:
    """``(texts, ids)`` batches of about ``batch_bytes`` read from a shard directory with pyarrow."""
    from decontam.prune import shard_dataset

    dataset = shard_dataset(shard_dir)
    texts: list[str] = []
    ids: list[str] = []
    size = 0
    batches = dataset.to_batches(columns=["id", "text"], batch_size=1024) if dataset is not None else ()
    for record_batch in batches:
        ids_col, text_col = record_batch.column("id").to_pylist(), record_batch.column("text").to_pylist()
        for doc_id, text in zip(ids_col, text_col, strict=True):
            texts.append(text or "")
            ids.append(doc_id)
            size += len(text or "")
            if size >= batch_bytes:
                yield texts, ids
                texts, ids, size = [], [], 0
    if texts:
        yield texts, ids


class SetOfTuplesScanner:
    """The straightforward implementation (regex tokens, a Python set of n-gram tuples), with the same
    tokenisation and index keys as :class:`NgramIndex`. It is the baseline of
    ``benchmarks/bench_decontam_ngram.py`` and the reference the tests compare against; it reports
    ``(doc_id, item_id, field, first_token_index)`` for every matching window.
    """

    def __init__(self, index: NgramIndex):
        self.windows: dict[int, dict[tuple[bytes, ...], list]] = {
            width: {toks: owners for entries in bucket.values() for toks, owners in entries}
            for width, bucket in index.keys_.items()
        }

    def scan_texts(self, texts: list[str], ids: list[str]) -> list[tuple[str, str, str, int]]:
        out = []
        for text, doc_id in zip(texts, ids, strict=True):
            toks = _TOKEN_RE.findall((text or "").encode("utf-8", "surrogatepass").lower())
            for width, table in self.windows.items():
                for i in range(len(toks) - width + 1):
                    owners = table.get(tuple(toks[i : i + width]))
                    if owners:
                        out.extend((doc_id, item_id, field, i) for _, item_id, field in owners)
        return out
