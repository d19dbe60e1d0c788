"""Exercise validation goes through the sandbox's split verdicts: a solution that games its own tests
(an always-equal result, a frame-walking forger) is rejected, an honest one kept."""

from datatrove.data import Document

from synth.validate import ExerciseFilter


def exercise(body: str, tests: str = "assert uniq([3, 1, 3]) == [1, 3]\nassert uniq([]) == []") -> str:
    return (
        "### Signature\n```python\ndef uniq(xs: list) -> list:\n```\n### Docstring\nSorted unique values.\n"
        f'### Solution\n```python\ndef uniq(xs: list) -> list:\n    """Sorted unique values."""\n{body}\n```\n'
        f"### Tests\n```python\n{tests}\n```\n"
    )


ALWAYS_EQUAL = (
    "    class Yes:\n        def __eq__(self, other):\n            return True\n"
    "        def __ne__(self, other):\n            return False\n    return Yes()"
)
FRAME_WALKER = (
    "    import os, sys\n    f = sys._getframe()\n    while f is not None:\n"
    "        loc = f.f_locals\n"
    "        if 'status_fd' in loc and 'token' in loc:\n"
    "            os.write(loc['status_fd'], (loc['token'] + ' passed done \\n').encode())\n"
    "            os._exit(0)\n"
    "        f = f.f_back\n    return [0]"
)


def test_forged_solutions_are_rejected_and_honest_ones_kept():
    f = ExerciseFilter(workers=2, timeout_s=10)
    docs = [
        Document(exercise("    return sorted(set(xs))"), "honest"),
        Document(exercise(ALWAYS_EQUAL), "always_equal"),
        Document(exercise(FRAME_WALKER), "frame_walker"),
    ]
    results = f.filter_batch(docs)
    assert results[0] is True, docs[0].metadata
    assert results[1] == (False, "tests_error"), docs[1].metadata
    assert "NotPlainData" in docs[1].metadata["filter_detail"]
    assert results[2] == (False, "tests_fail"), docs[2].metadata
