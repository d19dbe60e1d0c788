"""Request/result types of the LLM client. A request's cache key is a content hash of everything that
can change the answer (model, kind, messages or prompt, sampling parameters, seed); ``metadata`` is not
part of it, so callers can carry their own bookkeeping (document ids, constraint tuples)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

KEY_VERSION = 1  # bump if the key recipe changes (old cache rows then simply stop matching)


class BudgetExceeded(RuntimeError):
    """Raised by ``LLMClient.run(..., raise_on_budget=True)`` when the budget cap stopped the run.
    ``.results`` holds every result (the unsent ones have ``error="budget_exhausted"``)."""

    def __init__(self, message: str, results: list | None = None):
        super().__init__(message)
        self.results = results or []


@dataclass
class LLMRequest:
    """One chat or completion request.

    >>> LLMRequest(messages=[{"role": "user", "content": "Rate this code"}], max_tokens=8).kind
    'chat'
    """

    messages: list[dict] | None = None
    kind: str = "chat"  # "chat" | "completion"
    prompt: str | None = None
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = None
    stop: list[str] | str | None = None
    top_p: float | None = None
    model: str | None = None  # overrides the client's model for this request
    extra_body: dict | None = None  # extra sampling params for compatible servers (vLLM...), part of the key
    response_format: dict | None = None  # e.g. {"type": "json_schema", "json_schema": {...}}
    top_logprobs: int | None = None  # ask for the top-k logprobs of each answer token (chat)
    metadata: dict = field(default_factory=dict)  # NOT part of the key

    def __post_init__(self):
        if self.kind not in ("chat", "completion"):
            raise ValueError(f"kind must be 'chat' or 'completion', not {self.kind!r}")
        if self.kind == "chat" and not self.messages:
            raise ValueError("a chat request needs messages")
        if self.kind == "completion" and self.prompt is None:
            raise ValueError("a completion request needs a prompt")

    def key_payload(self, model: str | None) -> dict:
        payload: dict[str, Any] = {
            "v": KEY_VERSION,
            "model": self.model or model,
            "kind": self.kind,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "stop": self.stop,
            "top_p": self.top_p,
            "extra_body": self.extra_body,
        }
        if self.response_format is not None:
            payload["response_format"] = self.response_format
        if self.top_logprobs is not None:
            payload["top_logprobs"] = self.top_logprobs
        if self.kind == "chat":
            payload["messages"] = self.messages
        else:
            payload["prompt"] = self.prompt
        return payload

    def key_for(self, model: str | None) -> str:
        blob = json.dumps(self.key_payload(model), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def key(self) -> str:
        """Content hash without the client's model (use ``LLMClient.key_for`` for the cache key)."""
        return self.key_for(None)

    def sdk_kwargs(self, model: str) -> dict:
        """Keyword arguments for the openai SDK's ``create()``: the parameters it names, and everything
        else (``top_k``, ``repetition_penalty``, ``guided_json``, ...) under ``extra_body=``, which the
        SDK merges into the JSON body (unknown keyword arguments would be a TypeError).

        >>> r = LLMRequest(messages=[{"role": "user", "content": "hi"}], extra_body={"top_k": 20, "n": 1})
        >>> kw = r.sdk_kwargs("m"); kw["extra_body"], kw["n"]
        ({'top_k': 20}, 1)
        """
        from curate.llm.config import SDK_PARAMS

        body = self.body(model, with_extra=False)
        extra = {}
        for name, value in (self.extra_body or {}).items():
            if name in SDK_PARAMS:
                body[name] = value
            else:
                extra[name] = value
        if extra:
            body["extra_body"] = extra
        return body

    def body(self, model: str, with_extra: bool = True) -> dict:
        """The JSON body sent to /v1/chat/completions or /v1/completions (Batch API lines use it as is)."""
        body: dict[str, Any] = {
            "model": self.model or model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.kind == "chat":
            body["messages"] = self.messages
        else:
            body["prompt"] = self.prompt
        if self.seed is not None:
            body["seed"] = self.seed
        if self.stop is not None:
            body["stop"] = self.stop
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if self.response_format is not None:
            body["response_format"] = self.response_format
        if self.top_logprobs is not None:
            if self.kind == "chat":
                body["logprobs"], body["top_logprobs"] = True, self.top_logprobs
            else:
                body["logprobs"] = self.top_logprobs
        if with_extra and self.extra_body:
            body.update(self.extra_body)
        return body

    def prompt_texts(self) -> list[str]:
        if self.kind == "chat":
            return [str(m.get("content") or "") for m in self.messages or []]
        return [self.prompt or ""]

    def prompt_chars(self) -> int:
        if self.kind == "chat":
            return sum(len(str(m.get("content") or "")) for m in self.messages or [])
        return len(self.prompt or "")


@dataclass
class LLMResult:
    """The outcome of one request. ``ok=False`` results carry ``error``; nothing is ever dropped."""

    key: str
    ok: bool
    text: str | None = None
    error: str | None = None
    finish_reason: str | None = None
    usage: dict = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    cost_usd: float = 0.0
    model: str | None = None
    system_fingerprint: str | None = None
    cached: bool = False
    attempts: int = 0
    logprobs: list | None = None  # [{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}] when asked
    budget_left_usd: float | None = None  # set on budget_exhausted results: what the cap still allowed
