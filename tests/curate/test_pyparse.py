"""curate.pyparse: code of every Python version parses into a real ``ast`` tree; broken code is told apart.

The samples in ``python_versions/`` are small textbook-like files, one per Python 3 minor version's new
syntax (3.0 to 3.14) and two of Python 2 idioms; lib2to3's own test data adds real Python 2 files.
"""

import ast
import sys
import sysconfig
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from curate.featurizers import structure_features
from curate.filters import PythonSyntaxFilter
from curate.labelers import code_features, heuristic_score
from curate.pyparse import parse_python, parse_valid
from decontam.ast_match import ast_sequence, split_units

VERSIONS = Path(__file__).resolve().parent / "python_versions"
SAMPLES = sorted(VERSIONS.glob("*.pysrc"))


def expected_dialect(path: Path) -> str:
    if path.name.startswith("py2"):
        return "python2"
    minor = int(path.stem.split(".")[1])
    return "python3" if minor <= sys.version_info[1] else "newer_syntax"


def test_there_is_a_sample_of_every_version():
    names = {p.stem for p in SAMPLES}
    assert {f"py3.{m}" for m in range(15)} <= names and {"py2_idioms", "py2_class"} <= names


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_every_version_parses_with_real_features(path):
    from datatrove.data import Document

    text = path.read_text()
    parsed = parse_python(text)
    assert parsed.dialect == expected_dialect(path) and parsed.valid
    assert parsed.source.count("\n") == text.count("\n")  # rewrites keep line numbers
    defs = [
        n
        for n in ast.walk(parsed.tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]
    assert len(defs) >= 2 and sum(bool(ast.get_docstring(d)) for d in defs) >= 2
    features = code_features(text)
    assert features["parses"] == 1.0 and features["defs"] >= 2 and features["docstring_share"] > 0.5
    assert structure_features(text)[0] == 1.0 and structure_features(text).sum() > 5
    assert heuristic_score(text) >= 0.6  # textbook-like: the offline labeler says "high" whatever the version
    assert len(split_units(text)) >= 2 and all(u.sequence for u in split_units(text))
    verdict = PythonSyntaxFilter(keep=["python3"]).filter(Document(text, path.stem))
    assert verdict is True if parsed.dialect == "python3" else verdict == (False, parsed.dialect)


@pytest.mark.parametrize(
    "old, new",
    [
        ('print "a", b\n', 'print("a", b)\n'),
        ("print >>sys.stderr, x, y\n", "print(x, y, file=sys.stderr)\n"),
        ("print >>f, x,\n", "print(x, file=f)\n"),
        ("print\n", "print()\n"),
        ("exec code in env\n", "exec(code, env)\n"),
        ("try:\n    f()\nexcept (A, B), err:\n    pass\n", "try:\n    f()\nexcept (A, B) as err:\n    pass\n"),
        ("x = `y`\n", "x = repr(y)\n"),
        ("ok = a <> b\n", "ok = a != b\n"),
        ("mode = 0755\nn = 7L\n", "mode = 0o755\nn = 7\n"),
        ("p = ur'\\d'\n", "p = r'\\d'\n"),
        ("raise KeyError, k\n", "raise KeyError(k)\n"),
        ("raise E, v, tb\n", "raise E(v).with_traceback(tb)\n"),
        ("class Box[T]:\n    x: T\n", "class Box:\n    x: T\n"),
        ("def first[T: int, *Ts, **P](xs: list[T]) -> T:\n    return xs[0]\n", "def first(xs: list[T]) -> T:\n    return xs[0]\n"),
        ("type Pair[K] = tuple[K, K]\n", "Pair = tuple[K, K]\n"),
        ("s = f\"{d[\"k\"]}!\"\n", "s = f'{d[\"k\"]}!'\n"),
        ("s = t\"hi {name}\"\n", "s = f\"hi {name}\"\n"),
        ("try:\n    f()\nexcept ValueError, TypeError:\n    pass\n", "try:\n    f()\nexcept (ValueError, TypeError):\n    pass\n"),
    ],
)  # fmt: skip
def test_rewritten_tree_is_the_python3_tree(old, new):
    """Each construct becomes exactly the tree of its Python 3 (this interpreter's) spelling."""
    parsed = parse_python(old)
    assert parsed.valid, parsed.error
    if parsed.dialect != "python3":  # on an interpreter that knows the syntax, ast itself parses it
        assert ast.dump(parsed.tree) == ast.dump(ast.parse(new))
        assert ast_sequence(old) == ast_sequence(new)


def test_broken_code_is_a_syntax_error_with_the_rest_of_its_features():
    text = 'def mean(xs):\n    """Average."""\n    return sum(xs) / len(xs)\n\ndef broken(:\n    pass\n'
    parsed = parse_python(text)
    assert parsed.dialect == "syntax_error" and not parsed.valid and parsed.error.startswith("SyntaxError")
    assert [n.name for n in parsed.tree.body if isinstance(n, ast.FunctionDef)] == ["mean"]  # best effort
    assert code_features(text)["parses"] == 0.0 and code_features(text)["defs"] == 1
    assert heuristic_score(text) == 0.0  # the labeler still refuses code no Python runs
    with pytest.raises(SyntaxError):
        parse_valid(text)
    deep = parse_python("x = " + "(" * 5000 + ")" * 5000)
    assert deep.dialect == "too_deeply_nested" and deep.tree is None
    assert parse_python("x = 1\0").dialect in ("invalid_source", "syntax_error")  # NUL: by Python version


LIB2TO3_DATA = Path(sysconfig.get_paths()["stdlib"]) / "lib2to3" / "tests" / "data"


@pytest.mark.skipif(not LIB2TO3_DATA.is_dir(), reason="lib2to3 left the stdlib in Python 3.13")
def test_real_python2_files_of_lib2to3():
    """lib2to3's test data: real Python 2 files (one with a BOM, CRLF line ends, a Latin-1 coding line)."""
    results = {}
    for path in sorted(LIB2TO3_DATA.glob("*.py")):
        results[path.name] = parse_python(path.read_bytes().decode("utf-8", errors="replace")).dialect
    assert {results[n] for n in ("bom.py", "crlf.py", "different_encoding.py", "false_encoding.py")} == {
        "python2"
    }
    assert results["py3_test_grammar.py"] == "python3"
    # Python 2's own grammar test: every construct rewritten but one list comprehension over a bare tuple
    assert results["py2_test_grammar.py"] == "syntax_error"
    assert (
        code_features((LIB2TO3_DATA / "py2_test_grammar.py").read_text())["defs"] > 30
    )  # its first 20k characters


def test_stdlib_code_is_python3_and_unchanged():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py"))[:40]:
        text = path.read_text(encoding="utf-8", errors="replace")
        parsed = parse_python(text)
        assert parsed.dialect == "python3" and parsed.source == text and parsed.rewrites == ()


_EXPR = st.recursive(
    st.sampled_from(["x", "1", "'s'", "0777", "`y`", "f(a)", "d[k]", "[1, 2]"]),
    lambda inner: (
        st.tuples(inner, st.sampled_from([" + ", " <> ", " % ", ", "]), inner).map("".join)
        | inner.map(lambda e: f"({e})")
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_EXPR, min_size=0, max_size=3), st.booleans(), st.booleans())
def test_python2_print_statements(args, chevron, trailing_comma):
    """Generated ``print`` statements of Python 2 (with ``<>``, backticks, octals inside) become calls.

    A first line ``print "start"`` makes the file Python 2: ``print``, ``print (x), y`` and
    ``print >>f, x`` alone are also valid Python 3 (a name, a tuple, a shift), and stay so.
    """
    assume((args and not args[0].startswith("(")) or chevron)
    text = "print " + (">>out" + (", " if args else "") if chevron else "") + ", ".join(args)
    text += "," if trailing_comma and args else ""
    parsed = parse_python('print "start"\n' + text + "\n")
    assert parsed.dialect == "python2", (text, parsed.error)
    stmt = parsed.tree.body[-1]
    assert isinstance(stmt.value, ast.Call) and stmt.value.func.id == "print"
    assert [k.arg for k in stmt.value.keywords] == (["file"] if chevron else [])


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            list("print exec def class (): [] , ` <> 0777 L u r ' \" \n \t = x 1 : f t {}")
        ),
        max_size=80,
    )
)
def test_any_text_gets_a_verdict_never_an_exception(text):
    parsed = parse_python(text)
    assert parsed.dialect in ("python3", "python2", "newer_syntax", "syntax_error", "too_deeply_nested",
                              "too_complex", "invalid_source")  # fmt: skip
    if parsed.valid:  # a verdict of valid is ast's own: the source it returns parses, lines unchanged
        ast.parse(parsed.source)
        assert parsed.source.count("\n") == text.replace("\ufeff", "", 1).count("\n")
    else:
        assert parsed.error
