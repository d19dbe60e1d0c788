"""The loop's pure functions: global batch, accumulation, sample positions, LR schedule, MFU."""

import math

import numpy as np
import pytest

from train.presets import PRESETS, count_parameters, phi_config
from train.trainer import (
    TrainConfig,
    WindowSampler,
    flops_per_token,
    grad_accum_steps,
    lr_at,
    sample_indices,
    split_train_val,
)


@pytest.mark.parametrize("global_batch", [8, 48, 256, 1024])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("micro", [1, 2, 4, 8])
def test_global_batch_is_the_configured_one(global_batch, world, micro):
    if global_batch % (micro * world):
        with pytest.raises(ValueError, match="not divisible"):
            grad_accum_steps(global_batch, micro, world)
        return
    accum = grad_accum_steps(global_batch, micro, world)
    assert accum * micro * world == global_batch
    for step in (0, 1, 7, 35_999):
        seen = []
        for rank in range(world):
            for m in range(accum):
                idx = sample_indices(
                    step, rank, m, global_batch_size=global_batch, world_size=world, micro_batch_size=micro
                )
                assert len(idx) == micro
                seen.extend(idx)
        # every sample of the step exactly once, whatever the world size / micro batch
        assert sorted(seen) == list(range(step * global_batch, (step + 1) * global_batch))


def test_lr_schedule_matches_the_configured_one():
    cfg = {"lr": 1e-3, "warmup_steps": 750, "max_steps": 36_000, "min_lr": 1e-5}
    lrs = [lr_at(s, decay="linear", **cfg) for s in range(cfg["max_steps"])]
    # linear warmup to the peak
    assert lrs[0] == pytest.approx(1e-3 / 750)
    assert lrs[374] == pytest.approx(1e-3 * 375 / 750)
    assert lrs[749] == pytest.approx(1e-3)
    assert max(lrs) == pytest.approx(1e-3)
    # then linear decay to min_lr at max_steps, monotone
    assert all(a >= b for a, b in zip(lrs[749:], lrs[750:], strict=False))
    mid = 750 + (36_000 - 750) // 2
    assert lrs[mid] == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-3)
    assert lr_at(36_000, decay="linear", **cfg) == pytest.approx(1e-5)
    cos = [lr_at(s, decay="cosine", **cfg) for s in (750, mid, 36_000)]
    assert cos[0] == pytest.approx(1e-3) and cos[1] == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-3)
    assert cos[2] == pytest.approx(1e-5)
    assert lr_at(10_000, decay="constant", **cfg) == 1e-3
    # the fine-tuning recipe's values
    assert lr_at(49, lr=1e-4, warmup_steps=50, max_steps=6000) == pytest.approx(1e-4)


def test_windows_are_a_permutation_per_epoch_and_arithmetic():
    sampler = WindowSampler(n_windows=10, seed=3)
    epoch0 = sampler.windows(range(0, 10))
    epoch1 = sampler.windows(range(10, 20))
    assert sorted(epoch0) == list(range(10)) and sorted(epoch1) == list(range(10))
    assert list(epoch0) != list(epoch1)
    # a fresh sampler (a resumed run) gives the same windows for the same samples
    again = WindowSampler(n_windows=10, seed=3)
    assert list(again.windows(range(15, 25))) == list(sampler.windows(range(15, 25)))
    assert list(WindowSampler(10, seed=4).windows(range(10))) != list(epoch0)


def test_split_train_val_on_a_document_boundary():
    offsets = np.array([0, 100, 250, 400, 1000])
    assert split_train_val(offsets, 0) == 1000
    assert split_train_val(offsets, 600) == 400
    assert split_train_val(offsets, 650) == 250


def test_mfu_formula_and_presets():
    import torch

    from train.presets import build_model

    cfg = phi_config("phi-1")
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads) == (
        24,
        2048,
        8192,
        32,
    )
    assert cfg.rope_parameters["partial_rotary_factor"] == 0.5 and cfg.vocab_size == 51200
    assert cfg.resid_pdrop == cfg.embd_pdrop == cfg.attention_dropout == 0.1
    small = phi_config("phi-1-small")
    assert (
        small.num_hidden_layers,
        small.hidden_size,
        small.intermediate_size,
        small.num_attention_heads,
    ) == (20, 1024, 4096, 16)
    with torch.device("meta"):
        model = build_model(cfg)
    n = count_parameters(model)
    assert 1.25e9 < n < 1.4e9  # "1.3B"
    fpt = flops_per_token(n, 24, 2048, 2048)
    assert fpt == 6 * n + 12 * 24 * 2048 * 2048
    # the paper's run: 51B tokens in 770 A100-hours -> ~18.4k tokens/s/GPU -> ~50% MFU at 312 TFLOP/s
    tokens_per_s = 51e9 / (770 * 3600)
    assert 0.40 < fpt * tokens_per_s / 312e12 < 0.60
    assert set(PRESETS) >= {"phi-1", "phi-1-small", "tiny"}


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="micro_batch_size"):
        TrainConfig(tokens="t", output_dir="o", micro_batch_size=0)
    with pytest.raises(ValueError, match="not_a_field"):
        TrainConfig(tokens="t", output_dir="o", not_a_field=1)
    assert math.isclose(TrainConfig(tokens="t", output_dir="o").lr, 1e-3)
