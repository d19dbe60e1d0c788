"""Score a shard directory against benchmarks once, then prune it at every tau (phi-1, Section 5.2).

One pass parses every training document into units (:mod:`decontam.ast_match`), computes each unit's
maximum AST match rate against each benchmark and each document's minimum embedding distance
(:mod:`decontam.embedding`), and stores them as real columns in side Parquet tables keyed by id
(filterable with pandas/duckdb/polars without touching the shards)::

    OUTPUT/
      scores.parquet          one row per document: id, n_units, parse_error,
                              ast_max_<bench>, ast_item_<bench>, ast_unit_<bench>,
                              emb_min_<bench>, emb_item_<bench>, beh_hit_<bench> (rule using behaviour)
      behaviour_hits.jsonl    behavioural hits with their evidence; behaviour_verdicts.jsonl: the cache
      units.parquet           one row per unit: id, unit, kind, lineno, end_lineno, ast_max_<bench>, ast_item_<bench>
      items.parquet           one row per benchmark item: benchmark, item_id, ast_max, ast_doc, ast_unit,
                              emb_min, emb_doc (nearest training document)
      tau_0.95/ ...           a pruned shard set per tau (data/, excluded/decontam/, manifest.json, README.md)
      split.json              similar / non-similar benchmark items per tau (format pinned in INTERFACES.md)
      decontam.json           summary: checksums, counts per benchmark and tau, parse failures, timings

The scores also travel inside every written row's ``extra`` (key ``decontam``), so a pruned shard is
self-describing. A side table was chosen over new schema columns because the set of benchmarks is open.

Rules (``rule=``): a training document is *contaminated at tau* when, for some benchmark,
``ast``: its max unit AST match rate >= tau; ``embedding``: its min embedding distance <= threshold;
``either`` (default): one of the two; ``both``: both; ``behaviour`` (:mod:`decontam.behaviour`): one of
its function units passes an item's own tests in the sandbox (independent of tau, like the embedding);
any ``|``/``&`` combination (``ast|behaviour``). A benchmark item is *similar at tau* by the same
rule applied to its best training unit / nearest training document. The embedding test does not
depend on tau. Removed documents go to ``tau_X/excluded/decontam/`` with ``filter_reason``
``contaminated_ast_X``, ``contaminated_embedding_X`` or ``contaminated_ast+embedding_X``.

Example:
    >>> summary = prune_shards("out/filtered", "out/decontam", rule="ast")  # doctest: +SKIP
    >>> summary["taus"]["0.95"]["removed_docs"]  # doctest: +SKIP
    3
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from decontam.ast_match import AstMatchIndex, parse_document
from decontam.embedding import VECTORS_DIR
from decontam.eval_sets import BenchmarkItem, load_benchmark

DEFAULT_TAUS = (0.95, 0.9, 0.85, 0.8)
MEASURES = ("ast", "embedding", "llm", "behaviour")
_ALIASES = {"either": [["ast"], ["embedding"]], "both": [["ast", "embedding"]]}
RULES = MEASURES + tuple(_ALIASES)  # single-measure rules; any | / & combination of MEASURES works too
_NEEDS = {"ast": "always computed", "embedding": "embeddings=True", "llm": "an llm config",
          "behaviour": "a rule naming it"}  # fmt: skip
SPLIT_VERSION = 1
LLM_VERDICTS = "llm_verdicts.jsonl"
BEHAVIOUR_OPTIONS = frozenset({"floor", "batch_size", "timeout_s", "memory_mb", "max_procs", "workers",
                               "max_batch_bytes"})  # fmt: skip  (decontam.behaviour.BehaviourChecker's)
LLM_FLOOR = 0.5  # AST rate from which a unit is an LLM-judge candidate
DEFAULT_EMBEDDING_THRESHOLD = 0.3
EMBEDDING_VIEWS = ("document", "normalised_units")
# measured on the planted corpus (RESULTS.md, bench_decontam_rephrase.py): normalised units at 0.15 flag
# 0.3% of clean files alone and, or-ed with AST at tau 0.9, 0.5% (0.25 would flag 1.5% alone)
VIEW_THRESHOLDS = {"document": DEFAULT_EMBEDDING_THRESHOLD, "normalised_units": 0.15}


def tau_key(tau: float) -> str:
    """Canonical string of a tau (``0.9`` -> ``"0.9"``), used in file names and JSON keys."""
    return f"{float(tau):g}"


# ---------------------------------------------------------------------------------------------------
# reading and parsing
# ---------------------------------------------------------------------------------------------------
def data_folder(shard_dir: str | os.PathLike) -> str:
    """``shard_dir/data`` when it exists (a shard directory), else ``shard_dir`` (a folder of Parquet)."""
    inner = os.path.join(shard_dir, "data")
    return inner if os.path.isdir(inner) else str(shard_dir)


def shard_dataset(shard_dir: str | os.PathLike):
    """A pyarrow dataset of the ``*.parquet`` files under a shard directory, or None when it has none.

    Only Parquet files are read (a shard directory also holds ``README.md``, ``manifest.json``...), so an
    empty shard directory is an empty input, not a crash.

    Example:
        >>> import tempfile
        >>> shard_dataset(tempfile.mkdtemp()) is None
        True
    """
    import pyarrow.dataset as ds

    folder = Path(data_folder(shard_dir))
    if not folder.is_dir():
        raise FileNotFoundError(f"no shard directory at {shard_dir}")
    files = sorted(str(p) for p in folder.rglob("*.parquet") if p.is_file())
    return ds.dataset(files, format="parquet") if files else None


def iter_id_text(
    shard_dir: str | os.PathLike, batch_rows: int = 2048
) -> Iterator[tuple[list[str], list[str]]]:
    """``(ids, texts)`` batches of a shard directory, read with pyarrow (no datatrove overhead)."""
    dataset = shard_dataset(shard_dir)
    if dataset is None:
        return
    for batch in dataset.to_batches(columns=["id", "text"], batch_size=batch_rows):
        yield batch.column("id").to_pylist(), [t or "" for t in batch.column("text").to_pylist()]


def _parse_batch(args: tuple[list[str], list[str], int]) -> list[tuple[str | None, list[tuple]]]:
    """Worker: parse a batch of documents into ``(error, [(kind, name, lineno, end_lineno, sequence)])``."""
    ids, texts, max_bytes = args
    out = []
    for doc_id, text in zip(ids, texts, strict=True):
        parsed = parse_document(text, doc_id, max_bytes=max_bytes)
        out.append(
            (parsed.error, [(u.kind, u.name, u.lineno, u.end_lineno, u.sequence) for u in parsed.units])
        )
    return out


@dataclass
class UnitTable:
    """Every parsed document and unit, in reading order (column arrays, compact enough for ~1M units)."""

    doc_ids: list[str] = field(default_factory=list)
    doc_error: list[str | None] = field(default_factory=list)
    doc_units: list[int] = field(default_factory=list)
    unit_doc: list[int] = field(default_factory=list)
    unit_kind: list[str] = field(default_factory=list)
    unit_name: list[str] = field(default_factory=list)
    unit_lineno: list[int] = field(default_factory=list)
    unit_end: list[int] = field(default_factory=list)
    unit_seq: list[str] = field(default_factory=list)

    def add(self, doc_id: str, error: str | None, units: Sequence[tuple]) -> None:
        index = len(self.doc_ids)
        self.doc_ids.append(doc_id)
        self.doc_error.append(error)
        self.doc_units.append(len(units))
        for kind, name, lineno, end, seq in units:
            self.unit_doc.append(index)
            self.unit_kind.append(kind)
            self.unit_name.append(name)
            self.unit_lineno.append(lineno)
            self.unit_end.append(end)
            self.unit_seq.append(seq)


def parse_batches(
    batches: Iterator[tuple[list[str], list[str]]], workers: int = 2, max_bytes: int = 2_000_000
) -> UnitTable:
    """Parse ``(ids, texts)`` batches into a :class:`UnitTable` with ``workers`` processes (1 = inline).

    Failures (syntax errors, 5000-deep nesting, huge or empty documents) are recorded in ``doc_error``.
    """
    table = UnitTable()

    def consume(ids, results):
        for doc_id, (error, units) in zip(ids, results, strict=True):
            table.add(doc_id, error, units)

    if workers <= 1:
        for ids, texts in batches:
            consume(ids, _parse_batch((ids, texts, max_bytes)))
        return table
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pending = []
        for ids, texts in batches:
            pending.append((ids, pool.submit(_parse_batch, (ids, texts, max_bytes))))
            # keep at most 2 batches per worker in flight so memory stays bounded
            while len(pending) > 2 * workers:
                done_ids, future = pending.pop(0)
                consume(done_ids, future.result())
        for done_ids, future in pending:
            consume(done_ids, future.result())
    return table


# ---------------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------------
@dataclass
class BenchmarkScores:
    """Scores of one benchmark against the training set (arrays aligned with the UnitTable)."""

    name: str
    items: list[BenchmarkItem]
    unit_score: np.ndarray  # (n_units,) max AST rate (0 below the floor)
    unit_item: np.ndarray  # (n_units,) best item index or -1
    doc_score: np.ndarray  # (n_docs,) max over the document's units
    doc_item: np.ndarray
    doc_unit: np.ndarray  # (n_docs,) unit index of the best unit or -1
    item_score: np.ndarray  # (n_items,) best unit rate of each item
    item_unit: np.ndarray  # (n_items,) that unit's index or -1
    emb_doc_dist: np.ndarray | None = None  # (n_docs,) min embedding distance
    emb_doc_item: np.ndarray | None = None
    emb_item_dist: np.ndarray | None = None  # (n_items, k)
    emb_item_doc: np.ndarray | None = None  # (n_items, k)
    llm_doc_hit: np.ndarray | None = None  # (n_docs,) the LLM judged the document a rephrased item
    llm_item_hit: np.ndarray | None = None  # (n_items,)
    beh_doc_hit: np.ndarray | None = None  # (n_docs,) a unit passed an item's own tests (decontam.behaviour)
    beh_item_hit: np.ndarray | None = None  # (n_items,)
    unparseable_items: list[str] = field(default_factory=list)
    too_small_items: list[str] = field(default_factory=list)
    pairs_compared: int = 0


def best_unit_per_doc(res, unit_doc: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score, unit, item) of each document's best unit from an AST query result ``res``
    (``query_score``, ``query_item`` per unit): the last of its units with the top score; unit and item
    -1 where no unit scores above 0, or the document has no unit at all.

    Example:
        >>> from types import SimpleNamespace
        >>> res = SimpleNamespace(query_score=np.array([0.9, 0.9, 0.0]), query_item=np.array([4, 5, 6]))
        >>> [a.tolist() for a in best_unit_per_doc(res, np.array([0, 0, 1]), 3)]
        [[0.8999999761581421, 0.0, 0.0], [1, -1, -1], [5, -1, -1]]
    """
    doc_score = np.zeros(n_docs, dtype=np.float32)
    doc_unit = np.full(n_docs, -1, dtype=np.int64)
    if len(unit_doc):  # sort by (doc, score) and take the last of each doc
        order = np.lexsort((res.query_score, unit_doc))
        last = np.flatnonzero(np.r_[unit_doc[order][1:] != unit_doc[order][:-1], True])
        best = order[last]
        doc_score[unit_doc[best]] = res.query_score[best]
        has = res.query_score[best] > 0
        doc_unit[unit_doc[best[has]]] = best[has]
    doc_item = np.full(n_docs, -1, dtype=np.int64)  # indexed only where a unit exists
    doc_item[doc_unit >= 0] = res.query_item[doc_unit[doc_unit >= 0]]
    return doc_score, doc_unit, doc_item


