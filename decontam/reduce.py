"""The decontamination audit's reduce: score shards -> the audit's tables, decisions and summary.

Reads only the score shards :class:`decontam.score.DecontamScorer` wrote (never the corpus text,
except the LLM judge's candidates), one shard at a time, and writes what the single-process audit
wrote (:mod:`decontam.prune`): ``scores.parquet`` (with a ``removed_<tau>`` column per tau),
``units.parquet``, ``items.parquet``, ``ngram_hits.jsonl``, ``llm_verdicts.jsonl``, ``split.json`` and
``decontam.json``, plus ``decisions/<file key>.parquet`` (per document: removed and reason per tau, the
scores a pruned row carries) for :class:`DecontamPrune`.

Ties are broken as the single-process audit breaks them: an item's best unit is the one with the
shortest shape, then the first in reading order; its nearest documents the first in reading order.

Example:
    >>> summary = reduce_scores("out/decontam", "out/curated", {"humaneval": {}})  # doctest: +SKIP
    >>> summary["taus"]["0.9"]["removed_docs"]  # doctest: +SKIP
    3
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from decontam.prune import LLM_VERDICTS, MEASURES, SPLIT_VERSION, _combine, rule_measures, tau_key
from decontam.score import SCORE_SHARDS, SOURCE_KEY, list_input_files

DECISIONS = "decisions"
# candidates kept per item and measure, and the order that ranks them (reading order breaks ties)
_RANK = {
    "ast": lambda c: (-c["score"], c["n_nodes"], c["order"]),
    "ast_unit": lambda c: (-c["score"], c["order"]),
    "embedding": lambda c: (c["score"], c["order"]),
    "embedding_unit": lambda c: (c["score"], c["order"]),
}


def score_shard_dirs(output_dir: str | os.PathLike, input_dir: str | os.PathLike) -> list[Path]:
    """The score shards of every input file, in reading order; raises when one is missing (a task that
    did not finish), naming it."""
    root = Path(output_dir) / SCORE_SHARDS
    shards = [root / key for _, key in list_input_files(input_dir)]
    missing = [s.name for s in shards if not (s / "stats.json").is_file()]
    if missing:
        raise RuntimeError(f"{len(missing)} score shard(s) missing under {root} (e.g. {missing[0]}): rerun")
    return shards


class CandidateMerge:
    """Each item's best candidates over all shards (bounded lists: memory does not grow with the corpus)."""

    def __init__(self, keep: dict[str, int]):
        self.keep = keep
        self.best: dict[tuple[str, int, str], list[dict]] = {}

    def add(self, shard_index: int, table) -> None:
        for c in table.to_pylist():
            if c["measure"] not in self.keep:
                continue
            c["order"] = (shard_index, c["row"], c["unit_pos"])
            key = (c["benchmark"], c["item"], c["measure"])
            found = self.best.setdefault(key, [])
            found.append(c)
            if len(found) > 2 * self.keep[c["measure"]]:
                self._trim(key)

    def _trim(self, key) -> None:
        measure = key[2]
        self.best[key] = sorted(self.best[key], key=_RANK[measure])[: self.keep[measure]]

    def get(self, benchmark: str, item: int, measure: str) -> list[dict]:
        key = (benchmark, item, measure)
        if key in self.best:
            self._trim(key)
        return self.best.get(key, [])

    def nearest_docs(self, benchmark: str, item: int, k: int) -> list[dict]:
        """An item's ``k`` nearest distinct documents (document or unit vectors)."""
        found, seen = [], set()
        for c in self.get(benchmark, item, "embedding") + self.get(benchmark, item, "embedding_unit"):
            if c["doc_id"] not in seen:
                seen.add(c["doc_id"])
                found.append(c)
        return found[:k]


def merge_candidates(shards: list[Path], judge_k: int, embed_k: int) -> CandidateMerge:
    import pyarrow.parquet as pq

    from decontam.embedding import UNITS_PER_DOC_K

    merge = CandidateMerge(
        {"ast": 1, "ast_unit": judge_k, "embedding": embed_k, "embedding_unit": embed_k * UNITS_PER_DOC_K}
    )
    for index, shard in enumerate(shards):
        if (shard / "candidates.parquet").is_file():
            merge.add(index, pq.read_table(shard / "candidates.parquet"))
    return merge


