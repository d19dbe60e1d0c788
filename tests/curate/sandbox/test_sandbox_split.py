"""The split run: plain-data encoding, the verdict plan, the channel under abuse, the tests kept out of
the candidate's memory, and an interpreter living under /tmp."""

from __future__ import annotations

import math
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.sandbox import Sandbox
from curate.sandbox.plain_data import MAX_DEPTH, NotPlainData, PlainDataError, decode, encode
from curate.sandbox.verdict_plan import SEPARATE, SINGLE, plan_verdict

PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)

hashable = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=8,
)
plain = st.recursive(
    hashable | st.complex_numbers(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(hashable, inner, max_size=4)
        | st.sets(hashable, max_size=4)
    ),
    max_leaves=25,
)


# -- plain data ------------------------------------------------------------------------------------
@given(plain)
@settings(max_examples=300, deadline=None)
def test_plain_data_round_trips(value):
    back = decode(encode(value))
    assert back == value and type(back) is type(value)


def _only_plain(v, depth=0) -> bool:
    if type(v) not in PLAIN_TYPES or depth > MAX_DEPTH + 1:
        return False
    if isinstance(v, dict):
        return all(_only_plain(k, depth + 1) and _only_plain(x, depth + 1) for k, x in v.items())
    if isinstance(v, (list, tuple, set, frozenset)):
        return all(_only_plain(x, depth + 1) for x in v)
    return True


@given(st.binary(max_size=200))
@settings(max_examples=2000, deadline=None)
def test_decoding_random_bytes_gives_plain_data_or_a_clean_error(data):
    try:
        value = decode(data)
    except PlainDataError:
        return
    assert _only_plain(value)


@given(plain, st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=255))
@settings(max_examples=500, deadline=None)
def test_decoding_corrupted_messages_never_crashes(value, where, byte):
    data = bytearray(encode(value))
    data[where % len(data)] = byte
    try:
        assert _only_plain(decode(bytes(data)))
    except PlainDataError:
        pass


def test_hostile_messages_are_refused():
    huge_count = b"l" + (2**32 - 1).to_bytes(4, "little")
    deep = b"l\x01\x00\x00\x00" * (MAX_DEPTH + 5) + b"N"
    unhashable_key = b"d\x01\x00\x00\x00l\x00\x00\x00\x00N"
    for bad in (b"", b"?", huge_count, deep, unhashable_key, encode(1) + b"N", b"s\xff\xff\xff\x7fab"):
        with pytest.raises(PlainDataError):
            decode(bad)


def test_encoding_refuses_what_is_not_plain():
    cyclic: list = []
    cyclic.append(cyclic)
    for bad in (object(), print, iter([1]), cyclic, [1, {2: range(3)}], type):
        with pytest.raises(NotPlainData):
            encode(bad)
    # subclasses travel as their plain base: the receiver never sees the subclass
    from collections import Counter, OrderedDict, namedtuple

    pt = namedtuple("pt", "x y")
    assert type(decode(encode(Counter("aab")))) is dict
    assert decode(encode([OrderedDict(a=1), pt(1, 2)])) == [{"a": 1}, (1, 2)]
    assert decode(encode(-0.0)) == 0 and math.copysign(1, decode(encode(-0.0))) == -1
    assert math.isnan(decode(encode(float("nan"))))
    assert decode(encode("\ud800x")) == "\ud800x"


# -- the verdict plan -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tests, reference, mode",
    [
        ("assert f([1, 2]) == 3", "def f(xs):\n    return sum(xs)", SEPARATE),
        ("def check(candidate):\n    assert candidate(1) == 2\ncheck(f)", "def f(x): ...", SEPARATE),
        ("assert f(Node(1)) == 1", "class Node: ...\ndef f(n): ...", SINGLE),
        ("class T:\n    pass\nassert f(T()) == 1", "def f(n): ...", SINGLE),
        ("t = T()\nclass T: pass\nassert f(t) == 1", "def f(n): ...", SINGLE),
        ("assert f(lambda x: x) == 1", "def f(g): ...", SINGLE),
        ("assert f(g) == 1", "def f(h): ...\ndef g(): ...", SINGLE),
        ("assert f(iter([1])) == 1", "def f(it): ...", SINGLE),
        ("assert f(x for x in [1]) == 1", "def f(it): ...", SINGLE),
        ("from fractions import Fraction\nassert f(Fraction(1, 2)) == 1", "def f(q): ...", SINGLE),
        (
            "P = namedtuple('P', 'x')\nassert f(P(1)) == 1",
            "from collections import namedtuple\ndef f(p): ...",
            SINGLE,
        ),
        ("assert sorted(f(3), key=lambda t: -t) == [1]", "def f(n): ...", SEPARATE),
        ("assert isinstance(f(1), int)", "def f(n): ...", SEPARATE),
    ],
)
def test_verdict_plan(tests, reference, mode):
    assert plan_verdict(tests, reference).mode == mode