def score_ast(
    table: UnitTable,
    name: str,
    items: list[BenchmarkItem],
    floor: float,
    workers: int = -1,
    min_nodes: int = 10,
):
    """AST scores of every unit and document against one benchmark."""
    index = AstMatchIndex(floor=floor, workers=workers, min_nodes=min_nodes).fit([i.solution for i in items])
    res = index.query(table.unit_seq)
    unit_doc = np.asarray(table.unit_doc, dtype=np.int64)
    doc_score, doc_unit, doc_item = best_unit_per_doc(res, unit_doc, len(table.doc_ids))
    return BenchmarkScores(
        name=name,
        items=items,
        unit_score=res.query_score,
        unit_item=res.query_item,
        doc_score=doc_score,
        doc_item=doc_item,
        doc_unit=doc_unit,
        item_score=res.item_score,
        item_unit=res.item_query,
        unparseable_items=[items[i].id for i in index.unparseable_],
        too_small_items=[items[i].id for i in index.too_small_],
        pairs_compared=res.pairs_compared,
    )


def score_embeddings(
    scores: dict[str, BenchmarkScores],
    input_dir: str | os.PathLike,
    table: UnitTable,
    embedder=None,
    k: int = 5,
    view: str = "document",
    persist_dir: str | os.PathLike | None = None,
    min_nodes: int = 10,
) -> dict[str, Any]:
    """Fill the embedding fields of ``scores``.

    ``view="document"`` embeds each document's raw text (the paper's measure); ``"normalised_units"``
    embeds the normal form (:mod:`decontam.normalise`) of every function unit with ``min_nodes`` nodes
    and of every benchmark solution, and a document is as near as its nearest unit. Vectors are
    computed once: reused from the input's embeddings store and from ``persist_dir`` (the audit's own
    store, where anything computed now is kept for the next run).
    """

    from curate.embed import _as_embedder
    from decontam.embedding import (
        UNITS_PER_DOC_K,
        embedding_neighbours,
        stored_vectors,
        unit_texts,
        units_to_docs,
    )

    if view not in EMBEDDING_VIEWS:
        raise ValueError(f"embedding_view must be one of {EMBEDDING_VIEWS}, not {view!r}")
    emb = _as_embedder(embedder)
    texts_by_id: dict[str, str] = {}
    for ids, texts in iter_id_text(input_dir):
        texts_by_id.update(zip(ids, texts, strict=True))
    persist = persist_dir  # None: vectors computed for this call only (no temporary folder left behind)
    if view == "document":
        keys = table.doc_ids
        train_X, computed = stored_vectors(keys, [texts_by_id[i] for i in keys], emb, persist, [input_dir])
    else:
        picked, norm = unit_texts(table, texts_by_id, min_nodes)
        keys = [_content_key(t) for t in norm]
        train_X, computed = stored_vectors(keys, norm, emb, persist)
        unit_doc = np.asarray(table.unit_doc, dtype=np.int64)[picked]
    for bench in scores.values():
        bench_X = benchmark_embeddings(bench.items, emb, normalised=view != "document")
        if view == "document":
            res = embedding_neighbours(train_X, bench_X, k=k)
        else:
            by_unit = embedding_neighbours(train_X, bench_X, k=k * UNITS_PER_DOC_K)
            res = units_to_docs(by_unit, unit_doc, len(table.doc_ids), k)
        bench.emb_doc_dist, bench.emb_doc_item = res.doc_dist, res.doc_item
        bench.emb_item_dist, bench.emb_item_doc = res.item_dist, res.item_doc
    return {
        "model_id": emb.model_id,
        "view": view,
        "vectors": len(keys),
        "computed": computed,
        "reused": len(keys) - computed,
    }


