"""Near-duplicate removal: MinHash LSH over shingles of code tokens.

Single machine (this module's :class:`NearDedupFilter` / :func:`minhash_clusters`): signatures are
computed vectorised with numpy. Tokens are found and hashed with array operations on the UTF-8
bytes (byte classes + polynomial prefix hashes, no per-token Python work), shingle hashes are
combined from token hashes with array arithmetic, and all ``num_perm`` permutations are applied as
one ``(n_shingles x num_perm)`` uint32 operation. The permutations are datasketch's own (scheme
``affine32``: MurmurHash3 finaliser, then ``a*h + b mod 2^32`` with datasketch's ``a, b`` for the
seed), so a signature equals ``datasketch.MinHash(num_perm, seed, hashfunc=...)`` fed the same
shingle hashes, bit for bit. LSH banding uses datasketch's optimal (bands, rows) for the threshold,
biased toward recall; candidate pairs are then verified (exact Jaccard of the shingle sets by
default, or the signature estimate) and joined with union-find. The kept document of a cluster is
its smallest id, and ``cluster_id`` is that id: deterministic whatever the input order.

Beyond one machine, use datatrove's MinHash stages instead (:func:`datatrove_minhash_pipelines`,
or the ``near_dedup_datatrove`` job): signatures per task, buckets per band, one clustering task,
then a filter pass, on any datatrove executor.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.utils.word_tokenizers import WordTokenizer

from curate.shards import ExclusionWriter

# Code tokens, found on the UTF-8 bytes (so each token hashes without re-encoding): runs of
# identifier/number characters (non-ASCII bytes count as such, so a unicode name stays one token), or
# single punctuation characters. Whitespace and layout are not tokens.
TOKEN_RE = re.compile(rb"[A-Za-z0-9_\x80-\xff]+|[^A-Za-z0-9_\s\x80-\xff]")
_U64 = np.uint64
# odd 64-bit multipliers for combining token hashes into an n-gram hash (position-dependent)
_NGRAM_MULT = _U64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = _U64(0xFF51AFD7ED558CCD), _U64(0xC4CEB9FE1A85EC53)
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
_BLOCK = 4096  # shingles per permutation block: keeps the (block x num_perm) buffer in cache


def code_tokens(text: str) -> list[str]:
    """Code tokens of a text: words/numbers and punctuation marks; whitespace is not a token.

    Example:
        >>> code_tokens("def f(x):  return x+1")
        ['def', 'f', '(', 'x', ')', ':', 'return', 'x', '+', '1']
    """
    return [t.decode("utf-8", "surrogatepass") for t in TOKEN_RE.findall(_utf8(text))]


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def shingle_strings(text: str, shingle_size: int = 5) -> list[str]:
    """The shingles (space-joined token n-grams) of a text; a text shorter than n is one shingle.

    This is the reference definition the vectorised hashes implement (used by the baseline and tests).
    """
    tokens = code_tokens(text)
    if not tokens:
        return []
    if len(tokens) <= shingle_size:
        return [" ".join(tokens)]
    return [" ".join(tokens[i : i + shingle_size]) for i in range(len(tokens) - shingle_size + 1)]


# byte classes matching TOKEN_RE: 0 whitespace, 1 identifier/number byte, 2 punctuation
_BYTE_CLASS = np.full(256, 2, dtype=np.uint8)
for _c in b" \t\n\r\f\v":
    _BYTE_CLASS[_c] = 0
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_":
    _BYTE_CLASS[_c] = 1
_BYTE_CLASS[0x80:] = 1
_POLY = 0x100000001B3  # odd, so invertible mod 2^64
_POLY_INV = pow(_POLY, -1, 2**64)
_powers = {"p": np.ones(1, dtype=_U64), "inv": np.ones(1, dtype=_U64)}


def _poly_powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P^i and P^-i mod 2^64 for i < n (cached, grown by doubling)."""
    if len(_powers["p"]) < n:
        size = max(n, 2 * len(_powers["p"]))
        with np.errstate(over="ignore"):
            _powers["p"] = np.cumprod(np.r_[_U64(1), np.full(size - 1, _POLY, dtype=_U64)], dtype=_U64)
            _powers["inv"] = np.cumprod(np.r_[_U64(1), np.full(size - 1, _POLY_INV, dtype=_U64)], dtype=_U64)
    return _powers["p"][:n], _powers["inv"][:n]


