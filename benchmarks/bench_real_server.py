"""Every LLM step against a real server (`transformers serve` on the bundled SmolLM2-135M-Instruct):
requests/s and parse outcomes by kind, and the labeler's labels with the fallbacks against the labels a
strict reader (the answer is the JSON asked for, nothing else) gets from the same first answers.

    python benchmarks/bench_real_server.py --docs 12 --exercises 6 --textbooks 6

Figures: benchmarks/RESULTS.md (issue 22).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_labeler(llm: dict, n_docs: int) -> dict:
    from llm_helpers import stdlib_snippets

    from curate.llm.answers import _from_json
    from curate.llm_labeler import LLMQualityLabeler

    lab = LLMQualityLabeler(llm, max_chars=800)
    docs, seconds = _timed(lambda: list(lab.run(iter(stdlib_snippets(n_docs, lines_per_doc=25)))))
    stats = {k: int(v.total) for k, v in lab.stats.stats.items()}
    # the strict reader on the same first answers (the cache holds them): whole-answer JSON only
    first = lab.make_client().run([lab.request_for(d) for d in stdlib_snippets(n_docs, lines_per_doc=25)])
    strict = sum(1 for r in first if r.ok and (_from_json(r.text or "", "binary") or (None,))[0] is not None)
    labeled = sum("quality_label" in d.metadata for d in docs)
    return {"seconds": round(seconds, 1), "requests": lab._client.usage["sent"],
            "requests_per_s": round(lab._client.usage["sent"] / seconds, 3),
            "labeled": labeled, "strict_reader_labeled": strict, "docs": n_docs,
            "outcomes": {k: stats.get(k, 0) for k in ("parsed", "fallback_parsed", "failed")},
            "fallbacks": {k: v for k, v in stats.items() if k.startswith("fallback_") and k != "fallback_parsed"},
            "errors": {k: stats[k] for k in ("truncated", "unparseable", "ambiguous", "request_failed") if k in stats}}  # fmt: skip


def bench_synth(llm: dict, kind: str, n: int, max_tokens: int, out: Path) -> dict:
    from synth.generate import generate_synth

    summary, seconds = _timed(lambda: generate_synth(kind, out / kind, n=n, workers=1, execute=kind == "textbooks",
                                                     llm={**llm, "max_tokens": max_tokens}))  # fmt: skip
    return {"seconds": round(seconds, 1), "requests_per_s": round(n / seconds, 3), "kept": summary["kept"],
            "rejected": summary["rejected"], "answers": summary["answers"]}  # fmt: skip


def bench_judge_and_grader(llm: dict, n: int) -> dict:
    from decontam.eval_sets import load_benchmark
    from decontam.llm_judge import judge_answer_counts, judge_pairs
    from train.evaluate.grader import grade_solutions

    items = load_benchmark("humaneval")[:n]
    pairs = [(it, f"d{i}", it.solution if i % 2 else "def other(xs):\n    return sorted(xs)[::-1]\n", None)
             for i, it in enumerate(items)]  # fmt: skip
    verdicts, judge_s = _timed(lambda: judge_pairs(pairs, {**llm, "max_tokens": 16}))
    sols = [{"model": "canonical", "task_id": it.id, "problem": it.prompt, "solution": it.solution} for it in items]
    graded, grade_s = _timed(lambda: grade_solutions(sols, llm={**llm, "max_tokens": 64}))
    return {"judge": {"seconds": round(judge_s, 1), "requests_per_s": round(n / judge_s, 3),
                      "answers": judge_answer_counts([v.to_dict() for v in verdicts])},
            "grader": {"seconds": round(grade_s, 1), "requests_per_s": round(n / grade_s, 3),
                       "answers": {k: v for k, v in graded["answers"].items() if k != "server_fallbacks"}}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=12)
    parser.add_argument("--exercises", type=int, default=6)
    parser.add_argument("--textbooks", type=int, default=6)
    parser.add_argument("--judged", type=int, default=4)
    args = parser.parse_args()
    from curate.llm.serve import LocalServer

    load = os.getloadavg()
    with LocalServer() as server, tempfile.TemporaryDirectory() as tmp:
        llm = {"model": server.model_id, "base_url": server.base_url, "cache_path": f"{tmp}/cache.sqlite",
               "extra_body": {"top_k": 20}, "timeout_s": 600, "max_concurrency": 2}  # fmt: skip
        report = {"server": "transformers serve", "model": Path(server.model_id).name, "threads": server.threads,
                  "load_average_at_start": [round(x, 2) for x in load]}  # fmt: skip
        report["labeler"] = bench_labeler(llm, args.docs)
        report["exercises"] = bench_synth(llm, "exercises", args.exercises, 128, Path(tmp))
        report["textbooks"] = bench_synth(llm, "textbooks", args.textbooks, 96, Path(tmp))
        report.update(bench_judge_and_grader(llm, args.judged))
        report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    lab = report["labeler"]
    print(json.dumps(report, indent=1))
    print(f"labeler: {lab['labeled']}/{lab['docs']} labeled with the fallbacks vs "
          f"{lab['strict_reader_labeled']}/{lab['docs']} by the strict JSON reader "
          f"(ratio {lab['labeled'] / max(1, lab['strict_reader_labeled']):.1f}x)")


if __name__ == "__main__":
    main()