def _content_key(text: str) -> str:
    import hashlib

    return "norm:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def benchmark_embeddings(items: list[BenchmarkItem], emb, normalised: bool = False) -> np.ndarray:
    """Embeddings of the items' solutions, cached on disk by (model id, content hash) under
    ``$TEXTBOOKS_CACHE`` (default ``~/.cache/textbooks``): benchmarks never change, so repeated audits
    do not pay for them again."""
    import hashlib

    texts = [_normal_form(item.solution) if normalised else item.solution for item in items]
    digest = hashlib.sha256("\x00".join(texts).encode("utf-8", "surrogatepass")).hexdigest()[:24]
    cache = Path(os.environ.get("TEXTBOOKS_CACHE", Path.home() / ".cache" / "textbooks")) / "decontam"
    path = cache / f"{emb.model_id.replace('/', '_')}-{digest}.npy"
    if path.is_file():
        X = np.load(path)
        if X.shape[0] == len(texts):
            return X
    X = emb.transform(texts)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, X)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs recomputation
    return X


def _normal_form(solution: str) -> str:
    from decontam.normalise import normalise_code

    try:
        return normalise_code(solution)
    except (SyntaxError, ValueError, RecursionError):
        return solution


def load_benchmarks(
    benchmarks: Sequence[str] | dict[str, Any], mbpp_path: str | None = None, mbpp_split: str = "test"
) -> dict[str, list[BenchmarkItem]]:
    """``{"humaneval": [...], "mbpp": [...]}`` from names, or from ``{name: {load_benchmark kwargs}}``."""
    out = {}
    if isinstance(benchmarks, dict):
        for name, kwargs in benchmarks.items():
            kwargs = dict(kwargs or {})
            out[name] = load_benchmark(kwargs.pop("name", name), **kwargs)
        return out
    for name in benchmarks:
        if name == "mbpp":
            out[name] = load_benchmark("mbpp", path=mbpp_path, split=mbpp_split)
        else:
            out[name] = load_benchmark(name)
    return out


