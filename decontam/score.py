"""The decontamination audit's map stage: score every document against the benchmarks, streaming.

A task reads its share of the input shard files (:class:`AuditShardReader`), and
:class:`DecontamScorer` indexes the benchmarks once (lazily, on the first document), scores documents
in small batches and writes one *score shard* per input file::

    OUT/score_shards/<file key>/docs.parquet     one row per document: id, row, n_units, parse_error,
                                                 ast_max_<b>, ast_item_<b>, ast_unit_<b>,
                                                 [emb_min_<b>, emb_item_<b>,] [beh_hit_<b>,] ngram_hits
                                units.parquet    one row per unit: id, unit, kind, lineno, end_lineno,
                                                 n_nodes, ast_max_<b>, ast_item_<b>
                                candidates.parquet  per benchmark item, the task's best units/documents
                                                 (what the reduce merges into items.parquet and the
                                                 LLM judge's shortlist)
                                ngram.jsonl      13-gram evidence spans
                                behaviour.jsonl  behavioural hits with their evidence (rule naming
                                                 ``behaviour``; verdicts cached in OUT/behaviour_cache/)
                                stats.json       pairs compared, items not indexed

Memory per task is the benchmark index plus one batch: it does not grow with the corpus. The reduce
(:mod:`decontam.reduce`) reads only these shards.

Measures are small parts with one interface (:class:`Measure`: ``fit`` the benchmarks once, ``score``
one :class:`DocBatch`), so another measure plugs in by adding a class; documents are split into units
by one function, :func:`split_units_of`, the single place to swap the parser.

Example:
    >>> from decontam.eval_sets import load_benchmark
    >>> ast_measure = AstMeasure(floor=0.8).fit({"humaneval": load_benchmark("humaneval")})
    >>> batch = DocBatch.parse(["a"], [load_benchmark("humaneval")[0].solution], [0])
    >>> cols = ast_measure.score(batch).docs
    >>> cols["ast_max_humaneval"].to_pylist(), cols["ast_item_humaneval"].to_pylist()
    ([1.0], ['HumanEval/0'])
"""

from __future__ import annotations

import json
import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from decontam.ast_match import ParsedDocument, parse_document
from decontam.eval_sets import BenchmarkItem
from decontam.prune import UnitTable, best_unit_per_doc

SCORE_SHARDS = "score_shards"
SOURCE_KEY = "decontam_source"  # metadata the reader sets: (file key, row in file); never written out
CANDIDATE_COLUMNS = (
    "benchmark", "item", "measure", "score", "n_nodes", "row", "unit_pos", "doc_id", "unit", "lineno",
    "end_lineno",
)  # fmt: skip


def split_units_of(text: str | None, doc_id: str = "", max_bytes: int = 2_000_000) -> ParsedDocument:
    """The one function that splits a training document into comparable units (the audit's parser).

    Example:
        >>> [u.name for u in split_units_of("def f():\\n    return 1\\n", "d").units]
        ['f']
    """
    return parse_document(text, doc_id, max_bytes=max_bytes)


def file_key(relative_path: str) -> str:
    """A score shard's folder name for an input file path relative to the shard directory.

    Example:
        >>> file_key("sub/00001.parquet")
        'sub%2F00001.parquet'
    """
    return relative_path.replace("%", "%25").replace("/", "%2F")


