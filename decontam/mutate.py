"""Surface rewrites of Python code that keep its structure: the contamination an AST measure must catch.

Used to plant disguised benchmark solutions in tests and to make function-level "exercises" at scale in
``benchmarks/bench_decontam_scale.py``. :func:`disguise` renames every user identifier (functions,
arguments, variables, attributes stay), replaces or removes docstrings, reformats (``ast.unparse``,
optional 2-space indentation) and sprinkles comments, all decided by a seeded RNG. The AST match rate
between the input and the output is 1.0 by construction unless ``structural=True`` also inserts or
deletes a statement.

Example:
    >>> print(disguise("def add(a, b):\\n    '''Add.'''\\n    return a + b\\n", seed=1))  # doctest: +SKIP
"""

from __future__ import annotations

import ast
import builtins
import random
import warnings

from decontam.canonical import is_docstring

_BUILTINS = frozenset(dir(builtins))
_WORDS = (
    "val",
    "item",
    "acc",
    "tmp",
    "res",
    "data",
    "node",
    "cur",
    "elem",
    "buf",
    "key",
    "out",
    "arg",
    "obj",
)
_COMMENTS = ("# compute the result", "# edge case", "# main loop", "# TODO: tidy", "# helper", "# see above")
_DOCSTRINGS = ("Compute the answer.", "Helper used by the solver.", "Return the transformed input.")


class _Renamer(ast.NodeTransformer):
    def __init__(self, rng: random.Random, keep: set[str]):
        self.rng = rng
        self.keep = keep
        self.names: dict[str, str] = {}

    def new(self, name: str) -> str:
        if name in _BUILTINS or name in self.keep or name.startswith("__"):
            return name
        if name not in self.names:
            self.names[name] = f"{self.rng.choice(_WORDS)}_{len(self.names)}"
        return self.names[name]

    def visit_Name(self, node):
        node.id = self.new(node.id)
        return node

    def visit_arg(self, node):
        node.arg = self.new(node.arg)
        self.generic_visit(node)
        return node

    def _visit_def(self, node):
        node.name = self.new(node.name)
        self.generic_visit(node)
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _visit_def


def _docstrings(tree: ast.AST, rng: random.Random) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                if rng.random() < 0.5 and len(node.body) > 1:
                    node.body = node.body[1:]
                else:
                    first.value.value = rng.choice(_DOCSTRINGS)


def _structural_edit(tree: ast.AST, rng: random.Random) -> None:
    """Insert a ``pass``-like statement or drop one statement somewhere (changes the AST a little)."""
    bodies = [n for n in ast.walk(tree) if isinstance(getattr(n, "body", None), list) and n.body]
    if not bodies:
        return
    node = rng.choice(bodies)
    if len(node.body) > 1 and rng.random() < 0.5:
        del node.body[rng.randrange(len(node.body))]
    else:
        node.body.insert(
            rng.randrange(len(node.body) + 1),
            ast.Assign(targets=[ast.Name(id="_unused", ctx=ast.Store())], value=ast.Constant(0), lineno=0),
        )


class _AnnotationStripper(ast.NodeTransformer):
    """Drop argument/return annotations; ``x: T = v`` becomes ``x = v`` and a bare ``x: T`` goes."""

    def visit_arg(self, node):
        node.annotation = None
        return node

    def visit_FunctionDef(self, node):
        node.returns = None
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node):
        if node.value is None or not node.simple:
            return ast.Pass() if node.value is None else node
        return ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno)


def _parse(source: str) -> ast.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences in old code
        return ast.parse(source)


