"""World size: 2 real DDP processes (torchrun, gloo on CPU) give the same losses as 1 process with the
same global batch - the effective batch and the token-mean loss do not depend on the world size."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from train_testdata import make_shards

from train.prepare import prepare_tokens
from train.tokenizer import train_tokenizer

REPO = Path(__file__).resolve().parents[2]


def _run(cfg: dict, nproc: int, tmp: Path) -> list[dict]:
    path = tmp / f"cfg{nproc}.json"
    path.write_text(json.dumps(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if nproc == 1:
        cmd = [sys.executable, "-m", "train.trainer", str(path)]
    else:
        cmd = [torchrun, "--standalone", f"--nproc_per_node={nproc}", "-m", "train.trainer", str(path)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{\n") :])
    assert summary["world_size"] == nproc
    return [json.loads(line) for line in (Path(cfg["output_dir"]) / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one(tmp_path):
    if not (shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")):
        pytest.skip("torchrun not found")
    shards = make_shards(tmp_path / "shards", n_files=16)
    train_tokenizer(shards, tmp_path / "tok", vocab_size=1024)
    prepare_tokens(shards, tmp_path / "tok", tmp_path / "tokens", workers=1)
    base = {
        "tokens": str(tmp_path / "tokens"), "preset": "tiny", "vocab_size": 1024, "seq_len": 64,
        "global_batch_size": 8, "max_steps": 4, "lr": 3e-3, "warmup_steps": 2, "mixed_precision": "no",
        "cpu": True, "dropout": 0.0, "save_every": 100, "tensorboard": False, "val_tokens": 4000,
        "eval_windows": 8, "eval_every": 2,
    }  # fmt: skip
    one = _run({**base, "micro_batch_size": 4, "output_dir": str(tmp_path / "w1")}, 1, tmp_path)
    two = _run({**base, "micro_batch_size": 2, "output_dir": str(tmp_path / "w2")}, 2, tmp_path)
    assert [m["tokens"] for m in one] == [m["tokens"] for m in two] == [512, 1024, 1536, 2048]
    for a, b in zip(one, two, strict=True):
        assert a["lr"] == b["lr"]
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        if "val_loss" in a:
            assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)