def item_tables(bench_items, merge: CandidateMerge, embed_k: int, with_emb: bool) -> dict[str, dict]:
    """Per benchmark: ``ast`` (n_items,) best rate, ``ast_doc``/``ast_unit`` and the embedding columns."""
    out = {}
    for name, items in bench_items.items():
        tab: dict[str, list] = {k: [] for k in ("ast", "ast_doc", "ast_unit", "emb", "emb_doc")}
        for j in range(len(items)):
            best = merge.get(name, j, "ast")
            tab["ast"].append(best[0]["score"] if best else 0.0)
            tab["ast_doc"].append(best[0]["doc_id"] if best else None)
            tab["ast_unit"].append(best[0]["unit"] if best else None)
            near = merge.nearest_docs(name, j, embed_k) if with_emb else []
            tab["emb"].append(near[0]["score"] if near else None)
            tab["emb_doc"].append(near[0]["doc_id"] if near else None)
        out[name] = tab
    return out


def judge_candidates(bench_items, merge: CandidateMerge, input_dir, llm, k: int) -> list[dict[str, Any]]:
    """Ask the LLM judge about each item's AST and embedding candidates; only those documents' texts
    are read. Returns every verdict."""
    from decontam.llm_judge import judge_pairs
    from decontam.report import _read_docs

    wanted = []
    for name, items in bench_items.items():
        for j, item in enumerate(items):
            seen = set()
            for c in merge.get(name, j, "ast_unit") + merge.nearest_docs(name, j, k):
                if c["doc_id"] not in seen:
                    seen.add(c["doc_id"])
                    wanted.append((name, item, c))
    texts = {
        i: r.get("text") or ""
        for i, r in _read_docs(str(input_dir), {c["doc_id"] for *_, c in wanted}).items()
    }
    verdicts = []
    for name in bench_items:
        pairs = []
        for bench, item, c in wanted:
            if bench != name:
                continue
            text = texts.get(c["doc_id"], "")
            if c["measure"] == "ast_unit":
                text = "\n".join(text.splitlines()[c["lineno"] - 1 : c["end_lineno"]])
            pairs.append((item, c["doc_id"], text, c["unit"] if c["measure"] == "ast_unit" else None))
        verdicts += [v.to_dict() for v in (judge_pairs(pairs, llm) if pairs else [])]
    return verdicts


def build_split_from_items(
    bench_items, items, taus, rule, threshold, llm_items, with_emb, beh_items=None
) -> dict[str, Any]:
    """``split.json`` (the format of :func:`decontam.prune.build_split`) from the reduced item tables."""
    split: dict[str, Any] = {
        "version": SPLIT_VERSION,
        "rule": rule,
        "embedding_threshold": threshold,
        "measures": (["ast", "embedding"] if with_emb else ["ast"])
        + (["llm"] if llm_items is not None else [])
        + (["behaviour"] if beh_items is not None else []),
        "benchmarks": {},
    }
    for name, group in bench_items.items():
        entry = {"checksum": group[0].checksum if group else "", "n_items": len(group), "taus": {}}
        for tau in taus:
            hits = _item_hits(group, items[name], tau, threshold, llm_items, name, with_emb)
            hits["behaviour"] = _pairs_mask(group, name, beh_items)
            mask = _combine(hits, rule)
            entry["taus"][tau_key(tau)] = {
                "similar": [it.id for it, m in zip(group, mask, strict=True) if m],
                "non_similar": [it.id for it, m in zip(group, mask, strict=True) if not m],
            }
        split["benchmarks"][name] = entry
    return split


def _item_hits(group, tab, tau, threshold, llm_items, name, with_emb) -> dict[str, np.ndarray | None]:
    emb = None
    if with_emb:
        dist = np.asarray([np.inf if e is None else e for e in tab["emb"]], dtype=np.float32)
        emb = dist <= threshold  # compared in float32, as the single-process audit compares
    llm = _pairs_mask(group, name, llm_items)
    return {"ast": np.asarray(tab["ast"], dtype=np.float32) >= tau, "embedding": emb, "llm": llm}