def token_spans(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Byte (start, end) of every :data:`TOKEN_RE` token of ``data``, found with array operations.

    Example:
        >>> starts, ends = token_spans(b"def f(x):")
        >>> [b"def f(x):"[a:b] for a, b in zip(starts, ends)]
        [b'def', b'f', b'(', b'x', b')', b':']
    """
    cls = _BYTE_CLASS[np.frombuffer(data, dtype=np.uint8)]
    word = cls == 1
    prev_word = np.r_[False, word[:-1]]
    next_word = np.r_[word[1:], False]
    starts = np.flatnonzero((word & ~prev_word) | (cls == 2))
    ends = starts + 1
    is_word = word[starts]
    ends[is_word] = np.flatnonzero(word & ~next_word) + 1
    return starts, ends


def token_hashes(text: str) -> np.ndarray:
    """uint64 hash of every code token of ``text`` (vectorised: polynomial prefix hashes of the bytes).

    Equal tokens get equal hashes wherever they occur; the hash is then avalanched (murmur finaliser).
    """
    data = _utf8(text)
    starts, ends = token_spans(data)
    if len(starts) == 0:
        return np.zeros(0, dtype=_U64)
    pw, inv = _poly_powers(len(data) + 1)
    with np.errstate(over="ignore"):
        values = np.frombuffer(data, dtype=np.uint8).astype(_U64) + _U64(1)
        prefix = np.empty(len(data) + 1, dtype=_U64)
        prefix[0] = 0
        np.cumsum(values * pw[: len(data)], out=prefix[1:])
        h = (prefix[ends] - prefix[starts]) * inv[starts]  # the token's polynomial hash, position-free
        h ^= (ends - starts).astype(_U64) * _MIX2  # the length too: guards against zero-padding collisions
        h ^= h >> _U64(33)
        h *= _MIX1
        h ^= h >> _U64(33)
    return h


def shingle_hashes(text: str, shingle_size: int = 5) -> np.ndarray:
    """uint32 hashes of a text's shingles (one per n-gram position; duplicates kept), vectorised.

    Token hashes come from :func:`token_hashes` (no per-token Python work); an n-gram hash is a
    position-weighted combination of its token hashes, mixed and folded to 32 bits.

    Example:
        >>> shingle_hashes("a b c d e f", 5).shape
        (2,)
    """
    th = token_hashes(text)
    if len(th) == 0:
        return np.zeros(0, dtype=np.uint32)
    n = min(shingle_size, len(th))
    m = len(th) - n + 1
    with np.errstate(over="ignore"):
        h = th[:m].copy()
        for j in range(1, n):
            h *= _NGRAM_MULT
            h += th[j : j + m]
        # murmur-style 64-bit finaliser, then fold to 32 bits
        h ^= h >> _U64(33)
        h *= _MIX1
        h ^= h >> _U64(33)
        h *= _MIX2
        h ^= h >> _U64(33)
    return (h ^ (h >> _U64(32))).astype(np.uint32)


@lru_cache(maxsize=16)
def datasketch_permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters ``(a, b)`` (uint32 arrays) for ``num_perm``/``seed``."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32)


def _fmix32(hv: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX32
    hv = hv ^ (hv >> s1)
    hv *= m1
    hv ^= hv >> s2
    hv *= m2
    return hv ^ (hv >> s3)


def signature_from_hashes(
    hv: np.ndarray, a: np.ndarray, b: np.ndarray, buf: np.ndarray | None = None
) -> np.ndarray:
    """MinHash signature (uint32, len(a)) of shingle hashes ``hv`` under datasketch's affine32 permutations."""
    num_perm = len(a)
    sig = np.full(num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
    if len(hv) == 0:
        return sig
    hv = _fmix32(hv.astype(np.uint32, copy=True))
    if buf is None or buf.shape[0] < min(len(hv), _BLOCK):
        buf = np.empty((min(len(hv), _BLOCK), num_perm), dtype=np.uint32)
    for start in range(0, len(hv), _BLOCK):
        block = hv[start : start + _BLOCK]
        out = buf[: len(block)]
        np.multiply(block[:, None], a[None, :], out=out)
        out += b
        np.minimum(sig, out.min(axis=0), out=sig)
    return sig


def minhash_signatures(
    texts: Sequence[str],
    num_perm: int = 128,
    shingle_size: int = 5,
    seed: int = 1,
    keep_shingles: bool = False,
) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Signatures of all texts -> (uint32 array (n, num_perm), per-text unique shingle hashes or None).

    A text without tokens gets the all-max signature (like an empty datasketch ``MinHash``).

    Example:
        >>> sigs, _ = minhash_signatures(["x = 1 + 2", "x = 1 + 3"], num_perm=16)
        >>> sigs.shape
        (2, 16)
    """
    a, b = datasketch_permutations(num_perm, seed)
    sigs = np.empty((len(texts), num_perm), dtype=np.uint32)
    buf = np.empty((_BLOCK, num_perm), dtype=np.uint32)
    shingles = [] if keep_shingles else None
    for i, text in enumerate(texts):
        hv = shingle_hashes(text, shingle_size)
        sigs[i] = signature_from_hashes(hv, a, b, buf)
        if shingles is not None:
            shingles.append(np.unique(hv))
    return sigs, shingles


@lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int, recall_weight: float = 0.7) -> tuple[int, int]:
    """(bands, rows) minimising datasketch's weighted false-positive/negative areas for ``threshold``.

    Candidates are verified afterwards, so false negatives (lost duplicates) weigh more by default.
    """
    from datasketch.lsh import _optimal_param

    return tuple(int(v) for v in _optimal_param(threshold, num_perm, 1.0 - recall_weight, recall_weight))


def _jaccard(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) == 0 and len(y) == 0:
        return 1.0
    inter = len(np.intersect1d(x, y, assume_unique=True))
    return inter / (len(x) + len(y) - inter)


def candidate_pairs(sigs: np.ndarray, bands: int, rows: int, max_bucket: int = 64) -> np.ndarray:
    """Pairs (i, j), i < j, sharing at least one LSH band bucket -> int64 array (k, 2).

    A bucket larger than ``max_bucket`` (many copies of one file) contributes a star around its first
    member plus a chain, instead of every pair, which is enough for the union-find clustering.
    """
    n = sigs.shape[0]
    pairs = []
    for band in range(bands):
        keys = (
            np.ascontiguousarray(sigs[:, band * rows : (band + 1) * rows])
            .view(np.dtype((np.void, 4 * rows)))
            .ravel()
        )
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        boundaries = np.nonzero(sorted_keys[1:] != sorted_keys[:-1])[0] + 1
        starts = np.r_[0, boundaries]
        ends = np.r_[boundaries, n]
        for s, e in zip(starts[(ends - starts) > 1], ends[(ends - starts) > 1], strict=True):
            members = np.sort(order[s:e])
            if len(members) <= max_bucket:
                ii, jj = np.triu_indices(len(members), k=1)
                pairs.append(np.stack([members[ii], members[jj]], axis=1))
            else:
                pairs.append(np.stack([np.full(len(members) - 1, members[0]), members[1:]], axis=1))
                pairs.append(np.stack([members[:-1], members[1:]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs).astype(np.int64), axis=0)


def near_duplicate_pairs(
    texts: Sequence[str],
    threshold: float = 0.8,
    num_perm: int = 128,
    shingle_size: int = 5,
    seed: int = 1,
    verify: str = "exact",
) -> list[tuple[int, int, float]]:
    """Index pairs (i, j, similarity) of near-duplicates: LSH candidates whose verified similarity >= threshold.

    ``verify``: ``"exact"`` (Jaccard of the shingle-hash sets), ``"signature"`` (fraction of equal
    signature slots, the MinHash estimate) or ``"none"`` (every LSH candidate).
    """
    if verify not in ("exact", "signature", "none"):
        raise ValueError(f"verify must be 'exact', 'signature' or 'none', got {verify!r}")
    sigs, shingles = minhash_signatures(texts, num_perm, shingle_size, seed, keep_shingles=verify == "exact")
    return _verified_pairs(sigs, shingles, threshold, verify)


def _verified_pairs(sigs, shingles, threshold, verify) -> list[tuple[int, int, float]]:
    num_perm = sigs.shape[1]
    bands, rows = lsh_params(threshold, num_perm)
    empty = (sigs == np.iinfo(np.uint32).max).all(axis=1)  # texts without tokens never match anything
    pairs = candidate_pairs(sigs, bands, rows)
    if len(pairs):
        pairs = pairs[~(empty[pairs[:, 0]] | empty[pairs[:, 1]])]
    if verify == "none":
        return [(int(i), int(j), float("nan")) for i, j in pairs]
    if verify == "signature":
        sims = (sigs[pairs[:, 0]] == sigs[pairs[:, 1]]).mean(axis=1) if len(pairs) else np.zeros(0)
        return [(int(i), int(j), float(s)) for (i, j), s in zip(pairs, sims, strict=True) if s >= threshold]
    out = []
    for i, j in pairs:
        s = _jaccard(shingles[i], shingles[j])
        if s >= threshold:
            out.append((int(i), int(j), s))
    return out


def _clusters_from_pairs(ids: Sequence[str], pairs) -> list[int]:
    """Union-find; returns, per index, the index of its cluster's representative (smallest id)."""
    parent = list(range(len(ids)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _ in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            # the root is always the member with the smallest id, so the representative is deterministic
            if (ids[ri], ri) < (ids[rj], rj):
                parent[rj] = ri
            else:
                parent[ri] = rj
    return [find(i) for i in range(len(ids))]


def minhash_clusters(
    texts: Sequence[str],
    ids: Sequence[str],
    threshold: float = 0.8,
    num_perm: int = 128,
    shingle_size: int = 5,
    seed: int = 1,
    verify: str = "exact",
) -> dict[str, str]:
    """Near-duplicate clusters: id -> cluster id (the id of the cluster's kept representative).

    Clusters are the connected components of near-duplicate pairs; the representative is the smallest
    id, so the result does not depend on input order. A document without duplicates is its own cluster.

    Example:
        >>> base = "def add(a, b):\\n    total = a + b\\n    return total\\n" * 3
        >>> minhash_clusters([base, base + "# end\\n", "print('other')"], ["b", "a", "c"], threshold=0.7)
        {'b': 'a', 'a': 'a', 'c': 'c'}
    """
    if len(texts) != len(ids):
        raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
    ids = [str(i) for i in ids]
    pairs = near_duplicate_pairs(texts, threshold, num_perm, shingle_size, seed, verify)
    roots = _clusters_from_pairs(ids, pairs)
    return {doc_id: ids[root] for doc_id, root in zip(ids, roots, strict=True)}


class NearDedupFilter(BaseFilter):
    """Drop near-duplicates (MinHash LSH); keep one document per cluster and record ``cluster_id``.

    The filter collects its task's documents, clusters them, then yields the representatives (smallest
    id of each cluster) in input order with ``cluster_id`` set; the others go to the exclusion writer
    with reason ``near_duplicate``, their ``cluster_id`` and ``duplicate_of``. Like exact dedup it sees
    only its own task's documents: run it in a one-task stage for a global dedup (memory holds the
    task's texts and shingle hashes), or use :func:`datatrove_minhash_pipelines` beyond one machine.

    Args:
        threshold: Jaccard similarity of shingle sets at or above which two documents are near-duplicates.
        num_perm: MinHash permutations.
        shingle_size: tokens per shingle (n).
        seed: permutation seed (datasketch's convention).
        verify: ``"exact"`` | ``"signature"`` | ``"none"``, see :func:`near_duplicate_pairs`.

    Example (recipe)::

        - name: near-dedup
          input: {from: filter}
          steps: [{uses: near_dedup, with: {threshold: 0.8}}]
          executor: {type: local, tasks: 1}
    """

    name = "🧬 Near dedup"

    def __init__(
        self,
        threshold: float = 0.8,
        num_perm: int = 128,
        shingle_size: int = 5,
        seed: int = 1,
        verify: str = "exact",
        exclusion_writer=None,
    ):
        super().__init__(exclusion_writer=exclusion_writer)
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if verify not in ("exact", "signature", "none"):
            raise ValueError(f"verify must be 'exact', 'signature' or 'none', got {verify!r}")
        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self.seed = seed
        self.verify = verify

    def filter(self, doc) -> bool:  # documents are judged together in run(); single docs are always unique
        return True

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        docs = list(data)
        with self.track_time():
            sigs, shingles = minhash_signatures(
                [d.text for d in docs],
                self.num_perm,
                self.shingle_size,
                self.seed,
                keep_shingles=self.verify == "exact",
            )
            ids = [str(d.id) for d in docs]
            pairs = _verified_pairs(sigs, shingles, self.threshold, self.verify)
            roots = _clusters_from_pairs(ids, pairs)
        del sigs, shingles
        self.stat_update("near_duplicate_pairs", value=len(pairs))
        with self.exclusion_writer if self.exclusion_writer else nullcontext() as writer:
            for k, doc in enumerate(docs):
                self.stat_update("total")
                rep = ids[roots[k]]
                doc.metadata["cluster_id"] = rep
                if roots[k] == k:
                    self.stat_update("forwarded")
                    self.update_doc_stats(doc)
                    yield doc
                else:
                    self.stat_update("dropped", "dropped_near_duplicate")
                    doc.metadata["duplicate_of"] = rep
                    doc.metadata["filter_reason"] = "near_duplicate"
                    if writer is not None:
                        writer.write(doc, rank)


# ---- corpus scale: datatrove's MinHash stages --------------------------------------------------------


def datatrove_minhash_pipelines(
    input_dir: str,
    output_dir: str,
    work_dir: str | None = None,
    n_grams: int = 5,
    num_buckets: int = 14,
    hashes_per_bucket: int = 8,
    seed: int = 1,
) -> dict[str, dict[str, Any]]:
    """The four pipelines of datatrove's MinHash dedup for a shard directory, in run order.

    Returns ``{stage: {"pipeline": [...], "tasks": int | None}}`` for ``signatures``, ``buckets``,
    ``clusters`` and ``filter``. ``tasks`` None means "the same as signatures" (the filter must read
    the input with the same task split); ``buckets`` needs exactly ``num_buckets`` tasks and
    ``clusters`` one. Kept rows go to ``output_dir/data``, dropped ones to
    ``output_dir/excluded/near_dedup`` with reason ``near_duplicate``. Give each pipeline to any
    datatrove executor (local, Ray, Slurm), one after the other.

    Example:
        >>> from datatrove.executor import LocalPipelineExecutor
        >>> stages = datatrove_minhash_pipelines("out/filtered", "out/dedup")  # doctest: +SKIP
        >>> for name, s in stages.items():  # doctest: +SKIP
        ...     LocalPipelineExecutor(s["pipeline"], tasks=s["tasks"] or 4, logging_dir=f"out/dedup/.logs/{name}").run()
    """
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.text import TextNormConfig

    from curate.shards import ShardReader, ShardWriter

    work = work_dir or os.path.join(output_dir, ".minhash")
    # code: keep case, punctuation and numbers (they are tokens of the program), as our shingles do
    norm = TextNormConfig(
        lowercase=False, remove_punctuation=False, norm_numbers=False, norm_unicode_diacritics=False
    )
    config = MinhashConfig(
        n_grams=n_grams,
        num_buckets=num_buckets,
        hashes_per_bucket=hashes_per_bucket,
        seed=seed,
        norm_config=norm,
        # datatrove's xxhash path passes str to xxhash, which xxhash>=4 rejects; its sha1 path takes str
        hash_config=HashConfig(precision=64, hash_fc="sha1"),
    )
    return {
        "signatures": {
            "pipeline": [
                ShardReader(input_dir),
                MinhashDedupSignature(f"{work}/signatures", config=config, language=CodeWordTokenizer()),
            ],
            "tasks": None,
        },
        "buckets": {
            "pipeline": [MinhashDedupBuckets(f"{work}/signatures", f"{work}/buckets", config=config)],
            "tasks": num_buckets,
        },
        "clusters": {
            "pipeline": [
                MinhashDedupCluster(
                    f"{work}/buckets", f"{work}/remove_ids", config=config, save_cluster_id=True
                )
            ],
            "tasks": 1,
        },
        "filter": {
            "pipeline": [
                ShardReader(input_dir),
                MinhashDedupFilter(
                    f"{work}/remove_ids",
                    exclusion_writer=NearDupExclusionWriter(
                        f"{output_dir}/excluded/near_dedup", "near_dedup"
                    ),
                    load_cluster_ids=True,
                ),
                ShardWriter(f"{output_dir}/data"),
            ],
            "tasks": None,
        },
    }


class CodeWordTokenizer(WordTokenizer):
    """datatrove word tokenizer that splits code into :data:`TOKEN_RE` tokens (no spaCy/NLTK needed)."""

    _SPAN_RE = re.compile(r"[A-Za-z0-9_\u0080-\U0010FFFF]+|[^A-Za-z0-9_\s\u0080-\U0010FFFF]")

    def __init__(self):
        super().__init__("code")

    def word_tokenize(self, text: str) -> list[str]:
        return code_tokens(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [line for line in text.splitlines() if line.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._SPAN_RE.finditer(text)]


class NearDupExclusionWriter(ExclusionWriter):
    """Exclusion writer for datatrove's MinHash filter, which gives no reason: records ``near_duplicate``."""

    def write(self, document, rank: int = 0, **kwargs):
        document.metadata.setdefault("filter_reason", "near_duplicate")
        if document.metadata.get("minhash_cluster_id") is not None:
            document.metadata.setdefault("cluster_id", str(document.metadata["minhash_cluster_id"]))
        super().write(document, rank, **kwargs)


def near_dedup_datatrove(
    input_dir: str,
    output_dir: str,
    work_dir: str | None = None,
    tasks: int = 4,
    workers: int = -1,
    executor: str = "local",
    executor_options: dict[str, Any] | None = None,
    n_grams: int = 5,
    num_buckets: int = 14,
    hashes_per_bucket: int = 8,
    seed: int = 1,
) -> dict[str, Any]:
    """JOB: corpus-scale near-dedup with datatrove's four MinHash stages on a local, Ray or Slurm executor.

    ``executor_options`` go to the executor (e.g. Slurm ``partition``, ``time``, ``mem_per_cpu_gb``).
    Writes a shard directory at ``output_dir`` with its manifest; returns its summary.

    Example (recipe)::

        - name: near-dedup
          job: near_dedup_datatrove
          with: {input_dir: ${out}/filtered, output_dir: ${out}/dedup, tasks: 64, executor: slurm,
                 executor_options: {partition: cpu, time: "04:00:00"}}
    """
    from curate.manifest import write_manifest

    stages = datatrove_minhash_pipelines(
        input_dir, output_dir, work_dir, n_grams, num_buckets, hashes_per_bucket, seed
    )
    logs = Path(output_dir) / ".logs"
    options = dict(executor_options or {})
    previous = None
    for name, stage in stages.items():
        n_tasks = stage["tasks"] or tasks
        kwargs: dict[str, Any] = {"tasks": n_tasks, "logging_dir": str(logs / name)}
        if executor == "local":
            from datatrove.executor import LocalPipelineExecutor

            run = LocalPipelineExecutor(stage["pipeline"], workers=workers, **kwargs)
            run.run()
        elif executor == "slurm":
            from datatrove.executor import SlurmPipelineExecutor

            options.setdefault("time", "04:00:00")
            options.setdefault("partition", "cpu")
            run = SlurmPipelineExecutor(
                stage["pipeline"], depends=previous, job_name=f"near-dedup-{name}", **kwargs, **options
            )
            previous = run
        elif executor == "ray":
            from datatrove.executor import RayPipelineExecutor

            run = RayPipelineExecutor(stage["pipeline"], workers=workers, **kwargs, **options)
            run.run()
        else:
            raise ValueError(f"unknown executor {executor!r}: use local, ray or slurm")
    if executor == "slurm":
        previous.run()  # submits the chain; the filter stage's job depends on the earlier ones
        return {"output_dir": output_dir, "submitted": True, "executor": "slurm"}
    manifest = write_manifest(output_dir, stage="near_dedup_datatrove", inputs=[input_dir])
    return {
        "output_dir": output_dir,
        "rows": manifest["rows"],
        "excluded_rows": manifest["excluded_rows"],
        "drop_reasons": manifest["drop_reasons"],
    }
