"""The ablation end to end on CPU at toy scale: equal tokens, a token-matched random control, curves,
the report, a rerun that redoes nothing, and config errors that name the key."""

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from train_testdata import make_shards, stdlib_files

from train.ablate import AblationConfig, ablate, random_token_subset
from train.prepare import TokenFile

TRAIN = {
    "preset": "tiny", "vocab_size": 512, "seq_len": 64, "global_batch_size": 8, "micro_batch_size": 8,
    "lr": 3e-3, "warmup_steps": 2, "decay": "cosine", "min_lr": 3e-4, "mixed_precision": "no", "cpu": True,
    "tensorboard": False, "val_tokens": 3000, "eval_windows": 4, "log_every": 100,
}  # fmt: skip


@pytest.fixture(scope="module")
def ablation(tmp_path_factory, mbpp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ablate")
    texts = [(p.name, p.read_text(encoding="utf-8", errors="replace")) for p in stdlib_files(40)]
    everything = make_shards(root / "all", texts=texts)
    # the "filtered" set: the shorter half of the files (fewer tokens than "all")
    short = sorted(texts, key=lambda t: len(t[1]))[:20]
    filtered = make_shards(root / "filtered", texts=short)
    config = AblationConfig(
        output_dir=str(root / "out"), variants={"all": str(everything), "filtered": str(filtered)},
        random_controls={"filtered": "all"}, seeds=[0, 1], token_budget=8 * 64 * 12, train=TRAIN,
        vocab_size=512, eval_points=2, eval_limit=4, eval_max_len=128,
        benchmarks=["humaneval", "mbpp"], mbpp_path=str(mbpp_path),
    )  # fmt: skip
    result = ablate(config)
    yield {"root": root, "config": config, "result": result, "texts": dict(texts), "short": dict(short)}
    torch.set_num_threads(threads)


def test_every_run_trains_the_same_tokens_with_the_same_schedule(ablation):
    result, root = ablation["result"], ablation["root"]
    runs = result["runs"]
    assert {(r["variant"], r["seed"]) for r in runs} == {
        (v, s) for v in ("all", "filtered", "random-filtered") for s in (0, 1)
    }
    assert {r["tokens"] for r in runs} == {8 * 64 * 12} and {r["steps"] for r in runs} == {12}
    configs = [
        json.loads((root / "out/runs" / r["variant"] / f"seed_{r['seed']}/train_config.json").read_text())
        for r in runs
    ]
    varying = {"tokens", "output_dir", "seed"}
    shared = [{k: v for k, v in c.items() if k not in varying} for c in configs]
    assert all(s == shared[0] for s in shared)  # same schedule, preset, tokenizer, budget
    assert sorted({c["seed"] for c in configs}) == [0, 1]
    assert len({c["tokenizer"] for c in configs}) == 1


def test_random_control_matches_the_filtered_token_count_from_the_unfiltered_pool(ablation):
    result, root = ablation["result"], ablation["root"]
    variants = result["variants"]
    target = variants["filtered"]["variant_tokens"]
    got = variants["random-filtered"]["variant_tokens"]
    longest = max(
        TokenFile(root / "out/tokens/all", verify=False).offsets[1:]
        - TokenFile(root / "out/tokens/all", verify=False).offsets[:-1]
    )
    assert target <= got < target + longest
    ids = pq.read_table(root / "out/subsets/random-filtered/data").column("id").to_pylist()
    assert set(ids) <= set(ablation["texts"]) and set(ids) != set(ablation["short"])
    again = random_token_subset(
        ablation["config"].variants["all"], root / "out/tokens/all", target, root / "again", seed=0
    )
    assert again["tokens"] == got and pq.read_table(root / "again/data").column("id").to_pylist() == ids
    other = random_token_subset(
        ablation["config"].variants["all"], root / "out/tokens/all", target, root / "s1", seed=1
    )
    assert other["tokens"] >= target and pq.read_table(root / "s1/data").column("id").to_pylist() != ids


def test_table_curves_comparisons_plots_and_html(ablation):
    result, root = ablation["result"], ablation["root"]
    for name in ("all", "filtered", "random-filtered"):
        final = result["variants"][name]["final"]
        assert (
            final["humaneval_bpc"]["n"] == 2
            and final["humaneval_bpc"]["min"] <= final["humaneval_bpc"]["mean"]
        )
        assert 0 < final["humaneval_bpc"]["mean"] < 10 and "val_loss" in final
        curve = result["variants"][name]["curves"]["humaneval_bpc"]
        assert curve["tokens"] == [8 * 64 * 6, 8 * 64 * 12]
        assert all(lo <= m <= hi for lo, m, hi in zip(curve["min"], curve["mean"], curve["max"], strict=True))
    pairs = {(c["first"], c["second"]) for c in result["comparisons"]}
    assert ("filtered", "random-filtered") in pairs and ("filtered", "all") in pairs
    assert all(
        c["verdict"]
        in ("first better beyond seed spread", "second better beyond seed spread", "within seed spread")
        for c in result["comparisons"]
    )
    assert {os.path.basename(p) for p in result["plots"]} >= {"humaneval_bpc.png", "val_loss.png"}
    assert all(open(p, "rb").read(4) == b"\x89PNG" for p in result["plots"])
    page = (root / "out/ablation.html").read_text()
    assert "random-filtered" in page and "plots/humaneval_bpc.png" in page
    on_disk = json.loads((root / "out/ablation.json").read_text())
    assert (
        on_disk["variants"]["filtered"]["final"]["humaneval_bpc"]
        == result["variants"]["filtered"]["final"]["humaneval_bpc"]
    )
    # scored checkpoints are removed (final/ stays, loadable with its tokenizer)
    run = root / "out/runs/filtered/seed_0"
    assert not (run / "checkpoints").exists() and (run / "final/tokenizer.json").is_file()


def test_a_rerun_redoes_nothing_and_a_lost_record_is_rebuilt_identically(ablation):
    root, config, result = ablation["root"], ablation["config"], ablation["result"]
    summary = root / "out/runs/all/seed_1/train_summary.json"
    before = summary.stat().st_mtime_ns
    record = root / "out/runs/all/seed_1/run.json"
    record.unlink()  # as if killed between scoring the run and recording it
    again = ablate(config)
    assert summary.stat().st_mtime_ns == before  # not retrained
    assert again["variants"] == result["variants"] and again["comparisons"] == result["comparisons"]


def test_bad_configs_name_the_key(tmp_path):
    base = {
        "output_dir": str(tmp_path),
        "variants": {"a": "x", "b": "y"},
        "token_budget": 10_000,
        "train": TRAIN,
    }
    with pytest.raises(ValidationError, match="lr_max"):
        AblationConfig(**{**base, "train": {**TRAIN, "lr_max": 1.0}})
    with pytest.raises(ValidationError, match="max_steps"):
        AblationConfig(**{**base, "train": {**TRAIN, "max_steps": 5}})
    with pytest.raises(ValidationError, match="random_controls"):
        AblationConfig(**{**base, "random_controls": {"a": "nope"}})
    with pytest.raises(ValidationError, match="less than one step"):
        AblationConfig(**{**base, "token_budget": 100})
    with pytest.raises(ValidationError, match="benchmarks"):
        AblationConfig(**{**base, "benchmarks": ["humaneval", "apps"]})


def test_cli_prints_the_table_from_a_finished_ablation(ablation, tmp_path):
    import subprocess
    import sys

    import yaml

    config = ablation["config"].model_dump()
    config.pop("seeds")
    (tmp_path / "abl.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "recipes.cli", "ablate", str(tmp_path / "abl.yaml"), "seeds=[0, 1]"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "random-filtered" in done.stdout and "filtered vs random-filtered (humaneval_bpc)" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "recipes.cli", "ablate", str(tmp_path / "abl.yaml"), "train.lr_max=1"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert bad.returncode != 0 and "lr_max" in (bad.stdout + bad.stderr)
