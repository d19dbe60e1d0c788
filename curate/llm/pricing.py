"""Per-model prices (USD per 1M tokens) and a rough token estimate for dry runs and budget reservations.

Prices change; pass ``prices={"model": {"input": x, "output": y}}`` to ``LLMClient`` to override or add.
A model with no price (a local vLLM server, say) costs 0 and a budget cannot bind on it.
"""

from __future__ import annotations

import math

# USD per 1M tokens, OpenAI list prices (online). The Batch API costs BATCH_DISCOUNT x these.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4o": {"input": 2.50, "output": 10.00},
    "gpt-4.1": {"input": 2.00, "output": 8.00},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60},
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40},
    "gpt-4-turbo": {"input": 10.00, "output": 30.00},
    "gpt-4": {"input": 30.00, "output": 60.00},
    "gpt-3.5-turbo": {"input": 0.50, "output": 1.50},
    "gpt-3.5-turbo-instruct": {"input": 1.50, "output": 2.00},
}
BATCH_DISCOUNT = 0.5
CHARS_PER_TOKEN = 4.0  # no tokenizer download offline: ~4 characters per token for English and code
MESSAGE_OVERHEAD_TOKENS = 4


def price_for(model: str, prices: dict[str, dict[str, float]]) -> dict[str, float] | None:
    """Exact name first, then the longest known prefix ("gpt-4o-mini-2024-07-18" -> "gpt-4o-mini")."""
    if model in prices:
        return prices[model]
    best = max((m for m in prices if model.startswith(m)), key=len, default=None)
    return prices[best] if best else None


def cost_usd(
    price: dict[str, float] | None, prompt_tokens: int, completion_tokens: int, batch: bool = False
) -> float:
    if not price:
        return 0.0
    usd = (prompt_tokens * price.get("input", 0.0) + completion_tokens * price.get("output", 0.0)) / 1e6
    return usd * BATCH_DISCOUNT if batch else usd


def estimate_prompt_tokens(request) -> int:
    n_messages = len(request.messages or []) if request.kind == "chat" else 1
    return int(math.ceil(request.prompt_chars() / CHARS_PER_TOKEN)) + MESSAGE_OVERHEAD_TOKENS * n_messages


# chat templates add role markers per message and sometimes a default system prompt (Qwen, Llama 3.1)
WORST_MESSAGE_OVERHEAD_TOKENS = 8
WORST_TEMPLATE_OVERHEAD_TOKENS = 64


def worst_case_prompt_tokens(request, tokenizer=None) -> int:
    """An upper bound on the prompt tokens a provider will bill for ``request``.

    With ``tokenizer`` (anything with ``encode(text) -> list``): its count per message; without one, the
    UTF-8 byte count, which no byte-level BPE tokenizer (GPT, Llama 3, Qwen, ...) can exceed. Both add
    a chat template's overhead.

    >>> from curate.llm.types import LLMRequest
    >>> worst_case_prompt_tokens(LLMRequest(messages=[{"role": "user", "content": "héllo"}]))
    78
    """
    texts = request.prompt_texts()
    if tokenizer is not None:
        counted = sum(len(tokenizer.encode(t)) for t in texts)
    else:
        counted = sum(len(t.encode("utf-8")) for t in texts)
    return counted + WORST_MESSAGE_OVERHEAD_TOKENS * len(texts) + WORST_TEMPLATE_OVERHEAD_TOKENS
