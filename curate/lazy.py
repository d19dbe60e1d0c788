"""Lazy package exports: ``from curate import ShardWriter`` imports only the module that defines it.

Every layer's ``__init__`` maps its public names to their modules and hands the map to
:func:`lazy_exports`, so ``import curate`` stays fast (no torch, no sklearn) and steps pickle for the
executors.

Example:
    >>> getattr_, dir_ = lazy_exports("demo", {"sqrt": "math", "dedent": "textwrap"})
    >>> getattr_("sqrt")(9.0)
    3.0
    >>> dir_()
    ['dedent', 'sqrt']
    >>> getattr_("nope")
    Traceback (most recent call last):
    ...
    AttributeError: module 'demo' has no attribute 'nope'
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module-level ``__getattr__`` and ``__dir__`` for ``package`` that import ``exports`` on first use.

    Args:
        package: the package's ``__name__`` (used in the error message).
        exports: public name -> the module that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        module = sys.modules.get(package)
        return sorted(set(exports) | set(vars(module) if module else ()))

    return __getattr__, __dir__
