"""The statement normal form (decontam/canonical.py): light edits of real stdlib functions leave no
trace in the AST shape, dependent statements keep their order, and hostile units stay cheap."""

import ast
import sysconfig
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decontam.ast_match import INLINE_MIN_NODES, _encode_tree, ast_sequence, parse_document
from decontam.canonical import MAX_SEGMENT, canonical_statements, statement_key
from decontam.mutate import FURTHER_EDITS, LIGHT_EDITS, light_edit
from decontam.normalise import normalise_code

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _inlined_length(source: str) -> int:
    return len(_encode_tree(canonical_statements(ast.parse(source).body)))


@pytest.fixture(scope="module")
def stdlib_functions() -> list[str]:
    """Top-level functions of stdlib modules no one here wrote, large enough to be inlined."""
    out = []
    for path in sorted(STDLIB.glob("*.py"))[:80]:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        out += [ast.unparse(n) for n in tree.body if isinstance(n, ast.FunctionDef)]
    out = [src for src in out if _inlined_length(src) >= INLINE_MIN_NODES]
    assert len(out) > 300
    return out


def _canonical(source: str) -> list[str]:
    return [ast.unparse(s) for s in canonical_statements(ast.parse(source).body)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.integers(0, 10**6), seed=st.integers(0, 10_000), n_edits=st.integers(1, 3))
def test_light_edits_of_stdlib_functions_keep_the_shape(stdlib_functions, pick, seed, n_edits):
    source = stdlib_functions[pick % len(stdlib_functions)]
    edited, done = light_edit(source, seed=seed, n_edits=n_edits, kinds=LIGHT_EDITS)
    assert ast_sequence(edited) == ast_sequence(source), (done, source, edited)


def test_further_edits_keep_the_shape_of_almost_every_function(stdlib_functions):
    """Moves and hoisted sub-expressions, which the normal form was not shaped around: a move that
    crosses a dependency hidden behind a hoisted temporary can change what the code does, so not
    every edit is undone; measured here: all but a few in a thousand."""
    same = total = 0
    for k, source in enumerate(stdlib_functions):
        edited, done = light_edit(source, seed=k, n_edits=3, kinds=LIGHT_EDITS + FURTHER_EDITS)
        if done:
            total += 1
            same += ast_sequence(edited) == ast_sequence(source)
    assert total > 300 and same / total >= 0.98, (same, total)


def test_normal_forms_agree_for_reordered_and_inlined_code():
    a = "def f(xs):\n    n = len(xs)\n    s = sum(xs)\n    return s / n\n"
    b = "def g(v):\n    total = sum(v)\n    count = len(v)\n    avg = total / count\n    return avg\n"
    assert _canonical(a) == ["def f(xs):\n    return sum(xs) / len(xs)"]
    assert normalise_code(a) == normalise_code(b)


def test_a_name_written_twice_or_read_twice_is_not_a_temporary():
    loop = "def f(xs):\n    t = 0\n    for x in xs:\n        t = t + x\n    return t\n"
    assert _canonical(loop) == [loop.strip()]
    twice = "def f(x):\n    y = g(x)\n    return y + y\n"
    assert _canonical(twice) == [twice.strip()]
    shared = "def f():\n    global t\n    t = g()\n    return t\n"
    assert "t = g()" in _canonical(shared)[0]


def test_dependent_statements_keep_their_order():
    # b reads what a writes: they may not be swapped, whatever their keys say
    source = "def f(x):\n    x = x + 1\n    y = [x]\n    print(y)\n    return y\n"
    assert _canonical(source) == [source.strip()]
    # independent ones are ordered by key: both spellings give one order
    one = "def f(a):\n    p = [a]\n    q = a + 1\n    return (p, q)\n"
    two = "def f(a):\n    q = a + 1\n    p = [a]\n    return (p, q)\n"
    assert _canonical(one) == _canonical(two)


def test_flow_statements_and_docstrings_stay_put():
    source = 'def f(a):\n    """Doc."""\n    if a:\n        return 1\n    b = [a]\n    c = a + 2\n    return (b, c, b + c)\n'
    out = _canonical(source)[0].splitlines()
    assert (
        out[1].strip() == '"""Doc."""'
        and out[2].strip() == "if a:"
        and out[-1].strip() == "return (b, c, b + c)"
    )


def test_small_units_keep_their_temporaries():
    """``t = a * b; return t`` is specific enough to index; ``return a * b`` is not."""
    written = "def f(a, b):\n    t = a * b\n    return t\n"
    assert ast_sequence(written) != ast_sequence("def f(a, b):\n    return a * b\n")
    assert len(ast_sequence(written)) >= INLINE_MIN_NODES


def test_statement_key_ignores_names_but_not_literals_or_builtins():
    key = lambda src: statement_key(ast.parse(src).body[0])  # noqa: E731
    assert key("total = len(xs)") == key("n = len(v)")
    assert key("total = len(xs)") != key("total = sum(xs)")
    assert key("x = 1") != key("x = 2")


def test_hostile_units_stay_linear_and_bounded():
    chain = (
        "def huge(v0):\n"
        + "".join(f"    v{i} = v{i - 1} + {i}\n" for i in range(1, 20_000))
        + "    return v19999\n"
    )
    parsed = parse_document(chain, "chain")
    assert parsed.error is None or parsed.error.startswith("RecursionError")
    table = "".join(f"x{i} = {i}\n" for i in range(MAX_SEGMENT * 4))
    assert _canonical(table)[:3] == ["x0 = 0", "x1 = 1", "x2 = 2"]  # too long to order: kept as written
    assert _canonical("pass\n") == ["pass"] and canonical_statements([]) == []
