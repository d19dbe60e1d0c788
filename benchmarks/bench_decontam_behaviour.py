"""Decontamination by behaviour on semantic rewrites: recall, clean false positives and cost per floor.

The planted corpus (``benchmarks/planted_corpus.py``) with only its clean files (stdlib + site-packages)
and its semantic tier (every HumanEval + MBPP-test solution after up to three behaviour-keeping rewrites,
then renamed) is written as a shard directory and audited by :func:`decontam.prune.prune_shards` with
the rule ``ast|behaviour`` at tau 0.9, once per shortlist floor, each with a fresh verdict cache (so
each floor pays its own executions). Printed per floor: pairs shortlisted, sandbox executions (and per
1,000 documents), the behavioural step's wall time, recall on the semantic tier of ``ast``,
``behaviour`` and ``ast|behaviour``, and the clean documents flagged, by name. A last run at the
default floor repeats the audit on the same output: it must execute nothing (the verdict cache).

    TEXTBOOKS_MBPP_PATH=../shared/data/mbpp.jsonl python benchmarks/bench_decontam_behaviour.py \\
        [--clean 400] [--floors 0.7,0.6,0.5,0.4,0.3] [--png benchmarks/screenshots/behaviour_floor_curve.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from planted_corpus import SEMANTIC_TIER, build_corpus  # noqa: E402

from decontam.behaviour import DEFAULT_FLOOR  # noqa: E402
from decontam.eval_sets import load_benchmark  # noqa: E402
from decontam.prune import prune_shards  # noqa: E402

TAU = 0.9


def write_corpus(docs, folder: Path) -> Path:
    from datatrove.data import Document

    from curate.shards import ShardWriter

    with ShardWriter(str(folder / "data")) as writer:
        for d in docs:
            writer.write(Document(text=d.text, id=d.id, metadata={"source": d.tier}))
    return folder


def audit(shards: Path, out: Path, floor: float, benchmarks) -> dict:
    """One audit; returns cost, recall per measure and the clean documents flagged."""
    import pandas as pd

    t0 = time.perf_counter()
    summary = prune_shards(shards, out, benchmarks=benchmarks, taus=[TAU], rule="ast|behaviour",
                           embeddings=False, write_shards=False, behaviour={"floor": floor})  # fmt: skip
    wall = time.perf_counter() - t0
    scores = pd.read_parquet(out / "scores.parquet")
    ast_hit = (scores[[c for c in scores if c.startswith("ast_max_")]].max(axis=1) >= TAU).to_numpy()
    hits = [json.loads(line) for line in (out / "behaviour_hits.jsonl").read_text().splitlines() if line]
    beh_docs = {h["doc_id"] for h in hits}
    ids = scores["id"].tolist()
    beh_hit = [i in beh_docs for i in ids]
    semantic = [i.startswith(SEMANTIC_TIER + "/") for i in ids]
    clean = [i.startswith("clean/") for i in ids]
    n_sem, n_clean = sum(semantic), sum(clean)

    def rate(mask, among, n):
        return sum(m and a for m, a in zip(mask, among, strict=True)) / max(n, 1)

    both = [a or b for a, b in zip(ast_hit, beh_hit, strict=True)]
    return {
        "floor": floor,
        "docs": len(ids),
        "semantic_docs": n_sem,
        "clean_docs": n_clean,
        "behaviour": summary["behaviour"],
        "behaviour_s": summary["timings"].get("behaviour_s"),
        "audit_s": round(wall, 1),
        "recall": {"ast": rate(ast_hit, semantic, n_sem), "behaviour": rate(beh_hit, semantic, n_sem),
                   "ast|behaviour": rate(both, semantic, n_sem)},  # fmt: skip
        "clean_fp": {"ast": rate(ast_hit, clean, n_clean), "behaviour": rate(beh_hit, clean, n_clean),
                     "ast|behaviour": rate(both, clean, n_clean)},  # fmt: skip
        "clean_hits": sorted({(h["doc_id"], h["unit"], h["item_id"]) for h in hits if h["doc_id"].startswith("clean/")}),
        "missed": sorted(i for i, s, b in zip(ids, semantic, both, strict=True) if s and not b),
    }


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["behaviour"]["executions_per_1000_docs"] for r in rows]
    for key, style in (("behaviour", "o-"), ("ast|behaviour", "s--")):
        ax.plot(xs, [r["recall"][key] for r in rows], style, label=key)
    for r, x in zip(rows, xs, strict=True):
        ax.annotate(f"floor {r['floor']}", (x, r["recall"]["ast|behaviour"]), fontsize=8)
    ax.set_xlabel("sandbox executions per 1,000 documents")
    ax.set_ylabel(f"recall on semantic rewrites (tau {TAU})")
    ax.set_title("Shortlist floor: recall vs executions")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clean", type=int, default=400)
    parser.add_argument("--floors", default="0.7,0.6,0.5,0.4,0.3")
    parser.add_argument("--humaneval-only", action="store_true")
    parser.add_argument("--png", default=str(ROOT / "benchmarks" / "screenshots" / "behaviour_floor_curve.png"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    benchmarks = {"humaneval": load_benchmark("humaneval")}
    if not args.humaneval_only:
        benchmarks["mbpp"] = load_benchmark("mbpp", split="test")
    docs = build_corpus(benchmarks, n_clean=args.clean, semantic=True, planted=False)
    edits: dict[str, int] = {}
    for d in docs:
        for e in d.edits:
            edits[e] = edits.get(e, 0) + 1
    print({"docs": len(docs), "semantic": sum(d.tier == SEMANTIC_TIER for d in docs), "edits": edits})
    root = Path(tempfile.mkdtemp(prefix="bench_behaviour_"))
    shards = write_corpus(docs, root / "in")
    spec = {name: {"split": "test"} if name == "mbpp" else {} for name in benchmarks}
    rows = []
    for floor in [float(f) for f in args.floors.split(",")]:
        row = audit(shards, root / f"out_{floor}", floor, spec)
        rows.append(row)
        b = row["behaviour"]
        print(f"floor {floor}: pairs {b['shortlisted']}, executions {b['executions']} "
              f"({b['executions_per_1000_docs']} per 1,000 docs), behaviour {row['behaviour_s']} s; "
              f"recall {json.dumps(row['recall'])}; clean FP {json.dumps(row['clean_fp'])}", flush=True)  # fmt: skip
        for hit in row["clean_hits"]:
            print("   clean function passing a benchmark's tests:", hit)
    default = next((r for r in rows if r["floor"] == DEFAULT_FLOOR), None)
    if default is not None:
        rerun = audit(shards, root / f"out_{DEFAULT_FLOOR}", DEFAULT_FLOOR, spec)
        print(f"rerun at floor {DEFAULT_FLOOR}: executions {rerun['behaviour']['executions']}, "
              f"cached {rerun['behaviour']['cached']}, behaviour {rerun['behaviour_s']} s")  # fmt: skip
        print("missed at the default floor:", default["missed"])
    plot(rows, Path(args.png))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=list))


if __name__ == "__main__":
    main()