def list_input_files(shard_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """``(path, key)`` of every Parquet file of a shard directory, in the order the audit reads them."""
    from decontam.prune import data_folder

    folder = Path(data_folder(shard_dir))
    if not folder.is_dir():
        raise FileNotFoundError(f"no shard directory at {shard_dir}")
    files = sorted(str(p) for p in folder.rglob("*.parquet") if p.is_file())
    return [(f, file_key(os.path.relpath(f, folder))) for f in files]


class AuditShardReader(PipelineStep):
    """Read a shard directory's files by rank, every row kept (empty texts too, unlike datatrove's
    readers: the audit accounts for every document), each tagged with its file and row.

    ``full_rows=False`` reads only ``id`` and ``text`` (scoring); ``True`` restores the row's metadata
    (pruning writes rows back).

    Example:
        >>> reader = AuditShardReader("out/curated")  # doctest: +SKIP
        >>> next(reader.run(rank=0, world_size=2)).metadata["decontam_source"]  # doctest: +SKIP
        ['00000.parquet', 0]
    """

    name = "📖 Audit shards"
    type = "📖 - READER"

    def __init__(self, shard_dir: str, full_rows: bool = False, batch_rows: int = 1024):
        super().__init__()
        self.shard_dir, self.full_rows, self.batch_rows = str(shard_dir), full_rows, batch_rows

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import pyarrow.parquet as pq

        from curate.schema import row_to_metadata

        for path, key in list_input_files(self.shard_dir)[rank::world_size]:
            row = 0
            columns = None if self.full_rows else ["id", "text"]
            for batch in pq.ParquetFile(path).iter_batches(batch_size=self.batch_rows, columns=columns):
                for record in batch.to_pylist():
                    meta = row_to_metadata(record) if self.full_rows else {}
                    meta[SOURCE_KEY] = [key, row]
                    self.stat_update("documents")
                    yield Document(text=record.get("text") or "", id=record["id"], metadata=meta)
                    row += 1


# ---------------------------------------------------------------------------------------------------
# a batch of documents and the measures
# ---------------------------------------------------------------------------------------------------
@dataclass
class DocBatch:
    """Documents of one input file, parsed once into units (a :class:`decontam.prune.UnitTable`)."""

    ids: list[str]
    texts: list[str]
    rows: list[int]
    table: UnitTable
    unit_pos: list[int] = field(default_factory=list)  # position of each unit inside its document

    @classmethod
    def parse(cls, ids: list[str], texts: list[str], rows: list[int], max_bytes: int = 2_000_000):
        table = UnitTable()
        unit_pos: list[int] = []
        for doc_id, text in zip(ids, texts, strict=True):
            parsed = split_units_of(text, doc_id, max_bytes)
            units = [(u.kind, u.name, u.lineno, u.end_lineno, u.sequence) for u in parsed.units]
            table.add(doc_id, parsed.error, units)
            unit_pos += range(len(units))
        return cls(ids, texts, rows, table, unit_pos)


@dataclass
class MeasureScores:
    """What a measure adds for one batch: document columns, unit columns (pyarrow arrays), per-item
    candidate rows (:data:`CANDIDATE_COLUMNS`) and evidence rows (13-gram spans)."""

    docs: dict[str, Any] = field(default_factory=dict)
    units: dict[str, Any] = field(default_factory=dict)
    candidates: list[tuple] = field(default_factory=list)
    evidence: list[dict] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    evidence_file: str = "ngram.jsonl"  # the score shard's file the evidence rows go to


class Measure(ABC):
    """One decontamination measure: ``fit`` indexes the benchmarks once per task, ``score`` scores one
    batch. Subclasses set ``name``."""

    name = ""

    @abstractmethod
    def fit(self, benchmarks: dict[str, list[BenchmarkItem]]) -> Measure:
        """Index the benchmarks (once per task); returns self."""

    @abstractmethod
    def score(self, batch: DocBatch) -> MeasureScores:
        """The measure's columns, candidates and evidence for one batch."""

    def close(self) -> None:  # noqa: B027 (optional hook: most measures hold nothing to release)
        """Release what ``fit`` opened (the task is done)."""


def _item_ids(items: list[BenchmarkItem], index: np.ndarray) -> list[str | None]:
    ids = np.asarray([it.id for it in items] + [None], dtype=object)
    return ids[np.asarray(index, dtype=np.int64)].tolist()


class AstMeasure(Measure):
    """Best AST match rate and item per unit and document, per benchmark (:class:`AstMatchIndex`).

    Candidates: each item's best unit of the batch (``ast``) and up to ``judge_k`` units whose best
    item it is (``ast_unit``, the LLM judge's shortlist)."""

    name = "ast"

    def __init__(self, floor: float = 0.8, min_nodes: int = 10, workers: int = 1, judge_k: int = 3):
        self.floor, self.min_nodes, self.workers, self.judge_k = floor, min_nodes, workers, judge_k

    def fit(self, benchmarks):
        from decontam.ast_match import AstMatchIndex

        self.benchmarks = benchmarks
        self.indexes = {
            name: AstMatchIndex(floor=self.floor, workers=self.workers, min_nodes=self.min_nodes).fit(
                [i.solution for i in items]
            )
            for name, items in benchmarks.items()
        }
        return self

    def items_not_indexed(self) -> dict[str, dict[str, list[str]]]:
        """Per benchmark, the ids of items the index could not parse or found too small."""
        return {
            name: {
                "unparseable": [self.benchmarks[name][i].id for i in index.unparseable_],
                "too_small": [self.benchmarks[name][i].id for i in index.too_small_],
            }
            for name, index in self.indexes.items()
        }

    def score(self, batch: DocBatch) -> MeasureScores:
        import pyarrow as pa

        t = batch.table
        out = MeasureScores(stats={"pairs_compared": {}, "items_not_indexed": self.items_not_indexed()})
        unit_doc = np.asarray(t.unit_doc, dtype=np.int64)
        names = np.asarray(t.unit_name + [None], dtype=object)
        for name, items in self.benchmarks.items():
            res = self.indexes[name].query(t.unit_seq)
            doc_score, doc_unit, doc_item = best_unit_per_doc(res, unit_doc, len(t.doc_ids))
            out.docs[f"ast_max_{name}"] = pa.array(doc_score, pa.float32())
            out.docs[f"ast_item_{name}"] = pa.array(_item_ids(items, doc_item), pa.string())
            out.docs[f"ast_unit_{name}"] = pa.array(names[doc_unit].tolist(), pa.string())
            out.units[f"ast_max_{name}"] = pa.array(res.query_score, pa.float32())
            out.units[f"ast_item_{name}"] = pa.array(_item_ids(items, res.query_item), pa.string())
            out.stats["pairs_compared"][name] = int(res.pairs_compared)
            for j in np.flatnonzero(res.item_query >= 0):
                out.candidates.append(
                    self._candidate(batch, name, j, "ast", res.item_score[j], res.item_query[j])
                )
            order = np.argsort(-res.query_score, kind="stable")
            taken: dict[int, int] = {}
            for u in order[res.query_score[order] > 0]:
                j = int(res.query_item[u])
                if taken.get(j, 0) < self.judge_k:
                    taken[j] = taken.get(j, 0) + 1
                    out.candidates.append(self._candidate(batch, name, j, "ast_unit", res.query_score[u], u))
        return out

    @staticmethod
    def _candidate(batch: DocBatch, name: str, item: int, measure: str, score, unit) -> tuple:
        t, unit = batch.table, int(unit)
        doc = t.unit_doc[unit]
        return (
            name, int(item), measure, float(score), len(t.unit_seq[unit]), batch.rows[doc],
            batch.unit_pos[unit], t.doc_ids[doc], t.unit_name[unit], t.unit_lineno[unit], t.unit_end[unit],
        )  # fmt: skip


class NgramMeasure(Measure):
    """13-gram evidence spans (:class:`decontam.ngram.NgramIndex`) and a hit count per document."""

    name = "ngram"

    def __init__(self, n: int = 13, allow_list: tuple[str, ...] = ()):
        self.n, self.allow_list = n, tuple(allow_list)

    def fit(self, benchmarks):
        from decontam.ngram import DEFAULT_ALLOW_LIST, NgramIndex

        items = [it for group in benchmarks.values() for it in group]
        self.index = NgramIndex(n=self.n, allow_list=DEFAULT_ALLOW_LIST + self.allow_list).fit(items)
        return self

    def score(self, batch: DocBatch) -> MeasureScores:
        import pyarrow as pa

        hits = [m.to_dict() for m in self.index.scan_texts(batch.texts, batch.ids)]
        per_doc: dict[str, int] = {}
        for h in hits:
            per_doc[h["doc_id"]] = per_doc.get(h["doc_id"], 0) + 1
        counts = [per_doc.get(i, 0) for i in batch.ids]
        return MeasureScores(docs={"ngram_hits": pa.array(counts, pa.int32())}, evidence=hits)


class EmbeddingMeasure(Measure):
    """Nearest benchmark item by embedding distance, per document (``view="document"``: the raw text)
    or per normalised function unit (``"normalised_units"``: a document is as near as its nearest unit).

    Vectors are looked up in the input's and the audit's stores and what is computed is kept in
    ``persist_dir`` (:func:`decontam.embedding.stored_vectors`). Candidates: each item's ``k`` nearest
    documents of the batch (``embedding``) or ``k * UNITS_PER_DOC_K`` nearest units (``embedding_unit``)."""

    name = "embedding"

    def __init__(self, embedder=None, view="document", k=5, min_nodes=10, persist_dir=None, reuse_dir=None):
        self.embedder, self.view, self.k, self.min_nodes = embedder, view, k, min_nodes
        self.persist_dir, self.reuse_dir = persist_dir, reuse_dir

    def fit(self, benchmarks):
        from curate.embed import _as_embedder
        from decontam.prune import benchmark_embeddings

        self.emb = _as_embedder(self.embedder)
        self.benchmarks = benchmarks
        normalised = self.view != "document"
        self.bench_X = {
            n: benchmark_embeddings(items, self.emb, normalised) for n, items in benchmarks.items()
        }
        return self

    def score(self, batch: DocBatch) -> MeasureScores:
        import pyarrow as pa

        from decontam.embedding import (
            UNITS_PER_DOC_K,
            embedding_neighbours,
            stored_vectors,
            unit_texts,
            units_to_docs,
        )
        from decontam.prune import _content_key

        t = batch.table
        if self.view == "document":
            reuse = [self.reuse_dir] if self.reuse_dir else []
            X, computed = stored_vectors(t.doc_ids, batch.texts, self.emb, self.persist_dir, reuse)
            rows_of = np.arange(len(t.doc_ids))
        else:
            picked, norm = unit_texts(t, dict(zip(batch.ids, batch.texts, strict=True)), self.min_nodes)
            X, computed = stored_vectors([_content_key(s) for s in norm], norm, self.emb, self.persist_dir)
            rows_of = np.asarray(picked, dtype=np.int64)
        out = MeasureScores(stats={"vectors": len(rows_of), "computed": computed})
        for name, items in self.benchmarks.items():
            k = self.k if self.view == "document" else self.k * UNITS_PER_DOC_K
            res = embedding_neighbours(X, self.bench_X[name], k=k) if len(rows_of) else None
            if res is None:
                doc_dist, doc_item = np.full(len(t.doc_ids), np.inf, np.float32), np.full(len(t.doc_ids), -1)
            elif self.view == "document":
                doc_dist, doc_item = res.doc_dist, res.doc_item
            else:
                unit_doc = np.asarray(t.unit_doc, dtype=np.int64)[rows_of]
                by_doc = units_to_docs(res, unit_doc, len(t.doc_ids), 1)
                doc_dist, doc_item = by_doc.doc_dist, by_doc.doc_item
            out.docs[f"emb_min_{name}"] = pa.array(doc_dist, pa.float32())
            out.docs[f"emb_item_{name}"] = pa.array(_item_ids(items, doc_item), pa.string())
            if res is not None:
                out.candidates += self._candidates(batch, name, res, rows_of)
        return out

    def _candidates(self, batch: DocBatch, name: str, res, rows_of: np.ndarray) -> list[tuple]:
        t, found = batch.table, []
        for j in range(len(res.item_doc)):
            for dist, r in zip(res.item_dist[j], res.item_doc[j], strict=True):
                if r < 0:
                    continue
                if self.view == "document":
                    doc, pos, unit, measure = int(rows_of[r]), -1, None, "embedding"
                else:
                    u = int(rows_of[r])
                    doc, pos, unit, measure = (
                        t.unit_doc[u],
                        batch.unit_pos[u],
                        t.unit_name[u],
                        "embedding_unit",
                    )
                found.append(
                    (name, j, measure, float(dist), 0, batch.rows[doc], pos, t.doc_ids[doc], unit, None, None)
                )
        return found


BEHAVIOUR_CACHE = "behaviour_cache"  # one verdict file per task process; every file is read at start
BEHAVIOUR_EVIDENCE = "behaviour.jsonl"


class BehaviourMeasure(Measure):
    """Behavioural hits (:mod:`decontam.behaviour`): a batch's function units that pass a benchmark
    item's own tests in the sandbox, per benchmark a document column ``beh_hit_<b>`` and the hits with
    their evidence (``behaviour.jsonl`` of the score shard).

    ``fit`` indexes the items and finds the weak ones once per task. Verdicts are cached under
    ``output_dir/behaviour_cache/``: a task appends to a file of its own (no shared lock) and reads every
    task's file at start, so a rerun executes nothing already decided.

    Example:
        >>> import tempfile
        >>> from decontam.eval_sets import BenchmarkItem
        >>> item = BenchmarkItem("mbpp", "mbpp/1", "", "def sum_sq(xs):\\n    return sum(x * x for x in xs)\\n",
        ...                      "assert sum_sq([1, 2]) == 5\\nassert sum_sq([3]) == 9")
        >>> m = BehaviourMeasure(tempfile.mkdtemp(), {"floor": 0.0}).fit({"mbpp": [item]})
        >>> text = "def squares(v):\\n    t = 0\\n    for y in v:\\n        t += y ** 2\\n    return t\\n"
        >>> scored = m.score(DocBatch.parse(["d"], [text], [0]))
        >>> m.close()
        >>> scored.docs["beh_hit_mbpp"].to_pylist(), [h["unit"] for h in scored.evidence]
        ([True], ['squares'])
    """

    name = "behaviour"

    def __init__(self, output_dir: str, options: dict[str, Any] | None = None):
        self.output_dir, self.options = str(output_dir), dict(options or {})

    def fit(self, benchmarks):
        import socket

        from decontam.behaviour import DEFAULT_FLOOR, BehaviourChecker, prepare_benchmark

        opts = dict(self.options)
        self.floor = float(opts.pop("floor", DEFAULT_FLOOR))
        cache = Path(self.output_dir) / BEHAVIOUR_CACHE
        own = cache / f"{socket.gethostname()}-{os.getpid()}.jsonl"
        self.checker = BehaviourChecker(own, read_also=sorted(cache.glob("*.jsonl")), **opts)
        self.prepared = {name: prepare_benchmark(items, self.checker, self.floor) for name, items in benchmarks.items()}
        self._reported, self._cached = 0, 0  # already counted in a shard's stats (calibration: the first)
        return self

    def score(self, batch: DocBatch) -> MeasureScores:
        import pyarrow as pa

        from decontam.behaviour import behaviour_hits, corpus_candidates

        cands = corpus_candidates(batch.table, dict(zip(batch.ids, batch.texts, strict=True)))
        out = MeasureScores(evidence_file=BEHAVIOUR_EVIDENCE)
        shortlisted = 0
        for name, bench in self.prepared.items():
            res = behaviour_hits(batch.table, cands, bench, self.checker)
            out.docs[f"beh_hit_{name}"] = pa.array(res.doc_hit, pa.bool_())
            shortlisted += res.shortlisted
            for hit, unit in zip(res.hits, res.hit_units, strict=True):
                doc = batch.table.unit_doc[unit]
                out.evidence.append({**hit, "row": batch.rows[doc], "unit_pos": batch.unit_pos[unit]})
        st = self.checker.stats
        out.stats["behaviour"] = {
            "floor": self.floor, "candidates": len(cands.candidates), "shortlisted": shortlisted,
            "executions": st.executions - self._reported, "cached": st.cached - self._cached,
            "calibration_executions": 0 if self._reported else sum(
                b.calibration_executions for b in self.prepared.values()),
            "hits": len(out.evidence),
            "weak_items": {n: b.weak_items for n, b in self.prepared.items()},
            "skipped_items": {n: b.index.skipped_ for n, b in self.prepared.items()},
        }  # fmt: skip
        self._reported, self._cached = st.executions, st.cached
        return out

    def close(self) -> None:
        self.checker.close()


# ---------------------------------------------------------------------------------------------------
# the step
# ---------------------------------------------------------------------------------------------------
class DecontamScorer(PipelineStep):
    """Score streamed documents against the benchmarks; one score shard per input file.

    The benchmark index is built once per task, on the first document; documents are scored in
    batches of ``batch_docs`` (one input file at a time), annotated with their scores
    (``metadata["decontam"]``) and passed on. A shard is written to a temporary folder and renamed
    when complete, so a killed task leaves no half shard.

    Args:
        output_dir: the audit's output directory (shards go to ``output_dir/score_shards/``).
        benchmarks: ``{name: load_benchmark kwargs}`` (see :func:`decontam.prune.load_benchmarks`).
        floor, min_nodes, max_bytes: AST measure settings (see :func:`decontam.prune.prune_shards`).
        embeddings, embedder, embedding_view, embed_k: the embedding measure (off when False).
        ngram: the 13-gram measure. judge_k: AST candidates kept per item for the LLM judge.
        input_dir: the input shard directory (its stored embeddings are reused).
        behaviour: options of the behavioural measure (:class:`BehaviourMeasure`); None: off.

    Example:
        >>> from datatrove.executor import LocalPipelineExecutor  # doctest: +SKIP
        >>> LocalPipelineExecutor([AuditShardReader("in"), DecontamScorer("out", {"humaneval": {}})],
        ...                       tasks=4).run()  # doctest: +SKIP
    """

    name = "🧪 Decontam scores"
    type = "🔢 - STATS"

    def __init__(
        self,
        output_dir: str,
        benchmarks: dict[str, dict],
        floor: float = 0.8,
        min_nodes: int = 10,
        max_bytes: int = 2_000_000,
        embeddings: bool = False,
        embedder: Any = None,
        embedding_view: str = "document",
        embed_k: int = 5,
        ngram: bool = True,
        judge_k: int = 3,
        input_dir: str | None = None,
        batch_docs: int = 256,
        behaviour: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.output_dir, self.benchmarks = str(output_dir), benchmarks
        self.floor, self.min_nodes, self.max_bytes = floor, min_nodes, max_bytes
        self.embeddings, self.embedder, self.embedding_view, self.embed_k = (
            embeddings, embedder, embedding_view, embed_k,
        )  # fmt: skip
        self.ngram, self.judge_k, self.input_dir, self.batch_docs = ngram, judge_k, input_dir, batch_docs
        self.behaviour = None if behaviour is None else dict(behaviour)
        self._measures: list[Measure] | None = None

    def measures(self) -> list[Measure]:
        """The measures, fitted on first use (once per task)."""
        if self._measures is None:
            from decontam.embedding import VECTORS_DIR
            from decontam.prune import load_benchmarks

            items = load_benchmarks(self.benchmarks)
            measures: list[Measure] = [AstMeasure(self.floor, self.min_nodes, judge_k=self.judge_k)]
            if self.ngram:
                measures.append(NgramMeasure())
            if self.embeddings:
                persist = os.path.join(self.output_dir, VECTORS_DIR)
                measures.append(
                    EmbeddingMeasure(
                        self.embedder,
                        self.embedding_view,
                        self.embed_k,
                        self.min_nodes,
                        persist,
                        self.input_dir,
                    )
                )
            if self.behaviour is not None:
                measures.append(BehaviourMeasure(self.output_dir, self.behaviour))
            self._measures = [m.fit(items) for m in measures]
        return self._measures

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        shard: _ShardBuffer | None = None
        pending: list[Document] = []
        for doc in data:
            key = doc.metadata.get(SOURCE_KEY, [f"rank-{rank:05d}", None])[0]
            if shard is not None and key != shard.key:
                yield from self._flush(shard, pending)
                pending = []
                shard.close()
                shard = None
            if shard is None:
                shard = _ShardBuffer(Path(self.output_dir) / SCORE_SHARDS, key)
            pending.append(doc)
            if len(pending) >= self.batch_docs:
                yield from self._flush(shard, pending)
                pending = []
        if shard is not None:
            yield from self._flush(shard, pending)
            shard.close()
        for measure in self._measures or []:
            measure.close()
        self._measures = None
        import resource

        # this task's peak memory (the process's high-water mark, KiB on Linux), for scaling checks
        self.stat_update("peak_rss_mb", value=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)

    def _flush(self, shard: _ShardBuffer, docs: list[Document]) -> DocumentsPipeline:
        if not docs:
            return
        with self.track_time("batch"):
            rows = [d.metadata.get(SOURCE_KEY, [None, shard.rows_seen + i])[1] for i, d in enumerate(docs)]
            batch = DocBatch.parse([d.id for d in docs], [d.text for d in docs], rows, self.max_bytes)
            scored = [m.score(batch) for m in self.measures()]
            shard.add(batch, scored)
        for name in [c for s in scored for c in s.docs]:  # the typed scores ride along with each document
            values = [s.docs[name] for s in scored if name in s.docs][0].to_pylist()
            for doc, value in zip(docs, values, strict=True):
                doc.metadata.setdefault("decontam", {})[name] = value
        self.stat_update("documents", value=len(docs))
        self.stat_update("units", value=len(batch.table.unit_seq))
        yield from docs


class _ShardBuffer:
    """Writers of one score shard (Parquet files opened on the first batch, renamed into place at close)."""

    def __init__(self, root: Path, key: str):
        self.key, self.final = key, root / key
        self.tmp = root / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.writers: dict[str, Any] = {}
        self.stats: dict[str, Any] = {"pairs_compared": {}, "vectors": 0, "computed": 0}
        self.rows_seen = 0
        self.evidence = {"ngram.jsonl": open(self.tmp / "ngram.jsonl", "w")}  # the reduce expects this one

    def _write(self, name: str, columns: dict[str, Any]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(columns)
        if name not in self.writers:
            self.writers[name] = pq.ParquetWriter(
                self.tmp / f"{name}.parquet", table.schema, compression="zstd"
            )
        self.writers[name].write_table(table)

    def add(self, batch: DocBatch, scored: list[MeasureScores]) -> None:
        import pyarrow as pa

        t = batch.table
        docs = {
            "id": pa.array(t.doc_ids, pa.string()),
            "row": pa.array(batch.rows, pa.int64()),
            "n_units": pa.array(t.doc_units, pa.int32()),
            "parse_error": pa.array(t.doc_error, pa.string()),
        }
        units = {
            "id": pa.array([t.doc_ids[d] for d in t.unit_doc], pa.string()),
            "row": pa.array([batch.rows[d] for d in t.unit_doc], pa.int64()),
            "unit_pos": pa.array(batch.unit_pos, pa.int32()),
            "unit": pa.array(t.unit_name, pa.string()),
            "kind": pa.array(t.unit_kind, pa.string()),
            "lineno": pa.array(t.unit_lineno, pa.int32()),
            "end_lineno": pa.array(t.unit_end, pa.int32()),
            "n_nodes": pa.array([len(s) for s in t.unit_seq], pa.int32()),
        }
        candidates: list[tuple] = []
        for s in scored:
            docs.update(s.docs)
            units.update(s.units)
            candidates += s.candidates
            if s.evidence_file not in self.evidence:
                self.evidence[s.evidence_file] = open(self.tmp / s.evidence_file, "w")
            self.evidence[s.evidence_file].writelines(json.dumps(h, sort_keys=True) + "\n" for h in s.evidence)
            if "behaviour" in s.stats:
                self.stats["behaviour"] = add_counts(self.stats.get("behaviour", {}), s.stats["behaviour"])
            for name, n in s.stats.get("pairs_compared", {}).items():
                self.stats["pairs_compared"][name] = self.stats["pairs_compared"].get(name, 0) + n
            if "items_not_indexed" in s.stats:
                self.stats["items_not_indexed"] = s.stats["items_not_indexed"]
            self.stats["vectors"] += s.stats.get("vectors", 0)
            self.stats["computed"] += s.stats.get("computed", 0)
        self._write("docs", docs)
        self._write("units", units)
        self._write("candidates", candidate_table(candidates))
        self.rows_seen += len(batch.ids)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        for f in self.evidence.values():
            f.close()
        (self.tmp / "stats.json").write_text(json.dumps(self.stats))
        shutil.rmtree(self.final, ignore_errors=True)
        os.replace(self.tmp, self.final)


def add_counts(total: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """``total`` with the counts of ``more`` added (ints summed; other values taken from ``more``).

    Example:
        >>> add_counts({"executions": 2, "floor": 0.5}, {"executions": 3, "floor": 0.5})
        {'executions': 5, 'floor': 0.5}
    """
    out = dict(total)
    for key, value in more.items():
        summed = isinstance(value, int) and not isinstance(value, bool) and isinstance(out.get(key), int)
        out[key] = out[key] + value if summed else value
    return out


def candidate_table(rows: list[tuple]) -> dict[str, Any]:
    """Candidate rows as typed columns (:data:`CANDIDATE_COLUMNS`)."""
    import pyarrow as pa

    types = [pa.string(), pa.int32(), pa.string(), pa.float32(), pa.int32(), pa.int64(), pa.int32()]
    types += [pa.string(), pa.string(), pa.int32(), pa.int32()]
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in CANDIDATE_COLUMNS]
    return {
        name: pa.array(list(col), typ) for name, col, typ in zip(CANDIDATE_COLUMNS, cols, types, strict=True)
    }
