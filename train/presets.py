"""Model presets: explicit ``PhiConfig`` values for transformers' ``PhiForCausalLM``.

The numbers are the paper's (Gunasekar et al. 2023, "Textbooks Are All You Need", section 2.3):
phi-1 (1.3B) has 24 layers, hidden size 2048, MLP 8192, 32 heads of 64 dims, rotary embeddings on
half of each head (rotary dim 32), and codegen's 51,200-entry embedding; phi-1-small (350M) has 20
layers, hidden 1024, MLP 4096 and 16 heads. Both use dropout 0.1 (the attention, residual and
embedding dropouts PhiConfig exposes). ``phi-1-mini`` (12 x 768), ``phi-1-micro`` (8 x 512) and
``phi-1-nano`` (6 x 384) keep phi-1's shape at smaller widths for short GPU ablations; ``tiny`` is a
2-layer model for CPU tests.

Example:
    >>> from train.presets import phi_config, build_model
    >>> cfg = phi_config("phi-1")
    >>> cfg.num_hidden_layers, cfg.hidden_size, cfg.rope_parameters["partial_rotary_factor"]
    (24, 2048, 0.5)
    >>> model = build_model(phi_config("tiny", vocab_size=4096))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "phi-1": {
        "num_hidden_layers": 24,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_attention_heads": 32,
        "vocab_size": 51200,
        "max_position_embeddings": 2048,
    },
    "phi-1-small": {
        "num_hidden_layers": 20,
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_attention_heads": 16,
        "vocab_size": 51200,
        "max_position_embeddings": 2048,
    },
    # smaller proxies for equal-token ablations on one GPU in minutes (benchmarks/gpu/ablate.sh): the
    # phi-1 shape (head dim 64, MLP 4x, partial rotary) at GPT-2-small-like and smaller widths
    "phi-1-mini": {
        "num_hidden_layers": 12,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
        "vocab_size": 51200,
        "max_position_embeddings": 2048,
    },
    "phi-1-micro": {
        "num_hidden_layers": 8,
        "hidden_size": 512,
        "intermediate_size": 2048,
        "num_attention_heads": 8,
        "vocab_size": 51200,
        "max_position_embeddings": 2048,
    },
    "phi-1-nano": {
        "num_hidden_layers": 6,
        "hidden_size": 384,
        "intermediate_size": 1536,
        "num_attention_heads": 6,
        "vocab_size": 51200,
        "max_position_embeddings": 2048,
    },
    "tiny": {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_attention_heads": 4,
        "vocab_size": 4096,
        "max_position_embeddings": 256,
    },
}

# shared by every preset (the paper's choices; PhiConfig's names). "gelu_pytorch_tanh" is the same
# tanh-approximated GELU as phi-1's "gelu_new", computed by one fused PyTorch kernel instead of a chain
# of elementwise ops (faster, and fewer activations kept for the backward pass).
COMMON: dict[str, Any] = {
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-5,
    "initializer_range": 0.02,
    "tie_word_embeddings": False,
    "resid_pdrop": 0.1,
    "embd_pdrop": 0.1,
    "attention_dropout": 0.1,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
}


def phi_config(
    preset: str,
    vocab_size: int | None = None,
    max_position_embeddings: int | None = None,
    dropout: float | None = None,
    eos_token_id: int | None = None,
    **overrides: Any,
):
    """A ``PhiConfig`` for a preset, with optional overrides.

    Args:
        preset: ``phi-1``, ``phi-1-small`` or ``tiny``.
        vocab_size: embedding rows (default: the preset's; must be >= the tokenizer's vocabulary).
        max_position_embeddings: longest sequence (default: the preset's).
        dropout: set the residual, embedding and attention dropouts together (default 0.1).
        eos_token_id: the tokenizer's EOS id (also used as BOS), recorded for generation.
        overrides: any other ``PhiConfig`` field.
    """
    from transformers import PhiConfig

    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
    values = {**COMMON, **PRESETS[preset]}
    if vocab_size is not None:
        values["vocab_size"] = int(vocab_size)
    if max_position_embeddings is not None:
        values["max_position_embeddings"] = int(max_position_embeddings)
    if dropout is not None:
        values.update(resid_pdrop=dropout, embd_pdrop=dropout, attention_dropout=dropout)
    if eos_token_id is not None:
        values.update(eos_token_id=eos_token_id, bos_token_id=eos_token_id)
    values.update(overrides)
    return PhiConfig(**values)


def attn_implementation(requested: str = "auto") -> str:
    """``flash_attention_2`` when requested as ``auto`` and flash-attn is importable with a GPU, else
    ``sdpa`` (PyTorch's fused attention); an explicit choice is returned as is."""
    if requested != "auto":
        return requested
    try:
        import flash_attn  # noqa: F401
        import torch

        if torch.cuda.is_available():
            return "flash_attention_2"
    except ImportError:
        pass
    return "sdpa"


def build_model(config, attn: str = "auto", dtype=None):
    """A freshly initialised ``PhiForCausalLM`` for ``config`` (a ``PhiConfig``)."""
    from transformers import PhiForCausalLM

    config._attn_implementation = attn_implementation(attn)
    model = PhiForCausalLM(config)
    if dtype is not None:
        model = model.to(dtype)
    return model


def count_parameters(model, exclude_input_embedding: bool = True) -> int:
    """Parameters that cost matmul FLOPs: all of them except the input embedding table (a lookup).

    The untied ``lm_head`` is a real matmul and is counted.
    """
    total = sum(p.numel() for p in model.parameters())
    if exclude_input_embedding:
        total -= model.get_input_embeddings().weight.numel()
    return total
