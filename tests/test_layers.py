"""The architecture rules of DESIGN.md, checked on the source: layers import downward only, and
importing the layers (and listing their steps) loads no heavy library."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "curate": {"synth", "decontam", "train", "recipes"},
    "synth": {"decontam", "train", "recipes"},
    "decontam": {"synth", "train", "recipes"},
    "train": {"synth", "recipes"},
}
HEAVY = (
    "torch",
    "transformers",
    "sentence_transformers",
    "openai",
    "ray",
    "sklearn",
    "lightgbm",
    "accelerate",
    "matplotlib",
    "datasets",
)


def imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_downward_only(layer):
    violations = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        upward = imported_top_levels(path) & FORBIDDEN[layer]
        if upward:
            violations.append(f"{path.relative_to(ROOT)} imports {sorted(upward)}")
    assert not violations, "\n".join(violations)


def test_importing_layers_and_listing_steps_loads_nothing_heavy():
    script = (
        "import sys, curate, synth, decontam, train\n"
        "from recipes.registry import registry\n"
        "registry('steps'); registry('jobs')\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_registered_step_and_job_resolves_and_is_documented():
    from recipes.registry import registry, resolve, summary_line

    for kind in ("steps", "jobs"):
        for name in registry(kind):
            target = resolve(name, kind)
            assert summary_line(target), f"{kind[:-1]} {name!r} has no docstring"


def test_every_bundled_recipe_validates():
    from recipes.schema import bundled_recipes, load_recipe

    bundled = bundled_recipes()
    assert "quickstart" in bundled
    for name in bundled:
        recipe = load_recipe(name)
        assert recipe.stages, name