def _pairs_mask(group, name: str, found: set | None) -> np.ndarray | None:
    """Mask over a benchmark's items: ``(name, item id)`` in ``found`` (None: the measure did not run)."""
    return None if found is None else np.asarray([(name, it.id) in found for it in group], dtype=bool)


def doc_hits(docs, bench: str, tau: float, threshold: float, llm_docs) -> dict[str, np.ndarray | None]:
    """Per measure, the documents of one shard table that one benchmark flags at ``tau``."""
    ids = docs.column("id").to_pylist()
    emb = None
    if f"emb_min_{bench}" in docs.column_names:
        emb = np.asarray(docs.column(f"emb_min_{bench}").to_numpy(zero_copy_only=False)) <= threshold
    llm = None if llm_docs is None else np.asarray([(bench, i) in llm_docs for i in ids], dtype=bool)
    ast = np.asarray(docs.column(f"ast_max_{bench}").to_numpy(zero_copy_only=False)) >= tau
    beh = None
    if f"beh_hit_{bench}" in docs.column_names:
        beh = np.asarray(docs.column(f"beh_hit_{bench}").to_numpy(zero_copy_only=False), dtype=bool)
    return {"ast": ast, "embedding": emb, "llm": llm, "behaviour": beh}


def shard_decisions(docs, benches, taus, rule, threshold, llm_docs):
    """For one shard's documents: ``{tau key: (removed mask, reasons, per-benchmark removed masks)}``."""
    used = rule_measures(rule)
    out = {}
    for tau in taus:
        removed = np.zeros(docs.num_rows, dtype=bool)
        any_hit = {m: np.zeros(docs.num_rows, dtype=bool) for m in MEASURES}
        per_bench = {}
        for bench in benches:
            hits = doc_hits(docs, bench, tau, threshold, llm_docs)
            per_bench[bench] = _combine(hits, rule)
            removed |= per_bench[bench]
            for name, mask in hits.items():
                if mask is not None:
                    any_hit[name] |= mask
        key = tau_key(tau)
        reasons = [
            f"contaminated_{'+'.join(m for m in used if any_hit[m][r])}_{key}" if removed[r] else None
            for r in range(docs.num_rows)
        ]
        out[key] = (removed, reasons, per_bench)
    return out


def row_scores(docs, benches) -> list[str]:
    """The ``decontam`` metadata each pruned row carries (JSON), as the single-process audit wrote it."""
    cols = {c: docs.column(c).to_pylist() for c in docs.column_names}
    out = []
    for r in range(docs.num_rows):
        meta: dict[str, Any] = {"ast_max": {}, "ast_item": {}}
        for b in benches:
            meta["ast_max"][b] = round(float(cols[f"ast_max_{b}"][r]), 4)
            meta["ast_item"][b] = cols[f"ast_item_{b}"][r]
            if f"emb_min_{b}" in cols:
                meta.setdefault("emb_min", {})[b] = round(float(cols[f"emb_min_{b}"][r]), 4)
                meta.setdefault("emb_item", {})[b] = cols[f"emb_item_{b}"][r]
            if f"beh_hit_{b}" in cols:
                meta.setdefault("behaviour", {})[b] = bool(cols[f"beh_hit_{b}"][r])
        out.append(json.dumps(meta))
    return out


class _TableWriter:
    """A Parquet file written shard by shard (created on the first table)."""

    def __init__(self, path: Path):
        self.path, self.writer = path, None

    def write(self, table) -> None:
        import pyarrow.parquet as pq

        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self.writer.write_table(table.cast(self.writer.schema))

    def close(self, empty_schema=None) -> None:
        import pyarrow.parquet as pq

        if self.writer is not None:
            self.writer.close()
        elif empty_schema is not None:
            pq.write_table(empty_schema.empty_table(), self.path)


