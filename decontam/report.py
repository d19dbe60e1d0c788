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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from decontam.prune import (
    DEFAULT_EMBEDDING_THRESHOLD,
    DEFAULT_TAUS,
    data_folder,
    load_benchmarks,
    prune_shards,
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
    embedding_threshold: float = DEFAULT_EMBEDDING_THRESHOLD,
    embeddings: bool = True,
    embedder: Any = None,
    ngram: bool = True,
    workers: int = 2,
    write_shards: bool = True,
    min_nodes: int = 10,
) -> dict[str, Any]:
    """JOB ``decontam_audit``: score, prune and 13-gram scan ``input_dir``, then write the audit report.

    Everything lands in ``output_dir`` (see :mod:`decontam.prune`), the report in ``output_dir/report/``.
    When no MBPP file is given (``mbpp_path`` or ``$TEXTBOOKS_MBPP_PATH``) MBPP is skipped with a note
    instead of failing the run.

    Example (recipe stage)::

        - name: audit
          job: decontam_audit
          with: {input_dir: ${out}/filtered, output_dir: ${out}/decontam, taus: [0.95, 0.9]}
    """
    notes = []
    if not isinstance(benchmarks, dict) and "mbpp" in benchmarks:
        if mbpp_path is None and not os.environ.get("TEXTBOOKS_MBPP_PATH"):
            benchmarks = [b for b in benchmarks if b != "mbpp"]
            notes.append("mbpp skipped: no mbpp_path given and $TEXTBOOKS_MBPP_PATH unset")
    summary = prune_shards(
        input_dir,
        output_dir,
        benchmarks=benchmarks,
        mbpp_path=mbpp_path,
        mbpp_split=mbpp_split,
        taus=taus,
        rule=rule,
        embedding_threshold=embedding_threshold,
        embeddings=embeddings,
        embedder=embedder,
        workers=workers,
        write_shards=write_shards,
        min_nodes=min_nodes,
    )
    if ngram:
        summary["ngram"] = scan_ngrams(input_dir, output_dir, benchmarks, mbpp_path, mbpp_split)
    summary["notes"] = notes
    (Path(output_dir) / "decontam.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    report = write_decontam_report(output_dir)
    return {
        "output_dir": str(output_dir),
        "report": report["html"],
        "docs": summary["docs"],
        "removed_docs": {k: v["removed_docs"] for k, v in summary["taus"].items()},
        "similar": {
            name: {k: v["similar"] for k, v in b["taus"].items()} for name, b in summary["benchmarks"].items()
        },
        "ngram_hits": summary.get("ngram", {}).get("hits"),
        "notes": notes,
    }


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


def _read_texts(input_dir: str, ids: set[str]) -> dict[str, str]:
    if not ids or not input_dir or not os.path.isdir(input_dir):
        return {}
    import pyarrow.dataset as ds

    dataset = ds.dataset(data_folder(input_dir), format="parquet")
    table = dataset.to_table(columns=["id", "text"], filter=ds.field("id").isin(sorted(ids)))
    return dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True))


def _snippet(text: str, lineno: int | None, end: int | None, max_lines: int = 60) -> str:
    lines = text.splitlines()
    lo = max((lineno or 1) - 1, 0)
    hi = min(end or len(lines), lo + max_lines, len(lines))
    return "\n".join(lines[lo:hi])


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


