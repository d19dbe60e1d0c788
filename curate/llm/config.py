"""``LLMConfig``: the one description of an LLM endpoint and how to talk to it.

Every LLM step (the quality labeler, synth generation, endpoint evaluation, the grader, LLM-judge
rules) takes ``llm: LLMConfig`` (or the same keys as a dict, e.g. a recipe's ``llm:`` block) and hands
it to :class:`curate.llm.LLMClient`. Unknown keys are errors that name the key, so a typo in a recipe
fails before any work is done.

Sampling fields left at ``None`` (``temperature``, ``max_tokens``) mean "the step's own default": a
binary label needs a few tokens, a textbook section 1500.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

# parameters the openai SDK's create() takes by name; everything else reaches the server via extra_body
SDK_PARAMS = frozenset(
    {
        "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "max_completion_tokens", "n",
        "presence_penalty", "response_format", "service_tier", "user", "parallel_tool_calls", "tools",
        "tool_choice", "best_of", "echo", "suffix", "reasoning_effort", "metadata", "store", "modalities",
    }
)  # fmt: skip


class LLMConfig(BaseModel):
    """Endpoint, limits, budget, cache and default sampling of every LLM call a step makes.

    >>> cfg = LLMConfig(model="Qwen/Qwen2.5-Coder-7B-Instruct", base_url="http://vllm:8000/v1",
    ...                 extra_body={"top_k": 20, "repetition_penalty": 1.05}, budget_usd=5)
    >>> cfg.max_concurrency, cfg.timeout_s, cfg.extra_body["top_k"]
    (16, 120.0, 20)
    >>> LLMConfig.coerce({"model": "gpt-4o", "concurrency": 64}).max_concurrency
    64
    >>> LLMConfig(modle="gpt-4o")
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for LLMConfig
    modle
      Extra inputs are not permitted ...
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    model: str = "gpt-4o-mini"
    base_url: str | None = None  # None -> $OPENAI_BASE_URL, else OpenAI; "local" -> a local server (curate.llm.serve)
    api_key_env: str = "OPENAI_API_KEY"  # the NAME of the variable; the key itself is never stored
    cache_path: str | None = None  # sqlite answer cache + cumulative spend; None -> the step's default
    max_concurrency: int = Field(16, ge=1, validation_alias=AliasChoices("max_concurrency", "concurrency"))
    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(6, ge=0)
    budget_usd: float | None = Field(None, ge=0)  # hard cap on the cumulative spend of the cache
    prices: dict[str, dict[str, float]] | None = None  # USD per 1M tokens: {model: {input, output}}
    tokenizer: str | None = None  # HF tokenizer name/path to count prompt tokens for the budget
    temperature: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)  # vLLM: top_k, repetition_penalty, guided_json
    structured_output: Literal["auto", "json_schema", "off"] = "auto"  # response_format=json_schema
    logprobs: bool = True  # ask for top logprobs where a step can use them (soft labels)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    max_retry_after_s: float = Field(300.0, ge=0)

    @field_validator("extra_body")
    @classmethod
    def _extra_body_is_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        import json

        json.dumps(value)  # it travels in the request body and in the cache key
        return value

    @classmethod
    def coerce(cls, value: LLMConfig | dict | None = None, **overrides: Any) -> LLMConfig:
        """An ``LLMConfig`` from a config, a dict (a recipe's ``llm:`` block) or None, with overrides.

        >>> LLMConfig.coerce(None, model="gpt-4o").model
        'gpt-4o'
        """
        if value is None:
            base: dict[str, Any] = {}
        elif isinstance(value, LLMConfig):
            base = value.model_dump(exclude_unset=True)
        elif isinstance(value, dict):
            base = dict(value)
        else:
            raise TypeError(f"llm must be an LLMConfig or a mapping, not {type(value).__name__}")
        return cls.model_validate({**base, **overrides})

    def with_defaults(self, **defaults: Any) -> LLMConfig:
        """A copy where the fields the user did not set take a step's defaults.

        >>> LLMConfig(max_tokens=64).with_defaults(max_tokens=8, temperature=0.0).max_tokens
        64
        """
        unset = {k: v for k, v in defaults.items() if k not in self.model_fields_set}
        return self.model_validate({**self.model_dump(exclude_unset=True), **unset})
