"""MinHash signatures: ours (vectorised numpy) vs a plain loop of datasketch ``MinHash.update_batch``.

Both sides start from the same texts (stdlib + site-packages ``.py`` files), use the same shingles
(token 5-grams, :func:`curate.near_dedup.shingle_strings`) and datasketch's permutations for the same
``num_perm``/``seed``. The baseline is what one would write with datasketch: tokenize, build the
shingle strings, ``MinHash(num_perm, seed).update_batch(shingle bytes)`` per document. Single process,
so docs/s is per core. Issue target: >= 4x.

    python benchmarks/bench_curate_minhash.py [--docs 2000] [--num-perm 128] [--repeat 3]
"""

from __future__ import annotations

import argparse
import site
import sysconfig
import time
from pathlib import Path

import numpy as np
from datasketch import MinHash

from curate.near_dedup import minhash_signatures, shingle_strings


def corpus(n_docs: int, max_bytes: int = 200_000) -> list[str]:
    roots = [Path(sysconfig.get_paths()["stdlib"])] + [Path(p) for p in site.getsitepackages()]
    texts = []
    per_root = n_docs // len(roots) + 1
    for root in roots:
        taken = 0
        for path in sorted(root.rglob("*.py")):
            try:
                if path.stat().st_size > max_bytes:
                    continue
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if text.strip():
                texts.append(text)
                taken += 1
            if taken >= per_root:
                break
    return texts[:n_docs]


def baseline(texts: list[str], num_perm: int, n: int, seed: int) -> np.ndarray:
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    for i, text in enumerate(texts):
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch([s.encode("utf-8", "surrogatepass") for s in shingle_strings(text, n)])
        out[i] = m.hashvalues
    return out


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--shingle-size", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    texts = corpus(args.docs)
    mb = sum(len(t) for t in texts) / 1e6
    n_shingles = sum(len(shingle_strings(t, args.shingle_size)) for t in texts)
    print(f"corpus: {len(texts)} files (stdlib + site-packages), {mb:.1f} MB, {n_shingles} shingles")
    print(f"num_perm={args.num_perm} shingle_size={args.shingle_size} repeat={args.repeat} (best of)")

    t_base = best_of(lambda: baseline(texts, args.num_perm, args.shingle_size, args.seed), args.repeat)
    t_ours = best_of(
        lambda: minhash_signatures(texts, args.num_perm, args.shingle_size, args.seed), args.repeat
    )

    print(f"datasketch update_batch loop: {t_base:8.2f} s  {len(texts) / t_base:9.1f} docs/s")
    print(f"ours (vectorised numpy)     : {t_ours:8.2f} s  {len(texts) / t_ours:9.1f} docs/s")
    print(f"speed-up: {t_base / t_ours:.2f}x docs/s per core (target >= 4x)")


if __name__ == "__main__":
    main()
