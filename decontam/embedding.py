"""Embedding distance between training documents and benchmark solutions (phi-1, Section 5.2).

Vectors come from :mod:`curate.embed` (rows L2-normalised) through :func:`stored_vectors`: the
:class:`curate.embed.EmbeddingStore` of the input shard directory and of the audit's own ``vectors/``
folder are reused, and what is computed is kept there for the next audit.
The distance is the L2 distance of normalised vectors, ``sqrt(2 - 2 cos)`` in [0, 2]; it is computed
in chunks of training rows (one matrix product per chunk), keeping per training document its nearest
benchmark item and per benchmark item its ``k`` nearest training documents.

Example:
    >>> import numpy as np
    >>> train = np.eye(3, dtype=np.float32); bench = np.eye(3, dtype=np.float32)[:2]
    >>> res = embedding_neighbours(train, bench, k=1)
    >>> res.item_dist[:, 0].tolist(), res.doc_item.tolist()
    ([0.0, 0.0], [0, 1, 0])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class NeighbourResult:
    """``doc_dist``/``doc_item``: (n_docs,) distance to and index of each document's nearest item;
    ``item_dist``/``item_doc``: (n_items, k) the k nearest documents of each item, nearest first."""

    doc_dist: np.ndarray
    doc_item: np.ndarray
    item_dist: np.ndarray
    item_doc: np.ndarray


def embedding_neighbours(
    train: np.ndarray, bench: np.ndarray, k: int = 5, chunk_rows: int = 16384
) -> NeighbourResult:
    """Nearest items per training row and top-``k`` training rows per item, by L2 on normalised vectors.

    Both inputs must be L2-normalised float arrays (what :mod:`curate.embed` returns).
    """
    n, m = len(train), len(bench)
    k = max(1, min(k, n)) if n else 0
    doc_dist = np.full(n, np.inf, dtype=np.float32)
    doc_item = np.full(n, -1, dtype=np.int64)
    best_sim = np.full((m, k), -np.inf, dtype=np.float32)
    best_doc = np.full((m, k), -1, dtype=np.int64)
    if n == 0 or m == 0:
        return NeighbourResult(doc_dist, doc_item, np.zeros((m, k), np.float32), best_doc)
    bench = np.ascontiguousarray(bench, dtype=np.float32)
    for start in range(0, n, chunk_rows):
        block = np.ascontiguousarray(train[start : start + chunk_rows], dtype=np.float32)
        sims = block @ bench.T  # (rows, m) cosine similarities
        arg = sims.argmax(axis=1)
        doc_item[start : start + len(block)] = arg
        doc_dist[start : start + len(block)] = _dist(sims[np.arange(len(block)), arg])
        # merge this chunk's top-k per item into the running top-k
        kk = min(k, len(block))
        top = np.argpartition(-sims, kk - 1, axis=0)[:kk].T  # (m, kk) row indices
        cand_sim = np.concatenate([best_sim, np.take_along_axis(sims.T, top, axis=1)], axis=1)
        cand_doc = np.concatenate([best_doc, top + start], axis=1)
        keep = np.argsort(-cand_sim, axis=1, kind="stable")[:, :k]
        best_sim = np.take_along_axis(cand_sim, keep, axis=1)
        best_doc = np.take_along_axis(cand_doc, keep, axis=1)
    return NeighbourResult(doc_dist, doc_item, _dist(best_sim), best_doc)


def _dist(sims: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(2.0 - 2.0 * sims, 0.0, None)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# vectors computed once: the embeddings store, plus the audit's own part files for what it computed
# ---------------------------------------------------------------------------------------------------
VECTORS_DIR = "vectors"


def stored_vectors(
    keys: Sequence[str],
    texts: Sequence[str],
    embedder,
    persist_dir: str | os.PathLike | None,
    reuse_dirs: Sequence = (),
) -> tuple[np.ndarray, int]:
    """Vectors of ``texts`` under ``keys`` -> (array, number computed now).

    Looked up first in the :class:`curate.embed.EmbeddingStore` of each of ``reuse_dirs`` (e.g. the
    input shard directory, whose curate stage may have embedded the documents already) and of
    ``persist_dir``; what is missing is computed once and appended to ``persist_dir``'s store as a new
    part file, so the next audit reuses it (``persist_dir=None``: computed, not kept).
    """
    from curate.embed import EmbeddingStore, _as_embedder

    emb = _as_embedder(embedder)
    keys = [str(k) for k in keys]
    dim = None
    out: dict[str, np.ndarray] = {}
    for folder in [*reuse_dirs, *([persist_dir] if persist_dir else [])]:
        rows, X = EmbeddingStore(folder, emb).stored
        for key in keys:
            if key in rows and key not in out:
                out[key] = X[rows[key]]
    missing = sorted({k for k in keys if k not in out})
    if missing:
        text_of = dict(zip(keys, texts, strict=True))
        X_new, _ = EmbeddingStore(None, emb).embed(missing, [text_of[k] for k in missing])
        out.update(zip(missing, X_new, strict=True))
        if persist_dir:
            _append_part(persist_dir, emb.model_id, missing, X_new)
    if out:
        dim = len(next(iter(out.values())))
    matrix = np.zeros((len(keys), dim or 0), dtype=np.float32)
    for r, key in enumerate(keys):
        matrix[r] = out[key]
    return matrix, len(missing)


def _append_part(persist_dir, model_id: str, ids: list[str], X: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.embed import _embedding_schema, embeddings_dir

    folder = embeddings_dir(persist_dir, model_id)
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"part-{len(list(folder.glob('*.parquet'))):05d}-{os.getpid()}.parquet"
    tmp = part.with_name(f".{part.name}.tmp")
    table = pa.table({"id": ids, "embedding": [row.tolist() for row in X]}, schema=_embedding_schema())
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, part)  # a killed audit leaves no half-written part behind


def unit_texts(table, texts_by_id: dict[str, str], min_nodes: int) -> tuple[list[int], list[str]]:
    """Normalised text of every function/method unit with ``min_nodes`` nodes (``decontam.normalise``)
    -> (unit indices, texts). Units that do not parse on their own are left out."""
    import textwrap

    from decontam.normalise import normalise_code

    picked, out = [], []
    for u, (kind, seq) in enumerate(zip(table.unit_kind, table.unit_seq, strict=True)):
        if kind == "module" or len(seq) < min_nodes:
            continue
        lines = texts_by_id[table.doc_ids[table.unit_doc[u]]].splitlines()
        source = textwrap.dedent("\n".join(lines[table.unit_lineno[u] - 1 : table.unit_end[u]]))
        try:
            out.append(normalise_code(source))
        except (SyntaxError, ValueError, RecursionError):
            continue
        picked.append(u)
    return picked, out


UNITS_PER_DOC_K = 8  # units asked for per wanted document: one file's methods can crowd an item's list


def units_to_docs(res: NeighbourResult, unit_doc: np.ndarray, n_docs: int, k: int) -> NeighbourResult:
    """Per-unit neighbours -> per-document ones: a document is as near as its nearest unit, and each
    item keeps its ``k`` nearest *distinct* documents (pass unit neighbours for more than ``k`` units,
    e.g. ``k * UNITS_PER_DOC_K``; rows with fewer distinct documents are padded with -1 / inf).

    Example:
        >>> res = NeighbourResult(np.zeros(3, np.float32), np.zeros(3, np.int64),
        ...                       np.array([[0.1, 0.2, 0.3]], np.float32), np.array([[0, 1, 2]]))
        >>> units_to_docs(res, unit_doc=np.array([5, 5, 7]), n_docs=8, k=2).item_doc.tolist()
        [[5, 7]]
    """
    doc_dist = np.full(n_docs, np.inf, dtype=np.float32)
    doc_item = np.full(n_docs, -1, dtype=np.int64)
    order = np.argsort(-res.doc_dist)  # farthest first, so the nearest unit is written last
    doc_dist[unit_doc[order]] = res.doc_dist[order]
    doc_item[unit_doc[order]] = res.doc_item[order]
    k = min(k, res.item_doc.shape[1])
    item_dist = np.full((len(res.item_doc), k), np.inf, dtype=np.float32)
    item_doc = np.full((len(res.item_doc), k), -1, dtype=np.int64)
    for j in range(len(res.item_doc)):
        kept: list[int] = []
        for dist, unit in zip(res.item_dist[j], res.item_doc[j], strict=True):  # nearest first
            if unit >= 0 and int(unit_doc[unit]) not in kept:
                item_dist[j, len(kept)] = dist
                kept.append(int(unit_doc[unit]))
                if len(kept) == k:
                    break
        item_doc[j, : len(kept)] = kept
    return NeighbourResult(doc_dist, doc_item, item_dist, item_doc)
