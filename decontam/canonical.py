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
import hashlib
from collections import Counter
from collections.abc import Callable

# a statement that holds one of these can change where control goes: it is never moved
_FLOW = (ast.Return, ast.Raise, ast.Break, ast.Continue, ast.Global, ast.Nonlocal)
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_BUILTINS = frozenset(dir(builtins))
_DEF_TYPES = frozenset(_DEFS)
_FLOW_TYPES = frozenset(_FLOW)
_CONTEXTS = frozenset((ast.Load, ast.Store, ast.Del))
# segments longer than this keep their order (a table of thousands of module-level assignments
# is never a rephrased solution, and ordering it would only cost time)
MAX_SEGMENT = 256
MAX_INLINED = 256  # temporaries inlined per unit, at most (more is generated code, not a rephrase)
INLINE_WINDOW = 64  # a temporary is read within this many statements (else it is not a rephrase's)


def canonical_statements(
    stmts: list[ast.stmt],
    inline: bool = True,
    keep_temporaries: Callable[[list[ast.stmt]], bool] | None = None,
) -> list[ast.stmt]:
    """Rewrite ``stmts`` (a unit: one function, or a module's top level) and every block under them
    into the normal form of the module docstring. The nodes are changed in place; the returned list
    is the top level in its canonical order. ``inline=False`` keeps temporaries as written;
    ``keep_temporaries(result)`` returning True also does, after the fact (e.g. when inlining made the
    unit too small to be specific).

    Example:
        >>> import ast
        >>> def canonical(src):
        ...     return [ast.unparse(s) for s in canonical_statements(ast.parse(src).body)]
        >>> canonical("a = 1\\nb = [2]\\nprint(a, b)\\n") == canonical("b = [2]\\na = 1\\nprint(a, b)\\n")
        True
        >>> canonical("y = g(x)\\nz = 2\\nreturn y\\n")
        ['z = 2', 'return g(x)']
    """
    unit = _Unit(list(stmts))
    undo = _inline_temporaries(unit) if inline else None
    out = _ordered_unit(unit)
    if undo and keep_temporaries is not None and keep_temporaries(out):
        undo.apply()  # as if inline=False, without copying every unit up front
        out = _ordered_unit(_Unit(unit.stmts))
    return out


def _ordered_unit(unit: _Unit) -> list[ast.stmt]:
    for block in reversed(unit.blocks):  # inner blocks first: a statement's key needs its final form
        block[:] = _ordered(block, unit)
    return _ordered(unit.stmts, unit, pinned_docstring=False)


class _Undo:
    """What inlining changed, to put back: each touched block as it was, each replaced read."""

    def __init__(self):
        self.blocks: dict[int, tuple[list[ast.stmt], list[ast.stmt]]] = {}
        self.reads: list[tuple[ast.AST, str, int | None, ast.AST]] = []

    def __bool__(self) -> bool:
        return bool(self.reads)

    def apply(self) -> None:
        for parent, field, position, name in reversed(self.reads):
            if position is None:
                setattr(parent, field, name)
            else:
                getattr(parent, field)[position] = name
        for block, saved in self.blocks.values():
            block[:] = saved


Effects = tuple[set[str], set[str], bool]  # names written, names read, whether it can leave the block
Where = dict[str, tuple[ast.AST, str, "int | None"]]  # a name's first read: parent, field, list position


