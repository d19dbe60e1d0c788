"""Diversity report for any shard directory: how repetitive is a (synthetic) dataset?

``write_diversity_report(input_dir, output_dir)`` writes ``diversity.json`` and a self-contained
``diversity.html`` (matplotlib plots embedded as PNG) and returns the JSON dict. Works on any folder of
Parquet files with a ``text`` column (a shard directory's ``data/`` is used when present), so our data
can be compared with anyone's. Metrics:

- ``exact_duplicate_rate``: share of rows whose normalised text already appeared;
- ``near_duplicate_rate``: share of rows that are not their MinHash cluster's kept copy
  (``curate.near_dedup``; includes exact duplicates);
- ``distinct_n``: unique / total word n-grams for n = 1..4;
- ``compression_ratio``: raw bytes / zlib-compressed bytes of the texts (higher = more redundant);
- ``embedding``: Vendi score (the effective number of distinct documents) of sentence embeddings,
  absolute and per document (stored embeddings are used when present);
- ``constraints``: per constraint key, distinct values, normalised entropy and (for keys of the bundled
  taxonomies) ``coverage`` = distinct values / taxonomy values; distinct constraint tuples;
- ``function_names``: distinct names, entropy (bits), normalised entropy, collision rate;
- ``openings``: concentration of the first three words (top share, top-10 share, HHI);
- ``imports``: share of documents importing each library (the paper's Figure 3.1).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

_DEF = re.compile(r"^\s*(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", re.M)


def _load_rows(input_dir: str | Path, limit: int | None) -> list[dict]:
    import pyarrow.dataset as ds

    root = Path(input_dir)
    data = root / "data" if (root / "data").is_dir() else root
    if not data.is_dir() or not any(data.rglob("*.parquet")):
        return []  # e.g. a dry run: nothing generated yet; the report says rows = 0
    dataset = ds.dataset(str(data), format="parquet")
    cols = [c for c in ("id", "text", "constraints", "extra") if c in dataset.schema.names]
    if "text" not in cols:
        raise ValueError(f"{data} has no `text` column")
    table = dataset.to_table(columns=cols)
    if limit is not None and table.num_rows > limit:
        table = table.slice(0, limit)
    rows = table.to_pylist()
    for i, row in enumerate(rows):
        row.setdefault("id", str(i))
        row["text"] = row.get("text") or ""
        row["constraints"] = map_to_dict(row.get("constraints"))
        try:
            row["extra"] = json.loads(row["extra"]) if row.get("extra") else {}
        except (TypeError, ValueError):
            row["extra"] = {}
    return rows


def map_to_dict(value) -> dict:
    """A pyarrow map value as a dict (pyarrow gives lists of pairs or of ``{key, value}`` structs)."""
    if not value:
        return {}
    if isinstance(value, dict):
        return dict(value)
    return dict((v["key"], v["value"]) if isinstance(v, dict) else tuple(v) for v in value)


def _entropy(counts: Counter) -> tuple[float, float]:
    """(entropy in bits, entropy / log2(distinct)) of a distribution given by counts."""
    total = sum(counts.values())
    if total == 0:
        return 0.0, 0.0
    p = np.array(list(counts.values()), dtype=float) / total
    h = float(-(p * np.log2(p)).sum())
    return h, (h / math.log2(len(counts)) if len(counts) > 1 else 1.0)


def distinct_n(texts: list[str], n: int) -> float:
    """Unique word n-grams / all word n-grams over the texts (1.0 = no n-gram repeats).

    Example:
        >>> distinct_n(["a b a b"], 1), distinct_n(["a b c"], 2)
        (0.5, 1.0)
    """
    grams: Counter = Counter()
    for t in texts:
        w = t.split()
        grams.update(zip(*(w[i:] for i in range(n)), strict=False))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def vendi_score(X: np.ndarray) -> float:
    """Vendi score of L2-normalised rows: exp(entropy of the eigenvalues of K/n), K the cosine kernel.

    Computed from the d x d covariance (same non-zero eigenvalues as the n x n kernel), so O(n d^2).
    Ranges from 1 (all identical) to n (all orthogonal).

    Example:
        >>> round(vendi_score(np.eye(4)), 6), round(vendi_score(np.ones((4, 3)) / np.sqrt(3)), 6)
        (4.0, 1.0)
    """
    X = np.asarray(X, dtype=np.float64)
    if len(X) == 0:
        return 0.0
    ev = np.linalg.eigvalsh(X.T @ X / len(X))
    ev = ev[ev > 1e-12]
    ev = ev / ev.sum()
    return float(np.exp(-(ev * np.log(ev)).sum()))


def _bundled_value_counts() -> dict[str, int]:
    """Number of values per constraint key in the bundled taxonomies (``subtopic`` = topic leaves)."""
    from synth.prompts import ExercisePromptGenerator, TextbookPromptGenerator

    sizes: dict[str, int] = {}
    for gen in (TextbookPromptGenerator(), ExercisePromptGenerator()):
        for name, size in gen.dimension_sizes.items():
            sizes["subtopic" if name == "topic" else name] = size
    return sizes


def _code_of(text: str) -> str:
    from synth.parse import split_blocks

    blocks = split_blocks(text)
    code = [b.text for b in blocks if b.kind == "code"]
    return "\n".join(code) if code else text


def _function_names(row: dict) -> list[str]:
    name = row["constraints"].get("function_name") or row["extra"].get("entry_point")
    return [name] if name else _DEF.findall(row["text"])[:1]


def _embedding(rows: list[dict], input_dir: Path, embed: bool | str, max_embed: int) -> dict:
    if not embed:
        return {"skipped": "embed=False"}
    try:
        from curate.embed import DEFAULT_EMBEDDER, SentenceEmbedder, load_embeddings
    except ImportError as e:
        return {"skipped": f"curate.embed unavailable: {e}"}
    sample = rows[:max_embed]
    X = None
    model_id = None
    try:  # embeddings already stored next to the shards: use them, no model needed
        model_id = DEFAULT_EMBEDDER if isinstance(DEFAULT_EMBEDDER, str) else None
        if model_id:
            ids, allX = load_embeddings(input_dir, model_id)
            pos = {i: k for k, i in enumerate(ids)}
            idx = [pos[r["id"]] for r in sample if r["id"] in pos]
            if len(idx) == len(sample):
                X = allX[idx]
    except (FileNotFoundError, KeyError, ValueError, OSError):
        X = None
    if X is None:
        emb = SentenceEmbedder()
        X = emb.transform([r["text"][:4000] for r in sample])
        model_id = emb.model_id
    X = np.asarray(X, dtype=np.float32)
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    v = vendi_score(X)
    return {
        "model": model_id,
        "n": len(X),
        "vendi_score": round(v, 4),
        "vendi_per_doc": round(v / max(len(X), 1), 6),
    }


def diversity_metrics(
    input_dir: str | Path,
    limit: int | None = None,
    near: bool = True,
    near_threshold: float = 0.8,
    embed: bool = True,
    max_embed: int = 2000,
) -> tuple[dict, dict]:
    """Compute the metrics; returns ``(report, plot_data)``. See the module doc for each metric."""
    from curate.dedup import content_hash
    from synth.parse import imported_modules

    rows = _load_rows(input_dir, limit)
    n = len(rows)
    texts = [r["text"] for r in rows]
    report: dict[str, Any] = {"input_dir": str(input_dir), "rows": n}
    if n == 0:
        report["note"] = "no rows"
        return report, {}
    hashes = [content_hash(t) for t in texts]
    report["exact_duplicate_rate"] = round(1 - len(set(hashes)) / n, 6)
    if near:
        try:
            from curate.near_dedup import minhash_clusters

            clusters = minhash_clusters(texts, [str(r["id"]) for r in rows], threshold=near_threshold)
            non_rep = sum(1 for r in rows if clusters.get(str(r["id"]), str(r["id"])) != str(r["id"]))
            report["near_duplicate_rate"] = round(non_rep / n, 6)
            report["near_duplicate_threshold"] = near_threshold
        except ImportError as e:
            report["near_duplicate_rate"] = None
            report["near_duplicate_note"] = f"curate.near_dedup unavailable: {e}"
    report["distinct_n"] = {str(k): round(distinct_n(texts, k), 6) for k in (1, 2, 3, 4)}
    raw = "\n".join(texts).encode("utf-8", "surrogatepass")
    report["compression_ratio"] = round(len(raw) / max(len(zlib.compress(raw, 6)), 1), 4)
    report["mean_chars"] = round(len(raw) / n, 1)
    report["embedding"] = _embedding(rows, Path(input_dir), embed, max_embed)

    keys = sorted({k for r in rows for k in r["constraints"]})
    cons: dict[str, Any] = {}
    for k in keys:
        c = Counter(r["constraints"].get(k) for r in rows if k in r["constraints"])
        h, hn = _entropy(c)
        cons[k] = {
            "distinct": len(c),
            "entropy_bits": round(h, 4),
            "entropy_norm": round(hn, 4),
            "max_over_min": round(max(c.values()) / min(c.values()), 4),
        }
    sizes = _bundled_value_counts()
    for k, entry in cons.items():
        if k in sizes:  # coverage of the bundled taxonomy's values (our own shards)
            entry["taxonomy_values"] = sizes[k]
            entry["coverage"] = round(entry["distinct"] / sizes[k], 6)
    tuples = Counter(tuple(sorted(r["constraints"].items())) for r in rows if r["constraints"])
    report["constraints"] = {
        "keys": cons,
        "distinct_tuples": len(tuples),
        "rows_with_constraints": sum(tuples.values()),
    }

    names = Counter(name for r in rows for name in _function_names(r))
    h, hn = _entropy(names)
    total_names = sum(names.values())
    report["function_names"] = {
        "rows_with_name": total_names,
        "distinct": len(names),
        "entropy_bits": round(h, 4),
        "entropy_norm": round(hn, 4),
        "collision_rate": round(1 - len(names) / total_names, 6) if total_names else 0.0,
        "top": names.most_common(10),
    }

    openings = Counter(" ".join(t.lower().split()[:3]) for t in texts if t.strip())
    shares = np.array(sorted(openings.values(), reverse=True), dtype=float) / max(sum(openings.values()), 1)
    report["openings"] = {
        "distinct": len(openings),
        "top_share": round(float(shares[0]), 6) if len(shares) else 0.0,
        "top10_share": round(float(shares[:10].sum()), 6),
        "hhi": round(float((shares**2).sum()), 6),
        "top": openings.most_common(10),
    }

    imports: Counter = Counter()
    no_import = 0
    for t in texts:
        mods = imported_modules(_code_of(t))
        imports.update(mods)
        no_import += not mods
    report["imports"] = {
        "share_without_imports": round(no_import / n, 6),
        "share_importing": {m: round(c / n, 6) for m, c in imports.most_common(30)},
    }
    plot_data = {
        "imports": imports,
        "openings": openings,
        "names": names,
        "constraints": {
            k: Counter(r["constraints"].get(k) for r in rows if k in r["constraints"]) for k in keys
        },
    }
    return report, plot_data


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(report: dict, data: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(report.get("rows", 1), 1)
    out = []
    if data.get("imports"):
        top = data["imports"].most_common(20)
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.bar([m for m, _ in top], [100 * c / n for _, c in top])
        ax.set_ylabel("% of documents importing")
        ax.set_title("Imported libraries (cf. phi-1 Figure 3.1)")
        ax.tick_params(axis="x", rotation=60)
        out.append(("Imported libraries", _png(fig)))
    if data.get("openings"):
        top = data["openings"].most_common(15)
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.barh([o[:40] for o, _ in top][::-1], [100 * c / n for _, c in top][::-1])
        ax.set_xlabel("% of documents")
        ax.set_title("Most common opening phrases (first three words)")
        out.append(("Opening phrases", _png(fig)))
    if data.get("names"):
        freq = sorted(data["names"].values(), reverse=True)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.loglog(range(1, len(freq) + 1), freq, marker=".", linestyle="none")
        ax.set_xlabel("rank")
        ax.set_ylabel("uses")
        ax.set_title("Function-name frequency by rank")
        out.append(("Function names", _png(fig)))
    cons = data.get("constraints") or {}
    if cons:
        keys = list(cons)[:8]
        # at most 4 panels a row: 8 panels side by side were 1716 px wide in a 1000 px page
        ncols = min(4, len(keys))
        nrows = -(-len(keys) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(2.5 * ncols, 2.5 * nrows), squeeze=False)
        for ax, k in zip(axes.flat, keys, strict=False):
            ax.bar(range(len(cons[k])), sorted(cons[k].values(), reverse=True))
            ax.set_title(f"{k} ({len(cons[k])} values)", fontsize=9)
            ax.set_xticks([])
        for ax in list(axes.flat)[len(keys) :]:
            ax.set_visible(False)
        fig.tight_layout()
        out.append(("Constraint-grid coverage (rows per value)", _png(fig)))
    return out


def _html(report: dict, plots: list[tuple[str, str]]) -> str:
    def table(d: dict) -> str:
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v) if isinstance(v, (dict, list)) else str(v))}</td></tr>"
            for k, v in d.items()
        )
        return f"<table>{rows}</table>"

    figs = "".join(f"<h2>{html.escape(t)}</h2><img src='data:image/png;base64,{b}'/>" for t, b in plots)
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:auto}th{text-align:left;padding-right:1em}"
        "td{font-family:monospace}img{max-width:100%;height:auto}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Diversity report</title><style>{style}</style></head>"
        f"<body><h1>Diversity report</h1><p>{html.escape(report.get('input_dir', ''))}</p>{table(report)}{figs}</body></html>"
    )


def write_diversity_report(
    input_dir: str | Path,
    output_dir: str | Path,
    limit: int | None = None,
    near: bool = True,
    near_threshold: float = 0.8,
    embed: bool = True,
    max_embed: int = 2000,
    plots: bool = True,
) -> dict:
    """Write ``diversity.json`` and ``diversity.html`` for a shard directory; return the report.

    Args:
        input_dir: a shard directory (its ``data/``) or any folder of Parquet files with a ``text`` column.
        output_dir: where the report goes.
        limit: only the first ``limit`` rows.
        near, near_threshold: MinHash near-duplicate rate.
        embed, max_embed: Vendi score on the first ``max_embed`` rows' embeddings.

    Example:
        >>> report = write_diversity_report("out/exercises", "out/exercises/report")  # doctest: +SKIP
        >>> report["exact_duplicate_rate"]  # doctest: +SKIP
        0.0
    """
    report, data = diversity_metrics(
        input_dir, limit=limit, near=near, near_threshold=near_threshold, embed=embed, max_embed=max_embed
    )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diversity.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / "diversity.html").write_text(
        _html(report, _plots(report, data) if plots else []), encoding="utf-8"
    )
    report["report_html"] = str(out / "diversity.html")
    return report
