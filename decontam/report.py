"""Decontamination audit: the scan + prune + report job and the report writer (HTML, Markdown, JSON).

The report is built from the files :func:`decontam.prune.prune_shards` and the 13-gram scan leave in a
decontam output directory (``decontam.json``, ``split.json``, ``items.parquet``, ``units.parquet``,
``ngram_hits.jsonl``) plus the training texts of the top matches (read back from the input shards):

* per benchmark and tau: similar / non-similar / total problem counts and removed training documents
  (the layout of the left half of phi-1's Table 3);
* histograms of the maximum AST match rate (per benchmark item and per training unit) and of the
  minimum embedding distance (matplotlib, embedded as base64 PNG so the HTML is self-contained);
* the top matching pairs, benchmark solution next to training snippet;
* every 13-gram hit with its evidence (document, item, field, n-gram, character offsets, context);
* the sha256 checksum of every benchmark file.

Example:
    >>> summary = decontam_audit("out/filtered", "out/decontam", taus=[0.95, 0.9])  # doctest: +SKIP
    >>> write_decontam_report("out/decontam")["html"]  # doctest: +SKIP
    'out/decontam/report/report.html'
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from decontam.behaviour import BEHAVIOUR_HITS
from decontam.prune import (
    DEFAULT_TAUS,
    LLM_VERDICTS,
    load_benchmarks,
    shard_dataset,
)

NGRAM_HITS = "ngram_hits.jsonl"
REPORT_DIR = "report"


def scan_ngrams(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    benchmarks: Sequence[str] | dict[str, Any] = ("humaneval", "mbpp"),
    mbpp_path: str | None = None,
    mbpp_split: str = "test",
    n: int = 13,
    allow_list: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Stream ``input_dir`` through a 13-gram index of the benchmarks; evidence to ``ngram_hits.jsonl``."""
    from decontam.ngram import DEFAULT_ALLOW_LIST, NgramIndex

    items = [it for group in load_benchmarks(benchmarks, mbpp_path, mbpp_split).values() for it in group]
    index = NgramIndex(n=n, allow_list=DEFAULT_ALLOW_LIST + tuple(allow_list or ())).fit(items)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    hits = 0
    docs, pairs = set(), set()
    with open(out / NGRAM_HITS, "w") as f:
        for match in index.scan_shards(str(input_dir)):
            f.write(json.dumps(match.to_dict(), sort_keys=True) + "\n")
            hits += 1
            docs.add(match.doc_id)
            pairs.add((match.benchmark, match.item_id))
    return {
        "n": n,
        "index_keys": index.n_keys,
        "items_too_short": len(index.too_short_),
        "allow_list_dropped": index.dropped_allow_list_,
        "hits": hits,
        "docs_with_hits": len(docs),
        "items_with_hits": len(pairs),
    }