def compute_scores(
    input_dir: str | os.PathLike,
    benchmarks: dict[str, list[BenchmarkItem]],
    floor: float = 0.8,
    workers: int = 2,
    embeddings: bool = True,
    embedder=None,
    embed_k: int = 5,
    max_bytes: int = 2_000_000,
    min_nodes: int = 10,
    embedding_view: str = "document",
    persist_dir: str | os.PathLike | None = None,
) -> tuple[UnitTable, dict[str, BenchmarkScores], dict[str, Any]]:
    """The one scoring pass: parse, AST-compare and (optionally) embed. Returns the table, per-benchmark
    scores and timings."""
    timings: dict[str, Any] = {}
    t0 = time.perf_counter()
    table = parse_batches(iter_id_text(input_dir), workers=workers, max_bytes=max_bytes)
    timings["parse_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    scores = {
        name: score_ast(table, name, items, floor, workers=-1 if workers > 1 else 1, min_nodes=min_nodes)
        for name, items in benchmarks.items()
    }
    timings["ast_compare_s"] = round(time.perf_counter() - t0, 3)
    if embeddings and table.doc_ids:
        t0 = time.perf_counter()
        timings["embeddings"] = score_embeddings(
            scores, input_dir, table, embedder, embed_k, embedding_view, persist_dir, min_nodes
        )
        timings["embed_s"] = round(time.perf_counter() - t0, 3)
    return table, scores, timings


