"""Prompt generators: reproducible, stratified, repeat-free sampling over the constraint grid."""

from collections import Counter

import numpy as np
import pytest
import yaml

from synth.prompts import ExercisePromptGenerator, TextbookPromptGenerator, feistel_permute
from synth.taxonomy import topic_leaves


def _key(p):
    return tuple(sorted(p.constraints.items()))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000, 4097, 123_457])
def test_feistel_is_a_permutation(n):
    x = np.arange(n, dtype=np.uint64)
    for key in (0, 12345, 2**63 + 5):
        y = feistel_permute(x, n, key)
        assert sorted(y.tolist()) == list(range(n))
    if n > 64:  # and actually shuffles: few fixed points, not the identity
        assert (feistel_permute(x, n, 1) == x).mean() < 0.05


def test_bundled_taxonomy_is_large_and_covers_the_areas():
    leaves = topic_leaves()
    assert len(leaves) >= 300
    cats = {c for c, _, _ in leaves}
    for area in (
        "basics",
        "data structures",
        "algorithms",
        "object oriented programming",
        "functional programming",
        "standard library",
        "scientific and data libraries",
        "software engineering",
    ):
        assert area in cats
    topics = {t for _, t, _ in leaves}
    assert {"numpy", "pandas", "testing", "typing", "decorators"} <= topics


@pytest.mark.parametrize("cls", [TextbookPromptGenerator, ExercisePromptGenerator])
def test_same_seed_same_prompts_and_random_access(cls):
    a, b = cls(seed=7).generate(500), cls(seed=7).generate(500)
    assert [p.text for p in a] == [p.text for p in b]
    assert [p.constraints for p in a] == [p.constraints for p in b]
    assert [p.id for p in a] == [p.id for p in b] and len({p.id for p in a}) == 500
    # random access and offsets agree with the full sequence
    g = cls(seed=7)
    assert g.prompt_at(321).text == a[321].text
    assert [p.text for p in g.generate(50, start=100)] == [p.text for p in a[100:150]]
    other = cls(seed=8).generate(500)
    assert sum(x.text == y.text for x, y in zip(a, other, strict=False)) < 25


def test_hundred_thousand_prompts_cover_the_grid_uniformly():
    """Stated tolerance: the stratified dimension (topic leaf) gets exactly floor/ceil(n/S) prompts;
    every value of every other dimension is within +-15% of its expected count (>= 4 sigma for the
    smallest expected count here, ~740) and the grid tuples never repeat."""
    g = TextbookPromptGenerator(seed=0)
    n = 100_000
    prompts = g.generate(n)
    sizes = g.dimension_sizes
    leaves = Counter(p.constraints["subtopic"] for p in prompts)
    assert len(leaves) == sizes["topic"]
    assert set(leaves.values()) <= {n // sizes["topic"], n // sizes["topic"] + 1}
    for dim in ("audience", "style", "theme", "word"):
        c = Counter(p.constraints[dim] for p in prompts)
        assert len(c) == sizes[dim]
        expected = n / sizes[dim]
        worst = max(abs(v - expected) / expected for v in c.values())
        assert worst <= 0.15, (dim, worst)
    assert len({_key(p) for p in prompts}) == n


def _small_taxonomy(tmp_path):
    topics = {"cat": {"t1": ["a", "b", "c"], "t2": ["d", "e"]}}
    (tmp_path / "topics.yaml").write_text(yaml.safe_dump(topics))
    (tmp_path / "aud.yaml").write_text(yaml.safe_dump(["kids", "adults", "experts"]))
    (tmp_path / "styles.yaml").write_text(
        yaml.safe_dump([{"name": "chapter", "instruction": "As a chapter."}, "dialogue"])
    )
    (tmp_path / "vocab.yaml").write_text(
        yaml.safe_dump({"themes": ["zoo", "bank", "farm"], "words": ["red", "blue"]})
    )
    return dict(
        topics=tmp_path / "topics.yaml",
        audiences=tmp_path / "aud.yaml",
        styles=tmp_path / "styles.yaml",
        vocabulary=tmp_path / "vocab.yaml",
    )


@pytest.mark.parametrize("strata", [None, ("topic", "audience"), (), ("word",)])
def test_no_tuple_repeats_until_the_grid_is_exhausted(tmp_path, strata):
    g = TextbookPromptGenerator(seed=3, strata=strata, **_small_taxonomy(tmp_path))
    G = g.grid_size
    assert G == 5 * 3 * 2 * 3 * 2
    first = g.generate(G)
    keys = [_key(p) for p in first]
    assert len(set(keys)) == G  # the whole grid, each tuple exactly once
    # the next epoch starts over: the (G+1)-th prompt repeats a tuple
    assert _key(g.prompt_at(G)) in set(keys)
    second = g.generate(G, start=G)
    assert len({_key(p) for p in second}) == G and [p.text for p in second] != [p.text for p in first]
    # stratified quotas: within the first R prompts every prefix is balanced to one prompt; after that
    # two strata differ by at most (R mod S) + 1 (the documented bound)
    if strata is None:
        S, R = 5, G // 5
        for cut in range(1, 2 * G + 1):
            c = Counter(p.constraints["subtopic"] for p in (first + second)[:cut])
            spread = max(c.values()) - min(c.get(x, 0) for x in "abcde")
            assert spread <= (1 if cut <= R else R % S + 1), cut


def test_user_taxonomy_files_change_the_prompts(tmp_path):
    g = TextbookPromptGenerator(seed=0, **_small_taxonomy(tmp_path))
    p = g.prompt_at(0)
    assert p.constraints["audience"] in {"kids", "adults", "experts"}
    assert p.constraints["word"] in p.text and p.constraints["theme"] in p.text
    assert g.fingerprint != TextbookPromptGenerator(seed=0).fingerprint


def test_exercise_prompts_constrain_the_name_and_ask_for_the_format():
    g = ExercisePromptGenerator(seed=1)
    sizes = g.dimension_sizes
    names_grid = sizes["verb"] * sizes["domain"] * sizes["noun"]
    prompts = g.generate(20_000)
    for p in prompts[:50]:
        name = p.constraints["function_name"]
        assert name == f"{p.constraints['verb']}_{p.constraints['domain']}_{p.constraints['noun']}"
        assert f"`{name}`" in p.text and f"def {name}(" in p.text
        assert (
            "### Solution" in p.text
            and "### Tests" in p.text
            and p.constraints["difficulty"] in ("easy", "medium", "hard")
        )
    # function names do not repeat before the name grid is used up (20k < names_grid)
    assert names_grid > 20_000
    assert len({p.constraints["function_name"] for p in prompts}) == 20_000
    strata = Counter((p.constraints["subtopic"], p.constraints["difficulty"]) for p in prompts)
    assert max(strata.values()) - min(strata.values()) <= 1


def test_generators_pickle_and_regenerate(tmp_path):
    import pickle

    g = ExercisePromptGenerator(seed=5)
    before = [p.text for p in g.generate(10)]
    g2 = pickle.loads(pickle.dumps(g))
    assert [p.text for p in g2.generate(10)] == before
