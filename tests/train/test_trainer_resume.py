"""Exact resume: N steps straight vs. a real trainer process killed with SIGKILL mid-run and resumed.

Every step after the resume point must have the same loss (within 1e-5; on CPU it is bit-identical):
model, optimizer, RNG (dropout) and the data position all come back."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from train_testdata import make_shards

from train.prepare import prepare_tokens
from train.tokenizer import train_tokenizer

REPO = Path(__file__).resolve().parents[2]
STEPS = 40


def _config(tokens: Path, out: Path) -> dict:
    return {
        "tokens": str(tokens),
        "output_dir": str(out),
        "preset": "tiny",
        "vocab_size": 1024,
        "seq_len": 64,
        "global_batch_size": 8,
        "micro_batch_size": 4,
        "max_steps": STEPS,
        "lr": 3e-3,
        "warmup_steps": 5,
        "mixed_precision": "no",
        "cpu": True,
        "save_every": 5,
        "keep_last": 2,
        "eval_every": 1000,
        "tensorboard": False,
        "seed": 7,
    }


def _start(cfg: dict, path: Path) -> subprocess.Popen:
    path.write_text(json.dumps(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "train.trainer", str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _losses(out: Path) -> dict[int, float]:
    losses = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        losses[record["step"]] = record["loss"]
    return losses


def _last_step(out: Path) -> int:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return 0
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:
            pass
    return max(steps, default=0)


def test_kill_9_and_resume_matches_the_straight_run(tmp_path):
    shards = make_shards(tmp_path / "shards", n_files=20)
    train_tokenizer(shards, tmp_path / "tok", vocab_size=1024)
    prepare_tokens(shards, tmp_path / "tok", tmp_path / "tokens", workers=1)

    straight = _start(_config(tmp_path / "tokens", tmp_path / "straight"), tmp_path / "straight.json")
    killed_out = tmp_path / "killed"
    victim = _start(_config(tmp_path / "tokens", killed_out), tmp_path / "killed.json")
    deadline = time.time() + 240
    while _last_step(killed_out) < 12:
        assert victim.poll() is None, victim.stdout.read()
        assert time.time() < deadline, "trainer made no progress"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = _last_step(killed_out)
    assert victim.returncode == -signal.SIGKILL and killed_at < STEPS

    resumed = _start(_config(tmp_path / "tokens", killed_out), tmp_path / "resumed.json")
    out_resumed, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out_resumed
    summary = json.loads(out_resumed[out_resumed.index("{\n") :])
    resumed_step = int(Path(summary["resumed_from"]).name.split("_")[1])
    assert 0 < resumed_step <= killed_at and resumed_step % 5 == 0
    out_straight, _ = straight.communicate(timeout=300)
    assert straight.returncode == 0, out_straight

    want, got = _losses(tmp_path / "straight"), _losses(killed_out)
    assert sorted(want) == sorted(got) == list(range(1, STEPS + 1))
    for step in range(resumed_step + 1, STEPS + 1):
        assert abs(want[step] - got[step]) <= 1e-5, (step, want[step], got[step])
    print(f"killed at step {killed_at}, resumed from step {resumed_step}")
