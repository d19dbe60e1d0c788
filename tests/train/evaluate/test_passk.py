"""The unbiased pass@k estimator against brute-force enumeration of every k-subset."""

import itertools
import random

import pytest

from train.evaluate.passk import mean_pass_at_k, pass_at_k


def brute_force(n: int, c: int, k: int) -> float:
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


def test_matches_enumeration_on_random_cases():
    rng = random.Random(1234)
    for _ in range(300):
        n = rng.randint(1, 14)
        c = rng.randint(0, n)
        k = rng.randint(1, n)
        assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12), (n, c, k)


def test_edges_and_large_n():
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 6, 5) == 1.0  # fewer failures than k: some draw must pass
    assert pass_at_k(200, 3, 1) == pytest.approx(3 / 200)
    # huge n where the binomials overflow floats: the product form stays finite and in range
    assert 0.0 < pass_at_k(10_000, 10, 100) < 1.0
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_mean_skips_k_beyond_samples():
    assert mean_pass_at_k([(5, 1), (5, 5)], [1, 5, 10]) == {"pass@1": pytest.approx(0.6), "pass@5": 1.0}
