"""A statement-level normal form of Python code: the light edits a rephrase makes, undone.

A person (or a model) rewording a benchmark solution by hand changes its AST a little: swaps two
statements that do not depend on each other, moves a sub-expression into a temporary variable,
spells ``x += y`` as ``x = x + y``. The AST match and the normalised-code embedding both see the
program through :func:`canonical_statements`, which rewrites every block of a unit so that those
edits leave no trace:

* **assignments are spelled one way**: ``x += y`` as ``x = x + y``, ``x: T = v`` as ``x = v`` (a bare
  ``x: T`` goes);
* **single-use temporaries are inlined**: ``t = <expr>`` followed later in the same block by the
  only read of ``t`` becomes ``<expr>`` at that read (``t`` written once and read once in the whole
  unit, so nothing else can observe it);
* **independent statements are put in one canonical order**: inside a block, statements are ordered
  by a rename-invariant key among all orders that keep every pair that shares a name (one writes
  what the other reads or writes) in its original order. Any reordering that respects those
  dependencies, adjacent swaps or longer moves, gives the same result. A statement that can leave
  the block (``return``, ``raise``, ``break``, ``continue``, ``global``) and a leading
  docstring stay where they are and split the block.

The rules look at names only (``xs.append(v)`` reads ``xs``; calls are assumed free of other side
effects), which is looser than Python's semantics: the normal form is for comparing shapes, never
for running. Both sides of every comparison go through it, so training code is rewritten exactly as
the benchmark solutions are.

Example:
    >>> import ast
    >>> a = ast.parse("def f(xs):\\n    n = len(xs)\\n    s = sum(xs)\\n    return s / n\\n")
    >>> b = ast.parse("def g(v):\\n    total = sum(v)\\n    count = len(v)\\n    avg = total / count\\n    return avg\\n")
    >>> print(ast.unparse(canonical_statements(a.body)[0]))
    def f(xs):
        return sum(xs) / len(xs)
    >>> print(ast.unparse(canonical_statements(b.body)[0]))
    def g(v):
        return sum(v) / len(v)
"""

from __future__ import annotations

import ast
import builtins
import copy
import heapq
from collections import Counter

# a statement that holds one of these can change where control goes: it is never moved
_FLOW = (ast.Return, ast.Raise, ast.Break, ast.Continue, ast.Global, ast.Nonlocal)
_DOC_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_BUILTINS = frozenset(dir(builtins))
# segments longer than this keep their order (a table of thousands of module-level assignments
# is never a rephrased solution, and ordering it would only cost time)
MAX_SEGMENT = 256
MAX_INLINED = 256  # temporaries inlined per unit, at most (more is generated code, not a rephrase)
INLINE_WINDOW = 64  # a temporary is read within this many statements (else it is not a rephrase's)


def canonical_statements(stmts: list[ast.stmt], inline: bool = True) -> list[ast.stmt]:
    """Rewrite ``stmts`` (a unit: one function, or a module's top level) and every block under them
    into the normal form of the module docstring. The nodes are changed in place; the returned list
    is the top level in its canonical order. ``inline=False`` keeps temporaries as written.

    Example:
        >>> import ast
        >>> def canonical(src):
        ...     return [ast.unparse(s) for s in canonical_statements(ast.parse(src).body)]
        >>> canonical("a = 1\\nb = [2]\\nprint(a, b)\\n") == canonical("b = [2]\\na = 1\\nprint(a, b)\\n")
        True
        >>> canonical("y = g(x)\\nz = 2\\nreturn y\\n")
        ['z = 2', 'return g(x)']
    """
    stmts = list(stmts)
    _rewrite_assignments(stmts)
    if inline:
        _inline_temporaries(stmts)
    return _order_all(stmts)


def _order_all(stmts: list[ast.stmt]) -> list[ast.stmt]:
    for block in reversed(_blocks(stmts)):  # inner blocks first: a statement's key needs its final form
        block[:] = _ordered(block)
    return _ordered(stmts, pinned_docstring=False)


def _blocks(stmts: list[ast.stmt]) -> list[list[ast.stmt]]:
    """Every statement list under ``stmts`` (not ``stmts`` itself), outer before inner."""
    out: list[list[ast.stmt]] = []
    stack: list[ast.AST] = list(reversed(stmts))
    while stack:
        node = stack.pop()
        for value in ast.iter_fields(node):
            field = value[1]
            if isinstance(field, list) and field and isinstance(field[0], ast.stmt):
                out.append(field)
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return out


# ----------------------------------------------------------------------------- assignments