def disguise(source: str, seed: int = 0, structural: bool = False, strip_annotations: bool = False) -> str:
    """Rewrite ``source`` so it looks different but has the same AST shape (see the module docstring).

    ``strip_annotations`` also removes type annotations (the shape is unchanged: annotations are not
    part of it). Raises ``SyntaxError`` if ``source`` does not parse.

    Example:
        >>> out = disguise("def add(a: int, b: int) -> int:\\n    return a + b\\n", seed=1, strip_annotations=True)
        >>> "add" in out or "int" in out
        False
    """
    rng = random.Random(seed)
    tree = _parse(source)
    if strip_annotations:
        tree = _AnnotationStripper().visit(tree)
    # imported names keep their spelling, so the rewrite still runs
    imported = {
        (a.asname or a.name).split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    }
    tree = _Renamer(rng, imported).visit(tree)
    _docstrings(tree, rng)
    if structural:
        _structural_edit(tree, rng)
    ast.fix_missing_locations(tree)
    lines = ast.unparse(tree).splitlines()
    two_spaces = rng.random() < 0.5
    out = []
    for line in lines:
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if two_spaces:
            line = " " * (indent // 2) + stripped
            indent //= 2
        if (
            rng.random() < 0.15
            and stripped
            and not stripped.startswith(("else", "elif", "except", "finally"))
        ):
            out.append(" " * indent + rng.choice(_COMMENTS))
        out.append(line)
        if rng.random() < 0.1:
            out.append("")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------
# light edits: what a person rephrasing a solution by hand does (they change the AST a little)
# ---------------------------------------------------------------------------------------------------
LIGHT_EDITS = ("reorder", "expand_augassign", "temporary")
_FLOW = (ast.Return, ast.Break, ast.Continue, ast.Raise, ast.Pass, ast.Global, ast.Nonlocal)


def _names(node: ast.AST) -> tuple[set[str], set[str]]:
    """(names written, names read) anywhere under ``node``."""
    written, read = set(), set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            (written if isinstance(sub.ctx, (ast.Store, ast.Del)) else read).add(sub.id)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            written.add(sub.name)
    return written, read


def _swappable(a: ast.stmt, b: ast.stmt) -> bool:
    """Two adjacent simple statements that neither read nor write what the other writes."""
    simple = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr)
    if not (isinstance(a, simple) and isinstance(b, simple)) or is_docstring(a):
        return False
    if isinstance(a, ast.Expr) and isinstance(b, ast.Expr):
        return False  # two calls: their order is usually the point
    wa, ra = _names(a)
    wb, rb = _names(b)
    return not (wa & (wb | rb) or wb & ra)


def _bodies(tree: ast.AST) -> list[list[ast.stmt]]:
    return [
        getattr(n, f)
        for n in ast.walk(tree)
        for f in ("body", "orelse", "finalbody")
        if isinstance(getattr(n, f, None), list) and getattr(n, f) and isinstance(getattr(n, f)[0], ast.stmt)
    ]


def _reorder(tree: ast.AST, rng: random.Random) -> bool:
    spots = [
        (body, i) for body in _bodies(tree) for i in range(len(body) - 1) if _swappable(body[i], body[i + 1])
    ]
    if not spots:
        return False
    body, i = rng.choice(spots)
    body[i], body[i + 1] = body[i + 1], body[i]
    return True


def _expand_augassign(tree: ast.AST, rng: random.Random) -> bool:
    spots = [(body, i) for body in _bodies(tree) for i, s in enumerate(body) if isinstance(s, ast.AugAssign)]
    if not spots:
        return False
    body, i = rng.choice(spots)
    aug = body[i]
    load = ast.parse(ast.unparse(aug.target), mode="eval").body  # the target re-read as an expression
    body[i] = ast.Assign(targets=[aug.target], value=ast.BinOp(load, aug.op, aug.value), lineno=aug.lineno)
    return True


def _temporary(tree: ast.AST, rng: random.Random) -> bool:
    """``return <expr>`` -> ``result = <expr>; return result`` (or the same for an assigned value)."""
    spots = [
        (body, i)
        for body in _bodies(tree)
        for i, s in enumerate(body)
        if isinstance(s, (ast.Return, ast.Assign))
        and s.value is not None
        and not isinstance(s.value, (ast.Name, ast.Constant))
    ]
    if not spots:
        return False
    body, i = rng.choice(spots)
    stmt = body[i]
    name = f"tmp_{rng.randrange(1000)}"
    body.insert(i, ast.Assign(targets=[ast.Name(name, ast.Store())], value=stmt.value, lineno=stmt.lineno))
    stmt.value = ast.Name(name, ast.Load())
    return True


# -- two more edits, written apart from the normal form in decontam/canonical.py, to check it on
# -- rewrites it was not shaped around: longer moves (compound statements too) and sub-expressions
# -- hoisted into a temporary
FURTHER_EDITS = ("move", "hoist")
_LEAVES_BLOCK = (
    ast.Return,
    ast.Raise,
    ast.Break,
    ast.Continue,
    ast.Yield,
    ast.YieldFrom,
    ast.Global,
    ast.Nonlocal,
)


def _independent(a: ast.stmt, b: ast.stmt) -> bool:
    if is_docstring(a) or is_docstring(b):
        return False
    if any(isinstance(n, _LEAVES_BLOCK) for s in (a, b) for n in ast.walk(s)):
        return False
    wa, ra = _names(a)
    wb, rb = _names(b)
    return not (wa & (wb | rb) or wb & ra)


