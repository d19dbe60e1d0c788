"""The recipe format: YAML validated by pydantic, so every error names the exact YAML key.

```yaml
name: quickstart
description: one line
vars: {out: ./textbooks-out/quickstart, tasks: 4}     # ${name} anywhere below; --set name=value overrides
llm: {model: gpt-4o-mini, budget_usd: 5}              # optional: the LLMConfig of every step/job taking `llm`
stages:
  - name: filter                                      # a pipeline stage (datatrove executors)
    input: {uses: python_source, with: {preset: stdlib}}   # a reader, {from: STAGE} or {path: SHARD_DIR}
    steps:
      - uses: code_size                               # a registered name or "package.module:Class"
        with: {max_bytes: 1000000}
    output: ${out}/filtered                           # a shard directory
    executor: {type: local, tasks: ${tasks}, workers: 2}   # local | ray | slurm (+ options)
  - name: report                                      # a job stage: calls a registered function
    job: decontam_audit
    with: {input_dir: ${out}/filtered}
```
"""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from recipes.registry import UnknownName, resolve

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class RecipeError(ValueError):
    """An invalid recipe. ``problems`` is a list of ``(yaml key path, message)``; ``str()`` lists them all."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = problems
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  {key}: {message}" for key, message in problems)
        super().__init__(f"invalid recipe{where}:\n{lines}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StepSpec(_Strict):
    """One step of a pipeline stage."""

    uses: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    name: str | None = None


class InputSpec(_Strict):
    """Where a pipeline stage reads from: a reader step, an earlier stage, or a shard directory."""

    uses: str | None = None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    from_: str | None = Field(default=None, alias="from")
    path: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> InputSpec:
        given = [
            k for k, v in (("uses", self.uses), ("from", self.from_), ("path", self.path)) if v is not None
        ]
        if len(given) != 1:
            raise ValueError(f"give exactly one of `uses`, `from` or `path` (got {given or 'none'})")
        return self


class ExecutorSpec(_Strict):
    """Which datatrove executor runs a pipeline stage."""

    type: Literal["local", "ray", "slurm"] = "local"
    tasks: int = Field(default=1, ge=1)
    workers: int = Field(default=-1, ge=-1)
    options: dict[str, Any] = Field(default_factory=dict)


class PipelineStage(_Strict):
    """A datatrove pipeline: input reader -> steps -> shard writer, with a manifest and a dataset card."""

    name: str
    input: InputSpec
    steps: list[StepSpec] = Field(default_factory=list)
    output: str
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    max_shard_bytes: int | None = Field(default=None, ge=1)


class JobStage(_Strict):
    """A stage that calls a registered function with keyword arguments (training, reports, ...)."""

    name: str
    job: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


def _stage_kind(value: Any) -> str:
    # a dict when validating YAML, a model instance when serializing (model_dump for the recipe hash)
    is_job = isinstance(value, JobStage) or (isinstance(value, dict) and "job" in value)
    return "job" if is_job else "pipeline"


Stage = Annotated[
    Annotated[PipelineStage, Tag("pipeline")] | Annotated[JobStage, Tag("job")], Discriminator(_stage_kind)
]


class Recipe(_Strict):
    """A validated recipe (variables already substituted)."""

    name: str
    description: str = ""
    vars: dict[str, Any] = Field(default_factory=dict)
    llm: dict[str, Any] | None = None  # an LLMConfig for every step/job taking `llm` (its own keys win)
    stages: list[Stage] = Field(min_length=1)


# ------------------------------------------------------------------------------------------------
# loading


def _key(loc: tuple) -> str:
    """pydantic location -> YAML key path, e.g. ``stages[0].steps[1].uses``."""
    out = ""
    for part in loc:
        if part in ("pipeline", "job"):  # discriminator tags are not YAML keys
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = {"with_": "with", "from_": "from"}.get(part, part)
            out += f".{part}" if out else str(part)
    return out or "(recipe)"


def _substitute(value: Any, variables: dict[str, Any], key: str, problems: list) -> Any:
    if isinstance(value, dict):
        return {
            k: _substitute(v, variables, f"{key}.{k}" if key else str(k), problems) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, variables, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, str):
        whole = _VAR.fullmatch(value)
        if whole:  # "${tasks}" keeps the variable's type
            name = whole.group(1)
            if name not in variables:
                problems.append((key, f"unknown variable ${{{name}}}; defined: {sorted(variables)}"))
                return value
            return variables[name]

        def replace(match: re.Match) -> str:
            if match.group(1) not in variables:
                problems.append(
                    (key, f"unknown variable ${{{match.group(1)}}}; defined: {sorted(variables)}")
                )
                return match.group(0)
            return str(variables[match.group(1)])

        return _VAR.sub(replace, value)
    return value


def parse_overrides(items: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """``["tasks=4", "out=/tmp/x"]`` -> ``{"tasks": 4, "out": "/tmp/x"}`` (values parsed as YAML scalars)."""
    if not items:
        return {}
    if isinstance(items, dict):
        return dict(items)
    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RecipeError([(item, "an override is KEY=VALUE")])
        parsed[key.strip()] = yaml.safe_load(value) if value else ""
    return parsed


def _set_path(raw: dict, dotted: str, value: Any, problems: list) -> None:
    """Apply ``stages.<name or index>.executor.tasks=4``-style overrides to the raw recipe."""
    parts = dotted.split(".")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            match = next((s for s in node if isinstance(s, dict) and s.get("name") == part), None)
            if match is None and part.isdigit() and int(part) < len(node):
                match = node[int(part)]
            if match is None:
                problems.append((dotted, f"no stage named {part!r}"))
                return
            node = match
            continue
        if not isinstance(node, dict):
            problems.append((dotted, f"{'.'.join(parts[:i])} is not a mapping"))
            return
        if last:
            node[part] = value
        else:
            node = node.setdefault(part, {})


def _check_signature(target: Any, params: dict[str, Any], key: str, problems: list) -> None:
    """Unknown, missing or wrongly typed arguments for a step class or job function, by YAML key."""
    import difflib

    from pydantic import TypeAdapter

    function = target.__init__ if inspect.isclass(target) else target
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return
    parameters = {n: p for n, p in signature.parameters.items() if n != "self"}
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 - unresolvable annotations are simply not type-checked
        hints = {}
    for name, value in params.items():
        if name == "llm" and name in parameters:
            _check_llm(value, f"{key}.llm", problems)
            continue
        if name not in parameters:
            close = difflib.get_close_matches(name, list(parameters), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            problems.append((f"{key}.{name}", f"unexpected argument{hint} (accepted: {sorted(parameters)})"))
            continue
        if name in hints:
            try:
                TypeAdapter(hints[name], config=ConfigDict(arbitrary_types_allowed=True)).validate_python(
                    value
                )
            except ValidationError as error:
                problems.append(
                    (f"{key}.{name}", f"wrong type for {hints[name]}: {error.errors()[0]['msg']}")
                )
            except Exception:  # noqa: BLE001 - annotation pydantic cannot build a validator for
                pass
    for name, parameter in parameters.items():
        if parameter.default is parameter.empty and parameter.kind in (
            parameter.POSITIONAL_OR_KEYWORD,
            parameter.KEYWORD_ONLY,
        ):
            if name not in params:
                problems.append((f"{key}.{name}", "missing required argument"))


def _check_llm(value: Any, key: str, problems: list) -> None:
    """An `llm:` block is an LLMConfig: each bad key is named, e.g. ``stages[1].steps[0].with.llm.extra_bdy``."""
    from curate.llm.config import LLMConfig

    if value is None:
        return
    try:
        LLMConfig.coerce(value)
    except (ValidationError, TypeError) as error:
        if isinstance(error, TypeError):
            problems.append((key, str(error)))
            return
        for e in error.errors():
            problems.append((".".join([key, *(str(p) for p in e["loc"])]), e["msg"]))


def _takes_llm(target: Any) -> bool:
    function = target.__init__ if inspect.isclass(target) else target
    try:
        return "llm" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _apply_recipe_llm(recipe: Recipe) -> None:
    """The recipe's `llm:` block goes to every step and job that takes `llm`, under their own keys."""
    if not recipe.llm:
        return
    specs = []
    for stage in recipe.stages:
        if isinstance(stage, JobStage):
            specs.append((stage.job, "jobs", stage.with_))
        else:
            specs += [(step.uses, "steps", step.with_) for step in stage.steps]
    for name, kind, with_ in specs:
        try:
            target = resolve(name, kind)
        except UnknownName:
            continue  # reported by _check_names
        if _takes_llm(target):
            own = with_.get("llm") if isinstance(with_.get("llm"), dict) else {}
            with_["llm"] = {**recipe.llm, **own}


