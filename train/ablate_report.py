"""The ablation's table, comparisons, plots and HTML page (see :mod:`train.ablate`).

A difference counts as **beyond the seed spread** when the seed ranges do not overlap: every seed of one
variant is better than every seed of the other. Only the benchmark losses are compared across variants;
each variant's validation loss is on its own held-out data, so it says how well a model fits its data,
not which data is better.

Example:
    >>> stats([3.0, 1.0, 2.0])
    {'mean': 2.0, 'std': 1.0, 'min': 1.0, 'max': 3.0, 'n': 3, 'values': [3.0, 1.0, 2.0]}
    >>> compare(stats([1.0, 1.1]), stats([1.5, 1.6]))["verdict"]
    'first better beyond seed spread'
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

COMPARED = ("humaneval_bpc", "mbpp_bpc")  # lower is better; comparable across variants
PLOTTED = ("humaneval_bpc", "mbpp_bpc", "val_loss")
LABELS = {
    "humaneval_bpc": "HumanEval solution bits/char",
    "mbpp_bpc": "MBPP solution bits/char",
    "humaneval_bpt": "HumanEval solution bits/token",
    "mbpp_bpt": "MBPP solution bits/token",
    "val_loss": "own validation loss (nats/token)",
    "pass@1": "HumanEval pass@1",
}


def stats(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (ddof 1; 0 for one seed), min, max over seeds."""
    arr = np.asarray(values, dtype=float)
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
        "min": float(arr.min()),
        "max": float(arr.max()),
        "n": len(arr),
        "values": [float(v) for v in values],
    }