def write_score_tables(
    out: Path,
    table: UnitTable,
    scores: dict[str, BenchmarkScores],
    removed: dict[str, np.ndarray] | None = None,
) -> None:
    """Write ``scores.parquet``, ``units.parquet`` and ``items.parquet`` (real typed columns).

    ``removed`` (tau key -> document mask) adds one boolean ``removed_<tau>`` column per tau: the
    decision itself, so reports and users never re-derive it from the scores."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    names = np.asarray(table.unit_name, dtype=object)
    docs: dict[str, Any] = {
        "id": pa.array(table.doc_ids, pa.string()),
        "n_units": pa.array(table.doc_units, pa.int32()),
        "parse_error": pa.array(table.doc_error, pa.string()),
    }
    units: dict[str, Any] = {
        "id": pa.array([table.doc_ids[d] for d in table.unit_doc], pa.string()),
        "unit": pa.array(table.unit_name, pa.string()),
        "kind": pa.array(table.unit_kind, pa.string()),
        "lineno": pa.array(table.unit_lineno, pa.int32()),
        "end_lineno": pa.array(table.unit_end, pa.int32()),
        "n_nodes": pa.array([len(s) for s in table.unit_seq], pa.int32()),
    }
    for key, mask in (removed or {}).items():
        docs[f"removed_{key}"] = pa.array(mask, pa.bool_())
    item_rows: dict[str, list] = {k: [] for k in ("benchmark", "item_id", "ast_max", "ast_doc", "ast_unit")}
    item_rows.update({"emb_min": [], "emb_doc": []})
    for name, s in scores.items():
        ids = np.asarray([it.id for it in s.items] + [None], dtype=object)
        docs[f"ast_max_{name}"] = pa.array(s.doc_score, pa.float32())
        docs[f"ast_item_{name}"] = pa.array(ids[s.doc_item].tolist(), pa.string())
        docs[f"ast_unit_{name}"] = pa.array(np.append(names, None)[s.doc_unit].tolist(), pa.string())
        units[f"ast_max_{name}"] = pa.array(s.unit_score, pa.float32())
        units[f"ast_item_{name}"] = pa.array(ids[s.unit_item].tolist(), pa.string())
        if s.beh_doc_hit is not None:  # a unit passed one of the benchmark's items' tests
            docs[f"beh_hit_{name}"] = pa.array(s.beh_doc_hit, pa.bool_())
        if s.emb_doc_dist is not None:
            docs[f"emb_min_{name}"] = pa.array(s.emb_doc_dist, pa.float32())
            docs[f"emb_item_{name}"] = pa.array(ids[s.emb_doc_item].tolist(), pa.string())
        unit_doc = np.asarray(table.unit_doc + [-1], dtype=np.int64)
        for j, item in enumerate(s.items):
            unit = int(s.item_unit[j])
            item_rows["benchmark"].append(name)
            item_rows["item_id"].append(item.id)
            item_rows["ast_max"].append(float(s.item_score[j]))
            item_rows["ast_doc"].append(table.doc_ids[unit_doc[unit]] if unit >= 0 else None)
            item_rows["ast_unit"].append(table.unit_name[unit] if unit >= 0 else None)
            if s.emb_item_dist is not None and s.emb_item_dist.shape[1]:
                item_rows["emb_min"].append(float(s.emb_item_dist[j, 0]))
                item_rows["emb_doc"].append(table.doc_ids[int(s.emb_item_doc[j, 0])])
            else:
                item_rows["emb_min"].append(None)
                item_rows["emb_doc"].append(None)
    pq.write_table(pa.table(docs), out / "scores.parquet", compression="zstd")
    pq.write_table(pa.table(units), out / "units.parquet", compression="zstd")
    item_schema = pa.schema(
        [
            ("benchmark", pa.string()),
            ("item_id", pa.string()),
            ("ast_max", pa.float32()),
            ("ast_doc", pa.string()),
            ("ast_unit", pa.string()),
            ("emb_min", pa.float32()),
            ("emb_doc", pa.string()),
        ]
    )
    pq.write_table(
        pa.Table.from_pydict(item_rows, schema=item_schema), out / "items.parquet", compression="zstd"
    )


# ---------------------------------------------------------------------------------------------------
# decisions
# ---------------------------------------------------------------------------------------------------
def check_behaviour_options(options: dict[str, Any] | None) -> None:
    """Raise, naming it, on an option the behavioural measure does not know (before any work).

    Example:
        >>> check_behaviour_options({"flor": 0.5})
        Traceback (most recent call last):
        ...
        ValueError: behaviour: unknown option(s) ['flor']; known: ['batch_size', 'floor', 'max_batch_bytes', 'max_procs', 'memory_mb', 'timeout_s', 'workers']
    """
    unknown = sorted(set(options or {}) - BEHAVIOUR_OPTIONS)
    if unknown:
        raise ValueError(f"behaviour: unknown option(s) {unknown}; known: {sorted(BEHAVIOUR_OPTIONS)}")


def parse_rule(rule: str) -> list[list[str]]:
    """A rule as OR-of-AND terms over the measures ``ast``, ``embedding``, ``llm`` and ``behaviour``.

    ``either`` means ``ast|embedding`` and ``both`` ``ast&embedding``; ``&`` binds tighter than ``|``.

    Example:
        >>> parse_rule("either|llm"), parse_rule("ast&llm|embedding"), parse_rule("ast|behaviour")
        ([['ast'], ['embedding'], ['llm']], [['ast', 'llm'], ['embedding']], [['ast'], ['behaviour']])
    """
    terms: list[list[str]] = []
    for term in str(rule).replace(" ", "").split("|"):
        names = term.split("&")
        if len(names) == 1 and names[0] in _ALIASES:
            terms += _ALIASES[names[0]]
            continue
        if not all(n in MEASURES for n in names):
            raise ValueError(
                f"rule must combine {MEASURES} (or {tuple(_ALIASES)}) with | and &, not {rule!r}"
            )
        terms.append(names)
    return terms


def rule_measures(rule: str) -> list[str]:
    """The measures a rule uses, in :data:`MEASURES` order."""
    used = {n for term in parse_rule(rule) for n in term}
    return [m for m in MEASURES if m in used]


def _combine(hits: dict[str, np.ndarray | None], rule: str) -> np.ndarray:
    out = None
    for term in parse_rule(rule):
        mask = None
        for name in term:
            if hits.get(name) is None:
                raise ValueError(f"rule={rule!r} needs the {name} measure ({_NEEDS[name]})")
            mask = hits[name] if mask is None else mask & hits[name]
        out = mask if out is None else out | mask
    return out


def _doc_hits(s: BenchmarkScores, tau: float, threshold: float) -> dict[str, np.ndarray | None]:
    return {
        "ast": s.doc_score >= tau,
        "embedding": s.emb_doc_dist <= threshold if s.emb_doc_dist is not None else None,
        "llm": s.llm_doc_hit,
        "behaviour": s.beh_doc_hit,
    }


def contaminated_docs(
    scores: dict[str, BenchmarkScores], tau: float, rule: str, threshold: float, n_docs: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(removed mask, {measure: hit mask}) over documents, across all benchmarks."""
    removed = np.zeros(n_docs, dtype=bool)
    any_hit = {m: np.zeros(n_docs, dtype=bool) for m in MEASURES}
    for s in scores.values():
        hits = _doc_hits(s, tau, threshold)
        removed |= _combine(hits, rule)
        for name, mask in hits.items():
            if mask is not None:
                any_hit[name] |= mask
    return removed, any_hit


def similar_items(s: BenchmarkScores, tau: float, rule: str, threshold: float) -> np.ndarray:
    """Mask over ``s.items``: items with a training match under ``rule`` at ``tau``."""
    emb_hit = None
    if s.emb_item_dist is not None:
        emb_hit = (
            s.emb_item_dist[:, 0] <= threshold if s.emb_item_dist.shape[1] else np.zeros(len(s.items), bool)
        )
    hits = {"ast": s.item_score >= tau, "embedding": emb_hit, "llm": s.llm_item_hit, "behaviour": s.beh_item_hit}
    return _combine(hits, rule)


