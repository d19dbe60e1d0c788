"""Honest-sample verdicts: does the sandbox's verdict on each honest sample stay what it was?

Five completions per task (canonical, buggy, ``pass``, syntax error, infinite loop) for the 164
HumanEval problems and the 500 MBPP test tasks (``mbpp-docstring`` format). Writes one status per
sample to ``--out`` (JSON); with ``--compare FILE`` (the same run by another version of the harness,
e.g. ``main``'s) prints how many verdicts agree and lists every disagreement. Also prints how many
tasks each verdict mode ran in (separate processes or the single-process fallback).

    PYTHONPATH=/path/to/main python benchmarks/bench_sandbox_verdicts.py --out /tmp/today.json
    python benchmarks/bench_sandbox_verdicts.py --out /tmp/new.json --compare /tmp/today.json

The infinite loop sleeps in a loop (CPU-cheap), so that category runs with more workers.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import time
from collections import Counter

LOOP = "    while True:\n        __import__('time').sleep(0.05)\n"
VARIANTS = ("canonical", "buggy", "pass", "syntax_error", "infinite_loop")


def completions(canonical: str) -> dict[str, str]:
    """The five honest completions of one task, from its canonical completion."""
    return {
        "canonical": canonical,
        "buggy": canonical.replace("return ", "return not ", 1)
        if "return " in canonical
        else "    x = 1/0\n",
        "pass": "    pass\n",
        "syntax_error": "    return (\n",
        "infinite_loop": LOOP,
    }


def honest_jobs(mbpp_path: str | None) -> list[tuple[str, str, str, str]]:
    """(key, program, tests, reference program) for every honest sample."""
    from train.evaluate.tasks import build_tasks

    tasks = build_tasks("humaneval") + build_tasks("mbpp", mbpp_path=mbpp_path)
    jobs = []
    for t in tasks:
        reference = t.program(t.canonical)
        for name, completion in completions(t.canonical).items():
            jobs.append((f"{t.task_id}|{name}", t.program(completion), t.tests, reference))
    return jobs


def run_all(jobs, timeout_s: float, workers: int, loop_workers: int) -> dict[str, dict]:
    from curate.sandbox import Sandbox

    out: dict[str, dict] = {}
    with Sandbox(timeout_s=timeout_s) as sb:
        takes_reference = "reference" in inspect.signature(sb.run).parameters
        for is_loop in (False, True):
            part = [j for j in jobs if j[0].endswith("|infinite_loop") == is_loop]
            args = [(p, t, r) if takes_reference else (p, t) for _, p, t, r in part]
            results = sb.map(args, workers=loop_workers if is_loop else workers)
            for (key, *_), res in zip(part, results, strict=True):
                out[key] = {
                    "status": res.status,
                    "error_type": res.error_type,
                    "mode": getattr(res, "verdict_mode", None) or "single-process (before split)",
                }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--compare")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--loop-workers", type=int, default=12)
    ap.add_argument("--mbpp", default=os.environ.get("TEXTBOOKS_MBPP_PATH"))
    args = ap.parse_args()

    jobs = honest_jobs(args.mbpp)
    t = time.perf_counter()
    verdicts = run_all(jobs, args.timeout, args.workers, args.loop_workers)
    print(f"{len(verdicts)} honest samples in {time.perf_counter() - t:.1f} s")
    with open(args.out, "w") as f:
        json.dump(verdicts, f, indent=0, sort_keys=True)
    by_status = Counter((k.split("|")[1], v["status"]) for k, v in verdicts.items())
    print("status per variant:", dict(sorted(by_status.items())))
    modes: dict[str, set] = {}
    for k, v in verdicts.items():
        bench = "HumanEval" if k.startswith("HumanEval") else "MBPP"
        modes.setdefault(f"{bench} {v['mode']}", set()).add(k.split("|")[0])
    for name, ids in sorted(modes.items()):
        print(f"tasks run in mode {name}: {len(ids)}")
    if args.compare:
        with open(args.compare) as f:
            before = json.load(f)
        common = sorted(set(before) & set(verdicts))
        differ = [k for k in common if before[k]["status"] != verdicts[k]["status"]]
        print(f"agreement with {args.compare}: {len(common) - len(differ)}/{len(common)} verdicts")
        for k in differ:
            print(f"  DIFFERS {k}: before {before[k]} now {verdicts[k]}")


if __name__ == "__main__":
    main()
