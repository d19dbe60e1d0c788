"""Exact dedup on normalized content."""

from datatrove.data import Document

from curate.dedup import ExactDedupFilter, normalize_code


def test_exact_dedup_normalizes_whitespace_and_keeps_first():
    step = ExactDedupFilter()
    docs = [Document("x = 1\n", "a"), Document("x = 1   \r\n\n", "b"), Document("x = 2\n", "c")]
    results = [step.filter(d) for d in docs]
    assert results == [True, (False, "exact_duplicate"), True]
    assert docs[1].metadata["duplicate_of"] == "a"
    assert normalize_code(" x\n") != normalize_code("x\n")  # leading indentation is meaningful
