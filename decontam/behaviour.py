"""Decontamination by behaviour: a training function that passes a benchmark item's own tests is a copy.

A rewrite can lose a solution's shape and text (``for`` turned into ``while``, comprehensions unrolled,
branches swapped under ``not``, a helper extracted) yet still *behave* like it. This measure runs the
item's tests against the training functions that could be its solution and records the ones that pass.

1. **Index** (:class:`BehaviourIndex`, once per benchmark): per item, its entry point, the full tests
   (HumanEval: ``check(entry_point)`` appended; MBPP: setup code + asserts), the prompt's helpers that
   the tests' process defines itself, the call shapes of the tests (positional counts), the AST
   sequences of the solution, and whether the verdict can be decided in separate processes
   (:func:`curate.sandbox.verdict_plan.plan_verdict`, read from the item, never from a candidate).
2. **Shortlist** (:meth:`BehaviourIndex.shortlist`): training units of kind ``function``/``method`` (as
   :mod:`decontam.ast_match` cuts them) whose signature accepts every call the tests make, and whose
   plain AST rate with the solution is at least ``floor`` (the measured recall/executions curve is in
   ``benchmarks/bench_decontam_behaviour.py`` and RESULTS.md).
3. **Execute** (:class:`BehaviourChecker`): each candidate runs with its document's module context
   (imports, definitions and assignments at top level, each statement on its own so one failing import
   does not lose the rest; a method is taken from an instance of its class, or from the class when no
   instance can be made) in :class:`curate.sandbox.Sandbox`. The test calls the candidate under the
   item's entry-point name.

Batching (group testing): the (item, candidate) pairs whose items are decided in separate processes
share sandbox runs, up to ``batch_size`` pairs and ``max_batch_bytes`` of module context each, a
document's pairs kept together (its context loads once). The candidates' process loads each document
in a namespace of its own and hands out each candidate wrapped: a time budget per item
(:data:`PAIR_BUDGET_S`, a repeating alarm), anything it raises that is not an ``Exception`` turned into
one, a result that is not plain data refused there. The *test* process (the only one the harness takes a
verdict from; it never holds a candidate's object) runs each pair's item tests in a fresh namespace and
names the pairs that passed in its verdict. A run where none passed settles all its pairs in one
execution. A pair named passing is only *nominated*: the pass is recorded from a run of that pair alone
(its document alone loaded), so one document's code can never make another's function pass. A run that
breaks (a candidate that hangs in C code, kills its process, forks too much) is halved, so one such
candidate costs about ``log2(batch_size)`` extra runs (processes a candidate forks end when its call
returns, so they never answer for a batch-mate). Items whose tests
need the program's own classes (single-process verdicts) run one pair per execution, the reference's
other definitions first.

Verdicts are cached by ``sha256(candidate program, item id, tests)`` in a JSONL file, so a rerun executes
nothing already decided.

Limits: candidates in one batch share a process, so code written to sabotage the check (patching
builtins, writing on the channel from a forked process) can make a batch-mate fail: a missed hit, never
a false pass (a pass is confirmed alone). Single-process items inherit the sandbox's single-process
limits.

Example:
    >>> from decontam.eval_sets import BenchmarkItem
    >>> item = BenchmarkItem("mbpp", "mbpp/1", "", "def add(a, b):\\n    return a + b\\n",
    ...                      "assert add(1, 2) == 3\\nassert add(2, 2) == 4")
    >>> index = BehaviourIndex(floor=0.0).fit([item])
    >>> index.items_[0].entry, index.items_[0].n_asserts
    ('add', 2)
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from decontam.ast_match import PARSE_ERRORS, benchmark_sequences
from decontam.eval_sets import BenchmarkItem

BEHAVIOUR_VERDICTS = "behaviour_verdicts.jsonl"
BEHAVIOUR_HITS = "behaviour_hits.jsonl"
PROTOCOL_VERSION = "1"  # part of every cache key: a change of how candidates are run invalidates them
#: plain AST rate (unit vs solution) from which a signature-compatible unit is executed; chosen from
#: the measured curve (benchmarks/bench_decontam_behaviour.py, RESULTS.md issue 26)
DEFAULT_FLOOR = 0.5
DEFAULT_BATCH = 256
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_CONTEXT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
            ast.AnnAssign, ast.AugAssign, ast.Try, ast.If)  # fmt: skip


def _parse(source: str) -> ast.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(source)


# ---------------------------------------------------------------------------------------------------
# signatures
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Signature:
    """Positional arity of a callable: ``required`` to ``most`` (None: ``*args``) positional arguments;
    ``kw_required``: keyword-only parameters without a default (a positional call cannot fill them)."""

    required: int
    most: int | None
    kw_required: bool = False

    def accepts(self, low: int, high: int) -> bool:
        """Whether every call with ``low`` to ``high`` positional arguments binds.

        >>> Signature(1, 2).accepts(1, 2), Signature(2, 2).accepts(1, 2), Signature(0, None).accepts(5, 9)
        (True, False, True)
        """
        return not self.kw_required and self.required <= low and (self.most is None or high <= self.most)


def signature_of(fn: ast.FunctionDef | ast.AsyncFunctionDef, bound: bool = False) -> Signature:
    """The :class:`Signature` of a ``def``; ``bound``: the first parameter is filled (a method on an
    instance or a classmethod).

    >>> signature_of(_parse("def f(self, a, b=1, *, c): pass").body[0], bound=True)
    Signature(required=1, most=2, kw_required=True)
    """
    a = fn.args
    positional = len(a.posonlyargs) + len(a.args) - int(bound)
    required = max(positional - len(a.defaults), 0)
    kw_required = any(d is None for d in a.kw_defaults)
    return Signature(required, None if a.vararg else max(positional, 0), kw_required)


def _decorators(fn) -> set[str]:
    return {d.id if isinstance(d, ast.Name) else getattr(d, "attr", "") for d in fn.decorator_list}


def call_shapes(tests: str, callee: str) -> tuple[int, int] | None:
    """(fewest, most) positional arguments of the calls to ``callee`` in ``tests``; None when there are
    none or one unpacks ``*args`` (then any arity may be right).

    >>> call_shapes("assert f(1, 2) == 3\\nassert f(1, 2, 3) == 0", "f")
    (2, 3)
    """
    try:
        tree = _parse(tests)
    except PARSE_ERRORS:
        return None
    counts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == callee:
            if any(isinstance(a, ast.Starred) for a in node.args):
                return None
            counts.append(len(node.args))
    return (min(counts), max(counts)) if counts else None


# ---------------------------------------------------------------------------------------------------
# benchmark side
# ---------------------------------------------------------------------------------------------------
@dataclass
class ItemSpec:
    """What running one benchmark item's tests against a candidate needs."""

    benchmark: str
    id: str
    entry: str
    tests: str  # the full tests, calling ``entry``
    reference: str  # the item's solution (chooses the verdict mode; its other definitions for single mode)
    provided: str  # the prompt's helpers, defined by the tests' process itself
    imports: list[str]  # the solution's top-level imports, run by the tests' process
    separate: bool  # verdict decided in separate processes (batchable)
    shape: tuple[int, int] | None  # positional arguments the tests pass
    sequences: list[str]
    n_asserts: int
    tests_hash: str = ""


