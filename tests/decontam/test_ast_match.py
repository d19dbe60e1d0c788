import ast
import time

import numpy as np
import pytest

from decontam.ast_match import (
    AstMatchIndex,
    ast_match_rate,
    ast_sequence,
    benchmark_sequences,
    levenshtein_rate,
    parse_document,
    sequence_names,
    split_units,
)
from decontam.eval_sets import load_benchmark
from decontam.mutate import disguise


def test_definition_ignores_names_literals_docstrings_comments_and_format():
    a = 'def area(w, h):\n    """Area."""\n    return w * h  # product\n'
    b = "def f(x,y):  return x*y\n"
    assert ast_match_rate(a, b) == 1.0
    assert ast_sequence("x = 1") == ast_sequence("total = 42  # answer")
    # what renaming cannot change stays: literal kinds, builtins, methods of builtin types
    assert ast_sequence("x = 1") != ast_sequence("x = 'a string'")
    assert sequence_names(ast_sequence("n = len(s.split())")) == [
        "Assign",
        "Name",
        "Call",
        "Name:len",
        "Call",
        "Attribute:split",
        "Name",
    ]
    assert ast_sequence("def f(count): return count") == ast_sequence("def g(v): return v")
    # annotations and augmented-assignment spelling are not part of a shape
    assert (
        ast_match_rate(
            "def f(a: int) -> int:\n    t: int = a\n    t += 1\n    return t\n",
            "def g(b):\n    u = b\n    u = u + 1\n    return u\n",
        )
        == 1.0
    )
    assert sequence_names(ast_sequence("import os\ny = f(x)")) == ["Assign", "Name", "Call", "Name", "Name"]
    # structure changes lower the rate by exactly the edit distance over the longer length
    c = "def f(x, y):\n    return x * y + 1\n"
    sa, sc = ast_sequence(b), ast_sequence(c)
    assert len(sc) == len(sa) + 3  # BinOp, Add, Constant
    assert chr(0xFF) not in sc  # every node type has its own character
    assert ast_match_rate(b, c) == pytest.approx(1 - 3 / len(sc))
    assert levenshtein_rate("", "") == 1.0


def test_units_split_functions_methods_and_remainder():
    src = "'''doc'''\nimport os\nX = 1\n@dec\ndef f():\n    def inner(): pass\n    return 1\nclass A(B):\n    k = 2\n    def m(self): pass\n"
    units = split_units(src)
    assert [(u.kind, u.name, u.lineno, u.end_lineno) for u in units] == [
        ("function", "f", 4, 7),
        ("method", "A.m", 10, 10),
        ("module", "<module>", 1, 10),
    ]
    assert sequence_names(units[2].sequence)[:3] == ["Assign", "Name", "Constant:int"]
    # a solution that defines a constant and a function is indexed as a whole and per function
    assert len(benchmark_sequences("R = 3\ndef g(a):\n    return [a[i] * R for i in range(R)]\n")) == 2


