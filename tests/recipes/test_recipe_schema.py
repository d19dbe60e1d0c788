"""Recipe validation catches every invalid recipe before any work, naming the YAML key or variable:
``--set`` of an unknown var, unknown or cyclic ``${...}``, environment only through ``${env:NAME}``,
every job's ``with:`` against a typed config, required inputs. Property tests on the loader: any
input gives a Recipe or a RecipeError (never another exception, never a hang)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from recipes.registry import job_config, registry, resolve
from recipes.schema import Recipe, RecipeError, check_inputs, load_recipe

_SCRIPT = Path(sys.executable).with_name("textbooks")
TEXTBOOKS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "recipes.cli"]


def small(tmp_path: Path, **vars_) -> dict:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "a.py").write_text("a = 1\n")
    return {
        "name": "small",
        "vars": {"out": str(tmp_path / "out"), "tasks": 1, **vars_},
        "stages": [
            {
                "name": "read",
                "input": {"uses": "python_source", "with": {"paths": [str(tmp_path / "src")]}},
                "output": "${out}/read",
                "executor": {"tasks": "${tasks}"},
            }
        ],
    }


def problems_of(recipe, overrides=None, inputs=False) -> list[tuple[str, str]]:
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe, overrides, check_inputs_exist=inputs)
    return info.value.problems


def test_set_of_an_unknown_variable_is_rejected_with_a_suggestion(tmp_path):
    [(key, message)] = problems_of(small(tmp_path), ["taks=8"])
    assert key == "--set taks" and "'tasks'" in message
    assert load_recipe(small(tmp_path), ["tasks=3"]).stages[0].executor.tasks == 3


def test_every_did_you_mean_keeps_its_wording(tmp_path):
    """Unknown variables, arguments, steps and recipes share one "did you mean" (recipes.registry)."""
    [(_, message)] = problems_of(small(tmp_path), ["taks=8"])
    assert message.startswith("unknown variable 'taks'; did you mean 'tasks'? (variables: ['out', 'tasks'];")
    recipe = small(tmp_path)
    recipe["stages"][0]["input"]["with"]["pathz"] = ["x"]
    [(key, message)] = problems_of(recipe)
    assert key == "stages[0].input.with.pathz"
    assert message.startswith("unexpected argument; did you mean 'paths'? (accepted: [")
    recipe = small(tmp_path)
    recipe["stages"][0]["input"]["uses"] = "python_sourse"
    [(key, message)] = problems_of(recipe)
    assert key == "stages[0].input.uses" and message.startswith(
        "unknown step 'python_sourse'; did you mean 'python_source'"
    )
    [(key, message)] = problems_of("quikstart")
    assert (
        key == "(file)"
        and "no bundled recipe 'quikstart'; did you mean quickstart, quickstart-llm, ablate-quickstart? (bundled: " in message
    )
    [(_, message)] = problems_of(small(tmp_path), ["zzzzzz=1"])
    assert "did you mean" not in message


def test_set_of_an_unknown_key_names_it(tmp_path):
    problems = problems_of(small(tmp_path), ["stages.read.executor.taks=8"])
    assert ("stages[0].executor.taks", "Extra inputs are not permitted") in problems
    assert problems_of(small(tmp_path), ["stages.nope.output=x"])[0][0] == "stages.nope.output"


def test_cyclic_and_unknown_variables(tmp_path):
    problems = problems_of(small(tmp_path, a="${b}", b="${a}"))
    assert any(k in ("vars.a", "vars.b") and "cyclic" in m for k, m in problems), problems
    recipe = small(tmp_path, c="${c}/x")
    assert any(k == "vars.c" and "cyclic" in m for k, m in problems_of(recipe))
    recipe = small(tmp_path)
    recipe["stages"][0]["output"] = "${nowhere}/read"
    assert problems_of(recipe) == [("stages[0].output", problems_of(recipe)[0][1])]
    assert "unknown variable ${nowhere}" in problems_of(recipe)[0][1]


def test_environment_only_through_env_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTBOOKS_TEST_DIR", str(tmp_path / "env"))
    recipe = small(tmp_path)
    recipe["stages"][0]["output"] = "${TEXTBOOKS_TEST_DIR}/read"
    [(key, message)] = problems_of(recipe)
    assert key == "stages[0].output" and "${env:NAME}" in message
    recipe["stages"][0]["output"] = "${env:TEXTBOOKS_TEST_DIR}/read"
    assert load_recipe(recipe).stages[0].output == f"{tmp_path}/env/read"
    recipe["stages"][0]["output"] = "${env:TEXTBOOKS_SURELY_UNSET_VAR}/read"
    assert "is not set" in problems_of(recipe)[0][1]
    recipe["stages"][0]["output"] = "${env:}/read"
    assert "malformed" in problems_of(recipe)[0][1]


@pytest.mark.parametrize(
    "recipe_name, override, key, words",
    [
        ("tiny-cpu", "stages.train.with.preset=phi-2", "stages[2].with.preset", "unknown model preset"),
        ("tiny-cpu", "stages.train.with.fold=3", "stages[2].with.fold", "unexpected argument"),
        ("quickstart", "stages.train.with.kind=random_forrest", "stages[3].with.kind", "random_forest"),
        ("quickstart", "stages.train.with.fold=3", "stages[3].with.fold", "folds"),
        ("quickstart", "stages.train.with.n_estimators=many", "stages[3].with.n_estimators", "integer"),
        ("quickstart", "stages.filter.input.with={}", "stages[0].input.with", "paths"),
        (
            "quickstart",
            "stages.dedup.input={path: /nonexistent/shards}",
            "stages[1].input.path",
            "does not exist",
        ),
    ],
)
def test_cli_validate_rejects_each_invalid_recipe_naming_the_key(recipe_name, override, key, words):
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe_name, [override], check_inputs_exist=True)
    assert any(k == key and words in m for k, m in info.value.problems), info.value.problems
    result = subprocess.run(
        [*TEXTBOOKS, "validate", recipe_name, "--set", override], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and key in result.stderr.replace("\n", "")


def test_every_registered_job_has_a_typed_config():
    for name in registry("jobs"):
        model = job_config(name, resolve(name, "jobs"))
        assert model is not None, f"job {name!r} takes **kwargs and registers no JOB_CONFIGS model"
        assert model.model_config.get("extra") == "forbid", name


def test_missing_input_fails_before_an_earlier_stage_writes_anything(tmp_path):
    recipe = small(tmp_path)
    recipe["stages"].append(
        {"name": "later", "input": {"path": str(tmp_path / "missing")}, "output": "${out}/later"}
    )
    loaded = load_recipe(recipe)  # structure is fine ...
    with pytest.raises(RecipeError) as info:
        check_inputs(loaded)  # ... but the input is missing: found before any stage runs
    assert info.value.problems[0][0] == "stages[1].input.path"
    from recipes.engine import run_recipe

    with pytest.raises(RecipeError):
        run_recipe(recipe)
    assert not (tmp_path / "out").exists()
    recipe["stages"][1]["input"] = {"path": "${out}/read"}  # written by the earlier stage: fine
    check_inputs(load_recipe(recipe))


def test_a_run_validates_its_recipe_once_and_a_bad_key_still_stops_it_first(tmp_path, monkeypatch):
    """`textbooks run` and run_recipe check the recipe (names, arguments, readers, inputs) one time."""
    import recipes.schema as schema
    from recipes.cli import app
    from recipes.engine import run_recipe

    checks: list[bool] = []
    real_check = schema._check_names
    monkeypatch.setattr(
        schema,
        "_check_names",
        lambda recipe, problems, inputs=False: checks.append(inputs) or real_check(recipe, problems, inputs),
    )
    run_recipe(small(tmp_path))
    assert checks == [True] and (tmp_path / "out" / "read" / "manifest.json").is_file()
    checks.clear()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(small(tmp_path, out=str(tmp_path / "cli"))))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "small.yaml"), "--verbose", "--quiet"])
    assert result.exit_code == 0, result.output
    assert checks == [True] and (tmp_path / "cli" / "read" / "manifest.json").is_file()
    bad = small(tmp_path, out=str(tmp_path / "bad"))
    bad["stages"][0]["steps"] = [{"uses": "python_syntax", "with": {"nonsense": 1}}]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "bad.yaml"), "--verbose"])
    assert result.exit_code == 2 and "stages[0].steps[0].with.nonsense" in result.output.replace("\n", "")
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------------------------------------ properties

YAML_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
YAML_VALUES = st.recursive(
    YAML_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
STAGE_KEYS = st.sampled_from(["name", "input", "steps", "output", "executor", "job", "with", "uses", "from"])


def load_within_timeout(recipe, overrides=None):
    outcome = []

    def work():
        try:
            outcome.append(load_recipe(recipe, overrides))
        except RecipeError as error:
            outcome.append(error)
        except BaseException as error:  # noqa: BLE001 - any other exception is the failure under test
            outcome.append(("crash", error))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(30)
    assert outcome, "load_recipe hung"
    assert not isinstance(outcome[0], tuple), f"load_recipe crashed: {outcome[0][1]!r}"
    return outcome[0]


@settings(max_examples=30, deadline=None)
@given(
    name=YAML_VALUES,
    vars_=st.dictionaries(st.text(max_size=6), YAML_VALUES, max_size=4) | YAML_VALUES,
    stages=st.lists(st.dictionaries(STAGE_KEYS, YAML_VALUES, max_size=6), max_size=3),
    overrides=st.lists(st.text(max_size=15), max_size=3),
)
def test_any_recipe_is_loaded_or_rejected_with_keys(name, vars_, stages, overrides):
    outcome = load_within_timeout({"name": name, "vars": vars_, "stages": stages}, overrides)
    if isinstance(outcome, RecipeError):
        assert outcome.problems and all(isinstance(k, str) and k for k, _ in outcome.problems)
    else:
        assert isinstance(outcome, Recipe)


@settings(max_examples=30, deadline=None)
@given(
    graph=st.dictionaries(
        st.sampled_from("abcde"), st.lists(st.sampled_from("abcdef"), max_size=3), min_size=1, max_size=5
    )
)
def test_variable_references_resolve_or_name_the_cycle_or_unknown(tmp_path_factory, graph):
    variables = {name: "/".join("${" + ref + "}" for ref in refs) or "leaf" for name, refs in graph.items()}
    recipe = small(tmp_path_factory.mktemp("vars"), **variables)
    outcome = load_within_timeout(recipe)

    def cyclic(node, path=()):
        return node in path or any(cyclic(r, (*path, node)) for r in graph.get(node, []) if r in graph)

    broken = any(cyclic(n) for n in graph) or any(r not in graph for refs in graph.values() for r in refs)
    assert isinstance(outcome, RecipeError) == broken
    if broken:
        assert all(k.startswith("vars.") for k, _ in outcome.problems), outcome.problems
    else:
        assert all("${" not in str(v) for v in outcome.vars.values())


def test_yaml_file_with_env_reference_validates_through_the_cli(tmp_path):
    path = tmp_path / "r.yaml"
    recipe = small(tmp_path)
    recipe["stages"][0]["output"] = "${env:TEXTBOOKS_OUT10}/read"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "TEXTBOOKS_OUT10": str(tmp_path / "o")}
    ok = subprocess.run(
        [*TEXTBOOKS, "validate", str(path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    env.pop("TEXTBOOKS_OUT10")
    bad = subprocess.run(
        [*TEXTBOOKS, "validate", str(path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert bad.returncode == 2 and "stages[0].output" in bad.stderr
