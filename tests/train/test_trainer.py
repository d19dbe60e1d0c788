"""The trainer end to end on CPU: the loss falls, export loads and generates, accumulation does not
change the loss, and bad inputs stop it before the first step."""

import json
import shutil

import pytest
from train_testdata import make_shards

from train.export import export_model
from train.prepare import TokenFileError, prepare_tokens
from train.tokenizer import train_tokenizer
from train.trainer import lr_at, train

TINY = {
    "preset": "tiny",
    "vocab_size": 1024,
    "seq_len": 64,
    "mixed_precision": "no",
    "cpu": True,
    "tensorboard": False,
    "lr": 3e-3,
    "warmup_steps": 4,
    "decay": "cosine",
    "min_lr": 3e-4,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one thread is faster and deterministic
    root = tmp_path_factory.mktemp("loop")
    shards = make_shards(root / "shards", n_files=30)
    train_tokenizer(shards, root / "tok", vocab_size=1024)
    prepare_tokens(shards, root / "tok", root / "tokens", workers=1)
    yield {"root": root, "shards": shards, "tok": str(root / "tok"), "tokens": str(root / "tokens")}
    torch.set_num_threads(threads)


def test_tiny_trains_loss_falls_and_export_generates(data):
    out = data["root"] / "run"
    summary = train(
        tokens=data["tokens"], tokenizer=data["tok"], output_dir=str(out), global_batch_size=8, micro_batch_size=4,
        max_steps=40, val_tokens=4000, eval_every=20, eval_windows=8, save_every=20, **TINY,
    )  # fmt: skip
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics]
    assert len(losses) == 40 and summary["steps"] == 40 and summary["grad_accum_steps"] == 2
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0  # from ~ln(1024)=6.9 down
    val = [m["val_loss"] for m in metrics if "val_loss" in m]
    assert len(val) == 2 and val[1] < val[0]
    # the LR applied at each step is the configured schedule's; tokens are step x global batch x T
    for m in metrics:
        assert m["lr"] == pytest.approx(
            lr_at(m["step"] - 1, lr=3e-3, warmup_steps=4, max_steps=40, min_lr=3e-4, decay="cosine")
        )
        assert m["tokens"] == m["step"] * 8 * 64
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000020", "step_00000040"]

    from transformers import AutoModelForCausalLM, AutoTokenizer

    exported = export_model(out, data["root"] / "model", recipe="tiny-cpu")
    model = AutoModelForCausalLM.from_pretrained(str(data["root"] / "model"), local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(data["root"] / "model"), local_files_only=True)
    assert type(model).__name__ == "PhiForCausalLM" and exported["architectures"] == ["PhiForCausalLM"]
    ids = tok("import os\ndef ", return_tensors="pt")
    generated = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id)
    assert generated.shape[1] > ids["input_ids"].shape[1]
    card = (data["root"] / "model" / "README.md").read_text()
    from huggingface_hub import ModelCard

    card_data = ModelCard.load(data["root"] / "model" / "README.md").data
    assert card_data.library_name == "transformers" and card_data.pipeline_tag == "text-generation"
    assert card_data.license and card_data.textbooks["recipe"] == "tiny-cpu"
    assert (
        "tiny-cpu" in card
        and "000_00000.parquet" in card
        and json.loads((out / "data.json").read_text())["xxh3_64"] in card
    )

    # a finished run resumes at its end and does nothing more
    again = train(
        tokens=data["tokens"], tokenizer=data["tok"], output_dir=str(out), global_batch_size=8, micro_batch_size=4,
        max_steps=40, val_tokens=4000, eval_every=20, eval_windows=8, save_every=20, **TINY,
    )  # fmt: skip
    assert again["resumed_from"].endswith("step_00000040") and again["steps"] == 40


def test_accumulation_and_micro_batch_do_not_change_the_loss(data):
    runs = []
    for micro in (8, 2):
        out = data["root"] / f"acc{micro}"
        train(
            tokens=data["tokens"], output_dir=str(out), global_batch_size=8, micro_batch_size=micro, max_steps=5,
            dropout=0.0, save_every=100, resume=False, **TINY,
        )  # fmt: skip
        runs.append([json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()])
    assert runs[0] == pytest.approx(runs[1], abs=1e-5)


def test_vocab_and_tokenizer_mismatch_fail_before_training(data):
    out = data["root"] / "mismatch"
    small_vocab = {**TINY, "vocab_size": 512}
    with pytest.raises(TokenFileError, match="vocabulary mismatch"):
        train(
            tokens=data["tokens"],
            output_dir=str(out),
            global_batch_size=8,
            micro_batch_size=4,
            max_steps=2,
            **small_vocab,
        )
    other = train_tokenizer(data["shards"], data["root"] / "tok-other", vocab_size=900)
    with pytest.raises(TokenFileError, match="tokenizer mismatch"):
        train(
            tokens=data["tokens"], tokenizer=other["output_dir"], output_dir=str(out), global_batch_size=8,
            micro_batch_size=4, max_steps=2, **TINY,
        )  # fmt: skip
    with pytest.raises(ValueError, match="not divisible"):
        train(
            tokens=data["tokens"],
            output_dir=str(out),
            global_batch_size=10,
            micro_batch_size=4,
            max_steps=2,
            **TINY,
        )
    with pytest.raises(TokenFileError, match="loss mask"):
        train(
            tokens=data["tokens"], output_dir=str(out), global_batch_size=8, micro_batch_size=4, max_steps=2,
            solution_only_loss=True, **TINY,
        )  # fmt: skip
    assert not (out / "checkpoints").exists() and not (out / "metrics.jsonl").exists()


def test_corrupt_or_empty_token_file_fails_before_training(data):
    bad = data["root"] / "bad-tokens"
    shutil.copytree(data["tokens"], bad)
    (bad / "tokens.bin").write_bytes(b"")
    out = data["root"] / "bad-run"
    with pytest.raises(TokenFileError, match="empty"):
        train(
            tokens=str(bad), output_dir=str(out), global_batch_size=8, micro_batch_size=4, max_steps=2, **TINY
        )
    assert not out.exists()


def test_finetune_from_a_model_with_solution_only_loss(data, tmp_path):
    from transformers import PhiForCausalLM

    from train.presets import phi_config

    base = tmp_path / "base"
    PhiForCausalLM(phi_config("tiny", vocab_size=1024)).save_pretrained(str(base))
    exercises = [
        (f"ex{i}", f'def f{i}(x):\n    """Return x plus {i}."""\n    return x + {i}\n' * 3) for i in range(40)
    ]
    shards = make_shards(tmp_path / "ex", texts=exercises, n_shards=1)
    prepare_tokens(shards, data["tok"], tmp_path / "ft-tokens", workers=1, solution_marker="docstring")
    losses = {}
    for solution_only in (False, True):
        out = tmp_path / f"ft-{solution_only}"
        summary = train(
            tokens=str(tmp_path / "ft-tokens"), tokenizer=data["tok"], init_from=str(base), output_dir=str(out),
            global_batch_size=4, micro_batch_size=2, max_steps=3, solution_only_loss=solution_only, dropout=0.0,
            **{k: v for k, v in TINY.items() if k not in ("preset", "vocab_size")},
        )  # fmt: skip
        assert summary["steps"] == 3
        losses[solution_only] = [
            json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
        ]
    # same model, same windows: masking the prompt tokens changes which tokens the loss averages
    assert losses[True][0] != pytest.approx(losses[False][0], abs=1e-4)