class _Unit:
    """One unit's statements and what the rewrite asks of them, worked out in one walk: assignments
    spelled one way (in place), the blocks (every statement list under the top level, outer before
    inner), how often each name is written and read and where it is first read, and each statement's
    effects (its own nodes' plus its inner statements'). Keys are made on demand, once each."""

    def __init__(self, stmts: list[ast.stmt], rewrite: bool = True):
        self.stmts, self.blocks = stmts, []
        self.writes: Counter = Counter()
        self.reads: Counter = Counter()
        self.where: Where = {}
        self._effects: dict[int, Effects] = {}
        self._keys: dict[int, str] = {}
        if rewrite:
            _rewrite_block(stmts, top=True)
        own: dict[int, tuple[set[str], set[str], list[bool]]] = {}
        inner: dict[int, list[ast.stmt]] = {}
        in_order: list[ast.stmt] = []
        stack: list[tuple[ast.AST, ast.stmt | None]] = [(stmt, None) for stmt in reversed(stmts)]
        while stack:
            node, owner = stack.pop()
            if isinstance(node, ast.stmt):
                if owner is not None:
                    inner[id(owner)].append(node)
                in_order.append(node)
                own[id(node)], inner[id(node)], owner = (set(), set(), [False]), [], node
            if self._note(node, own[id(owner)]):
                continue  # a Name: nothing under it but its context
            children: list[tuple[ast.AST, ast.stmt]] = []
            for field in node._fields:
                value = getattr(node, field, None)
                if type(value) is list:
                    if value and isinstance(value[0], ast.stmt):
                        if rewrite:
                            _rewrite_block(value)
                        self.blocks.append(value)
                    for position, child in enumerate(value):
                        if isinstance(child, ast.AST):
                            self._note_read(child, node, field, position)
                            children.append((child, owner))
                elif isinstance(value, ast.AST) and type(value) not in _CONTEXTS:
                    self._note_read(value, node, field, None)
                    children.append((value, owner))
            stack.extend(reversed(children))
        for stmt in reversed(in_order):  # inner statements come later in pre-order: theirs are done
            written, read, flow = own[id(stmt)]
            flow_any = flow[0]
            for child in inner[id(stmt)]:
                child_written, child_read, child_flow = self._effects[id(child)]
                written |= child_written
                read |= child_read
                flow_any = flow_any or child_flow
            self._effects[id(stmt)] = (written, read, flow_any)

    def _note(self, node: ast.AST, effects: tuple[set[str], set[str], list[bool]]) -> bool:
        """Count what ``node`` writes or reads into its statement's effects; True for a Name."""
        kind = type(node)
        written, read, flow = effects
        if kind is ast.Name:
            if type(node.ctx) is ast.Load:
                read.add(node.id)
            else:
                written.add(node.id)
                self.writes[node.id] += 1
            return True
        if kind is ast.arg:
            self.writes[node.arg] += 1
        elif kind in _DEF_TYPES:
            written.add(node.name)
            self.writes[node.name] += 1
        elif kind in _FLOW_TYPES:
            flow[0] = True
            if kind is ast.Global or kind is ast.Nonlocal:  # shared with another scope: never a temporary
                self.writes.update({name: 2 for name in node.names})
        return False

    def _note_read(self, child: ast.AST, parent: ast.AST, field: str, position: int | None) -> None:
        if type(child) is ast.Name and type(child.ctx) is ast.Load:
            self.reads[child.id] += 1
            self.where.setdefault(child.id, (parent, field, position))

    def effects(self, stmt: ast.stmt) -> Effects:
        return self._effects[id(stmt)]

    def set_effects(self, stmt: ast.stmt, effects: Effects) -> None:
        self._effects[id(stmt)] = effects

    def key(self, stmt: ast.stmt) -> str:
        """:func:`statement_key` of ``stmt``, from its inner statements' cached keys."""
        cached = self._keys.get(id(stmt))
        if cached is not None:
            return cached
        digest = hashlib.blake2b(digest_size=12)
        stack: list[ast.AST | str] = [stmt]
        while stack:
            node = stack.pop()
            if isinstance(node, str):
                digest.update(node.encode())
                continue
            if node is not stmt and isinstance(node, ast.stmt):
                digest.update(self.key(node).encode())
                continue
            digest.update(_label(node).encode() + b"\x00")
            stack.extend(
                reversed([c for c in ast.iter_child_nodes(node) if not isinstance(c, ast.expr_context)])
            )
        self._keys[id(stmt)] = key = digest.hexdigest()
        return key


def statement_key(stmt: ast.stmt) -> str:
    """A rename-invariant key of ``stmt``: a digest of its node types in pre-order, with the literal
    values, attribute names and builtins a renaming leaves alone, and no other identifier.

    Example:
        >>> import ast
        >>> key = lambda src: statement_key(ast.parse(src).body[0])
        >>> key("total = len(xs)") == key("n = len(v)"), key("total = len(xs)") == key("total = sum(xs)")
        (True, False)
    """
    return _Unit([stmt], rewrite=False).key(stmt)