def reduce_scores(
    output_dir: str | os.PathLike,
    input_dir: str | os.PathLike,
    benchmarks: dict[str, dict],
    taus: Sequence[float],
    rule: str,
    threshold: float,
    embeddings: bool = False,
    llm: Any = None,
    llm_k: int = 3,
    embed_k: int = 5,
) -> dict[str, Any]:
    """Merge the score shards into the audit's tables, decisions and ``split.json``; returns the summary
    (the fields of ``decontam.json`` that come from the scores)."""
    from decontam.prune import load_benchmarks

    out = Path(output_dir)
    shards = score_shard_dirs(out, input_dir)
    bench_items = load_benchmarks(benchmarks)
    merge = merge_candidates(shards, llm_k, embed_k)
    with_emb = embeddings and any(_has_docs(s) for s in shards)
    items = item_tables(bench_items, merge, embed_k, with_emb)
    llm_docs = llm_items = answers = None
    if "llm" in rule_measures(rule):
        verdicts = judge_candidates(bench_items, merge, input_dir, llm, llm_k)
        with open(out / LLM_VERDICTS, "w") as f:
            f.writelines(json.dumps(v, sort_keys=True) + "\n" for v in verdicts)
        llm_docs = {(v["benchmark"], v["doc_id"]) for v in verdicts if v["same"]}
        llm_items = {(v["benchmark"], v["item_id"]) for v in verdicts if v["same"]}
        from decontam.llm_judge import judge_answer_counts

        answers = judge_answer_counts(verdicts)
    beh_items = None
    if "behaviour" in rule_measures(rule):
        counts_beh = concat_behaviour(out, shards)
        beh_items = counts_beh.pop("items")
    split = build_split_from_items(bench_items, items, taus, rule, threshold, llm_items, with_emb, beh_items)
    (out / "split.json").write_text(json.dumps(split, indent=1))
    write_items(out, bench_items, items)
    counts = write_docs_and_units(out, shards, list(bench_items), taus, rule, threshold, llm_docs)
    counts["ngram"] = concat_evidence(out, shards)
    if beh_items is not None:
        counts["behaviour"] = counts_beh
    if answers is not None:  # the judge's parsed / fallback-parsed / failed answers
        counts["llm_answers"] = answers
    counts["split"] = split
    counts["bench_items"] = bench_items
    counts["pairs_compared"] = _pairs_compared(shards)
    counts["embeddings"] = _embedding_stats(shards) if with_emb else None
    counts["items_not_indexed"] = _items_not_indexed(shards, bench_items)
    counts.update(rule=rule, threshold=threshold)
    return counts


def _items_not_indexed(shards: list[Path], bench_items) -> dict[str, dict[str, list[str]]]:
    """Per benchmark, its ``unparseable`` and ``too_small`` items (from a shard, else a fresh index)."""
    for shard in shards:
        stats = json.loads((shard / "stats.json").read_text())
        if stats.get("items_not_indexed"):
            return stats["items_not_indexed"]
    from decontam.score import AstMeasure

    return AstMeasure().fit(bench_items).items_not_indexed()


def _has_docs(shard: Path) -> bool:
    import pyarrow.parquet as pq

    return (shard / "docs.parquet").is_file() and pq.read_metadata(shard / "docs.parquet").num_rows > 0


def _pairs_compared(shards: list[Path]) -> dict[str, int]:
    total: dict[str, int] = {}
    for shard in shards:
        for name, n in json.loads((shard / "stats.json").read_text())["pairs_compared"].items():
            total[name] = total.get(name, 0) + n
    return total


def _embedding_stats(shards: list[Path]) -> dict[str, int]:
    stats = [json.loads((s / "stats.json").read_text()) for s in shards]
    vectors, computed = sum(s["vectors"] for s in stats), sum(s["computed"] for s in stats)
    return {"vectors": vectors, "computed": computed, "reused": vectors - computed}


