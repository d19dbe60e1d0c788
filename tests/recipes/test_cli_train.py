"""`textbooks train CONFIG key=value ...` through the real console script."""

import json
import subprocess
import sys
from pathlib import Path

import yaml
from train_testdata import make_shards

from train.prepare import prepare_tokens
from train.tokenizer import train_tokenizer


def test_textbooks_train_cli_runs_a_config_with_overrides(tmp_path):
    shards = make_shards(tmp_path / "shards", n_files=12)
    train_tokenizer(str(shards), str(tmp_path / "tok"), vocab_size=600)
    tokenizer = str(tmp_path / "tok")
    prepare_tokens(str(shards), tokenizer, str(tmp_path / "tokens"), workers=1)
    config = {
        "tokens": str(tmp_path / "tokens"),
        "tokenizer": tokenizer,
        "preset": "tiny",
        "seq_len": 64,
        "global_batch_size": 4,
        "micro_batch_size": 2,
        "max_steps": 50,
        "warmup_steps": 1,
        "lr": 3e-3,
        "mixed_precision": "no",
        "cpu": True,
        "output_dir": str(tmp_path / "run"),
        "tensorboard": False,
        "save_every": 1000,
        "eval_every": 1000,
        "eval_windows": 0,
        "vocab_size": 600,
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    script = Path(sys.executable).with_name("textbooks")
    out = subprocess.run(
        [str(script), "train", str(tmp_path / "run.yaml"), "max_steps=3"],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(out.stdout[out.stdout.index("{") :])
    assert summary["steps"] == 3  # the override beat the file's 50