def build_split(
    scores: dict[str, BenchmarkScores], taus: Sequence[float], rule: str, threshold: float
) -> dict[str, Any]:
    """The ``split.json`` object (format pinned in INTERFACES.md)."""
    with_emb = any(s.emb_doc_dist is not None for s in scores.values())
    split: dict[str, Any] = {
        "version": SPLIT_VERSION,
        "rule": rule,
        "embedding_threshold": threshold,
        # the measures actually computed (rule "either" without embeddings is AST-only)
        "measures": (["ast", "embedding"] if with_emb else ["ast"])
        + (["llm"] if any(s.llm_doc_hit is not None for s in scores.values()) else [])
        + (["behaviour"] if any(s.beh_doc_hit is not None for s in scores.values()) else []),
        "benchmarks": {},
    }
    for name, s in scores.items():
        entry = {"checksum": s.items[0].checksum if s.items else "", "n_items": len(s.items), "taus": {}}
        for tau in taus:
            mask = similar_items(s, tau, rule, threshold)
            entry["taus"][tau_key(tau)] = {
                "similar": [it.id for it, m in zip(s.items, mask, strict=True) if m],
                "non_similar": [it.id for it, m in zip(s.items, mask, strict=True) if not m],
            }
        split["benchmarks"][name] = entry
    return split


# ---------------------------------------------------------------------------------------------------
# writing pruned shards
# ---------------------------------------------------------------------------------------------------
def _doc_metadata(scores: dict[str, BenchmarkScores], row: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"ast_max": {}, "ast_item": {}}
    for name, s in scores.items():
        meta["ast_max"][name] = round(float(s.doc_score[row]), 4)
        item = int(s.doc_item[row])
        meta["ast_item"][name] = s.items[item].id if item >= 0 else None
        if s.beh_doc_hit is not None:
            meta.setdefault("behaviour", {})[name] = bool(s.beh_doc_hit[row])
        if s.emb_doc_dist is not None:
            meta.setdefault("emb_min", {})[name] = round(float(s.emb_doc_dist[row]), 4)
            meta.setdefault("emb_item", {})[name] = s.items[int(s.emb_doc_item[row])].id
    return meta


def write_pruned(
    input_dir: str | os.PathLike,
    out: Path,
    table: UnitTable,
    scores: dict[str, BenchmarkScores],
    taus: Sequence[float],
    rule: str,
    threshold: float,
    recipe: dict | None = None,
) -> dict[str, dict[str, Any]]:
    """Write ``out/tau_X/`` for every tau in one read of the input; returns counts per tau."""
    from datatrove.data import Document

    from curate.schema import row_to_metadata
    from curate.shards import ExclusionWriter, ShardWriter

    row_of = {doc_id: r for r, doc_id in enumerate(table.doc_ids)}
    decisions = {}
    for tau in taus:
        decisions[tau_key(tau)] = contaminated_docs(scores, tau, rule, threshold, len(table.doc_ids))
    used = rule_measures(rule)
    writers = {}
    for key in decisions:
        tau_dir = out / f"tau_{key}"
        writers[key] = (
            ShardWriter(str(tau_dir / "data")),
            ExclusionWriter(str(tau_dir / "excluded" / "decontam"), "decontam"),
        )
    counts = {key: {"kept_docs": 0, "removed_docs": 0, "reasons": {}} for key in decisions}
    t0 = time.perf_counter()
    dataset = shard_dataset(input_dir)
    for batch in dataset.to_batches(batch_size=1024) if dataset is not None else ():
        for row in batch.to_pylist():
            r = row_of.get(row["id"])
            base_meta = row_to_metadata(row)
            decontam_meta = _doc_metadata(scores, r) if r is not None else {}
            for key, (removed, hits) in decisions.items():
                meta = dict(base_meta, decontam=decontam_meta)
                doc = Document(text=row["text"] or "", id=row["id"], metadata=meta)
                keep_writer, drop_writer = writers[key]
                if r is not None and removed[r]:
                    # name the measures the rule uses that flagged this document
                    which = "+".join(m for m in used if hits[m][r])
                    reason = f"contaminated_{which}_{key}"
                    doc.metadata["filter_reason"] = reason
                    drop_writer.write(doc)
                    counts[key]["removed_docs"] += 1
                    counts[key]["reasons"][reason] = counts[key]["reasons"].get(reason, 0) + 1
                else:
                    keep_writer.write(doc)
                    counts[key]["kept_docs"] += 1
    for keep_writer, drop_writer in writers.values():
        keep_writer.close()
        drop_writer.close()
    for key in decisions:
        tau_dir = out / f"tau_{key}"
        decision = {"tau": float(key), "rule": rule, "embedding_threshold": threshold, **counts[key]}
        write_tau_manifest(tau_dir, input_dir, t0, decision, recipe)
    return counts


# ---------------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------------
def write_tau_manifest(tau_dir: Path, input_dir, t0: float, decision: dict[str, Any], recipe=None) -> None:
    """The manifest of one tau's pruned shard set (``tau_dir``), its decision under ``decontam``;
    ``t0`` is when pruning started (``time.perf_counter()``). Used by both the single-process audit and
    the prune stages."""
    from curate.manifest import write_manifest

    (tau_dir / "data").mkdir(parents=True, exist_ok=True)
    write_manifest(
        tau_dir, stage="decontam", recipe=recipe, wall_time_s=round(time.perf_counter() - t0, 3),
        inputs=[str(input_dir)], extra={"decontam": decision},
    )  # fmt: skip