def write_items(out: Path, bench_items, items) -> None:
    """``items.parquet``: one row per benchmark item (best AST unit, nearest document)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: dict[str, list] = {k: [] for k in ("benchmark", "item_id", "ast_max", "ast_doc", "ast_unit")}
    rows.update({"emb_min": [], "emb_doc": []})
    for name, group in bench_items.items():
        tab = items[name]
        rows["benchmark"] += [name] * len(group)
        rows["item_id"] += [it.id for it in group]
        rows["ast_max"] += tab["ast"]
        rows["ast_doc"] += tab["ast_doc"]
        rows["ast_unit"] += tab["ast_unit"]
        rows["emb_min"] += tab["emb"]
        rows["emb_doc"] += tab["emb_doc"]
    schema = pa.schema(
        [("benchmark", pa.string()), ("item_id", pa.string()), ("ast_max", pa.float32()),
         ("ast_doc", pa.string()), ("ast_unit", pa.string()), ("emb_min", pa.float32()), ("emb_doc", pa.string())]
    )  # fmt: skip
    pq.write_table(pa.Table.from_pydict(rows, schema=schema), out / "items.parquet", compression="zstd")


def write_docs_and_units(out: Path, shards, benches, taus, rule, threshold, llm_docs) -> dict[str, Any]:
    """Stream the shards' document and unit tables into ``scores.parquet`` (decisions added),
    ``units.parquet`` and ``decisions/``; returns the counts of ``decontam.json``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = [tau_key(t) for t in taus]
    counts: dict[str, Any] = {
        "docs": 0, "units": 0, "parse_failures": {},
        "taus": {k: {"removed_docs": 0, "kept_docs": 0, "reasons": {}} for k in keys},
        "bench_removed": {b: {k: 0 for k in keys} for b in benches},
        "bench_removed_units": {b: {k: 0 for k in keys} for b in benches},
    }  # fmt: skip
    (out / DECISIONS).mkdir(exist_ok=True)
    scores, units = _TableWriter(out / "scores.parquet"), _TableWriter(out / "units.parquet")
    for shard in shards:
        if not _has_docs(shard):
            continue
        docs = pq.read_table(shard / "docs.parquet")
        decided = shard_decisions(docs, benches, taus, rule, threshold, llm_docs)
        _count_docs(counts, docs, decided)
        head = [c for c in ("id", "n_units", "parse_error") if c in docs.column_names]
        removed = {f"removed_{k}": pa.array(decided[k][0], pa.bool_()) for k in keys}
        rest = [c for c in docs.column_names if c not in head and c != "row" and c != "ngram_hits"]
        scores.write(pa.table({**{c: docs[c] for c in head}, **removed, **{c: docs[c] for c in rest},
                               "ngram_hits": docs["ngram_hits"] if "ngram_hits" in docs.column_names
                               else pa.nulls(docs.num_rows, pa.int32())}))  # fmt: skip
        decisions = {"id": docs["id"], "scores": pa.array(row_scores(docs, benches), pa.string())}
        for k in keys:
            decisions[f"removed_{k}"] = removed[f"removed_{k}"]
            decisions[f"reason_{k}"] = pa.array(decided[k][1], pa.string())
        pq.write_table(pa.table(decisions), out / DECISIONS / f"{shard.name}.parquet")
        unit_table = pq.read_table(shard / "units.parquet").drop(["row", "unit_pos"])
        counts["units"] += unit_table.num_rows
        for b in benches:
            col = unit_table.column(f"ast_max_{b}").to_numpy(zero_copy_only=False)
            for tau, k in zip(taus, keys, strict=True):
                counts["bench_removed_units"][b][k] += int((col >= tau).sum())
        units.write(unit_table)
    scores.close(_empty_scores_schema(benches, keys))
    units.close(_empty_units_schema(benches))
    return counts


def _count_docs(counts, docs, decided) -> None:
    counts["docs"] += docs.num_rows
    for err in docs.column("parse_error").to_pylist():
        if err:
            kind = err.split(":")[0]
            counts["parse_failures"][kind] = counts["parse_failures"].get(kind, 0) + 1
    for key, (removed, reasons, per_bench) in decided.items():
        entry = counts["taus"][key]
        entry["removed_docs"] += int(removed.sum())
        entry["kept_docs"] += int((~removed).sum())
        for reason in reasons:
            if reason:
                entry["reasons"][reason] = entry["reasons"].get(reason, 0) + 1
        for bench, mask in per_bench.items():
            counts["bench_removed"][bench][key] += int(mask.sum())


def _empty_scores_schema(benches, keys):
    import pyarrow as pa

    fields = [("id", pa.string()), ("n_units", pa.int32()), ("parse_error", pa.string())]
    fields += [(f"removed_{k}", pa.bool_()) for k in keys]
    for b in benches:
        fields += [
            (f"ast_max_{b}", pa.float32()),
            (f"ast_item_{b}", pa.string()),
            (f"ast_unit_{b}", pa.string()),
        ]
    return pa.schema(fields)