def _label(node: ast.AST) -> str:
    label = type(node).__name__
    if isinstance(node, ast.Name) and node.id in _BUILTINS:
        return label + ":" + node.id
    if isinstance(node, ast.Attribute):
        return label + "." + node.attr
    if isinstance(node, ast.Constant):
        return label + "=" + repr(node.value)[:40]
    return label


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


def _rewrite_block(block: list[ast.stmt], top: bool = False) -> None:
    """Augmented and annotated assignments of ``block`` as plain ones (in place)."""
    if any(isinstance(stmt, (ast.AugAssign, ast.AnnAssign)) for stmt in block):
        rewritten = [stmt for stmt in map(_expanded, block) if stmt is not None]
        # a body left empty (it held only ``x: T``) needs a statement; the unit's top level does not
        block[:] = rewritten or ([] if top else [ast.Pass()])


# ----------------------------------------------------------------------------- temporaries


def _temporary(stmt: ast.stmt, writes: Counter, reads: Counter) -> str | None:
    """The name ``stmt`` binds if it is ``name = <expr>`` with a name written once and read once."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        name = stmt.targets[0].id
        if writes[name] == 1 and reads[name] == 1:
            return name
    return None


def _inline_temporaries(unit: _Unit) -> _Undo:
    """Inline every single-use temporary into its reader (at most :data:`MAX_INLINED` per unit)."""
    writes, reads, where = unit.writes, unit.reads, unit.where
    undo = _Undo()
    for block in [unit.stmts, *unit.blocks]:
        candidates = [i for i in range(len(block) - 1) if _temporary(block[i], writes, reads)]
        if not candidates:
            continue
        undo.blocks[id(block)] = (block, list(block))
        effects = [unit.effects(stmt) for stmt in block]
        for i in reversed(candidates):  # from the end: a temporary used by a temporary moves with it
            if len(undo.reads) < MAX_INLINED:
                _inline_one(block, effects, i, _temporary(block[i], writes, reads), where, undo)
        for stmt, effect in zip(block, effects, strict=True):
            unit.set_effects(stmt, effect)
    return undo


def _conflict(a: tuple[set[str], set[str], bool], b: tuple[set[str], set[str], bool]) -> bool:
    """Whether two statements' order matters: one writes what the other reads or writes, or one can
    leave the block."""
    (wa, ra, flow_a), (wb, rb, flow_b) = a, b
    return flow_a or flow_b or bool(wa & (wb | rb) or wb & ra)


def _inline_one(block, effects, i: int, name: str, where, undo: _Undo) -> None:
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
    undo.reads.append(
        (
            parent,
            field,
            position,
            getattr(parent, field) if position is None else getattr(parent, field)[position],
        )
    )
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


# ----------------------------------------------------------------------------- order


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


def _ordered(block: list[ast.stmt], unit: _Unit, pinned_docstring: bool = True) -> list[ast.stmt]:
    """``block`` in canonical order: segments between fixed statements, each ordered by key."""
    out: list[ast.stmt] = []
    segment: list[tuple[ast.stmt, set[str], set[str]]] = []
    for i, stmt in enumerate(block):
        written, read, flow = unit.effects(stmt)
        if flow or (i == 0 and pinned_docstring and is_docstring(stmt)):
            out.extend(_ordered_segment(segment, unit))
            out.append(stmt)
            segment = []
        else:
            segment.append((stmt, written, read))
    out.extend(_ordered_segment(segment, unit))
    return out


def _ordered_segment(segment: list[tuple[ast.stmt, set[str], set[str]]], unit: _Unit) -> list[ast.stmt]:
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
    ready = [j for j in range(len(segment)) if indegree[j] == 0]
    order: list[ast.stmt] = []
    rank: dict[int, tuple] = {}
    while ready:
        # keys only where there is a choice (a chain of dependent statements needs none); two
        # statements alike but for their names are told apart by what depends on them, else the
        # input order would decide and a swap of the two would show
        for j in ready:
            if len(ready) > 1 and j not in rank:
                after = sorted(unit.key(segment[k][0]) for k in successors[j])
                rank[j] = (unit.key(segment[j][0]), after, j)
        i = ready[0] if len(ready) == 1 else min(ready, key=rank.__getitem__)
        ready.remove(i)
        order.append(segment[i][0])
        for j in successors[i]:
            indegree[j] -= 1
            if indegree[j] == 0:
                ready.append(j)
    return order
