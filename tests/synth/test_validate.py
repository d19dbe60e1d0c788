"""Parsing generations and validating exercises by execution in the real sandbox."""

import pytest
from datatrove.data import Document

from synth.dedup import SynthDeduplicator, ast_fingerprint
from synth.parse import imported_modules, parse_exercise, parse_textbook, split_blocks, stub_solution
from synth.validate import ExerciseFilter, TextbookFilter


def exercise(name, body="return sorted(set(xs))", tests=None, doc="Sorted unique values."):
    tests = tests if tests is not None else f"assert {name}([3, 1, 3]) == [1, 3]\nassert {name}([]) == []"
    return (
        f"### Signature\n```python\ndef {name}(xs: list) -> list:\n```\n### Docstring\n{doc}\n"
        f'### Solution\n```python\ndef {name}(xs: list) -> list:\n    """{doc}"""\n    {body}\n```\n'
        f"### Tests\n```python\n{tests}\n```\n"
    )


def test_split_blocks_keeps_order_and_flags_unclosed_fences():
    text = "Intro\n```python\nx = 1\n```\nMiddle\n~~~\nraw\n~~~\n```py\ny = 2\n"
    blocks = split_blocks(text)
    assert [b.kind for b in blocks] == ["prose", "code", "prose", "code", "code"]
    assert blocks[1].text == "x = 1" and blocks[1].is_python and blocks[2].text == "Middle"
    assert blocks[-1].closed is False


def test_parse_textbook_reasons():
    good = "Tuples are immutable.\n```python\nt = (1, 2)\nprint(t[0])\n```\nThat is all."
    tb = parse_textbook(good)
    assert tb.reason is None and tb.code_blocks == ["t = (1, 2)\nprint(t[0])"] and tb.n_prose == 2
    assert parse_textbook("").reason == "empty"
    assert parse_textbook("Only prose here.").reason == "no_code"
    assert parse_textbook(good, finish_reason="length").reason == "truncated"
    assert parse_textbook("x\n```python\nfor i in range(3)\n    pass\n```").reason == "syntax_error"
    assert parse_textbook("x\n```python\nprint(1)\n").reason == "truncated"
    # untagged output blocks are not code; interactive sessions are parsed as the code typed in
    tb = parse_textbook("Run it:\n```python\nprint('Hello, world!')\n```\nOutput:\n```\nHello, world!\n```")
    assert tb.reason is None and tb.code_blocks == ["print('Hello, world!')"]
    tb = parse_textbook("```pycon\n>>> xs = [3, 1]\n>>> sorted(xs)\n[1, 3]\n```")
    assert tb.reason is None and tb.code_blocks == ["xs = [3, 1]\nsorted(xs)"]


def test_parse_exercise_parts_and_reasons():
    ex = parse_exercise(exercise("uniq_sorted"), "uniq_sorted")
    assert ex.reason is None
    assert ex.signature == "def uniq_sorted(xs: list) -> list:"
    assert ex.docstring == "Sorted unique values."
    assert "return sorted(set(xs))" in ex.solution and ex.tests.startswith("assert uniq_sorted")
    assert parse_exercise(exercise("f"), "g").reason == "missing_function"
    assert parse_exercise(exercise("f", body="return sorted(set(xs)"), "f").reason == "syntax_error"
    assert parse_exercise(exercise("f", tests="print(f([1]))"), "f").reason == "no_tests"
    assert parse_exercise(exercise("f", tests="assert f([1]) == [1"), "f").reason == "tests_syntax_error"
    assert parse_exercise(exercise("f").split("### Tests")[0], "f").reason == "no_tests"
    # unheaded blocks are accepted: the block with asserts is the tests
    assert parse_exercise(exercise("f").replace("### Tests", "### Notes"), "f").reason is None
    assert parse_exercise(exercise("f")[:-30], "f").reason == "truncated"
    assert parse_exercise("I cannot help with that.", "f").reason == "no_code"
    assert parse_exercise(None, "f").reason == "empty"


def test_stub_keeps_docstring_and_helpers():
    sol = "import math\n\ndef helper(x):\n    return x\n\ndef f(x):\n    '''Doc.'''\n    return math.sqrt(helper(x))"
    stub = stub_solution(sol, "f")
    assert "def helper" in stub and "Doc." in stub and "math.sqrt" not in stub and "return None" in stub


def test_imported_modules():
    assert imported_modules("import numpy as np\nfrom os.path import join\nfrom . import x") == [
        "numpy",
        "os",
    ]
    assert imported_modules("import re\nthis is not python") == ["re"]


@pytest.fixture(scope="module")
def validator():
    return ExerciseFilter(workers=2, timeout_s=5)