def prune_shards(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    benchmarks: Sequence[str] | dict[str, Any] = ("humaneval", "mbpp"),
    mbpp_path: str | None = None,
    mbpp_split: str = "test",
    taus: Sequence[float] = DEFAULT_TAUS,
    rule: str = "either",
    embedding_threshold: float | None = None,
    embeddings: bool = True,
    embedder: Any = None,
    embed_k: int = 5,
    floor: float | None = None,
    workers: int = 2,
    write_shards: bool = True,
    max_bytes: int = 2_000_000,
    min_nodes: int = 10,
    llm: Any = None,
    llm_k: int = 3,
    embedding_view: str = "document",
    behaviour: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score ``input_dir`` once and write score tables, pruned shard sets, ``split.json`` and ``decontam.json``.

    Args:
        input_dir: a shard directory (``data/*.parquet``) or a folder of shard-schema Parquet files.
        output_dir: where everything goes (see the module docstring for the layout).
        benchmarks: names (``humaneval``, ``mbpp``) or ``{name: load_benchmark kwargs}``.
        mbpp_path: MBPP jsonl (else ``$TEXTBOOKS_MBPP_PATH``); ``mbpp_split`` its split.
        taus: AST match-rate thresholds.
        rule: which measures remove a document: ``ast``, ``embedding``, ``llm``, ``either``
            (``ast|embedding``), ``both`` (``ast&embedding``) or any ``|``/``&`` combination such as
            ``either|llm``, ``ast&llm`` or ``ast|behaviour``.
        embedding_threshold: L2 distance (normalised vectors) at or under which a pair counts as similar
            (default per view: :data:`VIEW_THRESHOLDS`, 0.3 for ``document``, 0.15 for ``normalised_units``).
        embeddings: compute the embedding measure (needs the embedder; stored embeddings are reused).
        floor: AST rates below this are not computed exactly (default: ``min(taus) - 0.1``, or
            :data:`LLM_FLOOR` when the rule uses ``llm``, so the judge sees rephrased candidates).
        workers: parsing processes; the comparison uses all cores when > 1.
        write_shards: also write the pruned ``tau_X/`` shard sets (off for score-only runs, which also
            remove earlier ``tau_*/`` sets of ``output_dir``: they would no longer match ``split.json``).
        min_nodes: benchmark solutions/functions with fewer AST nodes are not matched (generic one-liners).
        max_bytes: documents larger than this are recorded as ``too_large`` and not parsed.
        llm: the :class:`curate.llm.LLMConfig` (or its keys) of the LLM judge, for rules using ``llm``;
            verdicts go to ``llm_verdicts.jsonl`` (answers cached by the client).
        llm_k: AST and embedding candidates judged per benchmark item.
        embedding_view: ``document`` (raw text of each document) or ``normalised_units`` (the normal
            form of each function unit; rephrase-robust). Vectors are kept under ``output_dir/vectors``
            and reused by the next audit.
        behaviour: options of the behavioural measure (:mod:`decontam.behaviour`; run when the rule
            names ``behaviour``): ``floor``, ``batch_size``, ``timeout_s``, ``memory_mb``, ``workers``.
            Verdicts are cached in ``output_dir/behaviour_verdicts.jsonl``, hits with their evidence go
            to ``behaviour_hits.jsonl``.

    Returns the summary also written to ``decontam.json``.
    """
    used = rule_measures(rule)  # raises on an unknown rule, before any work
    check_behaviour_options(behaviour)
    if embedding_view not in EMBEDDING_VIEWS:
        raise ValueError(f"embedding_view must be one of {EMBEDDING_VIEWS}, not {embedding_view!r}")
    if embedding_threshold is None:
        embedding_threshold = VIEW_THRESHOLDS[embedding_view]
    if not embeddings and "embedding" in used:
        raise ValueError(f"rule={rule!r} needs embeddings=True")
    taus = sorted({float(t) for t in taus}, reverse=True)
    if floor is None:
        # the LLM judge sees rephrased candidates far under any tau: shortlist from a lower floor
        floor = min(LLM_FLOOR, min(taus) - 0.1) if "llm" in used else max(0.0, min(taus) - 0.1)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    bench_items = load_benchmarks(benchmarks, mbpp_path, mbpp_split)
    table, scores, timings = compute_scores(
        input_dir,
        bench_items,
        floor,
        workers,
        embeddings,
        embedder,
        embed_k,
        max_bytes,
        min_nodes,
        embedding_view,
        out / VECTORS_DIR,
    )
    verdicts = None
    if "llm" in used:
        from decontam.llm_judge import judge_scores

        t0 = time.perf_counter()
        verdicts = judge_scores(table, scores, input_dir, llm, llm_k)
        with open(out / LLM_VERDICTS, "w") as f:
            f.writelines(json.dumps(v, sort_keys=True) + "\n" for v in verdicts)
        timings["llm_s"] = round(time.perf_counter() - t0, 3)
    behaviour_stats = None
    if "behaviour" in used:
        t0 = time.perf_counter()
        behaviour_stats = score_behaviour_measure(table, scores, input_dir, out, behaviour)
        timings["behaviour_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    removed = {
        tau_key(t): contaminated_docs(scores, t, rule, embedding_threshold, len(table.doc_ids))[0]
        for t in taus
    }
    write_score_tables(out, table, scores, removed)
    timings["write_scores_s"] = round(time.perf_counter() - t0, 3)
    counts = {}
    if write_shards:
        t0 = time.perf_counter()
        counts = write_pruned(input_dir, out, table, scores, taus, rule, embedding_threshold)
        timings["write_shards_s"] = round(time.perf_counter() - t0, 3)
    stale = remove_stale_tau_dirs(out, taus if write_shards else ())
    split = build_split(scores, taus, rule, embedding_threshold)
    (out / "split.json").write_text(json.dumps(split, indent=1))
    summary = _summary(input_dir, out, table, scores, split, counts, taus, rule, embedding_threshold, floor)
    summary["mbpp_path"] = (
        str(Path(mbpp_path).resolve()) if mbpp_path else os.environ.get("TEXTBOOKS_MBPP_PATH")
    )
    summary["mbpp_split"] = mbpp_split
    summary["stale_tau_dirs_removed"] = stale
    if verdicts is not None:
        from decontam.llm_judge import judge_answer_counts

        summary["llm_answers"] = judge_answer_counts(verdicts)
    if behaviour_stats is not None:
        summary["behaviour"] = behaviour_stats
    summary["timings"] = {**timings, "total_s": round(time.perf_counter() - started, 3)}
    (out / "decontam.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    return summary


def score_behaviour_measure(
    table: UnitTable,
    scores: dict[str, BenchmarkScores],
    input_dir: str | os.PathLike,
    out: Path,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fill ``beh_doc_hit``/``beh_item_hit`` of every benchmark (:mod:`decontam.behaviour`), write the
    hits with their evidence to ``out/behaviour_hits.jsonl``; returns the cost (executions, pairs,
    cached verdicts, wall time). Verdicts are cached in ``out/behaviour_verdicts.jsonl``."""
    from decontam.behaviour import (
        BEHAVIOUR_HITS,
        BEHAVIOUR_VERDICTS,
        DEFAULT_FLOOR,
        BehaviourChecker,
        corpus_candidates,
        score_behaviour,
    )

    opts = dict(options or {})
    floor = float(opts.pop("floor", DEFAULT_FLOOR))
    texts_by_id: dict[str, str] = {}
    for ids, texts in iter_id_text(input_dir):
        texts_by_id.update(zip(ids, texts, strict=True))
    cands = corpus_candidates(table, texts_by_id)
    hits, shortlisted, skipped, weak, calibration = [], 0, {}, {}, 0
    with BehaviourChecker(out / BEHAVIOUR_VERDICTS, **opts) as checker:
        for name, s in scores.items():
            res = score_behaviour(table, texts_by_id, s.items, checker, floor, cands)
            s.beh_doc_hit, s.beh_item_hit = res.doc_hit, res.item_hit
            hits += res.hits
            shortlisted += res.shortlisted
            skipped[name] = res.skipped_items
            weak[name] = res.weak_items
            calibration += res.calibration_executions
    with open(out / BEHAVIOUR_HITS, "w") as f:
        f.writelines(json.dumps(h, sort_keys=True) + "\n" for h in hits)
    st = checker.stats
    return {"floor": floor, "candidates": len(cands.candidates), "shortlisted": shortlisted,
            "executions": st.executions, "batch_runs": st.batch_runs, "single_runs": st.single_runs,
            "cached": st.cached, "statuses": st.statuses, "hits": len(hits), "skipped_items": skipped, "weak_items": weak,
            "calibration_executions": calibration,  # finding weak items: once per benchmark, then cached
            "executions_per_1000_docs": round(1000 * (st.executions - calibration) / max(len(table.doc_ids), 1), 2)}  # fmt: skip


def remove_stale_tau_dirs(out: Path, taus: Sequence[float]) -> list[str]:
    """Delete ``out/tau_X/`` directories a previous run left for taus not in ``taus``; returns their names.

    A rerun with other taus must not leave pruned shard sets that disagree with the new scores.

    Example:
        >>> import tempfile; root = Path(tempfile.mkdtemp()); (root / "tau_0.7").mkdir()
        >>> remove_stale_tau_dirs(root, [0.9]), (root / "tau_0.7").exists()
        (['tau_0.7'], False)
    """
    import shutil

    wanted = {f"tau_{tau_key(t)}" for t in taus}
    stale = sorted(p.name for p in out.glob("tau_*") if p.is_dir() and p.name not in wanted)
    for name in stale:
        shutil.rmtree(out / name)
    return stale


def _summary(input_dir, out, table, scores, split, counts, taus, rule, threshold, floor) -> dict[str, Any]:
    errors: dict[str, int] = {}
    for err in table.doc_error:
        if err:
            kind = err.split(":")[0]
            errors[kind] = errors.get(kind, 0) + 1
    summary: dict[str, Any] = {
        "input_dir": str(input_dir),
        "output_dir": str(out),
        "rule": rule,
        "embedding_threshold": threshold,
        "ast_floor": floor,
        "docs": len(table.doc_ids),
        "units": len(table.unit_seq),
        "parse_failures": errors,
        "benchmarks": {},
        "taus": {},
    }
    for name, s in scores.items():
        entry = {
            "checksum": s.items[0].checksum if s.items else "",
            "n_items": len(s.items),
            "unparseable_items": s.unparseable_items,
            "too_small_items": s.too_small_items,
            "pairs_compared": int(s.pairs_compared),
            "taus": {},
        }
        for tau in taus:
            key = tau_key(tau)
            sim = split["benchmarks"][name]["taus"][key]
            removed, _ = contaminated_docs({name: s}, tau, rule, threshold, len(table.doc_ids))
            entry["taus"][key] = {
                "similar": len(sim["similar"]),
                "non_similar": len(sim["non_similar"]),
                "removed_docs": int(removed.sum()),
                "removed_units": int((s.unit_score >= tau).sum()),
            }
        summary["benchmarks"][name] = entry
    for tau in taus:
        key = tau_key(tau)
        removed, _ = contaminated_docs(scores, tau, rule, threshold, len(table.doc_ids))
        summary["taus"][key] = {"removed_docs": int(removed.sum()), **counts.get(key, {})}
    return summary
