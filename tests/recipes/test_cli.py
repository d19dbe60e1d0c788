"""CLI conventions: --version, validated choices, --json on stdout, errors on the terminal with the log path,
`textbooks list` as clean one-sentence summaries, and a missing extra named before any work."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recipes import cli

_SCRIPT = Path(sys.executable).with_name("textbooks")
TEXTBOOKS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "recipes.cli"]


def textbooks(*args, cwd, env=None):
    return subprocess.run([*TEXTBOOKS, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_version(tmp_path):
    from curate.manifest import toolkit_version

    result = textbooks("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"textbooks {toolkit_version()}"


@pytest.mark.parametrize(
    ("args", "option", "valid"),
    [
        (
            ["report", "decontam", "x", "--rule", "embeddings"],
            "--rule",
            ["ast", "embedding", "either", "both"],
        ),
        (["eval", "humaneval", "--endpoint-kind", "json"], "--endpoint-kind", ["completion", "chat"]),
        (["eval", "mbpp", "--prompt-format", "3shot"], "--prompt-format", ["mbpp-docstring", "mbpp-3shot"]),
        (["train-classifier", "d", "-o", "m", "--kind", "svm"], "--kind", ["random_forest", "lightgbm"]),
    ],
)
def test_invalid_choice_is_rejected_with_the_valid_ones_listed(args, option, valid):
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 2
    message = " ".join(result.output.replace("│", " ").split())
    assert f"Invalid value for '{option}'" in message
    assert all(f"'{choice}'" in message for choice in valid), message


def test_choices_match_the_library():
    from curate.classifier import KINDS
    from decontam.prune import RULES
    from train.evaluate.tasks import PROMPT_FORMATS

    assert [c.value for c in cli.ClassifierKind] == list(KINDS)
    assert [c.value for c in cli.DecontamRule] == list(RULES)
    assert [c.value for c in cli.PromptFormat] == list(PROMPT_FORMATS)


def test_a_failed_run_prints_its_error_and_the_log_path(tmp_path):
    (tmp_path / "boom_step.py").write_text(
        textwrap.dedent(
            '''
            from datatrove.pipeline.base import PipelineStep

            class Boom(PipelineStep):
                """Fails on its first document."""
                def run(self, data, rank=0, world_size=1):
                    for document in data:
                        raise RuntimeError("boom: the worker's own error text")
                        yield document
            '''
        )
    )
    (tmp_path / "fails.yaml").write_text(
        textwrap.dedent(
            f"""
            name: fails
            stages:
              - name: explode
                input: {{uses: python_source, with: {{paths: ["{tmp_path}"], include: ["boom_step.py"]}}}}
                steps: [{{uses: "boom_step:Boom"}}]
                output: {tmp_path}/out
                executor: {{type: local, tasks: 1, workers: 1}}
            """
        )
    )
    env = {**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{Path(cli.__file__).parents[1]}"}
    result = textbooks("run", "fails.yaml", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "error: run failed" in result.stderr
    assert "boom: the worker's own error text" in result.stderr  # the cause, not only "see the log"
    assert "full log: .textbooks-logs/fails.log" in result.stderr
    log = (tmp_path / ".textbooks-logs" / "fails.log").read_text()
    assert "Traceback" in log and "boom: the worker's own error text" in log


def test_every_command_reports_errors_the_same_way(tmp_path):
    result = textbooks("train", "no-such-config.yaml", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert (
        "error: FileNotFoundError" in result.stderr and "full log: .textbooks-logs/train.log" in result.stderr
    )
    assert "Traceback" in (tmp_path / ".textbooks-logs" / "train.log").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nstages:\n  - name: a\n    job: decontam_audt\n")
    result = textbooks("validate", str(bad), cwd=tmp_path)
    assert result.returncode == 2 and "stages[0].job: unknown job 'decontam_audt'" in result.stderr


def test_json_is_one_document_on_stdout(tmp_path):
    result = textbooks("validate", "quickstart", "--json", cwd=tmp_path)
    assert result.returncode == 0
    assert json.loads(result.stdout)["stages"][0] == "filter"
    listing = json.loads(textbooks("list", "--json", cwd=tmp_path).stdout)
    assert {"recipes", "steps", "jobs"} <= set(listing)
    assert "curate-core" in {r["name"] for r in listing["recipes"]}


def test_list_shows_one_clean_sentence_per_entry(tmp_path):
    listing = json.loads(textbooks("list", "--json", cwd=tmp_path).stdout)
    for kind in ("recipes", "steps", "jobs"):
        for entry in listing[kind]:
            summary = entry["summary"]
            assert summary and "\n" not in summary, entry
            assert "``" not in summary and ":class:" not in summary and ":func:" not in summary, entry
            assert summary.endswith((".", ")", "!", "?")), entry  # a whole sentence, not cut mid-way


def test_a_missing_extra_is_named_before_any_work(monkeypatch, tmp_path):
    from curate import extras

    monkeypatch.setitem(extras.EXTRA_MODULES, "embed", ("no_such_module_for_the_test",))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.app, ["run", "quickstart", "--set", f"out={tmp_path}/out"])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "step 'classifier_filter' needs the 'embed' extra" in message  # named under its YAML key
    assert 'pip install "textbooks[embed]"' in message
    assert not (tmp_path / "out").exists()  # nothing ran
