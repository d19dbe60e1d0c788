import random

import pytest

from decontam.eval_sets import load_benchmark
from decontam.ngram import NgramIndex, SetOfTuplesScanner, tokenize


@pytest.fixture(scope="module")
def items(mbpp_path):
    return load_benchmark("humaneval") + load_benchmark("mbpp", path=mbpp_path, split="all")


@pytest.fixture(scope="module")
def index(items):
    return NgramIndex().fit(items)


def test_tokenisation_is_case_and_format_insensitive():
    assert [t for t, _, _ in tokenize("Total=sum( x ) # Äb")] == [
        "total",
        "sum",
        "x",
        "Äb",
    ]  # ASCII folded only
    assert [t for t, _, _ in tokenize("total = SUM(x)")] == ["total", "sum", "x"]
    text = "héllo wörld_1 + 2"
    for tok, start, end in tokenize(text):
        assert text[start:end].lower() == tok


def test_verbatim_copies_in_stdlib_files_are_found_with_evidence(index, items, stdlib_files):
    rng = random.Random(0)
    hosts = [p.read_text(encoding="utf-8", errors="replace") for p in stdlib_files[:120]]
    planted = {}
    texts, ids = [], []
    for k, host in enumerate(hosts):
        if k % 3 == 0:
            item = rng.choice(items)
            cut = len(host) // 2
            host = host[:cut] + "\n" + item.solution + "\n" + host[cut:]
            planted[f"doc{k}"] = (item, cut + 1)
        texts.append(host)
        ids.append(f"doc{k}")
    hits = index.scan_texts(texts, ids)
    for doc_id, (item, offset) in planted.items():
        # a verbatim solution is found through its solution field or, for a solution body under
        # min_tokens (HumanEval/28: `return ''.join(strings)`), through the prompt it carries
        mine = [h for h in hits if h.doc_id == doc_id and h.item_id == item.id]
        assert mine, f"verbatim copy of {item.id} in {doc_id} not found"
        h = mine[0]
        # evidence offsets point into the original text, inside the planted copy
        assert offset <= h.start < h.end <= offset + len(item.solution)
        snippet = texts[ids.index(doc_id)][h.start : h.end]
        assert " ".join(t for t, _, _ in tokenize(snippet)).startswith(h.ngram)
        assert 5 <= h.n <= 13 and h.windows >= 1


def test_matches_the_set_of_tuples_reference_exactly(index, items, stdlib_files):
    rng = random.Random(1)
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in stdlib_files[:80]]
    for k in range(0, len(texts), 4):
        texts[k] += "\n" + rng.choice(items).solution + "\n" + rng.choice(items).prompt
    ids = [f"d{k}" for k in range(len(texts))]
    ours = index.scan_texts(texts, ids)
    reference = SetOfTuplesScanner(index).scan_texts(texts, ids)
    assert {(h.doc_id, h.item_id, h.field) for h in ours} == {r[:3] for r in reference}
    assert sum(h.windows for h in ours) == len(reference)  # every matching window, merged into spans


def test_short_items_fall_back_to_full_sequence_and_allow_list_applies():
    records = [
        ("b", "b/short", "prompt", "Write a function to reverse words."),  # 6 tokens < 13
        ("b", "b/tiny", "prompt", "add two"),  # under min_tokens: not indexed
        (
            "b",
            "b/loop",
            "solution",
            "for i in range(len(arr)):\n    for j in range(i + 1, len(arr)):\n        pass",
        ),
    ]
    index = NgramIndex(
        allow_list=["for i in range(len(arr)):\n    for j in range(i + 1, len(arr)):"]
    ).fit_texts(records)
    assert index.too_short_ == [("b/tiny", "prompt")]
    docs = [
        "# TODO: write a function to REVERSE words!",
        "add two numbers",
        "for i in range(len(arr)):\n for j in range(i+1, len(arr)):\n  pass",
    ]
    hits = index.scan_texts(docs, ["a", "b", "c"])
    assert [(h.doc_id, h.item_id, h.n) for h in hits] == [("a", "b/short", 6), ("c", "b/loop", 13)]
    # the generic nested loop alone is allow-listed: only windows reaching `pass` remain
    assert hits[1].ngram.endswith("pass")


def test_windows_never_cross_document_boundaries():
    index = NgramIndex(n=4, min_tokens=4).fit_texts([("b", "b/1", "solution", "alpha beta gamma delta")])
    assert index.scan_texts(["x alpha beta", "gamma delta y"], ["1", "2"]) == []
    assert [h.doc_id for h in index.scan_texts(["x alpha beta", "alpha beta gamma delta"], ["1", "2"])] == [
        "2"
    ]


def test_streaming_scan_of_a_shard_directory(tmp_path, index, items, write_shards):
    docs = [(f"d{k}", f"print({k})\n") for k in range(50)] + [
        ("copy", "x = 1\n" + items[5].solution),
        ("empty", ""),
    ]
    write_shards(tmp_path / "shards", docs)
    hits = list(index.scan_shards(str(tmp_path / "shards"), batch_bytes=64))
    assert {h.doc_id for h in hits} == {"copy"} and items[5].id in {h.item_id for h in hits}