def write_decontam_report(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    top_k: int = 20,
    max_hits: int = 200,
) -> dict[str, Any]:
    """Write ``report.html`` (self-contained), ``report.md`` and ``report.json`` for a decontam output dir.

    Args:
        input_dir: the directory ``decontam_audit`` / ``prune_shards`` wrote (holds ``decontam.json``).
        output_dir: where the report goes (default ``input_dir/report``).
        top_k: matching pairs shown per benchmark and measure.
        max_hits: 13-gram evidence rows shown (all of them stay in ``ngram_hits.jsonl``).

    Returns ``{"html", "markdown", "json"}`` paths plus the Table-3 rows.

    Example:
        >>> write_decontam_report("textbooks-out/quickstart/decontam")  # doctest: +SKIP
    """
    import pandas as pd

    root = Path(input_dir)
    summary_path = root / "decontam.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{root} holds no decontam.json: run decontam_audit / prune_shards first")
    summary = json.loads(summary_path.read_text())
    out = Path(output_dir) if output_dir else root / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    items = pd.read_parquet(root / "items.parquet")
    units = pd.read_parquet(root / "units.parquet")
    hits = []
    if (root / NGRAM_HITS).is_file():
        with open(root / NGRAM_HITS) as f:
            hits = [json.loads(line) for line in f if line.strip()]
    bench_items = {}
    try:
        bench_items = {
            it.id: it
            for group in load_benchmarks(
                list(summary["benchmarks"]), _mbpp_path_from(summary), "all"
            ).values()
            for it in group
        }
    except (FileNotFoundError, ValueError):
        pass  # solutions are then shown by id only

    # top pairs by AST and by embedding
    pairs = []
    for name in summary["benchmarks"]:
        sub = items[items["benchmark"] == name]
        for measure, col, asc in (("ast", "ast_max", False), ("embedding", "emb_min", True)):
            ranked = sub[sub[col].notna()].sort_values(col, ascending=asc).head(top_k)
            for row in ranked.itertuples():
                doc = row.ast_doc if measure == "ast" else row.emb_doc
                if doc is None or (measure == "ast" and row.ast_max <= 0):
                    continue
                pairs.append(
                    {
                        "benchmark": name,
                        "measure": measure,
                        "item_id": row.item_id,
                        "score": float(getattr(row, col)),
                        "doc_id": doc,
                        "unit": row.ast_unit if measure == "ast" else None,
                    }
                )
    texts = _read_texts(
        summary.get("input_dir", ""), {p["doc_id"] for p in pairs} | {h["doc_id"] for h in hits[:max_hits]}
    )
    unit_lines = {}
    if len(units):
        idx = units.set_index(["id", "unit"])
        for p in pairs:
            if p["unit"] is not None and (p["doc_id"], p["unit"]) in idx.index:
                row = idx.loc[(p["doc_id"], p["unit"])]
                row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
                unit_lines[(p["doc_id"], p["unit"])] = (int(row["lineno"]), int(row["end_lineno"]))
    for p in pairs:
        item = bench_items.get(p["item_id"])
        p["benchmark_solution"] = item.solution if item else ""
        text = texts.get(p["doc_id"], "")
        lo, hi = unit_lines.get((p["doc_id"], p["unit"]), (1, 60))
        p["training_snippet"] = _snippet(text, lo, hi) if text else ""
    for h in hits[:max_hits]:
        text = texts.get(h["doc_id"], "")
        h["context"] = text[max(0, h["start"] - 40) : h["end"] + 40] if text else ""

    table3 = _table3(summary)
    plots = _histograms(items, units, summary)
    report = {
        "summary": summary,
        "table3": table3,
        "checksums": {name: b["checksum"] for name, b in summary["benchmarks"].items()},
        "top_pairs": pairs,
        "ngram_hits": hits[:max_hits],
        "ngram_hits_total": len(hits),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True, default=str))
    (out / "report.md").write_text(_markdown(report))
    (out / "report.html").write_text(_html(report, plots))
    return {
        "html": str(out / "report.html"),
        "markdown": str(out / "report.md"),
        "json": str(out / "report.json"),
        "table3": table3,
    }


def _mbpp_path_from(summary) -> str | None:
    return os.environ.get("TEXTBOOKS_MBPP_PATH") or summary.get("mbpp_path")


