"""The training loss without the full logits: a chunked linear cross-entropy, and the micro batch search.

``chunked_linear_cross_entropy`` computes ``sum of token cross-entropies`` of ``hidden @ W.T + b`` a chunk
of tokens at a time and, in the same pass, the gradients of ``hidden``, ``W`` and ``b`` (the approach of
liger-kernel's fused linear cross-entropy, in plain torch): at most ``chunk x vocab`` logits exist at a
time, instead of ``micro batch x seq x vocab`` logits plus their float32 copy and gradient (for phi-1 at
micro batch 8 and seq 2048, 16k x 51,200 logits: ~3.4 GB per copy). The numbers equal the plain loss's
(``tests/train/test_loss.py`` checks the loss and every gradient with ``torch.testing.assert_close``).

:func:`use_chunked_loss` routes a causal LM's output layer through it: the model is called as usual
(through DDP's forward, so gradients are reduced), its ``lm_head`` returns the loss sum instead of
logits while targets are set by :func:`forward_loss`, and plain logits otherwise (generation, export).
State-dict keys do not change.

:func:`largest_micro_batch` finds the largest micro batch that fits: a bisection over the divisors of
the per-device batch, with a probe that runs one real forward, backward and optimizer-state allocation
and reports out-of-memory as "does not fit".

Example:
    >>> import torch
    >>> h, w, t = torch.randn(2, 5, 8), torch.randn(32, 8), torch.randint(0, 32, (2, 5))
    >>> total = chunked_linear_cross_entropy(h, w, None, t, chunk_tokens=3)
    >>> plain = torch.nn.functional.cross_entropy(h.reshape(-1, 8) @ w.T, t.reshape(-1), reduction="sum")
    >>> bool(torch.isclose(total, plain))
    True
    >>> largest_micro_batch(lambda m: m <= 6, per_device_batch=16)
    4
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


class _LinearCrossEntropy(torch.autograd.Function):
    """Loss sum of ``hidden @ weight.T + bias`` against ``targets`` (-100 ignored), gradients computed
    chunk by chunk in the forward pass and scaled by the incoming gradient in the backward pass."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_tokens):
        h, t = hidden.reshape(-1, hidden.size(-1)), targets.reshape(-1)
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        grad_b = (
            torch.zeros(weight.size(0), dtype=torch.float32, device=weight.device)
            if bias is not None
            else None
        )
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for start in range(0, h.size(0), chunk_tokens):
            hc, tc = h[start : start + chunk_tokens], t[start : start + chunk_tokens]
            logits = F.linear(hc, weight, bias)  # under autocast: the dtype the plain lm_head would use
            logits32 = logits.float()
            valid = tc != -100
            safe = tc.clamp(min=0)
            lse = torch.logsumexp(logits32, dim=-1)
            total += ((lse - logits32.gather(1, safe[:, None])[:, 0]) * valid).sum()
            grad = torch.exp(logits32 - lse[:, None])  # softmax, then minus the one-hot target
            grad[torch.arange(len(tc), device=grad.device), safe] -= 1.0
            grad *= valid[:, None]
            grad = grad.to(logits.dtype)
            grad_h[start : start + chunk_tokens] = (grad @ weight.to(grad.dtype)).to(h.dtype)
            grad_w += (grad.t() @ hc.to(grad.dtype)).float()
            if grad_b is not None:
                grad_b += grad.float().sum(0)
        ctx.save_for_backward(grad_h, grad_w, grad_b if grad_b is not None else torch.empty(0))
        ctx.shapes = (hidden.shape, weight.dtype, bias is not None)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        shape, w_dtype, has_bias = ctx.shapes
        scale = grad_total.float()
        d_hidden = (grad_h.float() * scale).to(grad_h.dtype).reshape(shape)
        d_bias = (grad_b * scale).to(w_dtype) if has_bias else None
        return d_hidden, (grad_w * scale).to(w_dtype), d_bias, None, None


