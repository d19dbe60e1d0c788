"""The chunked linear cross-entropy equals the plain loss (value and every gradient), inside a real
model too; the micro batch search finds the largest size that fits with few probes."""

import pytest
import torch
import torch.nn.functional as F

from train.loss import (
    chunked_linear_cross_entropy,
    forward_loss,
    largest_micro_batch,
    memory_probe,
    use_chunked_loss,
)
from train.trainer import token_loss


def _plain(hidden, weight, bias, targets):
    logits = F.linear(hidden, weight, bias)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100,
                           reduction="sum")  # fmt: skip


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
@pytest.mark.parametrize("with_bias", [True, False])
def test_chunked_loss_and_gradients_equal_the_plain_loss(chunk, with_bias):
    g = torch.Generator().manual_seed(chunk)
    hidden = torch.randn(3, 11, 16, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(50, generator=g, dtype=torch.float64, requires_grad=True) if with_bias else None
    targets = torch.randint(0, 50, (3, 11), generator=g)
    targets[0, :4] = -100  # masked targets count nowhere
    inputs = [t for t in (hidden, weight, bias) if t is not None]
    plain = _plain(hidden, weight, bias, targets)
    plain_grads = torch.autograd.grad(plain * 0.37, inputs)
    chunked = chunked_linear_cross_entropy(hidden, weight, bias, targets, chunk_tokens=chunk)
    chunked_grads = torch.autograd.grad(chunked * 0.37, inputs)
    # float32 softmax inside both: equal to float32 rounding, whatever the chunk size
    torch.testing.assert_close(chunked.double(), plain.double(), rtol=1e-6, atol=1e-5)
    for a, b in zip(chunked_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_chunked_loss_inside_a_phi_model_matches_the_full_logits():
    from train.presets import build_model, phi_config

    torch.manual_seed(0)
    model = build_model(phi_config("tiny", vocab_size=300, dropout=0.0), attn="sdpa")
    x, y = torch.randint(0, 300, (2, 24)), torch.randint(0, 300, (2, 24))
    y[1, :5] = -100
    total, count = token_loss(model(input_ids=x).logits, y)
    total.backward()
    plain_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    keys = set(model.state_dict())
    use_chunked_loss(model, chunk_tokens=10)
    chunked, chunked_count = forward_loss(model, x, y)
    chunked.backward()
    assert set(model.state_dict()) == keys and int(chunked_count) == int(count) == 43
    torch.testing.assert_close(chunked, total, rtol=1e-5, atol=1e-4)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, plain_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    # without targets the head is the plain output layer again (generation, validation logits)
    assert model(input_ids=x).logits.shape == (2, 24, 300)


def test_micro_batch_search_is_largest_fitting_divisor_in_few_probes():
    for cap in range(1, 70):
        probes = []
        best = largest_micro_batch(
            lambda m, cap=cap, probes=probes: probes.append(m) or m <= cap, per_device_batch=64
        )
        assert best == max(d for d in (1, 2, 4, 8, 16, 32, 64) if d <= cap)
        assert len(probes) <= 4  # 7 divisors: bisection, not a scan
    assert largest_micro_batch(lambda m: True, per_device_batch=48, upper=10) == 8
    with pytest.raises(RuntimeError, match="does not fit"):
        largest_micro_batch(lambda m: False, per_device_batch=8)


def test_memory_probe_runs_a_real_step_and_leaves_no_trace():
    from train.presets import build_model, phi_config
    from train.trainer import make_optimizer

    torch.manual_seed(0)
    model = build_model(phi_config("tiny", vocab_size=300), attn="sdpa")
    optimizer = make_optimizer(model, 1e-3, 0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rng = torch.get_rng_state()
    fits = memory_probe(model, optimizer, seq_len=16, vocab_size=300, device=torch.device("cpu"))
    assert fits(4)
    assert torch.equal(torch.get_rng_state(), rng) and not optimizer.state
    assert all(torch.equal(p, before[n]) and p.grad is None for n, p in model.named_parameters())
    # a fake memory cap: an allocation failure inside the step reads as "does not fit"
    real_forward = model.forward

    def capped(*args, input_ids=None, **kwargs):
        if input_ids.numel() > 40:
            raise torch.OutOfMemoryError("CUDA out of memory (fake cap of 40 tokens)")
        return real_forward(*args, input_ids=input_ids, **kwargs)

    model.forward = capped
    assert largest_micro_batch(fits, per_device_batch=8) == 2