def _markdown(report) -> str:
    s = report["summary"]
    lines = [
        "# Decontamination audit",
        "",
        f"Input: `{s['input_dir']}` - {s['docs']} documents, {s['units']} units; rule `{s['rule']}`, "
        f"embedding threshold {s['embedding_threshold']}, AST floor {s['ast_floor']}.",
        f"Parse failures (recorded, not fatal): {s['parse_failures'] or 'none'}.",
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
    lines += ["", "## Top matching pairs", ""]
    for p in report["top_pairs"]:
        lines += [
            f"### {p['item_id']} ~ `{p['doc_id']}` {p['unit'] or ''} ({p['measure']} {p['score']:.3f})",
            "",
            "```python",
            p["benchmark_solution"].rstrip(),
            "```",
            "",
            "```python",
            p["training_snippet"].rstrip(),
            "```",
            "",
        ]
    lines += [
        "## 13-gram hits",
        "",
        f"{report['ngram_hits_total']} evidence spans (first {len(report['ngram_hits'])} shown).",
        "",
    ]
    if report["ngram_hits"]:
        lines += ["| doc | item | field | n-gram | chars |", "|---|---|---|---|---|"]
        for h in report["ngram_hits"]:
            lines.append(
                f"| `{h['doc_id']}` | {h['item_id']} | {h['field']} | {h['ngram']} | {h['start']}-{h['end']} |"
            )
    return "\n".join(lines) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:8px}pre{background:#f7f7f7;padding:6px;overflow:auto;
font-size:12px;max-height:420px}code{font-size:12px}.hit{background:#ffe08a}"""


def _html(report, plots) -> str:
    e = html.escape
    s = report["summary"]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Decontamination audit</title>"
        f"<style>{_CSS}</style></head><body><h1>Decontamination audit</h1>",
        f"<p>Input <code>{e(s['input_dir'])}</code>: {s['docs']} documents, {s['units']} units. Rule "
        f"<b>{e(s['rule'])}</b>, embedding threshold {s['embedding_threshold']}, AST floor {s['ast_floor']}. "
        f"Parse failures (recorded, not fatal): {e(str(s['parse_failures'] or 'none'))}.</p>",
        "<h2>Benchmark checksums (sha256)</h2><ul>",
    ]
    parts += [f"<li>{e(n)}: <code>{e(c)}</code></li>" for n, c in report["checksums"].items()]
    parts.append(
        "</ul><h2>Similar / non-similar problems and removed training documents</h2><table><tr>"
        "<th>benchmark</th><th>tau</th><th>similar</th><th>non-similar</th><th>total</th>"
        "<th>removed docs</th><th>removed units</th></tr>"
    )
    for r in report["table3"]:
        parts.append(
            f"<tr><td>{e(r['benchmark'])}</td><td>{r['tau']}</td><td>{r['similar']}</td>"
            f"<td>{r['non_similar']}</td><td>{r['total']}</td><td>{r['removed_docs']}</td>"
            f"<td>{r['removed_units']}</td></tr>"
        )
    parts.append("</table><h2>Maximum similarity</h2>")
    parts += [
        f"<h3>{e(n)}</h3><img alt='histograms {e(n)}' src='data:image/png;base64,{p}'>"
        for n, p in plots.items()
    ]
    parts.append("<h2>Top matching pairs</h2>")
    for p in report["top_pairs"]:
        parts.append(
            f"<h4>{e(p['item_id'])} &harr; <code>{e(p['doc_id'])}</code> {e(p['unit'] or '')} "
            f"({e(p['measure'])} {p['score']:.3f})</h4><div class='pair'><pre>{e(p['benchmark_solution'])}"
            f"</pre><pre>{e(p['training_snippet'])}</pre></div>"
        )
    parts.append(
        f"<h2>13-gram hits</h2><p>{report['ngram_hits_total']} evidence spans "
        f"(first {len(report['ngram_hits'])} shown; all in <code>{NGRAM_HITS}</code>).</p>"
    )
    if report["ngram_hits"]:
        parts.append(
            "<table><tr><th>doc</th><th>item</th><th>field</th><th>n-gram</th><th>chars</th>"
            "<th>context</th></tr>"
        )
        for h in report["ngram_hits"]:
            parts.append(
                f"<tr><td><code>{e(h['doc_id'])}</code></td><td>{e(h['item_id'])}</td>"
                f"<td>{e(h['field'])}</td><td style='text-align:left'>{e(h['ngram'])}</td>"
                f"<td>{h['start']}-{h['end']}</td><td style='text-align:left'><pre>"
                f"{e(h.get('context', ''))}</pre></td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