def compare(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Difference of means (first - second, lower is better) and whether the seed ranges separate."""
    if min(first["n"], second["n"]) < 2:
        verdict = "one seed: no spread to compare against"
    elif first["max"] < second["min"]:
        verdict = "first better beyond seed spread"
    elif second["max"] < first["min"]:
        verdict = "second better beyond seed spread"
    else:
        verdict = "within seed spread"
    return {"diff": first["mean"] - second["mean"], "verdict": verdict}


def _curves(runs: list[dict]) -> dict[str, dict[str, list]]:
    """metric -> {"tokens", "mean", "min", "max"} over the seeds of one variant, at shared steps."""
    steps = sorted(set.intersection(*[{p["step"] for p in r["curve"]} for r in runs])) if runs else []
    out: dict[str, dict[str, list]] = {}
    for metric in PLOTTED:
        rows = []
        for step in steps:
            values = [
                p[metric] for r in runs for p in r["curve"] if p["step"] == step and p.get(metric) is not None
            ]
            if len(values) == len(runs):
                tokens = next(p["tokens"] for p in runs[0]["curve"] if p["step"] == step)
                rows.append((tokens, float(np.mean(values)), min(values), max(values)))
        if rows:
            out[metric] = {
                key: [row[i] for row in rows] for i, key in enumerate(("tokens", "mean", "min", "max"))
            }
    return out


def summarize_runs(cfg, data: dict[str, dict], runs: list[dict]) -> dict[str, Any]:
    """Per-variant statistics over seeds, curves, and the comparisons that answer "did filtering help"."""
    variants: dict[str, Any] = {}
    for name in cfg.all_variants():
        mine = [r for r in runs if r["variant"] == name]
        metrics = sorted({k for r in mine for k, v in r["final"].items() if isinstance(v, (int, float))})
        variants[name] = {
            "shards": data[name]["shards"],
            "variant_tokens": data[name]["n_tokens"],
            "epochs": mine[0]["epochs"] if mine else None,
            "final": {
                m: stats([r["final"][m] for r in mine if r["final"].get(m) is not None]) for m in metrics
            },
            "curves": _curves(mine),
        }
    pairs = []
    for filtered, source in cfg.random_controls.items():
        pairs += [(filtered, f"random-{filtered}"), (filtered, source), (f"random-{filtered}", source)]
    comparisons = []
    for first, second in pairs:
        for metric in COMPARED:
            a, b = variants[first]["final"].get(metric), variants[second]["final"].get(metric)
            if a and b:
                comparisons.append({"first": first, "second": second, "metric": metric, **compare(a, b)})
    return {
        "token_budget": runs[0]["tokens"] if runs else cfg.token_budget,
        "seeds": cfg.seeds,
        "variants": variants,
        "comparisons": comparisons,
        "runs": runs,
    }


def plot_curves(result: dict[str, Any], folder: Path) -> list[str]:
    """One PNG per metric: mean over seeds vs training tokens per variant, the seed range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for metric in PLOTTED:
        fig, ax = plt.subplots(figsize=(6, 4))
        drawn = False
        for name, variant in result["variants"].items():
            curve = variant["curves"].get(metric)
            if not curve:
                continue
            ax.plot(curve["tokens"], curve["mean"], marker="o", label=name)
            ax.fill_between(curve["tokens"], curve["min"], curve["max"], alpha=0.2)
            drawn = True
        if drawn:
            ax.set_xlabel("training tokens")
            ax.set_ylabel(LABELS.get(metric, metric))
            ax.set_title(f"{LABELS.get(metric, metric)} ({len(result['seeds'])} seeds, range shaded)")
            ax.legend()
            fig.tight_layout()
            fig.savefig(folder / f"{metric.replace('@', '_')}.png", dpi=110)
            written.append(str(folder / f"{metric.replace('@', '_')}.png"))
        plt.close(fig)
    return written


def _cell(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "-"
    return f"{summary['mean']:.4f} &plusmn; {summary['std']:.4f} <small>[{summary['min']:.4f}, {summary['max']:.4f}]</small>"


def render_html(result: dict[str, Any], plots: list[str]) -> str:
    """The report page: the table (mean &plusmn; std [min, max] over seeds), the comparisons, the plots."""
    metrics = sorted({m for v in result["variants"].values() for m in v["final"]} - {"step", "tokens"})
    head = "".join(f"<th>{html.escape(LABELS.get(m, m))}</th>" for m in metrics)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{v['variant_tokens']:,}</td><td>{(v['epochs'] or 0):.2f}</td>"
        + "".join(f"<td>{_cell(v['final'].get(m))}</td>" for m in metrics)
        + "</tr>"
        for name, v in result["variants"].items()
    )
    comparisons = "".join(
        f"<tr><td>{html.escape(c['first'])}</td><td>{html.escape(c['second'])}</td><td>{html.escape(c['metric'])}</td>"
        f"<td>{c['diff']:+.4f}</td><td>{html.escape(c['verdict'])}</td></tr>"
        for c in result["comparisons"]
    )
    images = "".join(
        f'<img src="plots/{html.escape(Path(p).name)}" alt="{html.escape(Path(p).stem)}">' for p in plots
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>textbooks ablation</title>"
        "<style>body{font-family:sans-serif}td,th{padding:4px 8px;border-bottom:1px solid #ddd}"
        "img{max-width:48%}</style></head><body>"
        f"<h1>Equal-token ablation</h1><p>{result['token_budget']:,} training tokens per run, "
        f"seeds {html.escape(str(result['seeds']))}. Lower is better for losses. Validation loss is on "
        "each variant's own held-out data and is not comparable across variants.</p>"
        f"<table><tr><th>variant</th><th>variant tokens</th><th>epochs</th>{head}</tr>{rows}</table>"
        "<h2>Comparisons (first - second; beyond spread = seed ranges do not overlap)</h2>"
        f"<table><tr><th>first</th><th>second</th><th>metric</th><th>diff</th><th>verdict</th></tr>{comparisons}</table>"
        f"<h2>Curves</h2>{images}</body></html>"
    )


def write_report(result: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write ``plots/*.png`` and ``ablation.html`` under ``out``; returns their paths."""
    plots = plot_curves(result, out / "plots")
    (out / "ablation.html").write_text(render_html(result, plots), encoding="utf-8")
    return {"html": str(out / "ablation.html"), "plots": plots}
