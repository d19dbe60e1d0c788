"""Prompt generation speed: our seeded grid bijection vs naive rejection sampling (random choice per
dimension + a set of seen tuples + str.format), on the bundled taxonomies. Target: >= 100k prompts/s.

    python benchmarks/bench_synth_prompts.py [N]
"""

import random
import sys
import time

from synth.prompts import ExercisePromptGenerator, TextbookPromptGenerator


def naive(gen, n, seed=0):
    """The obvious baseline: sample each dimension at random, reject tuples already used."""
    rng = random.Random(seed)
    dims = gen.dimensions
    seen, out = set(), []
    while len(out) < n:
        idx = tuple(rng.randrange(len(d)) for d in dims)
        if idx in seen:
            continue
        seen.add(idx)
        constraints, fields = {}, {}
        for d, k in zip(dims, idx, strict=True):
            constraints.update(d.constraints[k])
            fields.update(d.fields[k])
        if gen._derive is not None:
            gen._derive(constraints, fields)
        out.append((gen.TEMPLATE.format_map(fields), constraints))
    return out


def rate(fn, n):
    t0 = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t0)


def main(n=200_000):
    print(f"prompts per second, N={n:,} (best of 3)")
    for cls in (TextbookPromptGenerator, ExercisePromptGenerator):
        gen = cls(seed=0)
        gen.generate(10)  # load the taxonomies once
        ours = max(rate(lambda k, g=gen: g.generate(k), n) for _ in range(3))
        base = max(rate(lambda k, g=gen: naive(g, k), n) for _ in range(3))
        print(
            f"{cls.__name__:26s} ours {ours:>10,.0f}/s   naive {base:>10,.0f}/s   ratio {ours / base:5.2f}x"
            f"   grid {gen.grid_size:,}   target 100,000/s: {'met' if ours >= 100_000 else 'MISSED'}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
