"""`textbooks run --dry-run`: the free stages run, the LLM stage is estimated and sends nothing."""

import sysconfig
from pathlib import Path

from recipes.engine import run_recipe

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def test_dry_run_estimates_llm_stage_and_sends_nothing(tmp_path, openai_server):
    server = openai_server(responder=lambda body: "high")
    recipe = {
        "name": "label",
        "stages": [
            {
                "name": "read",
                "input": {"uses": "python_source", "with": {"paths": [str(STDLIB / "json")]}},
                "steps": [{"uses": "python_syntax"}],
                "output": str(tmp_path / "read"),
            },
            {
                "name": "label",
                "input": {"from": "read"},
                "steps": [
                    {
                        "uses": "llm_quality_labeler",
                        "with": {
                            "llm": {"base_url": server.base_url, "cache_path": str(tmp_path / "cache.sqlite")}
                        },
                    }
                ],
                "output": str(tmp_path / "labeled"),
            },
            {"name": "after", "input": {"from": "label"}, "output": str(tmp_path / "after")},
        ],
    }
    result = run_recipe(recipe, dry_run=True)
    assert result.stage("read").manifest["rows"] == len(list((STDLIB / "json").glob("*.py")))
    estimate = result.stage("label").summary["estimates"]["LLMQualityLabeler"]
    assert estimate["requests"] == result.stage("read").manifest["rows"] and estimate["prompt_tokens"] > 0
    assert estimate["batch_files"] and all(Path(p).stat().st_size > 0 for p in estimate["batch_files"])
    assert result.stage("after").kind == "skipped"
    assert server.request_count == 0  # nothing was paid for
    assert not (tmp_path / "labeled" / "data").exists()