def _empty_units_schema(benches):
    import pyarrow as pa

    fields = [("id", pa.string()), ("unit", pa.string()), ("kind", pa.string()), ("lineno", pa.int32()),
              ("end_lineno", pa.int32()), ("n_nodes", pa.int32())]  # fmt: skip
    for b in benches:
        fields += [(f"ast_max_{b}", pa.float32()), (f"ast_item_{b}", pa.string())]
    return pa.schema(fields)


def concat_behaviour(out: Path, shards: list[Path]) -> dict[str, Any]:
    """``behaviour_hits.jsonl``: the shards' behavioural hits in reading order; returns the cost summed
    over the shards (:class:`decontam.score.BehaviourMeasure`) and ``items``, the ``(benchmark, item id)``
    pairs with a hit. Raises when a shard was scored without the measure (a rule that did not name it)."""
    from decontam.behaviour import BEHAVIOUR_HITS
    from decontam.score import BEHAVIOUR_EVIDENCE, add_counts

    cost: dict[str, Any] = {"executions": 0, "cached": 0, "shortlisted": 0, "candidates": 0, "hits": 0,
                            "calibration_executions": 0}  # fmt: skip
    items = set()
    with open(out / BEHAVIOUR_HITS, "w") as f:
        for shard in shards:
            stats = json.loads((shard / "stats.json").read_text())
            if _has_docs(shard) and "behaviour" not in stats:
                raise RuntimeError(f"score shard {shard.name} was scored without the behaviour measure")
            cost = add_counts(cost, stats.get("behaviour", {}))
            if (shard / BEHAVIOUR_EVIDENCE).is_file():
                with open(shard / BEHAVIOUR_EVIDENCE) as lines:
                    for line in lines:
                        f.write(line)
                        h = json.loads(line)
                        items.add((h["benchmark"], h["item_id"]))
    return cost | {"items": items}


def concat_evidence(out: Path, shards: list[Path]) -> dict[str, int]:
    """``ngram_hits.jsonl``: the shards' 13-gram evidence in reading order; returns the hit counts."""
    from decontam.report import NGRAM_HITS

    hits, docs, pairs = 0, set(), set()
    with open(out / NGRAM_HITS, "w") as f:
        for shard in shards:
            with open(shard / "ngram.jsonl") as lines:
                for line in lines:
                    f.write(line)
                    h = json.loads(line)
                    hits += 1
                    docs.add(h["doc_id"])
                    pairs.add((h["benchmark"], h["item_id"]))
    return {"hits": hits, "docs_with_hits": len(docs), "items_with_hits": len(pairs)}


# ---------------------------------------------------------------------------------------------------
# prune
# ---------------------------------------------------------------------------------------------------
class DecontamPrune(BaseFilter):
    """Apply one tau's decisions (``audit_dir/decisions/``): a contaminated document is dropped with its
    reason (``contaminated_ast_0.9``...), every document carries its scores (``metadata["decontam"]``).

    Reads the decisions of one input file at a time when the documents come from
    :class:`decontam.score.AuditShardReader`; from any other reader, all decisions (by id).

    Example:
        >>> step = DecontamPrune("out/decontam", tau=0.9)  # doctest: +SKIP
    """

    name = "✂️ Decontam prune"

    def __init__(self, audit_dir: str, tau: float, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.audit_dir, self.key = str(audit_dir), tau_key(tau)
        self._file, self._decisions = None, {}

    def _load(self, file: str | None) -> None:
        import pyarrow.parquet as pq

        folder = Path(self.audit_dir) / DECISIONS
        paths = [folder / f"{file}.parquet"] if file else sorted(folder.glob("*.parquet"))
        self._decisions = {}
        for path in paths:
            if not path.is_file():
                continue  # a file without documents
            table = pq.read_table(path, columns=["id", "scores", f"removed_{self.key}", f"reason_{self.key}"])
            for row in zip(*(table.column(i).to_pylist() for i in range(4)), strict=True):
                self._decisions[row[0]] = row[1:]
        self._file = file or "*"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        source = doc.metadata.pop(SOURCE_KEY, None)
        file = source[0] if source else None
        if self._file != (file or "*"):
            self._load(file)
        found = self._decisions.get(doc.id)
        if found is None:
            self.stat_update("not_scored")
            return True
        scores, removed, reason = found
        doc.metadata["decontam"] = json.loads(scores)
        return (False, reason) if removed else True
