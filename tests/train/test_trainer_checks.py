"""Checks before step one (seq_len against the model's context, windows against the global batch),
the throughput figure (total tokens over total time) and the exact GPU peak table behind MFU."""

import json
import statistics
import warnings

import pytest
from train_testdata import make_token_dir

from train.trainer import GPU_PEAK_TFLOPS, device_peak_flops, train

TINY = {
    "preset": "tiny", "vocab_size": 1024, "mixed_precision": "no", "cpu": True, "tensorboard": False,
    "lr": 3e-3, "warmup_steps": 2, "save_every": 1000, "eval_every": 1000, "resume": False,
}  # fmt: skip


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    return make_token_dir(tmp_path_factory.mktemp("checks"), n_files=12, vocab_size=1024)["tokens"]


def test_seq_len_beyond_the_preset_context_fails_before_training(tokens, tmp_path):
    out = tmp_path / "long"
    # the tiny preset's context is 256 positions
    with pytest.raises(
        ValueError, match=r"seq_len 512 exceeds the context of preset 'tiny'.*max_position_embeddings"
    ):
        train(tokens=tokens, output_dir=str(out), seq_len=512, global_batch_size=2, micro_batch_size=2,
              max_steps=1, **TINY)  # fmt: skip
    assert not out.exists()
    # asked for explicitly, the longer context is built and trained
    summary = train(tokens=tokens, output_dir=str(out), seq_len=512, max_position_embeddings=512,
                    global_batch_size=2, micro_batch_size=2, max_steps=1, **TINY)  # fmt: skip
    assert summary["steps"] == 1
    assert json.loads((out / "model_config.json").read_text())["max_position_embeddings"] == 512
    # within the context nothing changes: the preset's 256 positions
    summary = train(tokens=tokens, output_dir=str(tmp_path / "short"), seq_len=64, global_batch_size=2,
                    micro_batch_size=2, max_steps=1, **TINY)  # fmt: skip
    assert (
        json.loads((tmp_path / "short" / "model_config.json").read_text())["max_position_embeddings"] == 256
    )


def test_fewer_windows_than_the_global_batch_warns(tokens, tmp_path):
    from train.prepare import TokenFile

    data = TokenFile(tokens)
    first_doc = int(data.offsets[1])
    seq_len = 128
    n_windows = (first_doc - 1) // seq_len  # train on the first document only, the rest is validation
    big_batch = 2 * (n_windows + 1)
    held_out = {"val_tokens": data.n_tokens - first_doc, "eval_windows": 0}
    with pytest.warns(
        UserWarning, match=rf"only {n_windows} training windows .* global_batch_size {big_batch}"
    ):
        train(tokens=tokens, output_dir=str(tmp_path / "few"), seq_len=seq_len, global_batch_size=big_batch,
              micro_batch_size=2, max_steps=1, **held_out, **TINY)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        train(tokens=tokens, output_dir=str(tmp_path / "enough"), seq_len=seq_len, global_batch_size=2,
              micro_batch_size=2, max_steps=1, **held_out, **TINY)  # fmt: skip


def test_tokens_per_s_is_total_tokens_over_total_time(tokens, tmp_path):
    out = tmp_path / "rate"
    summary = train(tokens=tokens, output_dir=str(out), seq_len=64, global_batch_size=4, micro_batch_size=2,
                    max_steps=6, **TINY)  # fmt: skip
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = metrics[1:]  # the first step (allocations, compilation) is left out
    rates = [m["tokens_per_s"] for m in timed]
    # equal tokens per step: total/total is the harmonic mean of the step rates, not their mean
    assert summary["tokens_per_s"] == pytest.approx(statistics.harmonic_mean(rates), rel=1e-9)
    assert summary["tokens_per_s"] <= statistics.mean(rates)
    tokens_timed = len(timed) * 4 * 64
    seconds = sum(m["step_time_s"] for m in timed)
    assert summary["tokens_per_s"] == pytest.approx(tokens_timed / seconds, rel=1e-9)
    assert summary["train_time_s"] == pytest.approx(sum(m["step_time_s"] for m in metrics), rel=1e-9)


@pytest.mark.parametrize(
    ("name", "precision", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4),  # SXM
        ("NVIDIA H100 PCIe", "bf16", 756.5),  # not the SXM peak
        ("NVIDIA H100 NVL", "bf16", 835.5),
        ("NVIDIA H200", "bf16", 989.4),
        ("NVIDIA H100 80GB HBM3", "fp32", 66.9),  # fp32 training is not held to the bf16 peak
        ("NVIDIA H100 80GB HBM3", "tf32", 494.7),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
        ("NVIDIA A100-PCIE-40GB", "fp32", 19.5),
        ("NVIDIA L4", "bf16", 121.0),
        ("NVIDIA L40", "bf16", 181.05),  # "L40" is not "L4"
        ("NVIDIA L40S", "bf16", 362.05),
    ],
)
def test_peak_flops_by_exact_device_name_and_precision(name, precision, tflops):
    assert device_peak_flops(name, precision) == pytest.approx(tflops * 1e12)


@pytest.mark.parametrize(
    "name", ["NVIDIA H100", "H100", "L4", "NVIDIA H100 80GB HBM3 MIG 3g.40gb", "Tesla T4", ""]
)
def test_unknown_or_partial_device_names_get_no_peak(name):
    assert device_peak_flops(name, "bf16") is None


def test_every_table_row_is_ordered_bf16_above_tf32_above_fp32():
    for name, row in GPU_PEAK_TFLOPS.items():
        assert set(row) == {"bf16", "tf32", "fp32"}, name
        assert row["bf16"] >= row["tf32"] >= row["fp32"] > 0, name
