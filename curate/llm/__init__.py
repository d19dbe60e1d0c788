"""The OpenAI-compatible LLM client used by every LLM step (labeling here, generation in synth).

    from curate.llm import LLMClient, LLMRequest
    client = LLMClient(model="gpt-4o-mini", cache_path="out/llm_cache.sqlite", max_concurrency=16, budget_usd=20)
    print(client.estimate_cost(requests))          # dry run: nothing is sent
    results = client.run(requests)                 # or client.run_batch(requests) for the Batch API

``openai`` is imported only when a request is actually sent, so importing this package is cheap.
"""

from curate.llm.cache import ResultCache
from curate.llm.client import BATCH_MAX_BYTES, BATCH_MAX_REQUESTS, LLMClient
from curate.llm.config import LLMConfig
from curate.llm.pricing import DEFAULT_PRICES
from curate.llm.task_cache import TaskCache, read_ledger
from curate.llm.types import BudgetExceeded, LLMRequest, LLMResult

__all__ = [
    "LLMClient",
    "LLMConfig",
    "LLMRequest",
    "LLMResult",
    "BudgetExceeded",
    "ResultCache",
    "TaskCache",
    "read_ledger",
    "DEFAULT_PRICES",
    "BATCH_MAX_REQUESTS",
    "BATCH_MAX_BYTES",
]