def test_plan_reads_the_reference_never_the_candidate(sb, active):
    """A candidate that defines a class named like the tests' function cannot force the single process."""
    tests, reference = "assert f(2) == 4", "def f(x):\n    return 2 * x"
    cheat = "import os, sys\nclass f:\n    def __init__(self, x): pass\n    def __eq__(self, o): return True"
    res = sb.run(cheat, tests, reference)
    assert res.verdict_mode == "separate-processes" and not res.passed, res
    assert res.error_type == "NotPlainData", res


def test_builtins_are_the_test_process_own(sb, active):
    reference = "def f(x):\n    return -x"
    cheat = "def f(x):\n    return 5\ndef abs(x):\n    return 0"
    res = sb.run(cheat, "assert abs(f(3) - (-3)) < 1e-9", reference)
    assert res.status == "failed", res
    # ...unless the problem itself defines the name: then the tests want the program's
    res = sb.run("def max(a):\n    return -1", "assert max([1, 2]) == -1", "def max(a): ...")
    assert res.passed, res


# -- the channel under abuse ------------------------------------------------------------------------
def test_swallowing_tests_cannot_turn_a_broken_channel_into_a_pass(sb, active):
    tests = "try:\n    f(1)\nexcept BaseException:\n    pass\nassert True"
    for program in (
        "import os\ndef f(x):\n    os._exit(0)",
        "def f(x):\n    return object()",
        "import os\ndef f(x):\n    for fd in range(3, 64):\n        try: os.close(fd)\n        except OSError: pass\n    return 1",
    ):
        res = sb.run(program, tests, "def f(x): ...")
        assert not res.passed and res.status == "error", (program, res)


def test_garbage_on_the_channel_is_an_error(sb, active):
    program = (
        "import os, struct\n"
        "def f(x):\n"
        "    for fd in range(3, 64):\n"
        "        for junk in (struct.pack('<I', 4) + b'T' * 4, b'\\x02\\x00\\x00\\x00tN', b'RESULT passed\\n'):\n"
        "            try: os.write(fd, junk)\n"
        "            except OSError: pass\n"
        "    return 2\n"
    )
    res = sb.run(program, "assert f(1) == 2", "def f(x): ...")
    assert not res.passed and res.status == "error", res


def test_exceptions_cross_as_their_builtin_class(sb, active):
    program = "class Bad(ValueError):\n    pass\ndef f(x):\n    raise Bad('no')"
    tests = "try:\n    f(1)\n    assert False\nexcept ValueError as e:\n    assert str(e) == 'no'"
    assert sb.run(program, tests, "def f(x): ...").passed
    res = sb.run("def f(x):\n    return [].pop()", "f(1)", "def f(x): ...")
    assert res.status == "error" and res.error_type == "IndexError", res


def test_the_tests_never_enter_the_candidate_memory(sb, active):
    """The candidate scans every readable page of its process for a marker that is in the tests only."""
    scanner = textwrap.dedent(
        """
        import ctypes
        # the marker with every byte + 1: the scan never plants the plain marker itself
        shifted = b"TFDSFU`UFTUT`NBSLFS"
        shift = bytes((b + 1) % 256 for b in range(256))
        found = False
        for line in open("/proc/self/maps"):
            addr, perms = line.split()[:2]
            if "r" not in perms or "[v" in line:
                continue
            lo, hi = (int(a, 16) for a in addr.split("-"))
            try:
                found = found or shifted in ctypes.string_at(lo, hi - lo).translate(shift)
            except Exception:
                pass
        print("SCANNED", "FOUND" if found else "clean")
        def f():
            return 1
        """
    )
    tests = "# SECRET_TESTS_MARKER\nassert f() == 1"
    res = sb.run(scanner, tests, "def f(): ...")
    assert "SCANNED clean" in res.output_tail and res.passed, res
    single = Sandbox(timeout_s=5.0, verdicts="single")
    try:  # the scanner is real: in one process the tests are right there
        res = single.run(scanner, tests)
    finally:
        single.close()
    assert "SCANNED FOUND" in res.output_tail, res


# -- an interpreter under /tmp ----------------------------------------------------------------------
def test_interpreter_under_tmp_with_site_packages(tmp_path_factory, active):
    root = Path("/tmp") / f"sandbox-venv-{tmp_path_factory.getbasetemp().name}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    try:
        py = root / "bin" / "python"
        purelib = subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        Path(purelib, "tmp_only_module.py").write_text("VALUE = 42\n")
        assert purelib.startswith("/tmp/") and sysconfig.get_paths()["purelib"] != purelib
        program = "import json, tmp_only_module\ndef f():\n    return tmp_only_module.VALUE"
        for verdicts in ("separate", "single"):
            with Sandbox(timeout_s=10, python=str(py), site_packages=True, verdicts=verdicts) as box:
                res = box.run(program, "import tmp_only_module\nassert f() == tmp_only_module.VALUE == 42")
            assert res.passed, (verdicts, res)
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)