def _check_names(recipe: Recipe, problems: list) -> None:
    seen: dict[str, int] = {}
    for i, stage in enumerate(recipe.stages):
        base = f"stages[{i}]"
        if stage.name in seen:
            problems.append((f"{base}.name", f"duplicate stage name {stage.name!r}"))
        if isinstance(stage, JobStage):
            try:
                _check_signature(resolve(stage.job, "jobs"), stage.with_, f"{base}.with", problems)
            except UnknownName as error:
                problems.append((f"{base}.job", str(error)))
        else:
            if stage.input.from_ is not None:
                earlier = {s.name for s in recipe.stages[:i] if isinstance(s, PipelineStage)}
                if stage.input.from_ not in earlier:
                    problems.append(
                        (
                            f"{base}.input.from",
                            f"no earlier pipeline stage named {stage.input.from_!r}"
                            f" (earlier: {sorted(earlier)})",
                        )
                    )
            if stage.input.uses is not None:
                try:
                    target = resolve(stage.input.uses, "steps")
                    with_ = {k: v for k, v in stage.input.with_.items()}
                    _check_signature(target, with_, f"{base}.input.with", problems)
                except UnknownName as error:
                    problems.append((f"{base}.input.uses", str(error)))
            for j, step in enumerate(stage.steps):
                try:
                    _check_signature(
                        resolve(step.uses, "steps"), step.with_, f"{base}.steps[{j}].with", problems
                    )
                except UnknownName as error:
                    problems.append((f"{base}.steps[{j}].uses", str(error)))
        seen[stage.name] = i


