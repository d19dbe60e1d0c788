"""AST match rate between training code and benchmark solutions (phi-1, Section 5.2), fast.

Definition (the paper gives no formula; this is ours):

* The *node-type sequence* of a piece of Python code is the pre-order (parent before children,
  children in ``ast`` field order) list of the class names of its ``ast`` nodes, with

  - identifiers dropped (names are node *fields*, not nodes, so ``Name`` stays but ``"x"`` goes),
  - literal values dropped (``Constant`` stays, its value goes),
  - docstrings dropped (a string-constant expression statement that opens a module, class or
    function body is removed with its ``Expr`` node),
  - comments dropped (they never reach the AST),
  - expression contexts (``Load``/``Store``/``Del``) dropped: they repeat what the parent node
    already says and would only inflate the sequences,
  - imports dropped at the top level of a unit (``import``/``from ... import`` lines are
    boilerplate that a copied solution may or may not carry),
  - type annotations dropped (argument and return annotations, ``x: T = v`` encoded as ``x = v``,
    bare ``x: T`` declarations removed): stripping annotations does not change what code does,
  - augmented assignments encoded in their expanded form (``x += y`` as ``x = x + y``), so the
    two spellings of one statement have one shape,
  - statements in their normal form (:mod:`decontam.canonical`): single-use temporaries inlined
    and statements that do not depend on each other put in one canonical order, so the light
    edits of a hand rephrase (reordered statements, an introduced temporary) leave the shape as it
    was; a unit whose normal form would be under :data:`INLINE_MIN_NODES` nodes keeps its
    temporaries (inlining would make a specific small solution too generic to index).

* ``Name`` and ``Attribute`` nodes that spell a builtin or a method of a builtin type (``len``,
  ``.join``) and ``Constant`` nodes of each literal type have characters of their own: renaming
  cannot change them, and they make short shapes far less generic (measured: clean-file false
  positives at tau 0.8 fell from 25% to 14% with nothing else changed).

* The *plain rate* of sequences ``a`` and ``b`` is ``1 - Levenshtein(a, b) / max(len(a), len(b))``
  (unit-cost insert/delete/substitute; 1.0 for two empty sequences). The *AST match rate* used for
  decisions is size-aware: ``1 - Levenshtein(a, b) / max(L - size_discount, 1)`` with
  ``L = max(len(a), len(b))``. An exact match stays 1.0, but every edit is weighed against only the
  nodes beyond the first ``size_discount`` (default 7), so a short shape that matches unrelated code
  with an edit or two no longer passes (a 12-node pair one edit apart: plain 0.92, size-aware 0.80;
  a 60-node pair one edit apart: 0.98 and 0.98). Both rates are 1.0 exactly when the two programs
  have the same shape, whatever their local names, literal values, formatting, comments and
  docstrings.

* Calibration (``benchmarks/bench_decontam_planted.py``, stdlib + site-packages files against
  HumanEval + MBPP test): ``min_nodes=10``, ``helper_min_nodes=20``, ``size_discount=7`` keep clean
  files matched at 0.3% (tau 0.9) and 0.7% (tau 0.8) while leaving out 15 of 664 solutions as too
  generic, and find 0.95 of lightly edited copies at tau 0.9; RESULTS.md holds the curve.

Speed: every node type is mapped to one character, so a sequence is a short ``str`` and the
Levenshtein distances run in rapidfuzz's C++ bit-parallel kernels (``process.cdist`` on all cores,
with ``score_cutoff`` so hopeless pairs exit early). Since ``Levenshtein(a, b) >= |len a - len b|``,
the rate is at most ``min(len)/max(len)``; training units are bucketed by length and compared only
with the benchmark sequences whose length ratio can still reach the cutoff, and identical training
sequences are compared once.

Training documents are split into *units* so that a benchmark solution inside a large file is still
found: each top-level function, each method of a top-level class, and the module remainder (every
other top-level statement, including class bodies without their methods).

Example:
    >>> a = "def add(a, b):\\n    '''Add.'''\\n    return a + b\\n"
    >>> b = "def plus(x, y):  # renamed\\n    return x + y\\n"
    >>> ast_match_rate(a, b)
    1.0
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass, field

import numpy as np

from curate.pyparse import parse_valid
from decontam.canonical import canonical_statements, is_docstring

# exceptions ast.parse / our walk can raise on hostile input; all are recorded, never fatal
PARSE_ERRORS = (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError)

_SKIPPED_TYPES = (ast.expr_context,)
_IMPORT_TYPES = (ast.Import, ast.ImportFrom)


def _node_types() -> list[type]:
    seen: set[type] = set()
    stack = [ast.AST]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
    # every node class of the ast module (abstract bases too: ``Constant`` has deprecated subclasses
    # such as ``Num``, so "leaf classes only" would miss it); ~130 classes fit in latin-1
    return sorted((c for c in seen if c.__module__ == "ast"), key=lambda c: c.__name__)


# One latin-1 character per node type (0x21 upwards).
NODE_CHARS: dict[type, str] = {cls: chr(0x21 + i) for i, cls in enumerate(_node_types())}
_UNKNOWN_CHAR = chr(0xFF)


def _api_names() -> tuple[list[str], list[str]]:
    """Names a renaming cannot touch without changing what code does: (builtins, methods of builtin
    types such as ``.join`` and ``.append``)."""
    import builtins

    methods: set[str] = set()
    for typ in (str, bytes, list, dict, set, tuple, int, float, complex, frozenset):
        methods.update(n for n in dir(typ) if not n.startswith("_"))
    return sorted(n for n in dir(builtins) if not n.startswith("_")), sorted(methods)


# A ``Name`` that spells a builtin, an ``Attribute`` that spells a builtin type's method, and a
# ``Constant`` get a character of their own (0x100 upwards): the shape keeps what renaming leaves
# alone (which builtins and methods are called, which kinds of literal are used) and still drops every
# name a rephrase can change (a local called ``count`` is a plain ``Name``; only ``.count`` is kept).
_BUILTIN_NAMES, _METHOD_NAMES = _api_names()
BUILTIN_CHARS: dict[str, str] = {name: chr(0x100 + i) for i, name in enumerate(_BUILTIN_NAMES)}
METHOD_CHARS: dict[str, str] = {
    name: chr(0x100 + len(BUILTIN_CHARS) + i) for i, name in enumerate(_METHOD_NAMES)
}
CONSTANT_CHARS: dict[type, str] = {
    t: chr(0x100 + len(BUILTIN_CHARS) + len(METHOD_CHARS) + i)
    for i, t in enumerate((str, bytes, int, float, complex, bool, type(None), type(Ellipsis)))
}


def _char(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return BUILTIN_CHARS.get(node.id) or NODE_CHARS[ast.Name]
    if isinstance(node, ast.Attribute):
        return METHOD_CHARS.get(node.attr) or NODE_CHARS[ast.Attribute]
    if isinstance(node, ast.Constant):
        return CONSTANT_CHARS.get(type(node.value)) or NODE_CHARS[ast.Constant]
    return NODE_CHARS.get(type(node), _UNKNOWN_CHAR)


# fields whose subtrees are not part of a shape: annotations and type parameters
_SKIPPED_FIELDS = frozenset({"annotation", "returns", "type_comment", "type_params"})


# A unit whose normal form is shorter than this keeps its temporaries: inlining them can turn a
# specific 12-node solution (``t = a * b; return t``) into a generic 9-node one (``return a * b``)
# that the index would have to leave out. The rule depends on the unit alone, so a copy of a unit
# is rewritten exactly as the unit is.
INLINE_MIN_NODES = 10


def _too_small(stmts: list[ast.stmt]) -> bool:
    return len(_encode_tree(stmts, limit=INLINE_MIN_NODES)) < INLINE_MIN_NODES


def _encode(roots: list[ast.AST]) -> str:
    """Pre-order node-type string of ``roots`` in their statement normal form (see
    :mod:`decontam.canonical` and :data:`INLINE_MIN_NODES`). The roots are rewritten in place."""
    if roots and all(isinstance(r, ast.stmt) for r in roots):
        roots = canonical_statements(roots, keep_temporaries=_too_small)
    return _encode_tree(roots)


def _encode_tree(roots: list[ast.AST], limit: int | None = None) -> str:
    """Pre-order node-type string of ``roots`` (iterative: a 100k-deep expression cannot overflow);
    with ``limit``, only its first ``limit`` characters (enough to tell whether a unit is too small)."""
    out: list[str] = []
    stack = list(reversed(roots))
    while stack and (limit is None or len(out) < limit):
        node = stack.pop()  # annotated / augmented assignments are already plain ones (canonical_statements)
        if isinstance(node, _SKIPPED_TYPES):
            continue
        out.append(_char(node))
        children: list[ast.AST] = []
        for name in node._fields:
            if name in _SKIPPED_FIELDS:
                continue
            value = getattr(node, name, None)
            if isinstance(value, ast.AST):
                children.append(value)
            elif isinstance(value, list):
                if name == "body" and value and is_docstring(value[0]) and isinstance(node, _DOC_OWNERS):
                    value = value[1:]
                children.extend(v for v in value if isinstance(v, ast.AST))
        stack.extend(reversed(children))
    return "".join(out)


_DOC_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _strip_top(stmts: list[ast.stmt]) -> list[ast.stmt]:
    """Drop a leading docstring and imports from a statement list."""
    if stmts and is_docstring(stmts[0]):
        stmts = stmts[1:]
    return [s for s in stmts if not isinstance(s, _IMPORT_TYPES)]


def ast_sequence(code: str | ast.AST) -> str:
    """The node-type sequence (one character per node) of ``code`` (source text or a parsed tree).

    Raises ``SyntaxError``/``ValueError``/``RecursionError``/``MemoryError`` for unparseable code.

    Example:
        >>> ast_sequence("x = 1") == ast_sequence("total = 42  # answer")
        True
    """
    # the normal form rewrites the tree in place: never the caller's
    tree = _parse(code) if isinstance(code, str) else copy.deepcopy(code)
    if isinstance(tree, ast.Module):
        return _encode(_strip_top(tree.body))
    return _encode([tree])


def sequence_names(sequence: str) -> list[str]:
    """Decode a sequence back to node-type names (for reports and debugging).

    Example:
        >>> sequence_names(ast_sequence("return_value = f(x)"))
        ['Assign', 'Name', 'Call', 'Name', 'Name']
    """
    inverse = {ch: cls.__name__ for cls, ch in NODE_CHARS.items()}
    inverse.update({ch: f"Name:{name}" for name, ch in BUILTIN_CHARS.items()})
    inverse.update({ch: f"Attribute:{name}" for name, ch in METHOD_CHARS.items()})
    inverse.update({ch: f"Constant:{t.__name__}" for t, ch in CONSTANT_CHARS.items()})
    return [inverse.get(ch, "?") for ch in sequence]


def levenshtein_rate(a: str, b: str) -> float:
    """``1 - Levenshtein(a, b) / max(len a, len b)`` of two sequences (1.0 when both are empty)."""
    from rapidfuzz.distance import Levenshtein

    return float(Levenshtein.normalized_similarity(a, b))


def size_aware_rate(a: str, b: str, size_discount: int = 7) -> float:
    """``1 - Levenshtein(a, b) / max(L - size_discount, 1)`` (clipped at 0), ``L = max(len a, len b)``.

    Example:
        >>> a = "abcdefghijkl"
        >>> round(levenshtein_rate(a, a[:-1] + "z"), 3), round(size_aware_rate(a, a[:-1] + "z"), 3)
        (0.917, 0.8)
    """
    from rapidfuzz.distance import Levenshtein

    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    return max(0.0, 1.0 - Levenshtein.distance(a, b) / max(longest - size_discount, 1))


def _discount(plain: np.ndarray, longest: np.ndarray, size_discount: int) -> np.ndarray:
    """Plain rates -> size-aware rates (0 stays 0: the pair was under the cutoff)."""
    if size_discount <= 0:
        return plain
    distance = (1.0 - plain) * longest
    out = 1.0 - distance / np.maximum(longest - size_discount, 1)
    return np.where(plain > 0, np.clip(out, 0.0, 1.0), 0.0).astype(np.float32)


def ast_match_rate(code_a: str, code_b: str, size_discount: int = 0) -> float:
    """AST match rate of two pieces of Python source (see the module docstring for the definition);
    ``size_discount=0`` gives the plain rate."""
    return size_aware_rate(ast_sequence(code_a), ast_sequence(code_b), size_discount)


def _parse(text: str) -> ast.Module:
    # code of any Python version (2, or newer than this interpreter) gets its real shape
    return parse_valid(text)


@dataclass
class CodeUnit:
    """One comparable piece of a training document.

    ``kind`` is ``function`` (top-level function), ``method`` (function in a top-level class) or
    ``module`` (everything else at top level). ``lineno``/``end_lineno`` are 1-based and inclusive
    (the module unit spans the whole document).
    """

    kind: str
    name: str
    lineno: int
    end_lineno: int
    sequence: str


@dataclass
class ParsedDocument:
    """Units of one document, or the reason it could not be parsed."""

    id: str
    units: list[CodeUnit] = field(default_factory=list)
    error: str | None = None


def split_units(text: str) -> list[CodeUnit]:
    """Split Python source into units (top-level functions, methods, module remainder).

    Units whose sequence is empty (e.g. a module made only of imports) are left out. Raises the
    errors in :data:`PARSE_ERRORS` for unparseable input; :func:`parse_document` records them instead.

    Example:
        >>> [(u.kind, u.name) for u in split_units("import os\\nX = 1\\nclass A:\\n    def f(self): pass\\ndef g(): pass\\n")]
        [('method', 'A.f'), ('function', 'g'), ('module', '<module>')]
    """
    tree = _parse(text)
    units: list[CodeUnit] = []
    remainder: list[ast.stmt] = []
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    body = tree.body[1:] if tree.body and is_docstring(tree.body[0]) else tree.body
    for stmt in body:
        if isinstance(stmt, functions):
            units.append(_unit("function", stmt.name, stmt))
        elif isinstance(stmt, ast.ClassDef):
            kept = []
            for inner in stmt.body:
                if isinstance(inner, functions):
                    units.append(_unit("method", f"{stmt.name}.{inner.name}", inner))
                else:
                    kept.append(inner)
            stmt.body = kept  # the class shell (bases, attributes) stays in the module remainder
            remainder.append(stmt)
        elif not isinstance(stmt, _IMPORT_TYPES):
            remainder.append(stmt)
    sequence = _encode(remainder)
    if sequence:
        last = max((getattr(s, "end_lineno", 0) or 0 for s in remainder), default=0)
        units.append(CodeUnit("module", "<module>", 1, last, sequence))
    return units


def _unit(kind: str, name: str, node: ast.AST) -> CodeUnit:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return CodeUnit(kind, name, start, node.end_lineno or node.lineno, _encode([node]))


def parse_document(text: str | None, doc_id: str = "", max_bytes: int = 2_000_000) -> ParsedDocument:
    """:func:`split_units` that never raises: failures come back as ``error`` (a short reason).

    Reasons: ``empty``, ``too_large`` (more than ``max_bytes`` of text), or the exception name and
    message (``SyntaxError: ...``, ``RecursionError: ...``, ``MemoryError``, ``ValueError: ...``).

    Example:
        >>> parse_document("def f(:", "x").error.startswith("SyntaxError")
        True
    """
    if not text or not text.strip():
        return ParsedDocument(doc_id, error="empty")
    if len(text) > max_bytes:
        return ParsedDocument(doc_id, error="too_large")
    try:
        return ParsedDocument(doc_id, units=split_units(text))
    except PARSE_ERRORS as err:
        message = str(err).splitlines()[0][:200] if str(err) else ""
        return ParsedDocument(doc_id, error=f"{type(err).__name__}: {message}".rstrip(": "))


def benchmark_sequences(solution: str, min_nodes: int = 1, helper_min_nodes: int | None = None) -> list[str]:
    """Sequences a benchmark solution is matched through: the whole solution (imports and docstrings
    dropped) when it has ``min_nodes`` nodes, and each of its functions/methods on its own when it has
    ``helper_min_nodes`` (default ``min_nodes``), so that a training unit holding only the main
    function of a solution that also defines constants or helpers is still found. A helper is only
    evidence when it is large enough to be specific: MBPP 18's ``return ''.join(List)`` helper or
    MBPP 342's ``Node.__init__`` have the shape of thousands of unrelated functions. Unparseable
    solutions give ``[]``.

    Example:
        >>> helper = "def _join(xs):\\n    return ''.join(xs)\\n"
        >>> main = "def solve(s):\\n    out = []\\n    for c in s:\\n        if c.isalpha():\\n            out.append(c.upper())\\n    return _join(out)\\n"
        >>> len(benchmark_sequences(helper + main, 5)), len(benchmark_sequences(helper + main, 5, 20))
        (3, 2)
    """
    helper_min_nodes = min_nodes if helper_min_nodes is None else helper_min_nodes
    try:
        whole = ast_sequence(solution)
        parts = [u.sequence for u in split_units(solution) if u.kind != "module"]
    except PARSE_ERRORS:
        return []
    out = [whole] if len(whole) >= min_nodes and whole else []
    for seq in parts:
        if len(seq) >= helper_min_nodes and seq not in out:
            out.append(seq)
    return out


@dataclass
class MatchResult:
    """Best matches between query sequences and an index's benchmark items.

    Attributes:
        query_score: (n_queries,) best AST match rate of each query (0.0 where below the floor).
        query_item: (n_queries,) index of that best item (-1 where none reached the floor).
        item_score: (n_items,) best rate of each benchmark item over all queries.
        item_query: (n_items,) index of the query that gave it (-1 where none).
        pairs_compared: number of (query, benchmark sequence) pairs actually scored.
    """

    query_score: np.ndarray
    query_item: np.ndarray
    item_score: np.ndarray
    item_query: np.ndarray
    pairs_compared: int


class AstMatchIndex:
    """Index of benchmark solutions' node-type sequences; scores training units against them.

    Args:
        floor: only rates >= ``floor`` are computed exactly (rapidfuzz ``score_cutoff``; below it the
            rate is reported as 0.0). Set it at or below the smallest tau you will prune at.
        min_nodes: whole solutions shorter than this many nodes are not indexed (one-liners whose
            shape is generic); items left with no sequence are listed in ``too_small_``.
        helper_min_nodes: a function of a multi-function solution is indexed on its own only with
            this many nodes.
        size_discount: nodes of a match that are free evidence (see the module docstring); 0 gives
            the plain rate.
        workers: threads for ``process.cdist`` (-1 = all cores).
        bucket_ratio: width of a training-length bucket (max/min length inside one bucket).
        chunk_rows: training sequences per ``cdist`` call (bounds the score-matrix memory).

    Example:
        >>> from decontam.eval_sets import load_benchmark
        >>> index = AstMatchIndex(floor=0.9).fit([i.solution for i in load_benchmark("humaneval")])
        >>> copy = "def f(xs, t):\\n    for a, u in enumerate(xs):\\n        for b, v in enumerate(xs):\\n            if a != b:\\n                d = abs(u - v)\\n                if d < t:\\n                    return True\\n    return False\\n"
        >>> res = index.query([ast_sequence(copy)])
        >>> float(res.query_score[0]), int(res.query_item[0])  # HumanEval/0, renamed
        (1.0, 0)
        >>> float(index.query([ast_sequence("def size(text):\\n    return len(text)\\n")]).query_score[0])  # too generic
        0.0
    """

    def __init__(
        self,
        floor: float = 0.8,
        min_nodes: int = 10,
        workers: int = -1,
        bucket_ratio: float = 1.05,
        chunk_rows: int = 4096,
        helper_min_nodes: int = 20,
        size_discount: int = 7,
    ):
        self.floor = floor
        self.min_nodes = min_nodes
        self.helper_min_nodes = helper_min_nodes
        self.size_discount = size_discount
        self.workers = workers
        self.bucket_ratio = bucket_ratio
        self.chunk_rows = chunk_rows

    def fit(self, solutions: list[str]) -> AstMatchIndex:
        """Index the solutions (source code). Unparseable ones are listed in ``unparseable_``, those
        with no sequence of ``min_nodes`` nodes in ``too_small_``."""
        seqs, owners, self.unparseable_, self.too_small_ = [], [], [], []
        for item, solution in enumerate(solutions):
            variants = benchmark_sequences(solution, self.min_nodes, self.helper_min_nodes)
            if not variants:
                try:
                    ast_sequence(solution)
                    self.too_small_.append(item)
                except PARSE_ERRORS:
                    self.unparseable_.append(item)
            for seq in variants:
                seqs.append(seq)
                owners.append(item)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        self.sequences_ = [seqs[i] for i in order]
        self.owners_ = np.asarray([owners[i] for i in order], dtype=np.int64)
        self.lengths_ = np.asarray([len(s) for s in self.sequences_], dtype=np.int64)
        self.n_items_ = len(solutions)
        return self

    def query(self, sequences: list[str]) -> MatchResult:
        """Best match of every query sequence, and best query of every indexed item."""
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein

        n_q = len(sequences)
        q_score = np.zeros(n_q, dtype=np.float32)
        q_item = np.full(n_q, -1, dtype=np.int64)
        i_score = np.zeros(self.n_items_, dtype=np.float32)
        i_query = np.full(self.n_items_, -1, dtype=np.int64)
        if n_q == 0 or not self.sequences_:
            return MatchResult(q_score, q_item, i_score, i_query, 0)

        # compare each distinct sequence once (a dict, not np.unique: one huge unit must not
        # turn into a fixed-width array of n_queries x its length)
        slot: dict[str, int] = {}
        inverse = np.empty(n_q, dtype=np.int64)
        first = []  # unique slot -> first query index holding that sequence
        for i, seq in enumerate(sequences):
            j = slot.setdefault(seq, len(slot))
            if j == len(first):
                first.append(i)
            inverse[i] = j
        uniq = list(slot)
        first_of = np.asarray(first, dtype=np.int64)
        u_len = np.fromiter((len(s) for s in uniq), dtype=np.int64, count=len(uniq))
        order = np.argsort(u_len, kind="stable")
        u_score = np.zeros(len(uniq), dtype=np.float32)
        u_item = np.full(len(uniq), -1, dtype=np.int64)
        # best unique query per item, then mapped back to an original query index
        iu_query = np.full(self.n_items_, -1, dtype=np.int64)
        floor = float(self.floor)
        lengths = self.lengths_
        pairs = 0
        start = 0
        n_u = len(uniq)
        while start < n_u:
            low = int(u_len[order[start]])
            high_bound = max(low, 1) * self.bucket_ratio
            stop = start
            while stop < n_u and stop - start < self.chunk_rows and u_len[order[stop]] <= high_bound:
                stop += 1
            rows = order[start:stop]
            high = int(u_len[rows[-1]])
            start = stop
            # rate <= min/max length: only benchmark sequences in [low*floor, high/floor] can reach floor
            lo = int(np.searchsorted(lengths, np.ceil(low * floor - 1e-9), side="left"))
            hi = int(
                np.searchsorted(lengths, np.floor(high / floor + 1e-9) if floor > 0 else np.inf, side="right")
            )
            if hi <= lo:
                continue
            if low == 0:
                continue  # empty sequences match nothing meaningful
            block = process.cdist(
                [uniq[r] for r in rows],
                self.sequences_[lo:hi],
                scorer=Levenshtein.normalized_similarity,
                score_cutoff=floor,
                workers=self.workers,
                dtype=np.float32,
            )
            longest = np.maximum(u_len[rows][:, None], lengths[lo:hi][None, :])
            block = _discount(block, longest, self.size_discount)
            block[block < floor] = 0.0
            pairs += block.size
            best_col = block.argmax(axis=1)
            best = block[np.arange(len(rows)), best_col]
            u_score[rows] = best
            u_item[rows] = np.where(best > 0, self.owners_[lo + best_col], -1)
            # per item: best row over this block, reduced over the item's variant columns
            col_best_row = block.argmax(axis=0)
            col_best = block[col_best_row, np.arange(block.shape[1])]
            for j in np.flatnonzero(col_best > 0):
                item = self.owners_[lo + j]
                if col_best[j] > i_score[item]:
                    i_score[item] = col_best[j]
                    iu_query[item] = rows[col_best_row[j]]
        q_score[:] = u_score[inverse]
        q_item[:] = u_item[inverse]
        # map each item's best unique sequence to the first original query that has it
        has = iu_query >= 0
        i_query[has] = first_of[iu_query[has]]
        return MatchResult(q_score, q_item, i_score, i_query, pairs)
