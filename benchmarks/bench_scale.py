"""Decontamination audit at 1x, 4x and 16x corpus: the single-process audit vs the stages on 4 tasks.

Corpus: parseable stdlib + site-packages Python files (``--base-mb`` of text), replicated 4x and 16x
under new ids. Each run is a fresh subprocess (rule ast, 13-gram scan, no embeddings, HumanEval + MBPP
test when ``TEXTBOOKS_MBPP_PATH`` is set):

* old: :func:`decontam.prune.prune_shards` + the 13-gram scan, 2 parse workers (the audit before
  issue 21): peak RSS of its process;
* new: :func:`decontam.report.decontam_audit` on a local executor with 4 tasks (2 at a time on this
  2-core machine): peak RSS of each scoring task (its ``peak_rss_mb`` stat) and of the driver (reduce).

Prints one row per run (wall time, documents/s, peak RSS) and the 16x/1x ratios; ``--plot`` writes a
PNG. ``--recall`` instead measures recall per CPU-minute of the audit's measures on a planted corpus
(``benchmarks/planted_corpus.py``).

    python benchmarks/bench_scale.py --base-mb 3 --plot benchmarks/bench_scale.png
    python benchmarks/bench_scale.py --recall --items 40 --clean 60
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_corpus(folder: Path, base_mb: float, copies: int) -> int:
    """``copies`` replicas of ``base_mb`` of parseable stdlib + site-packages files as a shard directory."""
    from datatrove.data import Document

    from benchmarks.planted_corpus import clean_pools
    from curate.shards import ShardWriter

    std, site = clean_pools(3000, 3000, seed=0)
    picked, size = [], 0
    for path, text in (p for pair in zip(std, site, strict=False) for p in pair):
        if size >= base_mb * 2**20:
            break
        picked.append((path, text))
        size += len(text)
    n = 0
    with ShardWriter(str(folder / "data"), max_shard_bytes=2**20) as writer:
        for copy in range(copies):
            for k, (path, text) in enumerate(picked):
                writer.write(Document(text=text, id=f"c{copy}/{k}/{path.name}", metadata={"path": str(path)}))
                n += 1
    return n


def run_one(mode: str, corpus: str, out: str) -> dict:
    """One audit in this process (called in a subprocess); returns wall time and peak RSS figures."""
    started = time.perf_counter()
    mbpp = os.environ.get("TEXTBOOKS_MBPP_PATH")
    benchmarks = ["humaneval", "mbpp"] if mbpp else ["humaneval"]
    if mode == "old":
        from decontam.prune import prune_shards
        from decontam.report import scan_ngrams

        prune_shards(
            corpus, out, benchmarks=benchmarks, mbpp_path=mbpp, rule="ast", embeddings=False, workers=2
        )
        scan_ngrams(corpus, out, benchmarks, mbpp)
        tasks = []
    else:
        from decontam.report import decontam_audit

        decontam_audit(corpus, out, benchmarks=benchmarks, mbpp_path=mbpp, rule="ast", embeddings=False,
                       executor={"type": "local", "tasks": 4, "workers": 2})  # fmt: skip
        stats = sorted((Path(out) / ".logs" / "decontam-score" / "stats").glob("*.json"))
        tasks = [_task_rss(json.loads(p.read_text())) for p in stats]
    return {
        "wall_s": time.perf_counter() - started,
        "driver_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "task_rss_mb": tasks,
    }


def _task_rss(stats: list) -> float:
    for step in stats:
        value = step.get("stats", {}).get("peak_rss_mb")
        if value is not None:
            return float(value["total"] if isinstance(value, dict) else value)
    raise ValueError("no peak_rss_mb stat")


def scale(base_mb: float, work: Path, plot: str | None) -> list[dict]:
    rows = []
    for copies in (1, 4, 16):
        corpus = work / f"corpus_{copies}x"
        n_docs = build_corpus(corpus, base_mb, copies)
        for mode in ("old", "new"):
            out = work / f"{mode}_{copies}x"
            cmd = [sys.executable, __file__, "--run", mode, "--corpus", str(corpus), "--out", str(out)]
            result = json.loads(
                subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
            )
            result.update(mode=mode, copies=copies, docs=n_docs, docs_per_s=n_docs / result["wall_s"])
            result["peak_task_rss_mb"] = max(result["task_rss_mb"], default=result["driver_rss_mb"])
            rows.append(result)
            print(f"{mode} {copies:>2}x  docs {n_docs:>6}  wall {result['wall_s']:7.1f} s  "
                  f"{result['docs_per_s']:6.1f} docs/s  peak task RSS {result['peak_task_rss_mb']:6.0f} MB  "
                  f"driver RSS {result['driver_rss_mb']:6.0f} MB", flush=True)  # fmt: skip
    for mode in ("old", "new"):
        one, big = (next(r for r in rows if r["mode"] == mode and r["copies"] == c) for c in (1, 16))
        print(f"{mode}: peak task RSS 16x/1x = {big['peak_task_rss_mb'] / one['peak_task_rss_mb']:.2f}; "
              f"wall 16x/(16 x 1x) = {big['wall_s'] / (16 * one['wall_s']):.2f}; "
              f"driver RSS 16x/1x = {big['driver_rss_mb'] / one['driver_rss_mb']:.2f}")  # fmt: skip
    if plot:
        _plot(rows, plot)
    return rows


def _plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for mode, label in (("old", "single-process audit"), ("new", "stages, 4 tasks")):
        sub = [r for r in rows if r["mode"] == mode]
        x = [r["copies"] for r in sub]
        axes[0].plot(x, [r["peak_task_rss_mb"] for r in sub], "o-", label=f"{label}: peak RSS per task")
        if mode == "new":
            axes[0].plot(x, [r["driver_rss_mb"] for r in sub], "s--", label="stages: driver (reduce)")
        axes[1].plot(x, [r["wall_s"] for r in sub], "o-", label=label)
    axes[0].set(xscale="log", xlabel="corpus (x base)", ylabel="MB", title="peak RSS")
    axes[1].set(xscale="log", yscale="log", xlabel="corpus (x base)", ylabel="s", title="wall time")
    for ax in axes:
        ax.set_xticks([1, 4, 16], ["1x", "4x", "16x"])
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def recall(n_items: int, n_clean: int, work: Path) -> None:
    """Recall of planted copies and clean false positives at tau 0.9, per CPU-minute, per measure set."""
    from datatrove.data import Document

    from benchmarks.planted_corpus import build_corpus as planted
    from curate.shards import ShardWriter
    from decontam.eval_sets import load_benchmark

    mbpp = os.environ.get("TEXTBOOKS_MBPP_PATH")
    benchmarks = {"humaneval": load_benchmark("humaneval")[:n_items]}
    if mbpp:
        benchmarks["mbpp"] = load_benchmark("mbpp", path=mbpp, split="test")[:n_items]
    docs = planted(benchmarks, n_clean=n_clean, seed=3)
    import shutil

    shutil.rmtree(work / "planted", ignore_errors=True)
    with ShardWriter(str(work / "planted" / "data")) as writer:
        for d in docs:
            writer.write(Document(text=d.text, id=d.id, metadata={"path": d.id}))
    spec = {name: {"name": "custom", "path": _jsonl(work, name, items)} for name, items in benchmarks.items()}
    configs = {
        "ast only": dict(rule="ast", embeddings=False),
        "ast | normalised units": dict(rule="either", embedding_view="normalised_units"),
        "ast | document embeddings (old default)": dict(rule="either", embedding_view="document"),
    }
    for label, kwargs in configs.items():
        cmd = [sys.executable, __file__, "--recall-run", json.dumps({"spec": spec, **kwargs}),
               "--corpus", str(work / "planted"), "--out", str(work / f"out{len(label)}")]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = json.loads(
            subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_min = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / 60
        removed = set(out["removed"])
        tiers = {}
        for d in docs:
            tiers.setdefault(d.tier, []).append(d.id in removed)
        planted_hits = [h for t, v in tiers.items() if t != "clean" for h in v]
        rec = sum(planted_hits) / len(planted_hits)
        print(f"{label:42s} recall {rec:.3f} ({', '.join(f'{t} {sum(v) / len(v):.3f}' for t, v in tiers.items() if t != 'clean')}) "
              f"clean FP {sum(tiers['clean']) / len(tiers['clean']):.3f}  CPU {cpu_min:.2f} min  "
              f"recall/CPU-min {rec / cpu_min:.2f}", flush=True)  # fmt: skip


def _jsonl(work: Path, name: str, items) -> str:
    path = work / f"{name}.jsonl"
    path.write_text(
        "".join(json.dumps({"id": i.id, "prompt": i.prompt, "solution": i.solution}) + "\n" for i in items)
    )
    return str(path)


def recall_run(config: str, corpus: str, out: str) -> dict:
    from decontam.report import decontam_audit

    kwargs = json.loads(config)
    decontam_audit(corpus, out, benchmarks=kwargs.pop("spec"), taus=[0.9], ngram=False, write_shards=False,
                   executor={"type": "local", "tasks": 2, "workers": 1}, **kwargs)  # in-process: all CPU counted  # fmt: skip
    import pyarrow.parquet as pq

    scores = pq.read_table(Path(out) / "scores.parquet", columns=["id", "removed_0.9"]).to_pylist()
    return {"removed": [r["id"] for r in scores if r["removed_0.9"]]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-mb", type=float, default=3.0)
    parser.add_argument("--work", default="/tmp/bench_scale")
    parser.add_argument("--plot", default=None)
    parser.add_argument("--run", choices=["old", "new"])
    parser.add_argument("--recall", action="store_true")
    parser.add_argument("--recall-run")
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--clean", type=int, default=60)
    parser.add_argument("--corpus")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_one(args.run, args.corpus, args.out)))
    elif args.recall_run:
        print(json.dumps(recall_run(args.recall_run, args.corpus, args.out)))
    elif args.recall:
        recall(args.items, args.clean, Path(args.work))
    else:
        scale(args.base_mb, Path(args.work), args.plot)


if __name__ == "__main__":
    main()