def _plant(solution: str, host: str, seed: int) -> str:
    """Insert a disguised copy of ``solution`` between two top-level statements of a stdlib file."""
    rewritten = disguise(solution, seed=seed)
    body = ast.parse(host).body
    lines = host.splitlines()
    cut = body[len(body) // 2].lineno - 1 if len(body) > 1 else len(lines)
    return "\n".join(lines[:cut] + ["", rewritten, ""] + lines[cut:]) + "\n"


@pytest.fixture(scope="module")
def hosts(stdlib_files):
    texts = []
    for path in stdlib_files:
        text = path.read_text(encoding="utf-8", errors="replace")
        if len(text) <= 25_000 and parse_document(text).error is None:
            texts.append(text)
    return texts


@pytest.mark.parametrize("bench", ["humaneval", "mbpp"])
def test_planted_rewritten_solutions_are_found_at_095(bench, hosts, request):
    if bench == "mbpp":
        items = load_benchmark("mbpp", path=request.getfixturevalue("mbpp_path"), split="test")
    else:
        items = load_benchmark("humaneval")
    docs = [_plant(item.solution, hosts[k % len(hosts)], seed=k) for k, item in enumerate(items)]
    # the rewrite really changed the surface: no copy contains the original solution text
    assert sum(item.solution.strip() in doc for item, doc in zip(items, docs, strict=True)) == 0
    index = AstMatchIndex(floor=0.9).fit([i.solution for i in items])
    t0 = time.perf_counter()
    parsed = [parse_document(doc, str(k)) for k, doc in enumerate(docs)]
    assert all(p.error is None for p in parsed)
    seqs = [u.sequence for p in parsed for u in p.units]
    owner = np.repeat(np.arange(len(parsed)), [len(p.units) for p in parsed])
    res = index.query(seqs)
    found = 0
    for k, item in enumerate(items):
        variants = benchmark_sequences(item.solution, index.min_nodes)
        units = np.flatnonzero((owner == k) & (res.query_score >= 0.95))
        # found = a unit of the planted document reaches 0.95 against *this* item's own sequences
        if any(levenshtein_rate(seqs[u], v) >= 0.95 for u in units for v in variants):
            found += 1
    recall = found / len(items)
    print(
        f"{bench}: planted recall at tau=0.95: {found}/{len(items)} = {recall:.3f} "
        f"({len(index.too_small_)} items under {index.min_nodes} nodes are not indexed) "
        f"in {time.perf_counter() - t0:.1f}s"
    )
    assert recall >= 0.95


def test_false_positive_share_on_stdlib_functions(stdlib_files):
    """Share of stdlib function units matching any HumanEval solution at tau >= 0.9.

    Bound: 1%. A 0.9 match allows edits on at most 10% of the longer node sequence, so only
    short, generic shapes (e.g. ``def f(s): return len(s)``) can match unrelated code; on this
    interpreter's stdlib + site-packages (162k function units) we measured 0.1%. The bound keeps
    10x headroom across Python versions and still fails if the measure degenerates (e.g. a
    length bound or normalisation bug makes long functions match: shares of 5-50%).
    """
    parsed = [parse_document(p.read_text(encoding="utf-8", errors="replace"), str(p)) for p in stdlib_files]
    units = [u for doc in parsed for u in doc.units if u.kind != "module"]
    assert len(units) > 3000
    index = AstMatchIndex(floor=0.9).fit([i.solution for i in load_benchmark("humaneval")])
    res = index.query([u.sequence for u in units])
    share = float((res.query_score >= 0.9).mean())
    print(
        f"stdlib function units matching a HumanEval solution at tau>=0.9: "
        f"{int((res.query_score >= 0.9).sum())}/{len(units)} = {share:.4%}"
    )
    assert share < 0.01
    # and no long function matches: chance matches are confined to short shapes
    lengths = np.array([len(u.sequence) for u in units])
    assert lengths[res.query_score >= 0.9].max(initial=0) <= 40


def _nested(depth: int) -> str:
    return "x = " + "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "text,reason",
    [
        ("def f(:\n    pass\n", "SyntaxError"),
        ("", "empty"),
        ("   \n\n", "empty"),
        (_nested(5000), "SyntaxError"),  # the parser's nesting limit
        (
            "def f():\n"
            + "".join("    " * (d + 1) + "if x:\n" for d in range(5000))
            + "    " * 5001
            + "pass\n",
            "IndentationError",
        ),
        ("y = " + "-" * 5000 + "1\n", None),  # deep unary chain: parses, our walk is iterative
        ("x = 1\x00\n", "SyntaxError"),
    ],
)
def test_bad_input_is_recorded_not_fatal(text, reason):
    parsed = parse_document(text, "bad", max_bytes=len(text) + 1)
    if reason is None:
        assert parsed.error is None or parsed.error.split(":")[0] in ("RecursionError", "MemoryError")
    else:
        assert parsed.error is not None and parsed.error.split(":")[0] in (
            reason,
            "SyntaxError",
            "RecursionError",
            "MemoryError",
        ), parsed.error


def test_huge_function_is_parsed_and_cheaply_skipped():
    body = "".join(f"    v{i} = v{i - 1} + {i}\n" for i in range(1, 20_000))
    text = "def huge(v0):\n" + body + "    return v0\n"
    parsed = parse_document(text, "huge")
    assert parsed.error is None and len(parsed.units[0].sequence) > 100_000
    index = AstMatchIndex(floor=0.8).fit([i.solution for i in load_benchmark("humaneval")])
    res = index.query([parsed.units[0].sequence] * 3)
    # the length bound skips it: no Levenshtein pair is computed at all (cheap by count, not by clock)
    assert res.pairs_compared == 0 and res.query_score.max() == 0
    assert parse_document("x = 1\n" * 10, "big", max_bytes=20).error == "too_large"
