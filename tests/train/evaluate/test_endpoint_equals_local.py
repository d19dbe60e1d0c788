"""pass@k through a served endpoint equals local generation: an exported tiny model, served by the
same machinery as `textbooks serve` (``endpoint="local"``), gives the same greedy completions and the
same verdicts on the same problems as :class:`train.evaluate.generate.HFGenerator` on its directory."""

from __future__ import annotations

import json

import pytest
from train_testdata import make_token_dir

from curate.extras import EXTRA_MODULES, missing_modules
from curate.llm.serve import stop_local_servers
from train.evaluate.evaluation import evaluate
from train.evaluate.generate import HFGenerator
from train.export import export_model
from train.trainer import train

pytestmark = pytest.mark.skipif(
    bool(missing_modules(EXTRA_MODULES["local-llm"])),
    reason='the [local-llm] extra is not installed: pip install "textbooks[local-llm]"',
)
SETTINGS = dict(benchmark="humaneval", limit=4, max_new_tokens=24, temperature=0.0, k=[1], workers=1)


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    data = make_token_dir(root, n_files=10, vocab_size=600)
    train(tokens=data["tokens"], tokenizer=data["tokenizer"], output_dir=str(root / "run"), preset="tiny",
          vocab_size=600, seq_len=64, global_batch_size=4, micro_batch_size=4, max_steps=3, warmup_steps=1,
          mixed_precision="no", cpu=True, tensorboard=False)  # fmt: skip
    export_model(root / "run", root / "model", recipe="served-eval")
    return root / "model"


def _samples(summary: dict) -> list[dict]:
    with open(summary["files"]["samples"], encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_pass_at_k_through_the_endpoint_equals_local_generation(exported_model, tmp_path):
    local = evaluate(generator=HFGenerator(str(exported_model), batch_size=1, max_new_tokens=24, device="cpu"),
                     output_dir=str(tmp_path / "local"), **SETTINGS)  # fmt: skip
    try:
        served = evaluate(endpoint="local", endpoint_model=str(exported_model), endpoint_kind="completion",
                          cache_path=str(tmp_path / "cache.sqlite"), output_dir=str(tmp_path / "served"),
                          **SETTINGS)  # fmt: skip
    finally:
        assert stop_local_servers() == 1  # the run's server is stopped, not left behind
    pairs = list(zip(_samples(local), _samples(served), strict=True))
    assert len(pairs) == 4
    for mine, theirs in pairs:
        assert mine["task_id"] == theirs["task_id"]
        assert mine["completion"] == theirs["completion"], mine["task_id"]
        assert mine["passed"] == theirs["passed"] and theirs["gen_error"] in (None, "empty answer")
    assert served["pass_at_k"] == local["pass_at_k"]
    assert served["answers"]["requests"] == 4 and served["answers"]["failed"] + served["answers"]["parsed"] == 4
