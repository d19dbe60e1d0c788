"""The recipe `llm:` block: validated by key before any work, handed to every LLM step, extra_body sent."""

import sysconfig
from pathlib import Path

import pytest

from recipes.engine import run_recipe
from recipes.schema import RecipeError, load_recipe

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def label_recipe(tmp_path, llm, step_llm=None):
    with_ = {"llm": step_llm} if step_llm is not None else {}
    return {
        "name": "label",
        "llm": llm,
        "stages": [
            {
                "name": "label",
                "input": {"uses": "python_source", "with": {"paths": [str(STDLIB / "json")]}},
                "steps": [{"uses": "llm_quality_labeler", "with": with_}],
                "output": str(tmp_path / "labeled"),
            }
        ],
    }


def test_bad_llm_keys_are_named_before_any_work(tmp_path):
    with pytest.raises(RecipeError) as err:
        load_recipe(label_recipe(tmp_path, {"model": "m", "extra_bdy": {"top_k": 20}, "timeout_s": -1}))
    keys = [k for k, _ in err.value.problems]
    assert "llm.extra_bdy" in keys and "llm.timeout_s" in keys
    with pytest.raises(RecipeError) as err:
        load_recipe(label_recipe(tmp_path, {"model": "m"}, step_llm={"max_concurency": 4}))
    assert [k for k, _ in err.value.problems] == ["stages[0].steps[0].with.llm.max_concurency"]
    assert not (tmp_path / "labeled").exists()


def test_labeler_recipe_sends_extra_body(tmp_path, openai_server):
    server = openai_server(responder=lambda body: "Not high.")
    llm = {"model": "m", "base_url": server.base_url, "extra_body": {"top_k": 20}, "budget_usd": 1.0}
    recipe = label_recipe(tmp_path, llm, step_llm={"cache_path": str(tmp_path / "cache.sqlite")})
    loaded = load_recipe(recipe)
    assert loaded.stages[0].steps[0].with_["llm"]["extra_body"] == {"top_k": 20}  # the step's keys merged in
    run_recipe(recipe)
    assert server.received and all(body["top_k"] == 20 for body in server.received)
    assert (tmp_path / "cache.sqlite").exists()
    import pyarrow.dataset as ds

    rows = ds.dataset(tmp_path / "labeled" / "data", format="parquet").to_table().to_pylist()
    assert rows and all(r["quality_label"] == "low" for r in rows)
