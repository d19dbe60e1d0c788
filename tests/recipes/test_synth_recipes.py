"""The bundled phi1-textbooks / phi1-exercises recipes: validate, dry run, and a real run through the
`textbooks` CLI against the OpenAI-protocol test server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from recipes.schema import load_recipe
from synth.generate import make_prompts

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from recipes.cli import app; app()"]


@pytest.mark.parametrize("name", ["phi1-textbooks", "phi1-exercises"])
def test_recipes_validate_with_overrides(name):
    recipe = load_recipe(name, ["n=7", "budget_usd=1.5", "endpoint=http://localhost:8000/v1"])
    gen = recipe.stages[0].with_
    assert (
        gen["n"] == 7
        and gen["llm"]["budget_usd"] == 1.5
        and gen["llm"]["base_url"] == "http://localhost:8000/v1"
    )
    assert recipe.stages[1].job == "synth_diversity_report"


def test_dry_run_recipe_through_the_cli(tmp_path):
    out = tmp_path / "tb"
    res = subprocess.run(
        CLI + ["run", "phi1-textbooks", "--set", "dry_run=true", "--set", "n=9", "--set", f"out={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert len((out / "textbooks" / "prompts.jsonl").read_text().splitlines()) == 9
    assert (
        json.loads((out / "textbooks" / "cost_estimate.json").read_text())["cost_estimate"]["requests"] == 9
    )


def test_exercise_recipe_against_the_test_server(openai_server, tmp_path):
    prompts = make_prompts("exercises", 6, seed=0)
    by_name = {p.constraints["function_name"]: p for p in prompts}

    def responder(body):
        import re

        name = re.search(r"named `(\w+)`", body["messages"][-1]["content"]).group(1)
        k = by_name[name].index
        return (
            f'### Solution\n```python\ndef {name}(n: int) -> int:\n    """Return n times {k + 2}."""\n'
            f"    return n * {k + 2}\n```\n### Tests\n```python\nassert {name}(3) == {3 * (k + 2)}\n```\n"
        )

    srv = openai_server(responder=responder)
    out = tmp_path / "ex"
    env = {**os.environ, "SYNTH_RECIPE_KEY": "sk-test"}
    res = subprocess.run(
        CLI
        + [
            "run",
            "phi1-exercises",
            "--set",
            "n=6",
            "--set",
            f"out={out}",
            "--set",
            f"endpoint={srv.base_url}",
            "--set",
            "api_key_env=SYNTH_RECIPE_KEY",
            "--set",
            "diversity_embed=false",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    rows = ds.dataset(str(out / "exercises" / "data"), format="parquet").to_table().to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(p.id for p in prompts)
    report = json.loads((out / "exercises" / "diversity" / "diversity.json").read_text())
    assert report["rows"] == 6 and report["function_names"]["distinct"] == 6
