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


def disguise(source: str, seed: int = 0, structural: bool = False) -> str:
    """Rewrite ``source`` so it looks different but has the same AST shape (see the module docstring).

    Raises ``SyntaxError`` if ``source`` does not parse.
    """
    rng = random.Random(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences in old code
        tree = ast.parse(source)
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
