"""A normalised form of Python code, for embedding measures that must not see surface differences.

:func:`normalise_code` keeps what a program does and drops what a rephrase changes: docstrings and
comments go, type annotations go, ``x += y`` is written ``x = x + y``, single-use temporaries are
inlined and independent statements put in one order (:mod:`decontam.canonical`), every name the code binds
(functions, classes, arguments, variables) is replaced by a canonical name numbered in order of first
appearance (``f0``, ``c0``, ``v0``...), builtins, imported names and attribute names stay, and the
layout is ``ast.unparse``'s. Two renamed and reformatted copies of one solution normalise to the
same text, so an embedding of the normal form measures what renaming cannot hide.

Example:
    >>> a = "def area(w: int, h: int) -> int:\\n    '''Area.'''\\n    total = w * h  # product\\n    return total\\n"
    >>> b = "def f(x,y):\\n  r = x*y\\n  return r\\n"
    >>> normalise_code(a) == normalise_code(b)
    True
    >>> print(normalise_code(b), end="")
    def f0(v0, v1):
        return v0 * v1
"""

from __future__ import annotations

import ast
import builtins

from curate.pyparse import parse_valid
from decontam.canonical import canonical_statements, is_docstring

_BUILTINS = frozenset(dir(builtins))


class _Canonicaliser(ast.NodeTransformer):
    def __init__(self, keep: set[str]):
        self.keep = keep
        self.names: dict[str, str] = {}
        self.counts = {"f": 0, "c": 0, "v": 0}

    def canonical(self, name: str, prefix: str = "v") -> str:
        if name in self.keep or (name in _BUILTINS and name not in self.names):
            return name
        if name not in self.names:
            self.names[name] = f"{prefix}{self.counts[prefix]}"
            self.counts[prefix] += 1
        return self.names[name]

    def visit_Name(self, node):
        node.id = self.canonical(node.id)
        return node

    def visit_arg(self, node):
        node.arg = self.canonical(node.arg)
        node.annotation = None
        return node

    def visit_FunctionDef(self, node):
        node.name = self.canonical(node.name, "f")
        node.returns = None
        _drop_docstring(node)
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        node.name = self.canonical(node.name, "c")
        _drop_docstring(node)
        self.generic_visit(node)
        return node


def _drop_docstring(node) -> None:
    if node.body and is_docstring(node.body[0]):
        node.body = node.body[1:] or [ast.Pass()]


def normalise_code(source: str) -> str:
    """The normal form of ``source`` (see the module docstring). Raises ``SyntaxError`` if it does not parse."""
    tree = parse_valid(source)  # any Python version (curate.pyparse)
    imported = {
        (a.asname or a.name).split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    }
    tree.body = [s for s in tree.body if not isinstance(s, (ast.Import, ast.ImportFrom))]
    _drop_docstring(tree)
    tree.body = canonical_statements(tree.body)  # temporaries inlined, independent statements ordered
    tree = _Canonicaliser(imported).visit(tree)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree) + "\n"