def _expanded(node: ast.stmt) -> ast.stmt | None:
    """``x += v`` -> ``x = x + v``; ``x: T = v`` -> ``x = v``; a bare ``x: T`` -> nothing."""
    if isinstance(node, ast.AugAssign):
        read = copy.deepcopy(node.target)
        read.ctx = ast.Load()
        value = ast.BinOp(left=read, op=node.op, right=node.value)
        return ast.copy_location(ast.Assign(targets=[node.target], value=value), node)
    if isinstance(node, ast.AnnAssign):
        if node.value is None:
            return None
        return ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)
    return node


def _rewrite_assignments(stmts: list[ast.stmt]) -> None:
    """Augmented and annotated assignments as plain ones, in every block (in place)."""
    for block in [stmts, *_blocks(stmts)]:
        rewritten = [stmt for stmt in map(_expanded, block) if stmt is not None]
        # a body left empty (it held only ``x: T``) needs a statement; the unit's top level does not
        block[:] = rewritten or ([] if block is stmts else [ast.Pass()])


# ----------------------------------------------------------------------------- temporaries


def _name_counts(stmts: list[ast.stmt]) -> tuple[Counter, Counter]:
    """(writes, reads) of every name in the unit; arguments and definitions count as writes."""
    writes: Counter = Counter()
    reads: Counter = Counter()
    for stmt in stmts:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name):
                (reads if isinstance(node.ctx, ast.Load) else writes)[node.id] += 1
            elif isinstance(node, ast.arg):
                writes[node.arg] += 1
            elif isinstance(node, _DEFS):
                writes[node.name] += 1
            elif isinstance(node, (ast.Global, ast.Nonlocal)):  # shared with another scope: never a temporary
                writes.update({name: 2 for name in node.names})
    return writes, reads