def bundled_recipes() -> dict[str, Path]:
    """Recipes shipped with the toolkit: name -> path."""
    from importlib.resources import files

    folder = Path(str(files("recipes")))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def locate(ref: str) -> Path:
    """A recipe path, or the bundled recipe of that name."""
    path = Path(ref)
    if path.is_file():
        return path
    bundled = bundled_recipes()
    name = path.name.removesuffix(".yaml").removesuffix(".yml")
    if name in bundled:
        return bundled[name]
    import difflib

    close = difflib.get_close_matches(name, list(bundled), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise RecipeError(
        [
            (
                "(file)",
                f"no recipe file {ref!r} and no bundled recipe {name!r}{hint} "
                f"(bundled: {', '.join(bundled)})",
            )
        ]
    )


def load_recipe(ref: str | Path | dict, overrides: list[str] | dict[str, Any] | None = None) -> Recipe:
    """Load, substitute and validate a recipe (a path, a bundled name or a dict). Raises :class:`RecipeError`
    naming every bad key before any work is done.

    Example:
        >>> recipe = load_recipe("quickstart", overrides=["tasks=2"])
        >>> [stage.name for stage in recipe.stages][:2]
        ['filter', 'dedup']
    """
    source = None
    if isinstance(ref, dict):
        raw = ref
    else:
        path = locate(str(ref))
        source = str(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise RecipeError([("(yaml)", str(error))], source) from error
    if not isinstance(raw, dict):
        raise RecipeError([("(recipe)", "a recipe is a YAML mapping with `name` and `stages`")], source)
    raw = dict(raw)
    problems: list[tuple[str, str]] = []
    variables = dict(raw.get("vars") or {})
    for key, value in parse_overrides(overrides).items():
        if "." in key:
            _set_path(raw, key, value, problems)
        else:
            variables[key] = value
    for _ in range(5):  # variables may refer to other variables
        variables = {k: _substitute(v, variables, f"vars.{k}", []) for k, v in variables.items()}
    body = {k: v for k, v in raw.items() if k != "vars"}
    body = _substitute(body, variables, "", problems)
    body["vars"] = variables
    if problems:
        raise RecipeError(problems, source)
    try:
        recipe = Recipe.model_validate(body)
    except ValidationError as error:
        raise RecipeError([(_key(e["loc"]), e["msg"]) for e in error.errors()], source) from None
    _check_llm(recipe.llm, "llm", problems)
    _apply_recipe_llm(recipe)
    _check_names(recipe, problems)
    if problems:
        raise RecipeError(problems, source)
    return recipe