def _move(tree: ast.AST, rng: random.Random) -> bool:
    """Move one statement (compound ones too) up or down past every statement it does not depend on."""
    spots = []
    for body in _bodies(tree):
        for i in range(len(body)):
            j = i
            while j + 1 < len(body) and _independent(body[i], body[j + 1]):
                j += 1
            if j > i:
                spots.append((body, i, j))
    if not spots:
        return False
    body, i, j = rng.choice(spots)
    body.insert(rng.randint(i + 1, j), body.pop(i))
    return True


def _hoistable(stmt: ast.stmt) -> list[ast.expr]:
    """Sub-expressions of ``stmt``'s own expressions (not its body, not inside comprehensions or lambdas)
    that can be evaluated first into a temporary."""
    roots = {
        ast.Return: ("value",), ast.Assign: ("value",), ast.Expr: ("value",), ast.If: ("test",),
        ast.For: ("iter",),
    }.get(type(stmt), ())  # fmt: skip
    out: list[ast.expr] = []
    stack = [getattr(stmt, f) for f in roots if getattr(stmt, f, None) is not None]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
                             ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom, ast.Starred)):  # fmt: skip
            continue
        if isinstance(node, (ast.Call, ast.BinOp, ast.Compare, ast.Subscript, ast.BoolOp)):
            out.append(node)
        if isinstance(node, (ast.IfExp, ast.BoolOp)):  # the parts after the first run only sometimes
            stack.append(node.test if isinstance(node, ast.IfExp) else node.values[0])
            continue
        stack.extend(c for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr))
    return out


class _Replace(ast.NodeTransformer):
    def __init__(self, target: ast.expr, name: str):
        self.target, self.name = target, name

    def generic_visit(self, node):
        if node is self.target:
            return ast.Name(self.name, ast.Load())
        return super().generic_visit(node)


def _hoist(tree: ast.AST, rng: random.Random) -> bool:
    """``if len(xs) > k:`` -> ``n = len(xs)`` then ``if n > k:`` (any call, operation, comparison, index)."""
    spots = [(body, i, e) for body in _bodies(tree) for i, s in enumerate(body) for e in _hoistable(s)]
    if not spots:
        return False
    body, i, expr = rng.choice(spots)
    name = f"part_{rng.randrange(1000)}"
    _Replace(expr, name).visit(body[i])
    body.insert(i, ast.Assign(targets=[ast.Name(name, ast.Store())], value=expr, lineno=body[i].lineno))
    return True


_EDITS = {"reorder": _reorder, "expand_augassign": _expand_augassign, "temporary": _temporary,
          "move": _move, "hoist": _hoist}  # fmt: skip



def apply_edits(source: str, edits: dict, kinds: tuple[str, ...], n_edits: int, seed: int) -> tuple[str, list[str]]:
    """Try the ``edits`` named by ``kinds`` in a seeded random order, keeping up to ``n_edits`` that fit.

    Each edit takes ``(tree, rng)`` and returns whether it changed the tree. Returns the unparsed source
    and the edits applied, in order (shared by :func:`light_edit` and the semantic rewrites).

    Example:
        >>> apply_edits("x = 1\\n", {"none": lambda tree, rng: False}, ("none",), 1, 0)
        ('x = 1\\n', [])
    """
    rng = random.Random(seed)
    tree = _parse(source)
    order = list(kinds)
    rng.shuffle(order)
    done = []
    for kind in order:
        if len(done) >= n_edits:
            break
        if edits[kind](tree, rng):
            done.append(kind)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree) + "\n", done

def light_edit(
    source: str, seed: int = 0, n_edits: int = 2, kinds: tuple[str, ...] = LIGHT_EDITS
) -> tuple[str, list[str]]:
    """Apply up to ``n_edits`` distinct light edits of ``kinds`` (:data:`LIGHT_EDITS`, or any of
    :data:`FURTHER_EDITS` too) that fit ``source``.

    Returns the edited source (``ast.unparse`` formatting) and the edits applied, in order.

    Example:
        >>> src = "def f(xs):\\n    t = 0\\n    for x in xs:\\n        t += x\\n    return t * 2\\n"
        >>> out, done = light_edit(src, seed=0, n_edits=3)
        >>> sorted(done)
        ['expand_augassign', 'temporary']
        >>> "t = t + x" in out
        True
        >>> out, done = light_edit("def f(xs, k):\\n    if len(xs) > k:\\n        return k\\n", kinds=("hoist",))
        >>> done, out.count("part_")
        (['hoist'], 2)
    """
    return apply_edits(source, _EDITS, kinds, n_edits, seed)
