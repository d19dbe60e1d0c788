"""Resolve the names a recipe uses (``uses: python_syntax``, ``job: train``) to classes and functions.

Each layer's ``__init__`` declares ``STEPS`` and ``JOBS`` as plain strings (``"module:Name"``), so
listing them imports nothing heavy; a dotted path (``my_pkg.steps:MyFilter`` or
``my_pkg.steps.MyFilter``) works for user code.
"""

from __future__ import annotations

import difflib
import inspect
from functools import cache
from importlib import import_module
from typing import Any

LAYERS = ("curate", "synth", "decontam", "train")


class UnknownName(LookupError):
    """A step or job name that is neither registered nor importable; ``suggestions`` holds close names."""

    def __init__(self, name: str, kind: str, suggestions: list[str]):
        self.name, self.kind, self.suggestions = name, kind, suggestions
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        super().__init__(f"unknown {kind} {name!r}{hint}")


@cache
def registry(kind: str) -> dict[str, str]:
    """All registered ``steps`` or ``jobs``: short name -> ``"module:Name"``.

    Example:
        >>> registry("steps")["python_syntax"]
        'curate.filters:PythonSyntaxFilter'
    """
    attribute = {"steps": "STEPS", "jobs": "JOBS"}[kind]
    merged: dict[str, str] = {}
    for layer in LAYERS:
        merged.update(getattr(import_module(layer), attribute, {}))
    return merged


def _import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":") if ":" in target else target.rpartition(".")
    return getattr(import_module(module_name), attr)


def resolve(name: str, kind: str = "steps") -> Any:
    """The class (steps) or function (jobs) behind a recipe name or a dotted import path.

    Example:
        >>> resolve("exact_dedup").__name__
        'ExactDedupFilter'
    """
    known = registry(kind)
    if name in known:
        return _import_target(known[name])
    if ":" in name or "." in name:
        try:
            return _import_target(name)
        except (ImportError, AttributeError, ValueError) as error:
            raise UnknownName(name, kind[:-1], []) from error
    raise UnknownName(name, kind[:-1], difflib.get_close_matches(name, list(known), n=3, cutoff=0.5))


def summary_line(target: Any) -> str:
    """The first line of a class's or function's docstring."""
    doc = inspect.getdoc(target) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