def _entry_point(item: BenchmarkItem, tree: ast.Module) -> str | None:
    """HumanEval names it; for MBPP it is the solution's function the tests call first."""
    if item.entry_point:
        return item.entry_point
    defined = [n.name for n in tree.body if isinstance(n, _FUNCTIONS)]
    try:
        called = [
            n.func.id
            for n in ast.walk(_parse(item.tests))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in defined
        ]
    except PARSE_ERRORS:
        called = []
    return called[0] if called else (defined[-1] if defined else None)


def _prompt_helpers(item: BenchmarkItem, entry: str) -> str:
    """HumanEval prompts' imports and helper functions (``poly``, ``encode_cyclic``): the tests use them."""
    if item.benchmark != "humaneval":
        return ""
    try:
        tree = _parse(item.prompt + "    pass\n")
    except PARSE_ERRORS:
        return ""
    keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) or
            (isinstance(n, _FUNCTIONS) and n.name != entry)]  # fmt: skip
    return "\n".join(ast.unparse(n) for n in keep) if any(isinstance(n, _FUNCTIONS) for n in keep) else ""


def item_spec(item: BenchmarkItem) -> ItemSpec | None:
    """The :class:`ItemSpec` of a benchmark item, or None when its solution does not parse or has no
    function (then it cannot be run against anything)."""
    from curate.sandbox.verdict_plan import SEPARATE, plan_verdict

    try:
        tree = _parse(item.solution)
    except PARSE_ERRORS:
        return None
    entry = _entry_point(item, tree)
    if entry is None:
        return None
    if item.benchmark == "humaneval" or "def check(" in item.tests:
        tests = f"{item.tests}\ncheck({entry})\n"
        callee = _check_param(item.tests) or entry
    else:
        tests = ((item.setup_code or "") + "\n" + item.tests).strip() + "\n"
        callee = entry
    provided = _prompt_helpers(item, entry)
    imports = [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    try:
        n_asserts = sum(isinstance(n, ast.Assert) for n in ast.walk(_parse(tests)))
    except PARSE_ERRORS:
        n_asserts = 0
    return ItemSpec(
        benchmark=item.benchmark,
        id=item.id,
        entry=entry,
        tests=tests,
        reference=item.solution,
        provided=provided,
        imports=imports,
        separate=plan_verdict(tests, item.solution, provided).mode == SEPARATE,
        shape=call_shapes(tests, callee),
        sequences=benchmark_sequences(item.solution, 1, 1),
        n_asserts=n_asserts,
        tests_hash=hashlib.sha256(tests.encode("utf-8", "surrogatepass")).hexdigest()[:16],
    )


def _check_param(tests: str) -> str | None:
    try:
        for node in _parse(tests).body:
            if isinstance(node, ast.FunctionDef) and node.name == "check" and node.args.args:
                return node.args.args[0].arg
    except PARSE_ERRORS:
        return None
    return None


# ---------------------------------------------------------------------------------------------------
# corpus side
# ---------------------------------------------------------------------------------------------------
@dataclass
class Candidate:
    """A training function as the behavioural check runs it."""

    unit: int  # index in the audit's UnitTable
    doc: int  # document index in the UnitTable
    doc_id: str
    name: str  # ``f`` or ``Class.method``
    lineno: int
    end_lineno: int
    signature: Signature
    sequence: str
    context: str = ""  # key of the document's module context in BehaviourCandidates.contexts
    with_helpers: str = ""  # its sequence followed by those of the module functions it calls (if any)


@dataclass
class BehaviourCandidates:
    """The function/method units of a corpus, their signatures and their documents' module contexts."""

    candidates: list[Candidate] = field(default_factory=list)
    contexts: dict[str, list[str]] = field(default_factory=dict)  # key -> top-level statements


def _is_main_guard(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)


def module_context(tree: ast.Module) -> list[str]:
    """The top-level statements a function of this module may need: imports, definitions, assignments,
    ``try`` (import fallbacks) and ``if`` blocks other than the ``__main__`` guard; calls and loops at
    top level (a script's work) are left out.

    >>> module_context(_parse("import os\\nX = 1\\nprint(X)\\nif __name__ == '__main__':\\n    main()\\n"))
    ['import os', 'X = 1']
    """
    out = []
    for node in tree.body:
        if isinstance(node, _CONTEXT) and not _is_main_guard(node):
            try:
                out.append(ast.unparse(node))
            except (RecursionError, ValueError):
                continue
    return out


def corpus_candidates(table, texts_by_id: dict[str, str], min_nodes: int = 10) -> BehaviourCandidates:
    """Every ``function``/``method`` unit of the audit's UnitTable with its signature and context.

    A candidate is compared by its own sequence and by its sequence followed by those of the module's
    functions it calls by name (a solution split into helpers is compared whole); candidates with
    fewer than ``min_nodes`` nodes either way are left out, as the AST measure leaves them out
    (generic one-liners such as ``operator.floordiv`` pass the weakest benchmark tests)."""
    out = BehaviourCandidates()
    by_doc: dict[int, list[int]] = {}
    for u, kind in enumerate(table.unit_kind):
        if kind in ("function", "method"):
            by_doc.setdefault(table.unit_doc[u], []).append(u)
    for d, units in by_doc.items():
        doc_id = table.doc_ids[d]
        try:
            tree = _parse(texts_by_id[doc_id])
        except PARSE_ERRORS:
            continue
        defs = _defs_by_line(tree)
        seq_of = {table.unit_name[u]: table.unit_seq[u] for u in units if table.unit_kind[u] == "function"}
        context = None
        for u in units:
            found = defs.get((table.unit_name[u], table.unit_lineno[u]))
            if found is None:
                continue
            found, called = found
            helpers = "".join(seq_of[n] for n in sorted(called) if n in seq_of)
            if len(table.unit_seq[u]) + len(helpers) < min_nodes:
                continue
            if context is None:
                context = _context_key(module_context(tree))
                out.contexts.setdefault(context[0], context[1])
            out.candidates.append(Candidate(
                u, d, doc_id, table.unit_name[u], table.unit_lineno[u], table.unit_end[u], found,
                table.unit_seq[u], context[0], table.unit_seq[u] + helpers if helpers else "",
            ))  # fmt: skip
    return out


def _context_key(statements: list[str]) -> tuple[str, list[str]]:
    digest = hashlib.sha256("\x00".join(statements).encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return digest, statements


def _defs_by_line(tree: ast.Module) -> dict[tuple[str, int], tuple[Signature, set[str]]]:
    """{(unit name, first line incl. decorators): (signature, names it calls)} as the audit names units."""

    def start(fn):
        return min([fn.lineno] + [d.lineno for d in fn.decorator_list])

    def called(fn):
        return {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}

    out = {}
    for node in tree.body:
        if isinstance(node, _FUNCTIONS):
            out[(node.name, start(node))] = (signature_of(node), called(node) - {node.name})
        elif isinstance(node, ast.ClassDef):
            for inner in node.body:
                if isinstance(inner, _FUNCTIONS):
                    bound = "staticmethod" not in _decorators(inner)
                    out[(f"{node.name}.{inner.name}", start(inner))] = (signature_of(inner, bound=bound), called(inner))
    return out


# ---------------------------------------------------------------------------------------------------
# shortlist
# ---------------------------------------------------------------------------------------------------
class BehaviourIndex:
    """Benchmark items indexed for the behavioural check (sklearn-style: ``fit`` then ``shortlist``).

    ``floor``: plain AST rate (Levenshtein similarity of node-type sequences, the solution's whole
    sequence or any of its functions) from which a signature-compatible unit is a candidate; 0 runs
    every compatible unit.

    Example:
        >>> from decontam.eval_sets import BenchmarkItem
        >>> item = BenchmarkItem("mbpp", "mbpp/1", "", "def add(a, b):\\n    return a + b\\n", "assert add(1, 2) == 3")
        >>> index = BehaviourIndex(floor=0.0).fit([item])
        >>> one = Candidate(0, 0, "d", "plus", 1, 2, Signature(2, 2), "x")
        >>> three = Candidate(1, 0, "d", "f3", 3, 4, Signature(3, 3), "x")
        >>> [(i, c) for i, c, _ in index.shortlist([one, three])]
        [(0, 0)]
    """

    def __init__(self, floor: float = DEFAULT_FLOOR, chunk_rows: int = 4096):
        self.floor = floor
        self.chunk_rows = chunk_rows

    def fit(self, items: Sequence[BenchmarkItem]) -> BehaviourIndex:
        """Build an :class:`ItemSpec` per item; items that cannot be run are listed in ``skipped_``."""
        self.items_: list[ItemSpec] = []
        self.item_index_: list[int] = []  # position of each spec in ``items``
        self.skipped_: list[str] = []
        for k, item in enumerate(items):
            spec = item_spec(item)
            if spec is None:
                self.skipped_.append(item.id)
                continue
            self.items_.append(spec)
            self.item_index_.append(k)
        variants = [(i, s) for i, spec in enumerate(self.items_) for s in spec.sequences]
        self.variant_item_ = np.asarray([i for i, _ in variants], dtype=np.int64)
        self.variants_ = [s for _, s in variants]
        return self

    def subset(self, keep: Sequence[int]) -> BehaviourIndex:
        """The index restricted to the items at positions ``keep`` of ``items_`` (same floor)."""
        out = BehaviourIndex(self.floor, self.chunk_rows)
        out.items_ = [self.items_[i] for i in keep]
        out.item_index_ = [self.item_index_[i] for i in keep]
        out.skipped_ = list(self.skipped_)
        variants = [(j, s) for j, spec in enumerate(out.items_) for s in spec.sequences]
        out.variant_item_ = np.asarray([j for j, _ in variants], dtype=np.int64)
        out.variants_ = [s for _, s in variants]
        return out

    def _compatible(self, cands: Sequence[Candidate]) -> np.ndarray:
        """(n_items, n_cands) mask: the candidate's signature binds every call the item's tests make."""
        req = np.asarray([c.signature.required for c in cands], dtype=np.int64)
        most = np.asarray([1 << 30 if c.signature.most is None else c.signature.most for c in cands])
        kw = np.asarray([c.signature.kw_required for c in cands], dtype=bool)
        mask = np.zeros((len(self.items_), len(cands)), dtype=bool)
        for i, spec in enumerate(self.items_):
            lo, hi = spec.shape if spec.shape is not None else (0, 0)
            mask[i] = ~kw & (req <= lo) & (most >= hi) if spec.shape is not None else ~kw
        return mask

    def rates(self, cands: Sequence[Candidate]) -> np.ndarray:
        """(n_items, n_cands) best plain AST rate of each candidate (alone or with its helpers) with each
        item (0 under ``floor``)."""
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein

        out = np.zeros((len(self.items_), len(cands)), dtype=np.float32)
        if not cands or not self.variants_:
            return out
        if self.floor <= 0:
            return out + 1.0  # no similarity floor: every compatible unit runs
        slot: dict[str, int] = {}
        inverse = np.asarray([slot.setdefault(c.sequence, len(slot)) for c in cands], dtype=np.int64)
        helped = np.asarray([slot.setdefault(c.with_helpers or c.sequence, len(slot)) for c in cands])
        uniq = list(slot)
        per_item = np.zeros((len(self.items_), len(uniq)), dtype=np.float32)
        for start in range(0, len(uniq), self.chunk_rows):
            block = process.cdist(uniq[start : start + self.chunk_rows], self.variants_,
                                  scorer=Levenshtein.normalized_similarity, score_cutoff=self.floor,
                                  workers=-1, dtype=np.float32)  # fmt: skip
            np.maximum.at(per_item[:, start : start + len(block)], self.variant_item_, block.T)
        out[:] = np.maximum(per_item[:, inverse], per_item[:, helped])
        return out

    def shortlist(self, cands: Sequence[Candidate]) -> list[tuple[int, int, float]]:
        """``(item, candidate, rate)`` for every compatible pair at or above the floor."""
        if not cands or not self.items_:
            return []
        rates = self.rates(cands)
        keep = self._compatible(cands) & (rates >= max(self.floor, 1e-9))
        return [(int(i), int(c), float(rates[i, c])) for i, c in zip(*np.nonzero(keep), strict=True)]


# ---------------------------------------------------------------------------------------------------
# programs and tests
# ---------------------------------------------------------------------------------------------------
_LOADER = """import os as _tb_os, signal as _tb_signal, sys as _tb_sys, time as _tb_time

_tb_plain = _tb_sys.modules.get("_sandbox_plain_data")
_tb_left = [0.0]
_tb_pid = _tb_os.getpid()


def _tb_alarm(*_tb_args):
    raise TimeoutError("over the time budget")


_tb_signal.signal(_tb_signal.SIGALRM, _tb_alarm)


def _tb_timed(_tb_f, *_tb_args):
    # the budget is re-armed every 50 ms once spent, so code that swallows one alarm meets the next
    _tb_t = _tb_time.monotonic()
    _tb_signal.setitimer(_tb_signal.ITIMER_REAL, max(_tb_left[0], 0.001), 0.05)
    try:
        return _tb_f(*_tb_args)
    finally:
        if _tb_os.getpid() != _tb_pid:  # a process the candidate forked never answers on the channel
            _tb_os._exit(0)
        _tb_signal.setitimer(_tb_signal.ITIMER_REAL, 0)
        _tb_left[0] -= _tb_time.monotonic() - _tb_t


def _tb_reset(_tb_budget):
    _tb_left[0] = float(_tb_budget)


def _tb_exec_all(_tb_statements, _tb_ns):
    for _tb_s in _tb_statements:
        try:
            exec(_tb_s, _tb_ns)
        except BaseException:  # one failing import or assignment must not lose the rest
            pass


def _tb_load(_tb_statements):
    _tb_ns = {"__name__": "__corpus__"}
    _tb_reset(LOAD_BUDGET)
    try:
        _tb_timed(_tb_exec_all, _tb_statements, _tb_ns)
    except BaseException:
        pass
    return _tb_ns


def _tb_resolve(_tb_ns, _tb_name):
    if "." not in _tb_name:
        return _tb_ns[_tb_name]
    _tb_cls_name, _tb_meth = _tb_name.split(".", 1)
    _tb_cls = _tb_ns[_tb_cls_name]
    if isinstance(_tb_cls.__dict__.get(_tb_meth), (staticmethod, classmethod)):
        return getattr(_tb_cls, _tb_meth)
    try:
        _tb_obj = _tb_cls()
    except BaseException:
        _tb_obj = object.__new__(_tb_cls)
    return getattr(_tb_obj, _tb_meth)


def _tb_get(_tb_ns, _tb_name):
    # the candidate as the tests meet it: within the pair's time budget, anything it raises that is
    # not an Exception (SystemExit...) turned into one, a result that is not plain data refused here
    try:
        _tb_f = _tb_timed(_tb_resolve, _tb_ns, _tb_name)
    except BaseException:
        return None
    if not callable(_tb_f):
        return None

    def _tb_call(*_tb_a, **_tb_k):
        if _tb_left[0] <= 0:
            raise TimeoutError("over the time budget")
        try:
            _tb_r = _tb_timed(lambda: _tb_f(*_tb_a, **_tb_k))
        except Exception:
            raise
        except BaseException as _tb_e:
            raise RuntimeError("the candidate raised " + type(_tb_e).__name__) from None
        if _tb_plain is not None:
            try:
                _tb_plain.encode(_tb_r)
            except BaseException:
                raise TypeError("the candidate returned something that is not plain data") from None
        return _tb_r

    return _tb_call
"""

_BATCH_TESTS = """_tb_cands = [{names}]
_tb_pairs = {pairs!r}
_tb_sources = {sources!r}
_tb_passed = []
for _tb_k, (_tb_c, _tb_entry, _tb_t) in enumerate(_tb_pairs):
    _tb_g = {{"__name__": "__main__"}}
    _tb_g[_tb_entry] = _tb_cands[_tb_c]
    try:
        _tb_reset({budget!r})
        exec(compile(_tb_sources[_tb_t], "<item tests>", "exec"), _tb_g)
    except BaseException:  # whatever a candidate raised (a broken channel stays failed: sticky)
        continue
    _tb_passed.append(str(_tb_k))
assert _tb_passed, "no candidate passes its item's tests"
# which pairs passed, told through the verdict's error type: only this process names it
raise type("{marker}" + "_".join(_tb_passed), (Exception,), {{}})()
"""
PASS_MARKER = "TbPassed_"
PLAN_CHUNK = 2048  # sandbox jobs per map call: well under plan_verdict's cache of 8192 plans
PAIR_BUDGET_S = 1.0  # seconds a candidate may spend on one item's tests (all its calls together)
LOAD_BUDGET_S = 2.0  # seconds a document's module context may take to load


def candidate_program(members: Sequence[Candidate], contexts: dict[str, list[str]]) -> str:
    """The candidates' program: each document's module context loaded once into a namespace of its
    own, and ``_tb_cand_<k>`` bound to the k-th member (None when it cannot be had)."""
    lines = [_LOADER.replace("LOAD_BUDGET", repr(LOAD_BUDGET_S))]
    ns_of: dict[str, str] = {}
    for k, cand in enumerate(members):
        if cand.context not in ns_of:
            ns_of[cand.context] = f"_tb_ns_{len(ns_of)}"
            lines.append(f"{ns_of[cand.context]} = _tb_load({contexts[cand.context]!r})")
        lines.append(f"_tb_cand_{k} = _tb_get({ns_of[cand.context]}, {cand.name!r})")
    return "\n".join(lines) + "\n"


def item_source(spec: ItemSpec) -> str:
    """What the tests' process runs for one item: its imports (each may fail), the prompt's helpers,
    then the tests, which call the candidate under the entry-point name."""
    imports = "".join(f"try:\n    {line}\nexcept Exception:\n    pass\n" for line in spec.imports)
    return imports + (spec.provided + "\n" if spec.provided else "") + spec.tests


def batch_job(pairs: Sequence[tuple[ItemSpec, Candidate]], contexts: dict[str, list[str]]) -> tuple[str, str]:
    """``(program, tests)`` of one sandbox run deciding whether any of ``pairs`` passes: the distinct
    candidates in the program, every item's tests run in the tests' process once per pair.

    >>> spec = item_spec(BenchmarkItem("mbpp", "m", "", "def f(x):\\n    return x\\n", "assert f(1) == 1"))
    >>> cand = Candidate(0, 0, "d", "g", 1, 2, Signature(1, 1), "", "c")
    >>> program, tests = batch_job([(spec, cand)], {"c": ["def g(y):\\n    return y"]})
    >>> "_tb_cand_0 = _tb_get(_tb_ns_0, 'g')" in program, "_tb_cands = [_tb_cand_0]" in tests
    (True, True)
    """
    members: list[Candidate] = []
    slot: dict[int, int] = {}
    sources: list[str] = []
    source_slot: dict[str, int] = {}
    triples = []
    for spec, cand in pairs:
        c = slot.setdefault(id(cand), len(members))
        if c == len(members):
            members.append(cand)
        t = source_slot.setdefault(spec.id, len(sources))
        if t == len(sources):
            sources.append(item_source(spec))
        triples.append((c, spec.entry, t))
    names = ", ".join(f"_tb_cand_{k}" for k in range(len(members)))
    tests = _BATCH_TESTS.format(names=names, pairs=triples, sources=sources, budget=PAIR_BUDGET_S,
                                marker=PASS_MARKER)  # fmt: skip
    return candidate_program(members, contexts), tests


def single_program(spec: ItemSpec, cand: Candidate, contexts: dict[str, list[str]]) -> str:
    """For single-process items: the reference's other definitions (the classes its tests build), then
    the candidate bound to the entry-point name."""
    try:
        tree = _parse(spec.reference)
        prelude = [ast.unparse(n) for n in tree.body if not (isinstance(n, _FUNCTIONS) and n.name == spec.entry)]
    except PARSE_ERRORS:
        prelude = []
    program = candidate_program([cand], contexts)
    return "\n".join([*prelude, program, f"_tb_reset({PAIR_BUDGET_S!r})", f"{spec.entry} = _tb_cand_0", ""])


def verdict_key(spec: ItemSpec, cand: Candidate, contexts: dict[str, list[str]]) -> str:
    """Cache key of one (item, candidate) verdict: the candidate's code (its module context and name),
    the item and its tests, and the protocol version."""
    h = hashlib.sha256()
    for part in (PROTOCOL_VERSION, spec.benchmark, spec.id, spec.tests_hash, cand.name, *contexts[cand.context]):
        h.update(part.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()[:32]


# ---------------------------------------------------------------------------------------------------
# execution
# ---------------------------------------------------------------------------------------------------
@dataclass
class CheckStats:
    """What the checker did: sandbox runs (the cost), pairs settled by them, pairs read from the cache."""

    pairs: int = 0
    cached: int = 0
    executions: int = 0
    batch_runs: int = 0
    single_runs: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0


def read_verdicts(path: str | os.PathLike) -> dict[str, dict]:
    """The verdicts of a cache file by key ({} when there is none); a line cut by a kill is skipped (that
    verdict is simply decided again).

    >>> import tempfile; path = Path(tempfile.mkdtemp()) / "v.jsonl"
    >>> _ = path.write_text('{"key": "a", "passed": true}\\n{"key": "b", "pas')
    >>> list(read_verdicts(path))
    ['a']
    """
    cache: dict[str, dict] = {}
    if not Path(path).is_file():
        return cache
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
                cache[row["key"]] = row
            except (ValueError, KeyError, TypeError):
                continue
    return cache


class BehaviourChecker:
    """Run benchmark items' tests against shortlisted candidates in the sandbox, with a verdict cache.

    Args:
        cache_path: JSONL of decided verdicts (``{"key", "passed", "status"}``), read at start and
            appended as verdicts are settled (a killed audit keeps what it decided).
        batch_size: (item, candidate) pairs per sandbox run (items decided in separate processes).
        max_batch_bytes: module context (source bytes) one run may load.
        timeout_s, memory_mb, max_procs: the sandbox's limits per run.
        workers: concurrent sandbox runs.
        sandbox: an existing :class:`curate.sandbox.Sandbox` (its limits then apply).
        read_also: other verdict files read at start, never written (other tasks' caches).

    Example:
        >>> import tempfile
        >>> item = BenchmarkItem("mbpp", "mbpp/1", "", "def add(a, b):\\n    return a + b\\n",
        ...                      "assert add(1, 2) == 3\\nassert add(2, 2) == 4")
        >>> spec = item_spec(item)
        >>> contexts = {"c": ["def plus(x, y):\\n    return y + x", "def minus(x, y):\\n    return x - y"]}
        >>> plus = Candidate(0, 0, "d", "plus", 1, 2, Signature(2, 2), "", "c")
        >>> minus = Candidate(1, 0, "d", "minus", 3, 4, Signature(2, 2), "", "c")
        >>> with BehaviourChecker(tempfile.mktemp()) as checker:
        ...     verdicts = checker.check([(spec, plus), (spec, minus)], contexts)
        >>> [v["passed"] for v in verdicts], checker.stats.executions
        ([True, False], 2)
    """

    def __init__(
        self,
        cache_path: str | os.PathLike | None = None,
        batch_size: int = DEFAULT_BATCH,
        timeout_s: float = 30.0,
        memory_mb: int = 512,
        max_procs: int = 32,
        workers: int = 2,
        sandbox: Any = None,
        max_batch_bytes: int = 300_000,
        read_also: Sequence[str | os.PathLike] = (),
    ):
        self.cache_path = Path(cache_path) if cache_path else None
        self.batch_size = max(1, int(batch_size))
        self.max_batch_bytes = max_batch_bytes
        self.workers = workers
        self._own = sandbox is None
        if sandbox is None:
            from curate.sandbox import Sandbox

            sandbox = Sandbox(timeout_s=timeout_s, memory_mb=memory_mb, max_procs=max_procs)
        self.sandbox = sandbox
        self.cache: dict[str, dict] = {}
        for path in [*read_also, *([self.cache_path] if self.cache_path else [])]:
            self.cache.update(read_verdicts(path))
        self.stats = CheckStats()

    def __enter__(self) -> BehaviourChecker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self.sandbox.close()

    def _remember(self, rows: list[dict]) -> None:
        for row in rows:
            self.cache[row["key"]] = row
        if self.cache_path is not None and rows:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.cache_path, "a", encoding="utf-8") as f:
                f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in rows)

    def check(self, pairs: Sequence[tuple[ItemSpec, Candidate]], contexts: dict[str, list[str]]) -> list[dict]:
        """One verdict per ``(item spec, candidate)``: ``{"key", "passed", "status", "cached"}``."""
        t0 = time.perf_counter()
        keys = [verdict_key(spec, cand, contexts) for spec, cand in pairs]
        todo: dict[str, list[int]] = {}  # key -> pair indices (identical candidates run once)
        for p, key in enumerate(keys):
            if key not in self.cache:
                todo.setdefault(key, []).append(p)
        self.stats.pairs += len(pairs)
        self.stats.cached += len(pairs) - sum(len(v) for v in todo.values())
        first = {key: pairs[ps[0]] for key, ps in todo.items()}
        pending = [[k] for k, (spec, _) in first.items() if not spec.separate]
        pending += self._batches([k for k, (spec, _) in first.items() if spec.separate], first, contexts)
        while pending:
            pending = self._round(pending, first, contexts)
        self.stats.wall_s += time.perf_counter() - t0
        return [dict(self.cache[key], cached=key not in todo) for key in keys]

    def _batches(self, keys: list[str], first: dict, contexts) -> list[list[str]]:
        """Pairs cut into runs of at most ``batch_size`` pairs and ``max_batch_bytes`` of module context,
        a document's pairs kept together (its context then loads once)."""
        out, batch, size, loaded = [], [], 0, set()
        for key in sorted(keys, key=lambda k: (first[k][1].doc, first[k][1].unit)):
            ctx = first[key][1].context
            add = 0 if ctx in loaded else sum(len(x) for x in contexts[ctx])
            if batch and (len(batch) >= self.batch_size or size + add > self.max_batch_bytes):
                out.append(batch)
                batch, size, loaded = [], 0, set()
                add = sum(len(x) for x in contexts[ctx])
            batch.append(key)
            loaded.add(ctx)
            size += add
        return out + ([batch] if batch else [])

    def _round(self, pending: list[list[str]], first: dict, contexts) -> list[list[str]]:
        """Run every pending batch once; returns the halves still to decide."""
        from curate.sandbox.verdict_plan import plan_verdict

        jobs = []
        for keys in pending:
            spec, cand = first[keys[0]]
            if spec.separate:
                jobs.append((*batch_job([first[k] for k in keys], contexts), "", ""))
            else:
                jobs.append((single_program(spec, cand, contexts), spec.tests, spec.reference, spec.provided))
        results = []
        for start in range(0, len(jobs), PLAN_CHUNK):
            chunk = jobs[start : start + PLAN_CHUNK]
            for _program, tests, reference, provided in chunk:
                # the verdict plan parses the tests; parsed here, in this thread, it is cached for the
                # sandbox's worker threads (CPython 3.11's ast.parse in two threads at once can fail with
                # "AST constructor recursion depth mismatch")
                plan_verdict(tests, reference, provided)
            results += self.sandbox.map(chunk, workers=self.workers)
        self.stats.executions += len(jobs)
        nxt, decided = [], []
        for keys, res in zip(pending, results, strict=True):
            self.stats.statuses[res.status] = self.stats.statuses.get(res.status, 0) + 1
            self.stats.batch_runs += len(keys) > 1
            self.stats.single_runs += len(keys) == 1
            passing = _passing_pairs(res, len(keys)) if first[keys[0]][0].separate else None
            if passing is None and len(keys) > 1 and res.status != "failed":
                half = len(keys) // 2  # a member broke the run (hung in C code, killed its process...)
                nxt += [keys[:half], keys[half:]]
                continue
            ok = bool(res.passed) if passing is None else bool(passing) and len(keys) == 1
            if passing and len(keys) > 1:
                nxt += [[keys[k]] for k in passing]  # a pass is recorded from a run of its own only
                keys = [k for j, k in enumerate(keys) if j not in passing]
            for key in keys:
                spec, cand = first[key]
                status = "passed" if ok else "failed" if passing is not None else res.status
                decided.append({
                    "key": key, "benchmark": spec.benchmark, "item_id": spec.id, "doc_id": cand.doc_id,
                    "unit": cand.name, "passed": ok, "status": status,
                    "error_type": None if passing is not None else res.error_type, "verdict_mode": res.verdict_mode,
                    "batch": len(keys),
                })  # fmt: skip
        self._remember(decided)
        return nxt


def _passing_pairs(res, n: int) -> list[int] | None:
    """Indices of the pairs a batch run reports passing ([] when none did), None when the run broke."""
    if res.status == "failed" and res.error_type == "AssertionError":
        return []
    marker = res.error_type or ""
    if res.status != "error" or not marker.startswith(PASS_MARKER):
        return None
    try:
        found = sorted({int(x) for x in marker[len(PASS_MARKER) :].split("_")})
    except ValueError:
        return None
    return found if found and all(0 <= k < n for k in found) else None


# ---------------------------------------------------------------------------------------------------
# scoring a corpus
# ---------------------------------------------------------------------------------------------------
#: generic one-liners: an item whose tests one of these passes cannot tell its solution from everyday
#: code (``operator.mul`` passes "area of a rectangle"), so the behavioural measure leaves it out, as
#: the AST measure leaves out solutions under ``min_nodes`` (measured: RESULTS.md, issue 26)
GENERIC_BASELINES = [
    "from operator import *",
    *(f"def const_{name}(*args, **kwargs):\n    return {value}"
      for name, value in (("none", "None"), ("true", "True"), ("false", "False"), ("zero", "0"),
                          ("one", "1"), ("empty_list", "[]"), ("empty_str", "''"))),
    "def identity(x):\n    return x",
    "def first(xs):\n    return xs[0]",
    "def last(xs):\n    return xs[-1]",
    "def join(xs):\n    return ''.join(xs)",
    "def join_str(xs):\n    return ''.join(map(str, xs))",
    *(f"def {name}_(*args):\n    return {name}(*args)" for name in (
        "abs", "all", "any", "bin", "bool", "chr", "divmod", "float", "hex", "int", "len", "list", "max", "min",
        "oct", "ord", "pow", "round", "set", "sorted", "str", "sum", "tuple")),
]  # fmt: skip


def generic_candidates() -> tuple[list[Candidate], dict[str, list[str]]]:
    """:data:`GENERIC_BASELINES` as candidates (signatures read with :mod:`inspect`)."""
    import inspect
    import operator

    namespace: dict[str, Any] = {}
    for statement in GENERIC_BASELINES:
        exec(statement, namespace)  # our own constant source, never corpus code
    names = sorted(n for n in namespace if not n.startswith("_") and callable(namespace[n]))
    names = [n for n in names if n in dir(operator) or n.startswith(("const_", "identity", "join", "first", "last")) or n.endswith("_")]
    out = []
    for name in names:
        try:
            params = inspect.signature(namespace[name]).parameters.values()
            positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
            required = sum(p.default is p.empty for p in positional)
            sig = Signature(required, None if varargs else len(positional))
        except (TypeError, ValueError):
            sig = Signature(0, None)
        out.append(Candidate(-1, -1, "<generic>", name, 0, 0, sig, "", "generic"))
    return out, {"generic": list(GENERIC_BASELINES)}


def weak_items(index: BehaviourIndex, checker: BehaviourChecker) -> dict[str, str]:
    """{item id: generic baseline that passes its tests} (cached like every verdict).

    >>> item = BenchmarkItem("mbpp", "mbpp/52", "", "def area(b, h):\\n    return b * h\\n", "assert area(2, 3) == 6")
    >>> import tempfile
    >>> with BehaviourChecker(tempfile.mktemp()) as checker:
    ...     weak_items(BehaviourIndex(floor=0.0).fit([item]), checker)["mbpp/52"] in ("mul", "imul")
    True
    """
    cands, contexts = generic_candidates()
    pairs = [(index.items_[i], cands[c]) for i, c in zip(*np.nonzero(index._compatible(cands)), strict=True)]
    verdicts = checker.check(pairs, contexts)
    weak: dict[str, str] = {}
    for (spec, cand), verdict in zip(pairs, verdicts, strict=True):
        if verdict["passed"]:
            weak.setdefault(spec.id, cand.name)
    return weak


@dataclass
class BehaviourResult:
    """Behavioural hits of one benchmark: masks over documents and items, and the evidence."""

    doc_hit: np.ndarray  # (n_docs,) bool
    item_hit: np.ndarray  # (n_items,) bool, aligned with the benchmark's item list
    hits: list[dict]  # one per passing (item, unit): benchmark, item_id, doc_id, unit, lines, tests passed
    shortlisted: int = 0
    skipped_items: list[str] = field(default_factory=list)
    weak_items: dict[str, str] = field(default_factory=dict)  # item -> generic baseline passing its tests
    calibration_executions: int = 0  # runs spent finding the weak items (once per benchmark: cached)
    hit_units: list[int] = field(default_factory=list)  # each hit's unit in the UnitTable


@dataclass
class PreparedBenchmark:
    """One benchmark ready for the behavioural check: its index restricted to the items a generic
    one-liner does not pass (``strong``: positions in ``index.items_``), the weak items, the cost."""

    index: BehaviourIndex
    strong: list[int]
    n_items: int
    weak_items: dict[str, str]
    calibration_executions: int


def prepare_benchmark(items: Sequence[BenchmarkItem], checker: BehaviourChecker, floor: float) -> PreparedBenchmark:
    """Index ``items`` and find its weak items (:func:`weak_items`; once per benchmark, then cached)."""
    index = BehaviourIndex(floor=floor).fit(items)
    before = checker.stats.executions
    weak = weak_items(index, checker)
    strong = [i for i, spec in enumerate(index.items_) if spec.id not in weak]
    return PreparedBenchmark(index, strong, len(items), weak, checker.stats.executions - before)


def behaviour_hits(
    table, cands: BehaviourCandidates, bench: PreparedBenchmark, checker: BehaviourChecker
) -> BehaviourResult:
    """Shortlist ``cands`` (units of ``table``, a :class:`decontam.prune.UnitTable`) for the benchmark's
    strong items, run them and collect the passes with their evidence."""
    index = bench.index
    shortlist = [(bench.strong[i], c, r) for i, c, r in index.subset(bench.strong).shortlist(cands.candidates)]
    pairs = [(index.items_[i], cands.candidates[c]) for i, c, _ in shortlist]
    verdicts = checker.check(pairs, cands.contexts)
    doc_hit = np.zeros(len(table.doc_ids), dtype=bool)
    item_hit = np.zeros(bench.n_items, dtype=bool)
    hits, hit_units = [], []
    for (i, c, rate), verdict in zip(shortlist, verdicts, strict=True):
        if not verdict["passed"]:
            continue
        spec, cand = index.items_[i], cands.candidates[c]
        doc_hit[cand.doc] = True
        item_hit[index.item_index_[i]] = True
        hits.append({
            "benchmark": spec.benchmark, "item_id": spec.id, "doc_id": cand.doc_id, "unit": cand.name,
            "lineno": cand.lineno, "end_lineno": cand.end_lineno, "tests_passed": spec.n_asserts,
            "entry_point": spec.entry, "ast_rate": round(rate, 4), "verdict_mode": verdict["verdict_mode"],
            "cached": verdict["cached"],
        })  # fmt: skip
        hit_units.append(cand.unit)
    return BehaviourResult(doc_hit, item_hit, hits, len(shortlist), index.skipped_, bench.weak_items,
                           bench.calibration_executions, hit_units)  # fmt: skip


def score_behaviour(
    table,
    texts_by_id: dict[str, str],
    items: Sequence[BenchmarkItem],
    checker: BehaviourChecker,
    floor: float = DEFAULT_FLOOR,
    candidates: BehaviourCandidates | None = None,
) -> BehaviourResult:
    """Shortlist, run and collect the behavioural hits of one benchmark against the audit's units.

    ``table`` is the audit's :class:`decontam.prune.UnitTable`; ``candidates`` may be passed when several
    benchmarks share one corpus (they are cut once). Items whose tests a generic one-liner passes
    (:func:`weak_items`) are left out and listed."""
    cands = candidates if candidates is not None else corpus_candidates(table, texts_by_id)
    return behaviour_hits(table, cands, prepare_benchmark(items, checker, floor), checker)