def decontam_audit(
    input_dir: str,
    output_dir: str,
    benchmarks: Sequence[str] | dict[str, Any] = ("humaneval", "mbpp"),
    mbpp_path: str | None = None,
    mbpp_split: str = "test",
    taus: Sequence[float] = DEFAULT_TAUS,
    rule: str = "either",
    embedding_threshold: float | None = None,
    embeddings: bool = True,
    embedder: Any = None,
    ngram: bool = True,
    workers: int = 2,
    write_shards: bool = True,
    min_nodes: int = 10,
    llm: Any = None,
    llm_k: int = 3,
    embedding_view: str = "document",
    executor: dict[str, Any] | None = None,
    behaviour: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """JOB ``decontam_audit``: score, reduce, prune and report ``input_dir`` as datatrove stages.

    Scoring runs as ``executor`` tasks (default: local, ``workers`` tasks and processes), each streaming
    its files with memory independent of the corpus size (:mod:`decontam.score`); the reduce reads only
    the score columns (:mod:`decontam.reduce`); each tau's pruned shard set is written by a
    :class:`decontam.reduce.DecontamPrune` pipeline. Everything lands in ``output_dir`` (layout in
    :mod:`decontam.prune`), the report in ``output_dir/report/``; the report is written last, from the
    reduce's tables, and a report error is recorded (``report_error``) without discarding them.
    When no MBPP file is given (``mbpp_path`` or ``$TEXTBOOKS_MBPP_PATH``) MBPP is skipped with a note.
    A rule naming ``behaviour`` (``ast|behaviour``) runs :class:`decontam.score.BehaviourMeasure` in the
    scoring tasks with the ``behaviour`` options (``floor``, ``batch_size``, ``timeout_s``...; unknown
    ones fail before work); hits with their evidence go to ``behaviour_hits.jsonl``, verdicts are cached
    under ``behaviour_cache/``.

    Example (recipe stage)::

        - name: audit
          job: decontam_audit
          with: {input_dir: ${out}/filtered, output_dir: ${out}/decontam, taus: [0.95, 0.9],
                 executor: {type: ray, tasks: 16}}
    """
    from decontam.prune import (
        EMBEDDING_VIEWS,
        LLM_FLOOR,
        VIEW_THRESHOLDS,
        check_behaviour_options,
        remove_stale_tau_dirs,
        rule_measures,
    )
    from decontam.stages import run_audit_stages

    notes = []
    if not isinstance(benchmarks, dict) and "mbpp" in benchmarks:
        if mbpp_path is None and not os.environ.get("TEXTBOOKS_MBPP_PATH"):
            benchmarks = [b for b in benchmarks if b != "mbpp"]
            notes.append("mbpp skipped: no mbpp_path given and $TEXTBOOKS_MBPP_PATH unset")
    used = rule_measures(rule)  # raises on an unknown rule, before any work
    check_behaviour_options(behaviour)
    if embedding_view not in EMBEDDING_VIEWS:
        raise ValueError(f"embedding_view must be one of {EMBEDDING_VIEWS}, not {embedding_view!r}")
    if not embeddings and "embedding" in used:
        raise ValueError(f"rule={rule!r} needs embeddings=True")
    threshold = VIEW_THRESHOLDS[embedding_view] if embedding_threshold is None else embedding_threshold
    taus = sorted({float(t) for t in taus}, reverse=True)
    floor = min(LLM_FLOOR, min(taus) - 0.1) if "llm" in used else max(0.0, min(taus) - 0.1)
    spec = benchmark_spec(benchmarks, mbpp_path, mbpp_split)
    started = time.perf_counter()
    reduced = run_audit_stages(
        input_dir, output_dir, spec, taus, rule, threshold, floor, embeddings=embeddings, embedder=embedder,
        embedding_view=embedding_view, ngram=ngram, write_shards=write_shards, min_nodes=min_nodes, llm=llm,
        llm_k=llm_k, executor=executor or {"type": "local", "tasks": workers, "workers": workers},
        behaviour=dict(behaviour or {}) if "behaviour" in used else None,
    )  # fmt: skip
    if reduced.get("submitted"):
        return {"output_dir": str(output_dir), **reduced, "notes": notes}
    out = Path(output_dir)
    summary = audit_summary(input_dir, out, reduced, taus, floor, write_shards)
    summary["mbpp_path"] = (
        str(Path(mbpp_path).resolve()) if mbpp_path else os.environ.get("TEXTBOOKS_MBPP_PATH")
    )
    summary["mbpp_split"] = mbpp_split
    summary["stale_tau_dirs_removed"] = remove_stale_tau_dirs(out, taus if write_shards else ())
    summary["timings"] = {**reduced["timings"], "total_s": round(time.perf_counter() - started, 3)}
    if reduced.get("embeddings"):  # vectors counted over the score shards (computed when they were scored)
        summary["timings"]["embeddings"] = {"view": embedding_view, **reduced["embeddings"]}
    if ngram:
        summary["ngram"] = ngram_summary(reduced["bench_items"], reduced["ngram"])
    if "behaviour" in reduced:  # the cost, summed over the score shards of this run
        cost = reduced["behaviour"]
        per_1000 = 1000 * (cost["executions"] - cost["calibration_executions"]) / max(summary["docs"], 1)
        summary["behaviour"] = {**cost, "executions_per_1000_docs": round(per_1000, 2)}
    summary["notes"] = notes
    (out / "decontam.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    report = safe_report(out, summary)
    return {
        "output_dir": str(output_dir),
        "report": report.get("html"),
        **({"report_error": report["error"]} if "error" in report else {}),
        "docs": summary["docs"],
        "removed_docs": {k: v["removed_docs"] for k, v in summary["taus"].items()},
        "similar": {
            name: {k: v["similar"] for k, v in b["taus"].items()} for name, b in summary["benchmarks"].items()
        },
        "ngram_hits": summary.get("ngram", {}).get("hits"),
        "llm_answers": summary.get("llm_answers"),  # the judge's parsed / fallback-parsed / failed answers
        "notes": notes,
    }


def benchmark_spec(benchmarks, mbpp_path: str | None, mbpp_split: str) -> dict[str, dict]:
    """Benchmark names (or ``{name: kwargs}``) as ``{name: load_benchmark kwargs}``, picklable for tasks.

    Example:
        >>> benchmark_spec(["humaneval", "mbpp"], "m.jsonl", "test")["mbpp"]
        {'name': 'mbpp', 'path': 'm.jsonl', 'split': 'test'}
    """
    if isinstance(benchmarks, dict):
        return {name: dict(kwargs or {}) for name, kwargs in benchmarks.items()}
    return {
        name: {"name": "mbpp", "path": mbpp_path, "split": mbpp_split} if name == "mbpp" else {"name": name}
        for name in benchmarks
    }


def audit_summary(input_dir, out: Path, reduced, taus, floor, write_shards) -> dict[str, Any]:
    """``decontam.json`` from the reduce's counts (the fields of :func:`decontam.prune.prune_shards`)."""
    from decontam.prune import tau_key

    summary: dict[str, Any] = {
        "input_dir": str(input_dir), "output_dir": str(out), "rule": reduced["rule"],
        "embedding_threshold": reduced["threshold"], "ast_floor": floor, "docs": reduced["docs"],
        "units": reduced["units"], "parse_failures": reduced["parse_failures"], "benchmarks": {}, "taus": {},
    }  # fmt: skip
    for name, items in reduced["bench_items"].items():
        split = reduced["split"]["benchmarks"][name]["taus"]
        entry = {
            "checksum": items[0].checksum if items else "", "n_items": len(items),
            "unparseable_items": reduced["items_not_indexed"][name]["unparseable"],
            "too_small_items": reduced["items_not_indexed"][name]["too_small"],
            "pairs_compared": int(reduced["pairs_compared"].get(name, 0)), "taus": {},
        }  # fmt: skip
        for tau in taus:
            key = tau_key(tau)
            entry["taus"][key] = {
                "similar": len(split[key]["similar"]), "non_similar": len(split[key]["non_similar"]),
                "removed_docs": reduced["bench_removed"][name][key],
                "removed_units": reduced["bench_removed_units"][name][key],
            }  # fmt: skip
        summary["benchmarks"][name] = entry
    for tau in taus:
        key = tau_key(tau)
        counts = reduced["taus"][key]
        summary["taus"][key] = counts if write_shards else {"removed_docs": counts["removed_docs"]}
    if reduced.get("llm_answers") is not None:
        summary["llm_answers"] = reduced["llm_answers"]
    return summary


def ngram_summary(bench_items, hits: dict[str, int], n: int = 13) -> dict[str, Any]:
    """The 13-gram part of ``decontam.json``: the index's size and the hit counts."""
    from decontam.ngram import DEFAULT_ALLOW_LIST, NgramIndex

    index = NgramIndex(n=n, allow_list=DEFAULT_ALLOW_LIST).fit([i for g in bench_items.values() for i in g])
    return {
        "n": n, "index_keys": index.n_keys, "items_too_short": len(index.too_short_),
        "allow_list_dropped": index.dropped_allow_list_, **hits,
    }  # fmt: skip


def safe_report(out: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """:func:`write_decontam_report`, with an error recorded in ``decontam.json`` (``report_error``) instead
    of raised: the scores, decisions and pruned shards are already written and stay valid."""
    import logging
    import traceback

    try:
        return write_decontam_report(out)
    except Exception as error:  # noqa: BLE001 - any formatting bug must not discard the audit
        logging.getLogger(__name__).error("decontam report failed: %s", traceback.format_exc())
        summary["report_error"] = f"{type(error).__name__}: {error}"
        (out / "decontam.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
        return {"error": summary["report_error"]}


# ---------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------
def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _histograms(items, units, summary) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = {}
    bins = [i / 40 for i in range(41)]
    taus = [float(t) for t in summary["taus"]]
    for name in summary["benchmarks"]:
        sub = items[items["benchmark"] == name]
        fig, axes = plt.subplots(1, 3 if sub["emb_min"].notna().any() else 2, figsize=(13, 3.2))
        axes[0].hist(sub["ast_max"].fillna(0), bins=bins, color="#4472c4")
        floor = summary.get("ast_floor", 0)
        axes[0].set(
            title=f"{name}: best AST match per item",
            xlabel=f"max AST match rate (rates under the floor {floor:g} are shown as 0)",
            ylabel="items",
        )
        col = f"ast_max_{name}"
        unit_scores = units[col][units[col] > 0] if col in units else []
        axes[1].hist(unit_scores, bins=bins, color="#ed7d31")
        axes[1].set(
            title=f"training units >= floor ({summary.get('ast_floor', 0):g})",
            xlabel="max AST match rate",
            ylabel="units",
            yscale="log" if len(unit_scores) else "linear",
        )
        for ax in axes[:2]:
            for tau in taus:
                ax.axvline(tau, color="grey", lw=0.8, ls="--")
        if len(axes) == 3:
            axes[2].hist(sub["emb_min"].dropna(), bins=40, color="#70ad47")
            axes[2].axvline(summary.get("embedding_threshold", 0), color="grey", lw=0.8, ls="--")
            axes[2].set(title=f"{name}: nearest training doc", xlabel="min L2 distance", ylabel="items")
        plots[name] = _png(fig)
    return plots


def _read_docs(input_dir: str, ids: set[str]) -> dict[str, dict[str, Any]]:
    """``{id: {"text", "repo", "path"}}`` of the documents ``ids`` (read back from the input shards)."""
    if not ids or not input_dir or not os.path.isdir(input_dir):
        return {}
    import pyarrow.dataset as ds

    dataset = shard_dataset(input_dir)
    if dataset is None:
        return {}
    cols = [c for c in ("id", "text", "repo", "path") if c in dataset.schema.names]
    table = dataset.to_table(columns=cols, filter=ds.field("id").isin(sorted(ids)))
    return {row["id"]: row for row in table.to_pylist()}


def _snippet(text: str, lineno: int | None, end: int | None, max_lines: int = 40) -> tuple[str, int, int]:
    """Lines ``lineno..end`` of ``text`` (at most ``max_lines``) and the 1-based line span shown."""
    lines = text.splitlines()
    lo = max((lineno or 1) - 1, 0)
    hi = min(end or len(lines), lo + max_lines, len(lines))
    return "\n".join(lines[lo:hi]), lo + 1, hi


def num(x: Any) -> str:
    """Plain number formatting for reports: at most 4 significant decimals, no float noise.

    Example:
        >>> num(0.7000000000000001), num(1.0), num(0.83333), num(12), num(None)
        ('0.7', '1', '0.8333', '12', '')
    """
    if x is None or (isinstance(x, float) and x != x):
        return ""
    if isinstance(x, int | np.integer):
        return str(int(x))
    return f"{round(float(x), 4):g}"


def _table3(summary) -> list[dict[str, Any]]:
    rows = []
    for name, bench in summary["benchmarks"].items():
        for tau, counts in sorted(bench["taus"].items(), key=lambda kv: -float(kv[0])):
            rows.append(
                {
                    "benchmark": name,
                    "tau": tau,
                    "similar": counts["similar"],
                    "non_similar": counts["non_similar"],
                    "total": counts["similar"] + counts["non_similar"],
                    "removed_docs": counts["removed_docs"],
                    "removed_units": counts["removed_units"],
                }
            )
    return rows


def _taus(summary) -> list[str]:
    return sorted(summary["taus"], key=float, reverse=True)


def _removed_rows(scores, summary) -> list[dict[str, Any]]:
    """Every document removed at some tau (the union over benchmarks), with the taus that remove it."""
    taus = _taus(summary)
    cols = [f"removed_{t}" for t in taus if f"removed_{t}" in scores]
    if not cols:
        return []
    rows = []
    for rec in scores[scores[cols].any(axis=1)].to_dict("records"):
        best = max(summary["benchmarks"], key=lambda b: rec.get(f"ast_max_{b}") or 0)
        emb = {b: rec.get(f"emb_min_{b}") for b in summary["benchmarks"] if f"emb_min_{b}" in rec}
        near = min(emb, key=lambda b: emb[b], default=None)
        rows.append(
            {
                "doc_id": text_id(rec["id"]),
                "benchmark": best,
                "item_id": text_id(rec.get(f"ast_item_{best}")),
                "unit": text_id(rec.get(f"ast_unit_{best}")),
                "ast": rec.get(f"ast_max_{best}"),
                "emb": emb.get(near) if near else None,
                "emb_item": text_id(rec.get(f"emb_item_{near}")) if near else None,
                "removed_at": [t for t in taus if rec.get(f"removed_{t}")],
            }
        )
    return rows


def text_id(value: Any) -> str | None:
    """An id read back from a table as text: None for a missing one (None, or NaN as pandas fills an
    all-null column), ``str`` otherwise (ids can be ints or floats in user benchmarks).

    Example:
        >>> text_id(float("nan")), text_id(None), text_id(12.0), text_id("HumanEval/0")
        (None, None, '12.0', 'HumanEval/0')
    """
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value)


def _pair(benchmark, item_id, doc_id, unit, measure, score, passes, llm=None) -> dict[str, Any]:
    item_id, doc_id, unit = text_id(item_id), text_id(doc_id), text_id(unit)
    return dict(
        benchmark=benchmark, item_id=item_id, doc_id=doc_id, unit=unit, measure=measure,
        score=float(score), passes=bool(passes), llm=llm,
    )  # fmt: skip


def _pairs(items, removed, summary, nearest: int = 20) -> list[dict[str, Any]]:
    """One pair per similar item (best AST unit and nearest embedding document), per removed document,
    and the ``nearest`` embedding pairs of each benchmark even when none passes; each pair is flagged
    when its score does not pass the loosest threshold."""
    loosest = min(float(t) for t in summary["taus"]) if summary["taus"] else 1.0
    threshold = summary.get("embedding_threshold", 0)
    pairs: dict[tuple, dict[str, Any]] = {}
    near = set()
    if items["emb_min"].notna().any():
        for _, group in items[items["emb_min"].notna()].groupby("benchmark"):
            near |= set(group.nsmallest(nearest, "emb_min")["item_id"])
    for row in items.itertuples():
        if row.ast_doc is not None and row.ast_max > 0:
            pair = _pair(
                row.benchmark,
                row.item_id,
                row.ast_doc,
                row.ast_unit,
                "ast",
                row.ast_max,
                row.ast_max >= loosest,
            )
            pairs.setdefault((row.item_id, row.ast_doc), pair)
        if (
            row.emb_doc is not None
            and row.emb_min == row.emb_min
            and (row.emb_min <= threshold or row.item_id in near)
        ):
            pair = _pair(
                row.benchmark,
                row.item_id,
                row.emb_doc,
                None,
                "embedding",
                row.emb_min,
                row.emb_min <= threshold,
            )
            pairs.setdefault((row.item_id, row.emb_doc), pair)
    for r in removed:
        if isinstance(r["item_id"], str):  # a document removed by another measure alone has no AST item
            pair = _pair(r["benchmark"], r["item_id"], r["doc_id"], r["unit"], "ast", r["ast"] or 0, True)
            pairs.setdefault((r["item_id"], r["doc_id"]), pair)
    return sorted(
        pairs.values(), key=lambda p: (not p["passes"], -p["score"] if p["measure"] == "ast" else p["score"])
    )


def _attach_verdicts(pairs, verdicts) -> None:
    """Each pair carries the LLM judge's verdict on it (None when it was not judged); a pair judged the
    same problem that no other measure listed is added."""
    by_pair = {(v["item_id"], v["doc_id"]): v for v in verdicts}
    for p in pairs:
        p["llm"] = by_pair.pop((p["item_id"], p["doc_id"]), None)
    for v in by_pair.values():
        if v["same"]:
            pairs.append(_pair(v["benchmark"], v["item_id"], v["doc_id"], v["unit"], "llm", 1.0, True, v))


def _attach_behaviour(pairs, behaviour_hits) -> None:
    """Each behavioural hit is a pair of its own (measure ``behaviour``, score = asserts passed) with
    its evidence; the unit's lines are the hit's own."""
    for h in behaviour_hits:
        pair = _pair(h["benchmark"], h["item_id"], h["doc_id"], h["unit"], "behaviour", h["tests_passed"], True)
        pair["behaviour"] = h
        pairs.append(pair)


def _verdict_text(v) -> str:
    if v is None:
        return ""
    word = {True: "same problem", False: "different", None: "unclear"}[v["same"]]
    return word + (" (cached)" if v.get("cached") else "")


def _attach_sources(pairs, hits, docs, units, bench_items) -> None:
    """Fill each pair with the benchmark solution and the training snippet (repo, path, lines)."""
    spans = {}
    if len(units):
        for row in units[["id", "unit", "lineno", "end_lineno"]].itertuples(index=False):
            spans.setdefault((row.id, row.unit), (int(row.lineno), int(row.end_lineno)))
    for p in pairs:
        item = bench_items.get(p["item_id"])
        p["benchmark_solution"] = item.solution if item else ""
        doc = docs.get(p["doc_id"], {})
        lo, hi = spans.get((p["doc_id"], p["unit"]), (1, None))
        p["training_snippet"], p["line_start"], p["line_end"] = _snippet(doc.get("text") or "", lo, hi)
        # a missing column reads as NaN: only strings name a place
        p["repo"], p["path"] = (v if isinstance(v, str) else None for v in (doc.get("repo"), doc.get("path")))
    for h in hits:
        text = docs.get(h["doc_id"], {}).get("text") or ""
        h["before"] = text[max(0, h["start"] - 80) : h["start"]]
        h["match"] = text[h["start"] : h["end"]]
        h["after"] = text[h["end"] : h["end"] + 80]
        h["line"] = text.count("\n", 0, h["start"]) + 1
        h["path"] = docs.get(h["doc_id"], {}).get("path")


def _load_inputs(root: Path, summary):
    import pandas as pd

    items = pd.read_parquet(root / "items.parquet")
    units = pd.read_parquet(root / "units.parquet")
    scores = pd.read_parquet(root / "scores.parquet")
    verdicts = []
    if (root / LLM_VERDICTS).is_file():
        verdicts = [
            json.loads(line) for line in (root / LLM_VERDICTS).read_text().splitlines() if line.strip()
        ]
    hits, behaviour_hits = [], []
    if (root / BEHAVIOUR_HITS).is_file():
        with open(root / BEHAVIOUR_HITS) as f:
            behaviour_hits = [json.loads(line) for line in f if line.strip()]
    if (root / NGRAM_HITS).is_file():
        with open(root / NGRAM_HITS) as f:
            hits = [json.loads(line) for line in f if line.strip()]
    bench_items = {}
    try:
        groups = load_benchmarks(list(summary["benchmarks"]), _mbpp_path_from(summary), "all").values()
        bench_items = {it.id: it for group in groups for it in group}
    except (FileNotFoundError, ValueError):
        pass  # solutions are then shown by id only
    return items, units, scores, hits, bench_items, verdicts, behaviour_hits


def write_decontam_report(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    max_hits: int = 5000,
) -> dict[str, Any]:
    """Write ``report.html`` (self-contained), ``report.md`` and ``report.json`` for a decontam output dir.

    Every similar item, every removed document (the union over benchmarks, per tau), a side-by-side
    pair for each (repo, path, line numbers; flagged when it does not pass the threshold), every
    unparseable document (not checked by AST) and up to ``max_hits`` 13-gram hits with the n-gram
    highlighted in context (all of them stay in ``ngram_hits.jsonl``). Tables sort and filter in the
    browser (a small inline script; no network).

    Returns ``{"html", "markdown", "json"}`` paths plus the Table-3 rows.

    Example:
        >>> write_decontam_report("textbooks-out/quickstart/decontam")  # doctest: +SKIP
    """
    root = Path(input_dir)
    summary_path = root / "decontam.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{root} holds no decontam.json: run decontam_audit / prune_shards first")
    summary = json.loads(summary_path.read_text())
    out = Path(output_dir) if output_dir else root / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    items, units, scores, hits, bench_items, verdicts, behaviour_hits = _load_inputs(root, summary)
    removed = _removed_rows(scores, summary)
    pairs = _pairs(items, removed, summary)
    _attach_verdicts(pairs, verdicts)
    _attach_behaviour(pairs, behaviour_hits)
    hits = hits[:max_hits]
    docs = _read_docs(
        summary.get("input_dir", ""), {p["doc_id"] for p in pairs} | {h["doc_id"] for h in hits}
    )
    _attach_sources(pairs, hits, docs, units, bench_items)
    unparsed = scores[scores["parse_error"].notna()][["id", "parse_error"]].to_dict("records")
    report = {
        "summary": summary,
        "table3": _table3(summary),
        "checksums": {name: b["checksum"] for name, b in summary["benchmarks"].items()},
        "removed_docs": removed,
        "removed_union": {t: sum(t in r["removed_at"] for r in removed) for t in _taus(summary)},
        "pairs": pairs,
        "not_ast_checked": unparsed,
        "llm_verdicts": verdicts,
        "behaviour_hits": behaviour_hits,
        "ngram_hits": hits,
        "ngram_hits_total": len(hits),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True, default=str))
    (out / "report.md").write_text(_markdown(report))
    (out / "report.html").write_text(_html(report, _histograms(items, units, summary)))
    return {
        "html": str(out / "report.html"),
        "markdown": str(out / "report.md"),
        "json": str(out / "report.json"),
        "table3": report["table3"],
    }


def _mbpp_path_from(summary) -> str | None:
    return os.environ.get("TEXTBOOKS_MBPP_PATH") or summary.get("mbpp_path")


def _markdown(report) -> str:
    s = report["summary"]
    lines = [
        "# Decontamination audit",
        "",
        f"Input: `{s['input_dir']}` - {s['docs']} documents, {s['units']} units; rule `{s['rule']}`, "
        f"embedding threshold {num(s['embedding_threshold'])}, AST floor {num(s['ast_floor'])}.",
        f"Not checked by AST (unparseable, listed in the HTML report): {len(report['not_ast_checked'])}.",
        "",
        "## Benchmark checksums (sha256)",
        "",
    ]
    lines += [f"- {name}: `{c}`" for name, c in report["checksums"].items()]
    lines += ["", "## Similar / non-similar problems and removed training documents (Table 3, left half)", ""]
    lines += [
        "| benchmark | tau | similar | non-similar | total | removed docs | removed units |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["table3"]:
        lines.append(
            f"| {r['benchmark']} | {r['tau']} | {r['similar']} | {r['non_similar']} | {r['total']} | "
            f"{r['removed_docs']} | {r['removed_units']} |"
        )
    lines += ["", "## Removed documents (union over benchmarks)", ""]
    lines += [f"- tau {t}: {n}" for t, n in report["removed_union"].items()]
    lines += ["", "| doc | item | AST | embedding | removed at tau |", "|---|---|---|---|---|"]
    for r in report["removed_docs"]:
        lines.append(
            f"| `{r['doc_id']}` | {r['item_id'] or ''} | {num(r['ast'])} | {num(r['emb'])} | "
            f"{', '.join(r['removed_at'])} |"
        )
    lines += _markdown_behaviour(report)
    lines += ["", f"13-gram evidence spans: {report['ngram_hits_total']} (all in `{NGRAM_HITS}`).", ""]
    return "\n".join(lines) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1500px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top}th{background:#f0f0f0;cursor:pointer}
td.l{text-align:left}.pair{display:grid;grid-template-columns:1fr 1fr;gap:8px}pre{background:#f7f7f7;padding:6px;
overflow:auto;font-size:12px;max-height:420px;margin:0}code{font-size:12px}.hit{background:#ffe08a}
.fail{color:#b00;font-weight:bold}input.filter{margin:4px 0;width:30em}details{margin:4px 0}"""

# sort on header click (numbers numerically), filter rows by a substring: no libraries, no network
_JS = """document.querySelectorAll('table.sortable').forEach(function(t){
var f=document.createElement('input');f.className='filter';f.placeholder='filter rows...';
t.parentNode.insertBefore(f,t);f.addEventListener('input',function(){var q=f.value.toLowerCase();
t.querySelectorAll('tbody tr').forEach(function(r){r.style.display=r.textContent.toLowerCase().indexOf(q)<0?'none':'';});});
t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
var b=t.tBodies[0],rs=Array.from(b.rows),d=th.dataset.dir==='a'?-1:1;th.dataset.dir=d>0?'a':'d';
rs.sort(function(x,y){var p=x.cells[i].textContent,q=y.cells[i].textContent,m=parseFloat(p),n=parseFloat(q);
return d*((isNaN(m)||isNaN(n))?p.localeCompare(q):m-n);});rs.forEach(function(r){b.appendChild(r);});});});});"""


def _table(headers: list[str], rows: list[list[str]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(rows_cell for rows_cell in row) + "</tr>" for row in rows)
    return (
        f"<table class='sortable' id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _td(value: Any, left: bool = False) -> str:
    text = value if isinstance(value, str) else num(value)
    return f"<td class='l'>{html.escape(text)}</td>" if left else f"<td>{html.escape(text)}</td>"


def _html_head(report) -> list[str]:
    e = html.escape
    s = report["summary"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Decontamination audit</title>"
        f"<style>{_CSS}</style></head><body><h1>Decontamination audit</h1>",
        f"<p>Input <code>{e(s['input_dir'])}</code>: {s['docs']} documents, {s['units']} units. Rule "
        f"<b>{e(s['rule'])}</b>, embedding threshold {num(s['embedding_threshold'])}, AST floor "
        f"{num(s['ast_floor'])}. Not checked by AST: {len(report['not_ast_checked'])} documents.</p>",
        "<h2>Benchmark checksums (sha256)</h2><ul>",
    ]
    parts += [f"<li>{e(n)}: <code>{e(c)}</code></li>" for n, c in report["checksums"].items()]
    parts.append("</ul><h2>Similar / non-similar problems and removed training documents</h2>")
    rows = [
        [_td(r["benchmark"], True), _td(r["tau"])]
        + [_td(r[k]) for k in ("similar", "non_similar", "total", "removed_docs", "removed_units")]
        for r in report["table3"]
    ]
    parts.append(
        _table(
            ["benchmark", "tau", "similar", "non-similar", "total", "removed docs", "removed units"],
            rows,
            "table3",
        )
    )
    return parts


def _html_removed(report) -> list[str]:
    union = ", ".join(f"tau {t}: {n}" for t, n in report["removed_union"].items())
    parts = [f"<h2>Removed documents (union over benchmarks)</h2><p>{html.escape(union or 'none')}</p>"]
    rows = [
        [
            _td(r["doc_id"], True),
            _td(r["benchmark"], True),
            _td(r["item_id"] or "", True),
            _td(r["unit"] or "", True),
            _td(r["ast"]),
            _td(r["emb"]),
            _td(", ".join(r["removed_at"]), True),
        ]
        for r in report["removed_docs"]
    ]
    parts.append(
        _table(
            ["doc id", "benchmark", "item", "unit", "AST rate", "embedding distance", "removed at tau"],
            rows,
            "removed",
        )
    )
    rows = [[_td(r["id"], True), _td(r["parse_error"], True)] for r in report["not_ast_checked"]]
    parts.append("<h2>Documents not checked by AST (unparseable)</h2>")
    parts.append(_table(["doc id", "reason"], rows, "unparsed"))
    return parts


def _markdown_behaviour(report) -> list[str]:
    hits, cost = report.get("behaviour_hits") or [], report["summary"].get("behaviour")
    if cost is None:
        return []
    lines = ["", "## Behavioural hits (a training function passes an item's own tests)", "",
             f"{len(hits)} hits; {cost['shortlisted']} pairs shortlisted at AST floor {num(cost['floor'])}, "
             f"{cost['executions']} sandbox executions ({cost['cached']} verdicts from the cache).", "",
             "| item | doc | unit | lines | tests passed | verdict |", "|---|---|---|---|---|---|"]  # fmt: skip
    for h in hits:
        lines.append(f"| {h['item_id']} | `{h['doc_id']}` | {h['unit']} | {h['lineno']}-{h['end_lineno']} | "
                     f"{h['tests_passed']} asserts | {h['verdict_mode']} |")  # fmt: skip
    return lines


def _html_behaviour(report) -> list[str]:
    cost = report["summary"].get("behaviour")
    if cost is None:
        return []
    rows = [
        [_td(h["item_id"], True), _td(h["doc_id"], True), _td(h["unit"], True),
         _td(f"{h['lineno']}-{h['end_lineno']}"), _td(h["tests_passed"]), _td(h["ast_rate"]),
         _td(h["verdict_mode"] or "", True), _td("yes" if h["cached"] else "no", True)]
        for h in report["behaviour_hits"]
    ]  # fmt: skip
    return [
        f"<h2>Behavioural hits</h2><p>Training functions that pass a benchmark item's own tests in the "
        f"sandbox: {len(rows)} hits; {cost['shortlisted']} pairs shortlisted (AST floor {num(cost['floor'])}), "
        f"{cost['executions']} executions, {cost['cached']} verdicts from the cache.</p>",
        _table(["item", "doc id", "unit", "lines", "tests passed", "AST rate", "verdict", "cached"], rows,
               "behaviour"),
    ]  # fmt: skip


def _html_pairs(report) -> list[str]:
    e = html.escape
    rows = [
        [
            _td(p["item_id"], True),
            _td(p["doc_id"], True),
            _td(p.get("repo") or "", True),
            _td(p.get("path") or "", True),
            _td(f"{p['line_start']}-{p['line_end']}"),
            _td(p["measure"], True),
            _td(p["score"]),
            "<td>ok</td>" if p["passes"] else "<td class='fail'>below threshold</td>",
            _td(_verdict_text(p.get("llm")), True),
        ]
        for p in report["pairs"]
    ]
    parts = [
        "<h2>Similar items and their training matches</h2>",
        _table(
            ["item", "doc id", "repo", "path", "lines", "measure", "score", "flag", "LLM judge"],
            rows,
            "pairs",
        ),
        "<h2>Pairs side by side</h2>",
    ]
    for p in report["pairs"]:
        flag = "" if p["passes"] else " <span class='fail'>below threshold</span>"
        if p.get("llm"):
            flag += f" LLM: {e(_verdict_text(p['llm']))}"
        where = " ".join(x for x in (p.get("repo"), p.get("path")) if x)
        parts.append(
            f"<details><summary>{e(str(p['item_id']))} &harr; <code>{e(str(p['doc_id']))}</code> {e(where)} "
            f"lines {p['line_start']}-{p['line_end']} ({e(p['measure'])} {num(p['score'])}){flag}</summary>"
            f"<div class='pair'><pre>{e(p['benchmark_solution'])}</pre><pre>{e(p['training_snippet'])}</pre>"
            "</div></details>"
        )
    return parts


def _html_hits(report) -> list[str]:
    e = html.escape
    parts = [
        f"<h2>13-gram hits</h2><p>{report['ngram_hits_total']} evidence spans "
        f"({len(report['ngram_hits'])} shown; all in <code>{NGRAM_HITS}</code>).</p>"
    ]
    rows = [
        [
            _td(h["doc_id"], True),
            _td(h.get("path") or "", True),
            _td(h.get("line")),
            _td(h["item_id"], True),
            _td(h["field"], True),
            f"<td class='l'><pre>{e(h.get('before', ''))}<span class='hit'>{e(h.get('match', ''))}</span>"
            f"{e(h.get('after', ''))}</pre></td>",
        ]
        for h in report["ngram_hits"]
    ]
    parts.append(_table(["doc id", "path", "line", "item", "field", "13-gram in context"], rows, "hits"))
    return parts


def _html_verdicts(report) -> list[str]:
    if not report["llm_verdicts"]:
        return []
    rows = [
        [
            _td(v["item_id"], True),
            _td(v["doc_id"], True),
            _td(v.get("unit") or "", True),
            _td({True: "same problem", False: "different", None: "unclear"}[v["same"]], True),
            _td(v.get("answer") or v.get("error") or "", True),
            _td("yes" if v["cached"] else "no", True),
        ]
        for v in report["llm_verdicts"]
    ]
    return [
        "<h2>LLM judge verdicts</h2>",
        _table(["item", "doc id", "unit", "verdict", "answer", "cached"], rows, "verdicts"),
    ]


def _html(report, plots) -> str:
    parts = _html_head(report)
    parts.append("<h2>Maximum similarity</h2>")
    parts += [
        f"<h3>{html.escape(n)}</h3><img alt='histograms {html.escape(n)}' src='data:image/png;base64,{p}'>"
        for n, p in plots.items()
    ]
    parts += _html_removed(report) + _html_pairs(report) + _html_behaviour(report) + _html_verdicts(report) + _html_hits(report)
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts)