def test_exercise_filter_keeps_only_earned_passes(validator):
    cases = {
        "good": (exercise("good"), True),
        "good_test_functions": (exercise("tf", tests="def test_a():\n    assert tf([2, 2]) == [2]\n"), True),
        "wrong": (exercise("wrong", body="return xs"), "tests_fail"),
        "crash": (exercise("crash", body="return undefined_name"), "tests_error"),
        "vacuous": (exercise("vac", tests="assert True\nvac([1])"), "tests_pass_on_stub"),
        "uncalled_tests": (
            exercise("unc", tests="def check():\n    assert unc([1]) == [0]\n"),
            "tests_pass_on_stub",
        ),
        "loops": (exercise("spin", body="while True:\n        pass"), "tests_timeout"),
        "exit_early": (exercise("ex0", body="raise SystemExit(0)"), "tests_error"),
        "syntax": (exercise("syn", body="return (("), "syntax_error"),
        "truncated": (exercise("tr")[:-40], "truncated"),
    }
    names = {
        "good": "good",
        "good_test_functions": "tf",
        "wrong": "wrong",
        "crash": "crash",
        "vacuous": "vac",
        "uncalled_tests": "unc",
        "loops": "spin",
        "exit_early": "ex0",
        "syntax": "syn",
        "truncated": "tr",
    }
    docs = [
        Document(text, key, metadata={"constraints": {"function_name": names[key]}})
        for key, (text, _) in cases.items()
    ]
    docs.append(Document("", "llm", metadata={"llm_error": "HTTP 500 after 6 retries"}))
    verdicts = validator.filter_batch(docs)
    got = {d.id: (v if v is True else v[1]) for d, v in zip(docs, verdicts, strict=True)}
    assert got == {**{k: exp for k, (_, exp) in cases.items()}, "llm": "llm_error"}
    kept = docs[0]
    assert kept.text.startswith("def good(") and kept.metadata["signature"] == "def good(xs: list) -> list:"
    assert kept.metadata["entry_point"] == "good" and kept.metadata["stub_status"] in ("failed", "error")
    assert all(
        d.metadata.get("filter_detail") is not None
        for d, v in zip(docs, verdicts, strict=True)
        if v is not True
    )


def test_textbook_filter_execution_is_optional():
    ok = "Division.\n```python\nprint(10 // 3)\n```"
    bad = "Division.\n```python\nprint(10 // 0)\n```"
    f = TextbookFilter()
    assert f.filter_batch([Document(ok, "a"), Document(bad, "b")]) == [True, True]
    fx = TextbookFilter(execute=True, workers=2, timeout_s=5)
    assert fx.filter_batch([Document(ok, "a"), Document(bad, "b")]) == [True, (False, "code_error")]


def test_ast_fingerprint_and_dedup_reasons():
    a = "def total(xs):\n    '''Sum.'''\n    s = 0\n    for x in xs:\n        s += x\n    return s"
    b = "def add_all(values: list) -> int:\n    # accumulate\n    acc = 0\n    for v in values:\n        acc += v\n    return acc"
    c = "def total(xs):\n    return max(xs)"
    assert ast_fingerprint(a) == ast_fingerprint(b) != ast_fingerprint(c)
    assert ast_fingerprint("def (") is None
    docs = [
        Document(a, "1", metadata={"entry_point": "total"}),
        Document(a + "\n", "2", metadata={"entry_point": "total2"}),
        Document(b, "3", metadata={"entry_point": "add_all"}),
        Document(c, "4", metadata={"entry_point": "total"}),
        Document("def other(x):\n    return x - 1", "5", metadata={"entry_point": "other"}),
    ]
    dups = SynthDeduplicator(near=False).find(docs)
    assert dups == {
        "2": ("exact_duplicate", "1"),
        "3": ("duplicate_solution", "1"),
        "4": ("function_name_collision", "1"),
    }


def test_headerless_stub_passing_answers_are_named_for_what_they_are(validator):
    """Issue 12: answers without section headers whose tests pass on a stub were rejected as `no_tests`."""
    solution = "def vac(xs):\n    '''Sorted unique values.'''\n    return sorted(set(xs))\n"
    answers = {
        "separate_test_function": f"```python\n{solution}```\n\n```python\ndef test_vac():\n    vac([1])\n```\n",
        "checks_in_the_same_block": f"```python\n{solution}\nassert True\nvac([1])\n```\n",
        "test_function_in_the_same_block": f"```python\n{solution}\ndef test_vac():\n    assert vac([1]) or True\n```\n",
    }
    for name, text in answers.items():
        parsed = parse_exercise(text, "vac")
        assert parsed.reason is None and "def vac" in parsed.solution and "vac([1])" in parsed.tests, name
        assert "vac([1])" not in parsed.solution, name
    docs = [
        Document(text=t, id=n, metadata={"constraints": {"function_name": "vac"}, "finish_reason": "stop"})
        for n, t in answers.items()
    ]
    verdicts = validator.filter_batch(docs)
    assert verdicts == [(False, "tests_pass_on_stub")] * 3
    # a headerless answer whose inline checks are real still passes
    good = f"```python\n{solution}\nassert vac([3, 1, 3]) == [1, 3]\n```\n"
    doc = Document(
        text=good, id="good", metadata={"constraints": {"function_name": "vac"}, "finish_reason": "stop"}
    )
    assert validator.filter_batch([doc]) == [True]
    assert doc.text.strip() == solution.strip()
