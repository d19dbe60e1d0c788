"""Resolve the names a recipe uses (``uses: python_syntax``, ``job: train``) to classes and functions.

Each layer's ``__init__`` declares ``STEPS`` and ``JOBS`` as plain strings (``"module:Name"``), so
listing them imports nothing heavy; a dotted path (``my_pkg.steps:MyFilter`` or
``my_pkg.steps.MyFilter``) works for user code.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Iterable
from functools import cache
from importlib import import_module
from typing import Any

from curate.extras import MissingExtraError, extra_for_module, require_extra

LAYERS = ("curate", "synth", "decontam", "train")


def did_you_mean(name: str, choices: Iterable[str], quote: bool = True) -> str:
    """``"; did you mean 'a', 'b'?"`` naming up to three of ``choices`` close to ``name``, else ``""``.

    The one "did you mean" of recipe errors (unknown steps, jobs, arguments, variables, recipes).

    Example:
        >>> did_you_mean("exact_dedupe", ["exact_dedup", "near_dedup", "python_syntax"])
        "; did you mean 'exact_dedup', 'near_dedup'?"
        >>> did_you_mean("quikstart", ["quickstart"], quote=False), did_you_mean("zzz", ["quickstart"])
        ('; did you mean quickstart?', '')
    """
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    shown = [repr(c) if quote else c for c in close]
    return f"; did you mean {', '.join(shown)}?" if close else ""


class UnknownName(LookupError):
    """A step or job name that is neither registered nor importable (the message names close ``known`` ones)."""

    def __init__(self, name: str, kind: str, known: Iterable[str] = ()):
        self.name, self.kind = name, kind
        super().__init__(f"unknown {kind} {name!r}{did_you_mean(name, known)}")


class MissingExtra(UnknownName, MissingExtraError):
    """A registered step or job whose optional dependencies are not installed.

    An :class:`UnknownName` (so recipe validation reports it under the YAML key, before any work) and a
    :class:`~curate.extras.MissingExtraError` (an ``ImportError`` whose message says what to install).
    """

    def __init__(self, name: str, kind: str, error: MissingExtraError):
        self.name, self.kind = name, kind
        MissingExtraError.__init__(self, f"{kind} {name!r}", error.extra, error.missing)


@cache
def registry(kind: str) -> dict[str, str]:
    """All registered ``steps``, ``jobs`` or ``job_configs``: short name -> ``"module:Name"``.

    ``JOB_CONFIGS`` maps a job whose function takes ``**kwargs`` to the pydantic model its ``with:`` is
    validated against (``"train": "train.trainer:TrainConfig"``); every other job is checked against
    its signature.

    Example:
        >>> registry("steps")["python_syntax"]
        'curate.filters:PythonSyntaxFilter'
    """
    attribute = {"steps": "STEPS", "jobs": "JOBS", "job_configs": "JOB_CONFIGS"}[kind]
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
        extra = extra_for_module(known[name].partition(":")[0])
        if extra:
            try:
                require_extra(extra, name)
            except MissingExtraError as error:
                raise MissingExtra(name, kind[:-1], error) from None
        return _import_target(known[name])
    if ":" in name or "." in name:
        try:
            return _import_target(name)
        except (ImportError, AttributeError, ValueError) as error:
            raise UnknownName(name, kind[:-1]) from error
    raise UnknownName(name, kind[:-1], known)


_RST_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(~?)([^`<]+?)(?:\s*<[^>]*>)?`")
_RST_LITERAL = re.compile(r"``([^`]+)``|`([^`]+)`|\*\*([^*]+)\*\*")
_SENTENCE_END = re.compile(r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<=[a-z0-9)\]][.!?])\s+(?=[A-Z(])")


def plain_summary(text: str) -> str:
    """The first sentence of a docstring's first paragraph, as plain text (RST roles and literals unwrapped).

    Example:
        >>> plain_summary("Write rows with :class:`~curate.shards.ShardWriter` (``zstd``).\\n\\nMore.")
        'Write rows with ShardWriter (zstd).'
        >>> plain_summary("Keep files\\nthat ``ast`` parses. Others go to exclusions.")
        'Keep files that ast parses.'
    """
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    paragraph = _RST_ROLE.sub(lambda m: m.group(2).split(".")[-1] if m.group(1) else m.group(2), paragraph)
    paragraph = _RST_LITERAL.sub(lambda m: next(g for g in m.groups() if g is not None), paragraph)
    return _SENTENCE_END.split(paragraph, maxsplit=1)[0]


def summary_line(target: Any) -> str:
    """The first sentence of a class's or function's docstring, as plain text.

    Example:
        >>> def step():
        ...     pass
        >>> step.__doc__ = "Drop files that\\n``ast`` cannot parse (e.g. Python 2). Parses each once."
        >>> summary_line(step)
        'Drop files that ast cannot parse (e.g. Python 2).'
    """
    return plain_summary(inspect.getdoc(target) or "")


def job_config(name: str, function: Any) -> type | None:
    """The pydantic model a job's ``with:`` is validated against: the one registered in a layer's
    ``JOB_CONFIGS``, else one built from the function's signature; None for an unregistered function
    that takes ``**kwargs`` (a user's dotted path), whose named arguments alone can be checked.

    Example:
        >>> job_config("train", resolve("train", "jobs")).__name__
        'TrainConfig'
        >>> model = job_config("export_model", resolve("export_model", "jobs"))
        >>> sorted(field.alias for field in model.model_fields.values())[:2]
        ['checkpoint', 'dtype']
    """
    registered = registry("job_configs")
    if name in registered:
        return _import_target(registered[name])
    return signature_model(function)


def signature_model(function: Any) -> type | None:
    """A strict pydantic model of a function's (or a class's ``__init__``) keyword arguments; None when
    it takes ``**kwargs``. Annotations that cannot be resolved are not type-checked (``Any``)."""
    import typing

    from pydantic import ConfigDict, Field, create_model

    target = function.__init__ if inspect.isclass(function) else function
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return None
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations are simply not type-checked
        hints = {}
    # fields are aliased so that argument names such as `validate` or `json` cannot clash with BaseModel's
    named = [(n, p) for n, p in parameters.items() if n != "self" and p.kind is not p.VAR_POSITIONAL]
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    for typed in (True, False):  # a type pydantic cannot model: fall back to Any for every field
        fields = {
            f"arg_{name}": (
                hints.get(name, Any) if typed else Any,
                Field(... if p.default is p.empty else p.default, alias=name),
            )
            for name, p in named
        }
        try:
            return create_model(f"{getattr(target, '__name__', 'job')}_with", __config__=config, **fields)
        except Exception:  # noqa: BLE001
            continue
    return None
