"""Trainer plugs: our loop and transformers' Trainer train on the same datatrove shards to the same
validation loss; the chunked loss and an automatic micro batch change nothing but memory; a third
party's plug is found by its entry point; the ablation runs with the Trainer plug.

Tolerance: with dropout 0 (fp32, one thread) both plugs see the same windows in the same order with the
same init, optimizer and schedule; measured difference of the validation loss after 20 steps: 0.0
(bit-identical), so the test allows 1e-5. The chunked loss and micro batch 8 x 1 instead of 4 x 2 sum
in another order: allowed 1e-4 (measured ~1e-6). With the presets' dropout 0.1 the two plugs draw
different dropout masks: measured 4.4e-4 apart after 20 steps; that case is not asserted.
"""

import json
import textwrap

import pytest
from pydantic import ValidationError
from train_testdata import make_shards

from train.config import TrainConfig
from train.plugins import available_trainers, get_trainer
from train.shards import tokenize_shards
from train.tokenizer import train_tokenizer
from train.trainer import train

TINY = {
    "preset": "tiny", "vocab_size": 1024, "seq_len": 64, "mixed_precision": "no", "cpu": True,
    "tensorboard": False, "lr": 3e-3, "warmup_steps": 3, "decay": "cosine", "min_lr": 3e-4, "dropout": 0.0,
    "global_batch_size": 8, "micro_batch_size": 4, "max_steps": 20, "val_tokens": 4000, "eval_every": 10,
    "eval_windows": 16, "save_every": 10, "seed": 7, "log_every": 100,
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("plugs")
    shards = make_shards(root / "shards", n_files=24, n_shards=3)
    train_tokenizer(shards, root / "tok", vocab_size=1024)
    tokenize_shards(shards, root / "tok", root / "tokens", tasks=2)
    common = {"tokens": str(root / "tokens"), "tokenizer": str(root / "tok"), **TINY}
    summaries = {
        "ours": train(trainer="ours", output_dir=str(root / "ours"), **common),
        "hf": train(trainer="hf", output_dir=str(root / "hf"), **common),
        "chunked": train(
            trainer="ours",
            output_dir=str(root / "chunked"),
            loss="chunked",
            loss_chunk_tokens=100,
            auto_micro_batch=True,
            **{**common, "micro_batch_size": 8},
        ),  # fmt: skip
    }
    yield {"root": root, "common": common, "summaries": summaries}
    torch.set_num_threads(threads)


def _metrics(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_both_plugs_reach_the_same_validation_loss_on_the_same_shards(runs):
    root, s = runs["root"], runs["summaries"]
    assert s["ours"]["val_loss"] == pytest.approx(s["hf"]["val_loss"], abs=1e-5)
    assert s["ours"]["train_loss"] == pytest.approx(s["hf"]["train_loss"], abs=1e-5)
    ours, hf = _metrics(root / "ours"), _metrics(root / "hf")
    assert [m["step"] for m in ours] == [m["step"] for m in hf] == list(range(1, 21))
    for a, b in zip(ours, hf, strict=True):  # every step: same loss, same LR, same tokens
        assert (
            a["loss"] == pytest.approx(b["loss"], abs=1e-5)
            and a["lr"] == b["lr"]
            and a["tokens"] == b["tokens"]
        )
    assert [m["val_loss"] for m in hf if "val_loss" in m] == pytest.approx(
        [m["val_loss"] for m in ours if "val_loss" in m], abs=1e-5
    )
    assert ours[-1]["loss"] < ours[0]["loss"] - 0.5  # it learned something
    # the same contract's files: configs, final model, checkpoints listed by the plug
    for name in ("ours", "hf"):
        assert (root / name / "final" / "model.safetensors").is_file()
        assert (root / name / "model_config.json").is_file() and (root / name / "train_config.json").is_file()
        assert [step for step, _ in get_trainer(name).checkpoints(root / name)] == [10, 20]


def test_chunked_loss_and_auto_micro_batch_train_the_same_model(runs):
    root, s = runs["root"], runs["summaries"]
    assert s["chunked"]["grad_accum_steps"] == 1  # 8 sequences fit on CPU: one micro batch per step
    recorded = json.loads((root / "chunked" / "train_config.json").read_text())
    assert recorded["micro_batch_size"] == 8 and recorded["loss"] == "chunked"
    assert s["chunked"]["val_loss"] == pytest.approx(s["ours"]["val_loss"], abs=1e-4)
    for a, b in zip(_metrics(root / "chunked"), _metrics(root / "ours"), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)


def test_a_third_party_plug_is_found_by_its_entry_point(runs, tmp_path, monkeypatch):
    # a real installed distribution's metadata (dist-info on sys.path), as pip would leave it
    (tmp_path / "thirdparty_trainer.py").write_text(textwrap.dedent("""
        from train.plugins import OursTrainer

        class MarkedTrainer(OursTrainer):
            name = "marked"

            def train(self, cfg):
                summary = super().train(cfg)
                (__import__("pathlib").Path(cfg.output_dir) / "marked.txt").write_text(str(summary["steps"]))
                return summary
    """))  # fmt: skip
    dist = tmp_path / "thirdparty_trainer-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-trainer\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[textbooks.trainers]\nmarked = thirdparty_trainer:MarkedTrainer\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert available_trainers()["marked"] == "thirdparty_trainer:MarkedTrainer"
    out = tmp_path / "run"
    summary = train(
        trainer="marked", output_dir=str(out), **{**runs["common"], "max_steps": 2, "save_every": 2}
    )
    assert (out / "marked.txt").read_text() == "2" and summary["steps"] == 2
    with pytest.raises(ValidationError, match="trainer"):
        TrainConfig(tokens="t", output_dir="o", trainer="nosuch")


@pytest.mark.slow  # ~70 s on the 2-core VM: tokenizer, 3 token files, 3 runs, conditional-loss scoring
def test_the_ablation_runs_with_the_trainer_plug(tmp_path):
    from train_testdata import stdlib_files

    from train.ablate import AblationConfig, ablate

    texts = [(p.name, p.read_text(encoding="utf-8", errors="replace")) for p in stdlib_files(16)]
    everything = make_shards(tmp_path / "all", texts=texts)
    short = make_shards(tmp_path / "short", texts=sorted(texts, key=lambda t: len(t[1]))[:8])
    train_keys = {k: TINY[k] for k in ("preset", "seq_len", "mixed_precision", "cpu", "tensorboard", "lr")}
    result = ablate(AblationConfig(
        output_dir=str(tmp_path / "out"), variants={"all": str(everything), "short": str(short)},
        random_controls={"short": "all"}, seeds=[0], token_budget=8 * 64 * 3, vocab_size=512, eval_points=1,
        eval_limit=2, eval_max_len=64, benchmarks=["humaneval"], trainer="hf",
        train={**train_keys, "vocab_size": 512, "global_batch_size": 8, "micro_batch_size": 8, "warmup_steps": 1,
               "val_tokens": 2000, "eval_windows": 2},
    ))  # fmt: skip
    assert {(r["variant"], r["steps"]) for r in result["runs"]} == {
        ("all", 3),
        ("short", 3),
        ("random-short", 3),
    }
    assert all(r["final"]["humaneval_bpc"] > 0 and r["curve"][-1]["step"] == 3 for r in result["runs"])
    config = json.loads((tmp_path / "out/runs/all/seed_0/train_config.json").read_text())
    assert config["trainer"] == "hf"


def test_recipes_take_the_trainer_and_name_a_bad_one():
    from recipes.schema import RecipeError, load_recipe

    assert load_recipe("tiny-cpu", ["stages.train.with.trainer=hf"]).stages[2].with_["trainer"] == "hf"
    assert (
        load_recipe("ablate-phi1-small", ["stages.ablate.with.trainer=hf"]).stages[0].with_["trainer"] == "hf"
    )
    with pytest.raises(RecipeError) as info:
        load_recipe("tiny-cpu", ["stages.train.with.trainer=nosuch"])
    assert any(k == "stages[2].with.trainer" and "unknown trainer" in m for k, m in info.value.problems)
