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
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    model_validator,
)

from recipes.registry import UnknownName, did_you_mean, job_config, resolve, signature_model

#: ``${name}`` (a recipe variable) or ``${env:NAME}`` (an environment variable, only when asked for)
_VAR = re.compile(r"\$\{(env:)?([A-Za-z_][A-Za-z0-9_]*)\}")
_ANY_REF = re.compile(r"\$\{[^}]*\}")


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
    # set once load_recipe(check_inputs_exist=True) or check_inputs passed: a run does not validate again
    _inputs_checked: bool = PrivateAttr(default=False)


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


def _lookup(name: str, env: str | None, variables: dict[str, Any], key: str, problems: list) -> Any:
    """The value of ``${name}`` or ``${env:NAME}``; a problem (and the literal text) when it is unknown."""
    import os

    if env:
        if name in os.environ:
            return os.environ[name]
        problems.append((key, f"environment variable ${{env:{name}}} is not set"))
        return f"${{env:{name}}}"
    if name in variables:
        return variables[name]
    hint = " (environment variables are read only as ${env:NAME})" if name in os.environ else ""
    problems.append((key, f"unknown variable ${{{name}}}{hint}; defined: {sorted(variables)}"))
    return f"${{{name}}}"


def _substitute(value: Any, variables: dict[str, Any], key: str, problems: list) -> Any:
    """Replace ``${var}`` and ``${env:NAME}`` in every string of ``value``; unknown or malformed
    references are reported under their YAML ``key`` (a whole-string ``${var}`` keeps the var's type)."""
    if isinstance(value, dict):
        return {
            k: _substitute(v, variables, f"{key}.{k}" if key else str(k), problems) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, variables, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    for malformed in _ANY_REF.findall(value):
        if not _VAR.fullmatch(malformed):
            problems.append((key, f"malformed reference {malformed}: use ${{name}} or ${{env:NAME}}"))
    whole = _VAR.fullmatch(value)
    if whole:
        return _lookup(whole.group(2), whole.group(1), variables, key, problems)
    return _VAR.sub(lambda m: str(_lookup(m.group(2), m.group(1), variables, key, problems)), value)


def resolve_variables(variables: dict[str, Any], problems: list) -> dict[str, Any]:
    """Substitute variables that refer to other variables, in dependency order; a cycle
    (``a: ${b}``, ``b: ${a}``) or an unknown name is reported under ``vars.NAME``.

    Example:
        >>> resolve_variables({"out": "/tmp/x", "filtered": "${out}/filtered"}, [])["filtered"]
        '/tmp/x/filtered'
        >>> problems = []
        >>> _ = resolve_variables({"a": "${b}", "b": "${a}"}, problems)
        >>> problems[0]
        ('vars.a', 'cyclic variable reference: a -> b -> a')
    """
    resolved: dict[str, Any] = {}
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in resolved:
            return
        if name in visiting:
            cycle = " -> ".join(visiting[visiting.index(name) :] + [name])
            problems.append((f"vars.{visiting[visiting.index(name)]}", f"cyclic variable reference: {cycle}"))
            raise _Cycle
        visiting.append(name)
        for reference in _references(variables[name]):
            if reference in variables:
                visit(reference)
        visiting.pop()
        resolved[name] = _substitute(variables[name], resolved, f"vars.{name}", problems)

    for name in variables:
        try:
            visit(name)
        except _Cycle:
            return dict(variables)
    return resolved


class _Cycle(Exception):
    pass


def _references(value: Any) -> list[str]:
    """Names of the plain ``${var}`` references anywhere inside ``value``."""
    if isinstance(value, dict):
        return [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    if isinstance(value, str):
        return [m.group(2) for m in _VAR.finditer(value) if not m.group(1)]
    return []


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
            raise RecipeError([(f"--set {item!r}", "an override is KEY=VALUE")])
        try:
            parsed[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError as error:
            raise RecipeError([(f"--set {key.strip()}", f"the value is not valid YAML: {error}")]) from None
    return parsed


def _unknown_override(key: str, variables: dict[str, Any]) -> str:
    return (
        f"unknown variable {key!r}{did_you_mean(key, variables)} (variables: {sorted(variables)}; "
        "a recipe key is set with its path, e.g. stages.NAME.executor.tasks=8)"
    )


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


def _check_signature(
    target: Any, params: dict[str, Any], key: str, problems: list, model: Any = None
) -> None:
    """Unknown, missing or wrongly typed arguments for a step class or job function, by YAML key.

    ``model`` (a pydantic model, e.g. a job's registered config) overrides the one built from the
    signature; a target that takes ``**kwargs`` and has no model gets its named arguments checked only.
    """
    if "llm" in params and _takes_llm(target):
        _check_llm(params["llm"], f"{key}.llm", problems)  # an LLMConfig: each bad key is named
        params = {k: v for k, v in params.items() if k != "llm"}
    model = model or signature_model(target)
    if model is None:
        _check_named_arguments(target, params, key, problems)
        return
    try:
        model.model_validate(params)
    except ValidationError as error:
        accepted = sorted(f.alias or n for n, f in model.model_fields.items())
        for e in error.errors():
            where = f"{key}.{_key(e['loc'])}" if e["loc"] else key
            message = e["msg"]
            if e["type"] == "extra_forbidden":
                message = _unexpected(str(e["loc"][0]), accepted)
            elif e["type"] == "missing":
                message = "missing required argument"
            else:
                message = f"wrong type or value {e.get('input')!r}: {message}"
            problems.append((where, message))


def _unexpected(name: str, accepted: list[str]) -> str:
    return f"unexpected argument{did_you_mean(name, accepted)} (accepted: {accepted})"


def _check_named_arguments(target: Any, params: dict[str, Any], key: str, problems: list) -> None:
    """For a callable that takes ``**kwargs``: only its required named arguments can be checked."""
    function = target.__init__ if inspect.isclass(target) else target
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return
    for name, parameter in parameters.items():
        required = parameter.default is parameter.empty and parameter.kind in (
            parameter.POSITIONAL_OR_KEYWORD,
            parameter.KEYWORD_ONLY,
        )
        if required and name != "self" and name not in params:
            problems.append((f"{key}.{name}", "missing required argument"))


def _check_job(stage: JobStage, key: str, problems: list) -> None:
    try:
        function = resolve(stage.job, "jobs")
    except UnknownName as error:
        problems.append((f"{key}.job", str(error)))
        return
    _check_signature(function, stage.with_, f"{key}.with", problems, model=job_config(stage.job, function))


def _check_llm(value: Any, key: str, problems: list) -> None:
    """An `llm:` block is an LLMConfig: each bad key is named, e.g. ``stages[1].steps[0].with.llm.extra_bdy``."""
    from curate.llm.config import LLMConfig

    if value is None:
        return
    try:
        config = LLMConfig.coerce(value)
    except (ValidationError, TypeError) as error:
        if isinstance(error, TypeError):
            problems.append((key, str(error)))
            return
        for e in error.errors():
            problems.append((".".join([key, *(str(p) for p in e["loc"])]), e["msg"]))
        return
    if config.base_url == "local":  # the run would start a server: its extra must be there before any work
        from curate.extras import EXTRA_MODULES, MissingExtraError, missing_modules

        missing = missing_modules(EXTRA_MODULES["local-llm"])
        if missing:
            problems.append((f"{key}.base_url", str(MissingExtraError("a local LLM server", "local-llm", missing))))


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
            if stage.input.uses:  # a reader that calls an LLM (synth_generate)
                specs.append((stage.input.uses, "steps", stage.input.with_))
    for name, kind, with_ in specs:
        try:
            target = resolve(name, kind)
        except UnknownName:
            continue  # reported by _check_names
        if _takes_llm(target):
            own = with_.get("llm") if isinstance(with_.get("llm"), dict) else {}
            with_["llm"] = {**recipe.llm, **own}


def _check_reader(stage: PipelineStage, earlier: list, base: str, problems: list, inputs: bool) -> None:
    """The input reader's arguments, then the reader itself (built, nothing read): a reader without
    inputs (``python_source`` with neither ``paths`` nor ``preset``) fails here and, with ``inputs``, a
    local input path that does not exist and that no earlier stage writes."""
    try:
        target = resolve(stage.input.uses, "steps")
    except UnknownName as error:
        problems.append((f"{base}.input.uses", str(error)))
        return
    before = len(problems)
    _check_signature(target, stage.input.with_, f"{base}.input.with", problems)
    if len(problems) > before or not inspect.isclass(target):
        return
    try:
        reader = target(**stage.input.with_)
    except Exception as error:  # noqa: BLE001 - whatever the reader rejects, reported by key
        problems.append((f"{base}.input.with", f"{type(error).__name__}: {error}"))
        return
    local_inputs = getattr(reader, "local_inputs", None)
    for path in local_inputs() if inputs and callable(local_inputs) else []:
        _check_exists(path, earlier, f"{base}.input.with", problems)


def _check_exists(path: str, earlier: list, key: str, problems: list) -> None:
    """A local input must exist at validate time unless an earlier stage (or job) writes it."""
    if "://" in path or Path(path).expanduser().exists():
        return
    target = Path(path).expanduser().absolute()
    for stage in earlier:
        outputs = [stage.output] if isinstance(stage, PipelineStage) else _job_outputs(stage)
        if any(target == Path(o).absolute() or Path(o).absolute() in target.parents for o in outputs):
            return
    problems.append((key, f"input {path!r} does not exist (and no earlier stage writes it)"))


def _job_outputs(stage: JobStage) -> list[str]:
    outputs = [str(stage.with_[k]) for k in ("output_dir", "output_path") if stage.with_.get(k)]
    return outputs + [str(Path(o).parent) for o in outputs if "output_path" in stage.with_]


def _check_names(recipe: Recipe, problems: list, inputs: bool = False) -> None:
    seen: dict[str, int] = {}
    for i, stage in enumerate(recipe.stages):
        base = f"stages[{i}]"
        if stage.name in seen:
            problems.append((f"{base}.name", f"duplicate stage name {stage.name!r}"))
        if isinstance(stage, JobStage):
            _check_job(stage, base, problems)
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
                _check_reader(stage, recipe.stages[:i], base, problems, inputs)
            elif stage.input.path is not None and inputs:
                _check_exists(stage.input.path, recipe.stages[:i], f"{base}.input.path", problems)
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
    hint = did_you_mean(name, bundled, quote=False)
    raise RecipeError(
        [
            (
                "(file)",
                f"no recipe file {ref!r} and no bundled recipe {name!r}{hint} "
                f"(bundled: {', '.join(bundled)})",
            )
        ]
    )


def check_inputs(recipe: Recipe) -> Recipe:
    """Raise :class:`RecipeError` when a stage's local input does not exist and no earlier stage writes it
    (``textbooks validate`` and every run check this before any work; a template recipe such as
    ``phi1-filter`` loads without its data and fails here until its paths are set). A recipe that
    passed already (``load_recipe(..., check_inputs_exist=True)``) is not checked again.

    Example:
        >>> check_inputs(load_recipe("quickstart")).name
        'quickstart'
    """
    if recipe._inputs_checked:
        return recipe
    problems: list[tuple[str, str]] = []
    _check_names(recipe, problems, inputs=True)
    if problems:
        raise RecipeError(problems)
    recipe._inputs_checked = True
    return recipe


def load_recipe(
    ref: str | Path | dict,
    overrides: list[str] | dict[str, Any] | None = None,
    check_inputs_exist: bool = False,
) -> Recipe:
    """Load, substitute and validate a recipe (a path, a bundled name or a dict). Raises :class:`RecipeError`
    naming every bad key before any work is done (``check_inputs_exist``: also :func:`check_inputs`).

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
    if not isinstance(raw.get("vars") or {}, dict):
        raise RecipeError([("vars", "vars is a mapping of names to values")], source)
    variables = dict(raw.get("vars") or {})
    for key, value in parse_overrides(overrides).items():
        if "." in key:
            _set_path(raw, key, value, problems)
        elif key in variables:
            variables[key] = value
        else:
            problems.append((f"--set {key}", _unknown_override(key, variables)))
    variables = resolve_variables(variables, problems)
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
    _check_names(recipe, problems, inputs=check_inputs_exist)
    if problems:
        raise RecipeError(problems, source)
    recipe._inputs_checked = check_inputs_exist
    return recipe