def chunked_linear_cross_entropy(hidden, weight, bias, targets, chunk_tokens: int = 4096):
    """``sum of cross_entropy(hidden @ weight.T + bias, targets)`` over targets != -100, never holding
    more than ``chunk_tokens x vocab`` logits; differentiable in ``hidden``, ``weight`` and ``bias``."""
    return _LinearCrossEntropy.apply(hidden, weight, bias, targets, int(chunk_tokens))


def _base_model(model):
    """The model under DDP/Accelerate wrappers (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def use_chunked_loss(model, chunk_tokens: int = 4096) -> None:
    """Route ``model``'s output layer through :func:`chunked_linear_cross_entropy` while
    :func:`forward_loss` has set targets; plain logits otherwise. Idempotent."""
    head = _base_model(model).get_output_embeddings()
    head.loss_targets = None
    head.chunk_tokens = int(chunk_tokens)

    def forward(hidden):
        if head.loss_targets is None:
            return F.linear(hidden, head.weight, head.bias)
        return chunked_linear_cross_entropy(
            hidden, head.weight, head.bias, head.loss_targets, head.chunk_tokens
        )

    head.forward = forward


def forward_loss(model, input_ids, targets):
    """``(sum of token cross-entropies, number of target tokens)`` of one batch: through the chunked
    loss when :func:`use_chunked_loss` was applied, else from the full logits (``token_loss``)."""
    from train.trainer import token_loss

    head = _base_model(model).get_output_embeddings()
    if getattr(head, "chunk_tokens", None) is None:
        return token_loss(model(input_ids=input_ids).logits, targets)
    head.loss_targets = targets
    try:
        total = model(input_ids=input_ids).logits  # the head returned the loss sum
    finally:
        head.loss_targets = None
    return total, (targets != -100).sum()


def largest_micro_batch(fits: Callable[[int], bool], per_device_batch: int, upper: int | None = None) -> int:
    """The largest divisor of ``per_device_batch`` (at most ``upper``) for which ``fits`` is true,
    by bisection over the divisors (``fits`` is assumed monotone: a smaller batch never needs more
    memory). At most ``ceil(log2(number of divisors)) + 1`` probes; raises when even 1 does not fit.

    Example:
        >>> calls = []
        >>> largest_micro_batch(lambda m: calls.append(m) or m <= 8, per_device_batch=64)
        8
        >>> calls
        [8, 32, 16]
    """
    sizes = [m for m in range(1, per_device_batch + 1) if per_device_batch % m == 0 and m <= (upper or m)]
    lo, hi = 0, len(sizes) - 1  # sizes[hi + 1:] are known not to fit, sizes[:lo] to fit
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(sizes[mid]):
            best, lo = sizes[mid], mid + 1
        else:
            hi = mid - 1
    if best is None:
        raise RuntimeError("even a micro batch of 1 sequence does not fit in memory")
    return best


def is_out_of_memory(error: BaseException) -> bool:
    """A CUDA/accelerator out-of-memory error (or the CPU allocator's), as opposed to a real bug."""
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def memory_probe(
    model, optimizer, seq_len: int, vocab_size: int, device, autocast=None
) -> Callable[[int], bool]:
    """``fits(micro_batch)``: one forward + backward on random tokens and the optimizer's state
    allocated (an AdamW step at lr 0, then the state dropped), with the RNG restored afterwards, so
    training starts exactly as it would have without the probe. ``autocast``: a context factory for
    the forward pass (the training's mixed precision, e.g. ``accelerator.autocast``)."""
    from contextlib import nullcontext

    autocast = autocast or nullcontext

    def fits(micro_batch: int) -> bool:
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
        lrs = [group["lr"] for group in optimizer.param_groups]
        try:
            x, y = torch.randint(0, vocab_size, (2, micro_batch, seq_len), device=device)
            with autocast():
                total, count = forward_loss(model, x, y)
            (total / count).backward()
            for group in optimizer.param_groups:
                group["lr"] = 0.0
            optimizer.step()
            return True
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            return False
        finally:
            for group, lr in zip(optimizer.param_groups, lrs, strict=True):
                group["lr"] = lr
            optimizer.state.clear()
            optimizer.zero_grad(set_to_none=True)
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
                torch.cuda.empty_cache()

    return fits