def _temporary(stmt: ast.stmt, writes: Counter, reads: Counter) -> str | None:
    """The name ``stmt`` binds if it is ``name = <expr>`` with a name written once and read once."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        name = stmt.targets[0].id
        if writes[name] == 1 and reads[name] == 1:
            return name
    return None


def _single_reads(stmts: list[ast.stmt], reads: Counter) -> dict[str, tuple[ast.AST, str, int | None]]:
    """Where each name read exactly once is read: (parent node, field, list position or None)."""
    where: dict[str, tuple[ast.AST, str, int | None]] = {}
    for stmt in stmts:
        for parent in ast.walk(stmt):
            for field, value in ast.iter_fields(parent):
                children = value if isinstance(value, list) else [value]
                for k, child in enumerate(children):
                    if (
                        isinstance(child, ast.Name)
                        and isinstance(child.ctx, ast.Load)
                        and reads[child.id] == 1
                    ):
                        where[child.id] = (parent, field, k if isinstance(value, list) else None)
    return where


def _inline_temporaries(stmts: list[ast.stmt]) -> None:
    """Inline every single-use temporary into its reader (at most :data:`MAX_INLINED` per unit)."""
    writes, reads = _name_counts(stmts)
    where = _single_reads(stmts, reads)
    budget = [MAX_INLINED]
    for block in [stmts, *_blocks(stmts)]:
        effects = [_effects(stmt) for stmt in block]
        for i in range(len(block) - 2, -1, -1):  # from the end: a temporary used by a temporary moves with it
            name = _temporary(block[i], writes, reads)
            if name is not None and budget[0] > 0:
                _inline_one(block, effects, i, name, where, budget)


def _conflict(a: tuple[set[str], set[str], bool], b: tuple[set[str], set[str], bool]) -> bool:
    """Whether two statements' order matters: one writes what the other reads or writes, or one can
    leave the block."""
    (wa, ra, flow_a), (wb, rb, flow_b) = a, b
    return flow_a or flow_b or bool(wa & (wb | rb) or wb & ra)


def _inline_one(block, effects, i: int, name: str, where, budget: list[int]) -> None:
    """Inline ``block[i]`` (``name = <expr>``) into the statement that reads ``name``, if that reader
    is within :data:`INLINE_WINDOW` statements and could run right after ``block[i]``.

    The statements between split into those that must follow ``block[i]`` (they depend on it, directly
    or through one another) and the rest. The reader may not depend on the first group; the result,
    in a valid order whatever order the edit left, is ``rest, reader with <expr> in place, first group``.
    """
    j = next((k for k in range(i + 1, min(len(block), i + 1 + INLINE_WINDOW)) if name in effects[k][1]), None)
    if j is None:
        return
    after, rest = [], []
    for k in range(i + 1, j):
        tied = _conflict(effects[i], effects[k]) or any(_conflict(effects[a], effects[k]) for a in after)
        (after if tied else rest).append(k)
    if any(_conflict(effects[a], effects[j]) for a in after):
        return
    parent, field, position = where[name]
    value = block[i].value
    if position is None:
        setattr(parent, field, value)
    else:
        getattr(parent, field)[position] = value
    if isinstance(value, ast.Name) and value.id in where:
        where[value.id] = where[name]  # a temporary holding a bare name: that name moved
    (wi, ri, _), (wj, rj, flow_j) = effects[i], effects[j]
    merged = ((wi - {name}) | wj, ri | (rj - {name}), flow_j)
    order = [*rest, j, *after]
    block[i : j + 1] = [block[k] for k in order]
    effects[i : j + 1] = [merged if k == j else effects[k] for k in order]
    budget[0] -= 1


# ----------------------------------------------------------------------------- order


def statement_key(stmt: ast.stmt) -> str:
    """A rename-invariant description of ``stmt``: node types in pre-order, with the literal values,
    attribute names and builtins a renaming leaves alone, and no other identifier.

    Example:
        >>> import ast
        >>> statement_key(ast.parse("total = len(xs)").body[0]) == statement_key(ast.parse("n = len(v)").body[0])
        True
    """
    parts: list[str] = []
    for node in _preorder(stmt):
        if isinstance(node, ast.expr_context):
            continue
        label = type(node).__name__
        if isinstance(node, ast.Name) and node.id in _BUILTINS:
            label += ":" + node.id
        elif isinstance(node, ast.Attribute):
            label += "." + node.attr
        elif isinstance(node, ast.Constant):
            label += "=" + repr(node.value)[:40]
        parts.append(label)
    return " ".join(parts)


def _preorder(root: ast.AST):
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _effects(stmt: ast.stmt) -> tuple[set[str], set[str], bool]:
    """(names written, names read, whether it can leave the block) of one statement."""
    written, read, flow = set(), set(), False
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else written).add(node.id)
        elif isinstance(node, _DEFS):
            written.add(node.name)
        elif isinstance(node, _FLOW):
            flow = True
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
        read.add(stmt.target.id)
    return written, read, flow


def is_docstring(stmt: ast.AST) -> bool:
    """Whether ``stmt`` is a bare string statement (a docstring when it opens a body).

    Example:
        >>> is_docstring(ast.parse("'Doc.'").body[0]), is_docstring(ast.parse("x = 's'").body[0])
        (True, False)
    """
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _ordered(block: list[ast.stmt], pinned_docstring: bool = True) -> list[ast.stmt]:
    """``block`` in canonical order: segments between fixed statements, each ordered by key."""
    out: list[ast.stmt] = []
    segment: list[tuple[ast.stmt, set[str], set[str]]] = []
    for i, stmt in enumerate(block):
        written, read, flow = _effects(stmt)
        if flow or (i == 0 and pinned_docstring and is_docstring(stmt)):
            out.extend(_ordered_segment(segment))
            out.append(stmt)
            segment = []
        else:
            segment.append((stmt, written, read))
    out.extend(_ordered_segment(segment))
    return out


def _ordered_segment(segment: list[tuple[ast.stmt, set[str], set[str]]]) -> list[ast.stmt]:
    """The smallest order by key (Kahn's algorithm) that keeps every dependent pair in place."""
    if len(segment) < 2 or len(segment) > MAX_SEGMENT:
        return [stmt for stmt, _, _ in segment]
    successors: list[set[int]] = [set() for _ in segment]
    last_writer: dict[str, int] = {}
    readers: dict[str, list[int]] = {}
    for j, (_, written, read) in enumerate(segment):
        for name in read | written:  # read after write, write after write
            if name in last_writer:
                successors[last_writer[name]].add(j)
        for name in written:  # write after read
            for i in readers.get(name, ()):
                successors[i].add(j)
        for name in written:
            last_writer[name] = j
            readers[name] = []
        for name in read - written:
            readers.setdefault(name, []).append(j)
    indegree = [0] * len(segment)
    for succ in successors:
        for j in succ:
            indegree[j] += 1
    keys = [statement_key(stmt) for stmt, _, _ in segment]
    ready = [(keys[j], j) for j in range(len(segment)) if indegree[j] == 0]
    heapq.heapify(ready)
    order: list[ast.stmt] = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(segment[i][0])
        for j in successors[i]:
            indegree[j] -= 1
            if indegree[j] == 0:
                heapq.heappush(ready, (keys[j], j))
    return order
