"""``LLMClient``: one OpenAI-compatible client for every LLM step (labeling, generation).

It wraps ``openai.AsyncOpenAI`` (any ``base_url``: OpenAI, vLLM, Ollama, ...) with the openai client's
own retries off (``max_retries=0``) so that retry timing is ours: exponential backoff with jitter on
429, 5xx, timeouts, dropped connections and malformed bodies, honouring ``Retry-After`` /
``retry-after-ms`` / ``x-ratelimit-reset-*``. Around it: a concurrency limit, RPM/TPM token buckets,
a content-addressed sqlite cache (a rerun sends only requests with no cached success), token and cost
accounting, a hard budget cap, and the Batch API.

The API key is read from the environment at call time and handed to the openai client only; it is
never stored on this object, logged, cached or written, and error texts are redacted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from loguru import logger

from curate.extras import require_extra
from curate.llm.cache import TERMINAL_BATCH_STATUSES, ResultCache
from curate.llm.config import LLMConfig
from curate.llm.limits import TokenBucket, backoff_s, proactive_pause_s, retry_after_s
from curate.llm.pricing import (
    DEFAULT_PRICES,
    cost_usd,
    estimate_prompt_tokens,
    price_for,
    worst_case_prompt_tokens,
)
from curate.llm.serve import LOCAL
from curate.llm.types import BudgetExceeded, LLMRequest, LLMResult

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529}
BATCH_MAX_REQUESTS = 50_000
BATCH_MAX_BYTES = 200 * 1000 * 1000  # the API's limit is 200 MB; stay at the decimal figure to be safe
ENDPOINTS = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}
STALE_WAIT_S = 120.0  # how long a request waits on reservations held only by other processes
_KEY_LIKE = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|Bearer\s+\S+)")


class LLMClient:
    """Concurrent, cached, rate-limited, budgeted OpenAI-compatible client.

    >>> client = LLMClient(LLMConfig(model="gpt-4o-mini", cache_path="out/llm_cache.sqlite", budget_usd=5.0))
    >>> LLMClient(model="gpt-4o", max_concurrency=64).config.max_concurrency   # or the fields as keywords
    64
    >>> results = client.run([LLMRequest(messages=[{"role": "user", "content": "Hi"}], max_tokens=8)])  # doctest: +SKIP
    >>> results[0].ok, results[0].text, client.usage["cost_usd"]            # doctest: +SKIP

    A request that keeps failing comes back ``ok=False`` with its (redacted) error; once the budget
    cannot cover the next request's worst case, the rest come back ``error="budget_exhausted"``.
    """

    def __init__(
        self, config: LLMConfig | dict | None = None, *, jitter_seed: int = 0, cache=None, **overrides
    ):
        cfg = LLMConfig.coerce(
            config, **{k: (str(v) if isinstance(v, Path) else v) for k, v in overrides.items()}
        )
        self.config = cfg
        self.model = cfg.model
        self.base_url = cfg.base_url
        self.api_key_env = cfg.api_key_env
        self.cache_path = Path(cfg.cache_path) if cfg.cache_path else None
        self.max_concurrency = cfg.max_concurrency
        self.rpm = cfg.rpm
        self.tpm = cfg.tpm
        self.max_retries = cfg.max_retries
        self.timeout_s = cfg.timeout_s
        self.budget_usd = cfg.budget_usd
        self.prices = {**DEFAULT_PRICES, **(cfg.prices or {})}
        self.backoff_base_s = cfg.backoff_base_s
        self.backoff_max_s = cfg.backoff_max_s
        self.max_retry_after_s = cfg.max_retry_after_s
        self._rng = random.Random(jitter_seed)
        # ``cache``: another cache with ResultCache's interface (a cluster task's TaskCache)
        self._cache = cache if cache is not None else (ResultCache(self.cache_path) if self.cache_path else None)
        self._warned_no_price: set[str] = set()
        self.usage = {
            "requests": 0,  # results returned
            "sent": 0,  # HTTP attempts made
            "cached": 0,
            "ok": 0,
            "failed": 0,
            "retries": 0,
            "budget_exhausted": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost_usd": 0.0,
            # what a real server lacked, and what the client did instead (see README "LLM servers")
            "extra_body_refused": 0,  # HTTP 400/422 naming extra_body keys: asked again without them
            "logprobs_missing": 0,  # top_logprobs asked, none sent: the step falls back to hard labels
        }
        self._reserved_usd = 0.0  # open reservations of this client without a cache (the cache holds its own)
        self._tokenizer_obj = None
        self._served_model: str | None = None  # the id a local server gives its model (base_url "local")
        self._extra_refused = False  # the server refused extra_body keys once: not sent again this run
        if cfg.base_url == LOCAL:  # a local server costs nothing; its model is named by path or bundled
            from curate.llm.serve import BUNDLED_MODEL, is_bundled

            self.model = BUNDLED_MODEL if is_bundled(cfg.model) else cfg.model
            self.prices[self.model] = {"input": 0.0, "output": 0.0}

    # ------------------------------------------------------------------ keys, prices, estimates
    def key_for(self, request: LLMRequest) -> str:
        """The cache key: sha256 of the model and everything in the request that changes the answer."""
        return self._prepare(request).key_for(self.model)

    def _prepare(self, request: LLMRequest) -> LLMRequest:
        """The request as sent: the config's ``extra_body`` under the request's own (which wins)."""
        if not self.config.extra_body:
            return request
        merged = {**self.config.extra_body, **(request.extra_body or {})}
        return request if merged == request.extra_body else dataclasses.replace(request, extra_body=merged)

    def _model_of(self, request: LLMRequest) -> str:
        return request.model or self.model

    def _price(self, model: str) -> dict[str, float] | None:
        price = price_for(model, self.prices)
        if price is None and model not in self._warned_no_price:
            self._warned_no_price.add(model)
            logger.warning(f"LLMClient: no price for model {model!r}; its cost counts as 0 (pass prices=...)")
        return price

    def _worst_case_usd(self, request: LLMRequest, batch: bool = False) -> float:
        """What ``request`` can cost at most: prompt tokens by tokenizer or byte bound, plus max_tokens."""
        price = self._price(self._model_of(request))
        if not price:
            return 0.0
        prompt_tokens = worst_case_prompt_tokens(request, self._tokenizer())
        return cost_usd(price, prompt_tokens, request.max_tokens, batch=batch)

    def worst_case_usd(self, request: LLMRequest) -> float:
        """The most ``request`` can cost online (what the budget cap reserves for it).

        >>> LLMClient(cache_path=None, prices={"m": {"input": 1e6, "output": 1e6}}, model="m").worst_case_usd(
        ...     LLMRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=3)) > 3
        True
        """
        return self._worst_case_usd(self._prepare(request))

    def _estimate_usd(self, request: LLMRequest, batch: bool = False) -> float:
        """A typical cost (prompt ~ chars/4, completion at max_tokens): for dry runs, not for the cap."""
        price = self._price(self._model_of(request))
        return cost_usd(price, estimate_prompt_tokens(request), request.max_tokens, batch=batch)

    def _tokenizer(self):
        if self.config.tokenizer is None or self._tokenizer_obj is False:
            return None
        if self._tokenizer_obj is None:
            try:
                from transformers import AutoTokenizer  # heavy, and only when a tokenizer was named

                self._tokenizer_obj = AutoTokenizer.from_pretrained(self.config.tokenizer)
            except Exception as e:  # noqa: BLE001 - the byte bound still caps the spend
                logger.warning(
                    f"LLMClient: tokenizer {self.config.tokenizer!r} unavailable ({e}); byte bound used"
                )
                self._tokenizer_obj = False
                return None
        return self._tokenizer_obj

    @property
    def spent_usd(self) -> float:
        """What this client spent (this process); :meth:`total_spent` is the cache's cumulative spend."""
        return self.usage["cost_usd"]

    def total_spent(self) -> dict:
        """Cumulative spend booked in the cache over every run and process (the budget caps this).

        >>> LLMClient(cache_path=None).total_spent()["cost_usd"]
        0.0
        """
        if self._cache is not None:
            return self._cache.spent()
        u = self.usage
        return {"cost_usd": u["cost_usd"], "prompt_tokens": u["prompt_tokens"],
                "completion_tokens": u["completion_tokens"], "answers": u["ok"]}  # fmt: skip

    def budget_summary(self) -> dict:
        """``{"budget_usd", "spent_total_usd", "spent_this_run_usd", "left_usd"}`` for run summaries."""
        total = self.total_spent()["cost_usd"]
        left = None if self.budget_usd is None else round(max(0.0, self.budget_usd - total), 9)
        return {"budget_usd": self.budget_usd, "spent_total_usd": round(total, 9),
                "spent_this_run_usd": round(self.usage["cost_usd"], 9), "left_usd": left}  # fmt: skip

    def estimate_cost(self, requests: Sequence[LLMRequest]) -> dict:
        """Cost upper bound of the requests not yet in the cache (prompt tokens ~ chars/4, completions at
        ``max_tokens``). For ``--dry-run``; sends nothing.

        >>> LLMClient(cache_path=None).estimate_cost([LLMRequest(messages=[{"role": "user", "content": "x" * 400}], max_tokens=100)])["requests"]
        1
        """
        unique = self._unique(requests)
        cached = self._cache.get_many(unique) if self._cache is not None else {}
        todo = [r for k, r in unique.items() if k not in cached]
        prompt_tokens = sum(estimate_prompt_tokens(r) for r in todo)
        completion = sum(r.max_tokens for r in todo)
        usd = sum(self._estimate_usd(r) for r in todo)
        return {
            "requests": len(todo),
            "cached": len(unique) - len(todo),
            "duplicates": len(requests) - len(unique),
            "prompt_tokens": prompt_tokens,
            "max_completion_tokens": completion,
            "usd": round(usd, 9),
            "usd_batch": round(sum(self._estimate_usd(r, batch=True) for r in todo), 9),
            "usd_worst_case": round(sum(self._worst_case_usd(r) for r in todo), 9),  # what the cap reserves
            "model": self.model,
            "priced": all(price_for(self._model_of(r), self.prices) is not None for r in todo),
        }

    def _unique(self, requests: Sequence[LLMRequest]) -> dict[str, LLMRequest]:
        unique: dict[str, LLMRequest] = {}
        for r in requests:
            r = self._prepare(r)
            unique.setdefault(r.key_for(self.model), r)
        return unique

    # ------------------------------------------------------------------ secrets
    def _api_key(self) -> str:
        # never stored on self: read per run, passed straight to the openai client
        return os.environ.get(self.api_key_env) or "EMPTY"  # local servers (vLLM, Ollama) need none

    def _redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env)
        if key and len(key) >= 4:
            text = text.replace(key, "***")
        return _KEY_LIKE.sub("***", text)

    def _openai(self, max_retries: int = 0):
        require_extra("llm", type(self).__name__)
        from openai import AsyncOpenAI  # heavy import, only when sending

        base_url = self.base_url or os.environ.get("OPENAI_BASE_URL") or None
        if base_url == LOCAL:
            from curate.llm.serve import local_endpoint

            base_url, self._served_model = local_endpoint(self.config.model)
        return AsyncOpenAI(
            api_key=self._api_key(), base_url=base_url, max_retries=max_retries, timeout=self.timeout_s
        )

    # ------------------------------------------------------------------ sync entry points
    def run(self, requests: Sequence[LLMRequest], raise_on_budget: bool = False) -> list[LLMResult]:
        """Send the requests (cached ones are answered from the cache) and return results in order."""
        results = _run_coro(self.arun(requests))
        if raise_on_budget and any(r.error == "budget_exhausted" for r in results):
            raise BudgetExceeded(f"budget of ${self.budget_usd} reached", results)
        return results

    def run_batch(
        self,
        requests: Sequence[LLMRequest],
        poll_interval_s: float = 5.0,
        max_rounds: int = 3,
        completion_window: str = "24h",
        work_dir: str | Path | None = None,
    ) -> list[LLMResult]:
        """Batch API: write request files (custom_id = cache key), upload, create batches, poll, import
        every answer into the cache. Expired/failed/partial batches re-queue only the missing ids (up to
        ``max_rounds`` submissions). Returns results in request order, like ``run``."""
        return _run_coro(self.arun_batch(requests, poll_interval_s, max_rounds, completion_window, work_dir))

    # ------------------------------------------------------------------ online
    async def arun(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        requests = [self._prepare(r) for r in requests]
        keys = [self.key_for(r) for r in requests]
        unique = dict(zip(keys, requests, strict=True))
        done: dict[str, LLMResult] = {}
        if self._cache is not None:
            for key, row in self._cache.get_many(unique).items():
                done[key] = self._result_from_row(row, cached=True)
        todo = [(k, r) for k, r in unique.items() if k not in done]
        if todo:
            await self._send_all(todo, done)
        results = [done[k] for k in keys]
        self._account(results)
        return results

    def _account(self, results: list[LLMResult]) -> None:
        u = self.usage
        u["requests"] += len(results)
        for r in results:
            if r.cached:
                u["cached"] += 1
            elif r.ok:
                u["ok"] += 1
            elif r.error == "budget_exhausted":
                u["budget_exhausted"] += 1
            else:
                u["failed"] += 1

    async def _send_all(self, todo: list[tuple[str, LLMRequest]], done: dict[str, LLMResult]) -> None:
        if self.budget_usd is not None and self._cache is not None:
            self._cache.drop_stale_reservations()  # a killed run's in-flight reservations
        client = self._openai()
        state = _RunState(TokenBucket(self.rpm), TokenBucket(self.tpm))
        queue: asyncio.Queue = asyncio.Queue()
        for item in todo:
            queue.put_nowait(item)

        async def worker():
            while True:
                try:
                    key, req = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                done[key] = await self._send_one(client, state, key, req)

        try:
            await asyncio.gather(*(worker() for _ in range(min(self.max_concurrency, len(todo)))))
        finally:
            await client.close()

    def _try_reserve(self, resv: _Reservation) -> tuple[bool, float, float]:
        """-> (reserved, budget left, open reservations). Over the cache's cumulative spend when cached."""
        if self._cache is not None:
            return self._cache.reserve(resv.token, resv.usd, self.budget_usd)
        held = self._reserved_usd
        left = self.budget_usd - self.usage["cost_usd"] - held
        if resv.usd <= left + 1e-12:
            self._reserved_usd += resv.usd
            return True, left - resv.usd, held
        return False, left, held

    def _reserve(self, usd: float) -> bool:
        """Batch API reservations (in memory, over the cumulative spend); online ones use _reserve_when_fits."""
        if self.budget_usd is None:
            return True
        if self.total_spent()["cost_usd"] + self._reserved_usd + usd > self.budget_usd + 1e-12:
            return False
        self._reserved_usd += usd
        return True

    async def _reserve_when_fits(self, state: _RunState, resv: _Reservation) -> float | None:
        """Reserve the worst case; wait while open reservations may still free enough. -> None when
        reserved, else the budget left (this request can never fit; smaller ones may)."""
        if self.budget_usd is None:
            return None
        waited_s = 0.0
        while True:
            ok, left, held = self._try_reserve(resv)
            if ok:
                resv.held = True
                state.held += 1
                return None
            if held <= 1e-12 or resv.usd > left + held + 1e-12:
                return max(0.0, left)
            if state.held == 0 and waited_s > STALE_WAIT_S:
                return max(0.0, left)  # held only by other processes, for long (a dead host's?): give up
            t0 = time.monotonic()
            await state.wait_release()
            waited_s += time.monotonic() - t0

    def _settle(self, state: _RunState | None, resv: _Reservation | None, spend: dict | None,
                row: dict | None = None, release: bool = True) -> None:  # fmt: skip
        """Book a billed answer's spend (and cache its row) and drop the reservation, atomically."""
        if spend:
            self._record_spend(spend["prompt_tokens"], spend["completion_tokens"], spend["cost_usd"])
        held = resv is not None and resv.held and release
        if self._cache is not None:
            if spend or row or held:
                self._cache.settle(resv.token if held else None, spend, row)
        elif held:
            self._reserved_usd -= resv.usd
        if held:
            resv.held = False
            if state is not None:
                state.held -= 1
                state.released.set()

    async def _send_one(self, client, state: _RunState, key: str, req: LLMRequest) -> LLMResult:
        model = self._model_of(req)
        resv = _Reservation(self._worst_case_usd(req))
        left = await self._reserve_when_fits(state, resv)
        if left is not None:  # a hard cap: this request's worst case no longer fits; smaller ones may
            return LLMResult(key=key, ok=False, error="budget_exhausted", model=model, budget_left_usd=left)
        body = self._body(req)
        endpoint = client.chat.completions if req.kind == "chat" else client.completions
        est_tokens = estimate_prompt_tokens(req) + req.max_tokens
        error = "no attempt made"
        attempts = 0
        try:
            for attempt in range(self.max_retries + 1):
                await state.wait_pause()
                await state.rpm.acquire(1)
                await state.tpm.acquire(est_tokens)
                attempts = attempt + 1
                self.usage["sent"] += 1
                if attempt:
                    self.usage["retries"] += 1
                wait = None
                try:
                    raw = await endpoint.with_raw_response.create(**body)
                    pause = proactive_pause_s(raw.headers)
                    if pause:
                        state.pause_for(min(pause, self.max_retry_after_s))
                    completion = raw.parse()
                    return self._success(key, req, completion, attempts, state, resv)
                except _NotRetryable as e:
                    error = self._redact(str(e))
                    break
                except Exception as e:  # classify: retry, or give up with the reason
                    retry, wait, error = self._classify(e)
                    if self._refused_extra(e, body):
                        body = self._body(req)  # once, and not counted as a retry of a server fault
                        continue
                    if not retry:
                        break
                if attempt < self.max_retries:
                    delay = backoff_s(attempt, self.backoff_base_s, self.backoff_max_s, self._rng)
                    if wait is not None:
                        # the server said when: wait at least that long, and make the other workers wait too
                        delay = max(delay, min(wait, self.max_retry_after_s))
                        state.pause_for(min(wait, self.max_retry_after_s))
                    await asyncio.sleep(delay)
            return LLMResult(key=key, ok=False, error=error, model=model, attempts=attempts)
        finally:
            self._settle(state, resv, None)  # a failed request: nothing billed, the reservation goes

    def _body(self, req: LLMRequest) -> dict:
        """The create() kwargs: extra_body dropped once the server refused it; a local server's model id."""
        body = req.sdk_kwargs(self._served_model or self.model)
        if self._extra_refused:
            body.pop("extra_body", None)
        return body

    def _refused_extra(self, e: Exception, body: dict) -> bool:
        """True (and extra_body off for the rest of the run) when ``e`` is an HTTP 400/422 naming a key of
        the body's ``extra_body``: e.g. ``transformers serve`` answers ``top_k`` with 422."""
        import openai

        extra = body.get("extra_body") or {}
        if not extra or not isinstance(e, openai.APIStatusError) or e.status_code not in (400, 422):
            return False
        message = str(getattr(e, "message", "")) + " " + str(getattr(e, "body", ""))
        if not any(name in message for name in extra):
            return False
        if not self._extra_refused:
            logger.warning(f"LLMClient: the server refuses {sorted(extra)}; sending without extra_body")
        self._extra_refused = True
        self.usage["extra_body_refused"] += 1
        return True

    def _classify(self, e: Exception) -> tuple[bool, float | None, str]:
        """-> (retryable, server-requested wait in s, redacted error text)."""
        import openai

        if isinstance(e, openai.APIStatusError):
            status = e.status_code
            headers = e.response.headers if e.response is not None else None
            msg = f"{type(e).__name__}: HTTP {status}: {getattr(e, 'message', e)}"
            return status in RETRYABLE_STATUS or status >= 500, retry_after_s(headers), self._redact(msg)
        if isinstance(e, openai.APITimeoutError):
            return True, None, f"APITimeoutError: no answer within {self.timeout_s}s"
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e.__context__
            return (
                True,
                None,
                self._redact(f"APIConnectionError: {e}" + (f" ({type(cause).__name__})" if cause else "")),
            )
        if isinstance(
            e, (json.JSONDecodeError, openai.APIResponseValidationError, ValueError, TypeError, KeyError)
        ):
            return True, None, self._redact(f"malformed response: {type(e).__name__}: {e}")[:500]
        return False, None, self._redact(f"{type(e).__name__}: {e}")[:500]

    def _success(self, key, req, completion, attempts, state=None, resv=None) -> LLMResult:
        usage = getattr(completion, "usage", None)
        pt = int(getattr(usage, "prompt_tokens", 0) or 0) if usage else 0
        ct = int(getattr(usage, "completion_tokens", 0) or 0) if usage else 0
        usd = cost_usd(self._price(self._model_of(req)), pt, ct)
        spend = {
            "key": key,
            "prompt_tokens": pt,
            "completion_tokens": ct,
            "cost_usd": usd,
            "source": "online",
        }
        choices = getattr(completion, "choices", None)
        if not choices:
            if pt or ct:  # billed without an answer: book it, keep the reservation for the retry
                self._settle(state, resv, spend, release=False)
            raise ValueError("response has no choices")
        choice = choices[0]
        if req.kind == "chat":
            text = choice.message.content if choice.message is not None else None
        else:
            text = choice.text
        if text is None:
            self._settle(state, resv, spend if (pt or ct) else None)
            raise _NotRetryable(f"empty answer (finish_reason={choice.finish_reason!r})")
        model = getattr(completion, "model", None) or self._model_of(req)
        row = {
            "key": key,
            "model": model,
            "text": text,
            "finish_reason": choice.finish_reason,
            "prompt_tokens": pt,
            "completion_tokens": ct,
            "cost_usd": usd,
            "system_fingerprint": getattr(completion, "system_fingerprint", None),
            "source": "online",
            "logprobs": _logprobs_json(choice),
        }
        if req.top_logprobs and row["logprobs"] is None:
            self.usage["logprobs_missing"] += 1
        # answer, spend and release in one commit: a SIGKILL after this line never re-sends or re-pays it
        self._settle(state, resv, spend, row)
        return self._result_from_row(row, cached=False, attempts=attempts)

    def _record_spend(self, pt: int, ct: int, usd: float) -> None:
        self.usage["prompt_tokens"] += pt
        self.usage["completion_tokens"] += ct
        self.usage["cost_usd"] += usd

    @staticmethod
    def _result_from_row(row: dict, cached: bool, attempts: int = 0) -> LLMResult:
        return LLMResult(
            key=row["key"],
            ok=True,
            text=row["text"],
            finish_reason=row.get("finish_reason"),
            usage={
                "prompt_tokens": row.get("prompt_tokens") or 0,
                "completion_tokens": row.get("completion_tokens") or 0,
            },
            cost_usd=0.0 if cached else float(row.get("cost_usd") or 0.0),
            model=row.get("model"),
            system_fingerprint=row.get("system_fingerprint"),
            cached=cached,
            attempts=attempts,
            logprobs=json.loads(row["logprobs"]) if row.get("logprobs") else None,
        )

    # ------------------------------------------------------------------ batch API
    def write_batch_files(
        self,
        requests: Sequence[LLMRequest],
        out_dir: str | Path,
        skip_cached: bool = True,
        max_requests: int = BATCH_MAX_REQUESTS,
        max_bytes: int = BATCH_MAX_BYTES,
    ) -> list[Path]:
        """Write OpenAI Batch API request files (JSONL, ``custom_id`` = cache key), one endpoint per file,
        split at ``max_requests`` lines / ``max_bytes``. Works offline; duplicates and (by default)
        cached requests are left out. Returns the file paths.

        >>> paths = LLMClient(cache_path=None).write_batch_files(
        ...     [LLMRequest(messages=[{"role": "user", "content": "hi"}])], "/tmp/batch_doctest")
        >>> paths[0].name
        'batch-chat-00000.jsonl'
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        unique = self._unique(requests)
        if skip_cached and self._cache is not None:
            cached = self._cache.get_many(unique)
            unique = {k: r for k, r in unique.items() if k not in cached}
        paths: list[Path] = []
        for kind in ("chat", "completion"):
            lines = [
                json.dumps(
                    {"custom_id": k, "method": "POST", "url": ENDPOINTS[kind], "body": r.body(self.model)},
                    ensure_ascii=False,
                )
                + "\n"
                for k, r in unique.items()
                if r.kind == kind
            ]
            part, size, n = [], 0, 0
            for line in lines:
                b = len(line.encode())
                if part and (len(part) >= max_requests or size + b > max_bytes):
                    paths.append(self._write_part(out_dir, kind, n, part))
                    part, size, n = [], 0, n + 1
                part.append(line)
                size += b
            if part:
                paths.append(self._write_part(out_dir, kind, n, part))
        return paths

    @staticmethod
    def _write_part(out_dir: Path, kind: str, n: int, lines: list[str]) -> Path:
        path = out_dir / f"batch-{kind}-{n:05d}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(lines), encoding="utf-8")
        tmp.replace(path)
        return path

    async def arun_batch(
        self,
        requests: Sequence[LLMRequest],
        poll_interval_s: float = 5.0,
        max_rounds: int = 3,
        completion_window: str = "24h",
        work_dir: str | Path | None = None,
    ) -> list[LLMResult]:
        if self._cache is None:
            raise ValueError("run_batch needs a cache_path: batch answers are imported into the cache")
        requests = [self._prepare(r) for r in requests]
        keys = [self.key_for(r) for r in requests]
        unique = dict(zip(keys, requests, strict=True))
        client = self._openai(max_retries=self.max_retries)  # batch management calls: openai's own retries
        errors: dict[str, str] = {}
        left_usd: dict[str, float] = {}
        rounds: dict[str, int] = {}
        imported: set[str] = set()
        try:
            # batches submitted by an earlier (killed) run: import what they produced first
            pending = self._cache.open_batches()
            if pending:
                await self._poll_and_import(client, pending, poll_interval_s, errors, imported)
            cached_before = set(self._cache.get_many(unique)) - imported
            for rnd in range(1, max_rounds + 1):
                have = set(self._cache.get_many(unique))
                missing = {
                    k: r for k, r in unique.items() if k not in have and errors.get(k) != "budget_exhausted"
                }
                if not missing:
                    break
                todo = self._batch_within_budget(missing, errors, left_usd)
                if not todo:
                    break
                batch_ids = await self._submit_batches(client, todo, rnd, completion_window, work_dir)
                for k in todo:
                    rounds[k] = rnd
                await self._poll_and_import(client, batch_ids, poll_interval_s, errors, imported)
                self._reserved_usd = 0.0
        finally:
            self._reserved_usd = 0.0
            await client.close()
        rows = self._cache.get_many(unique)
        results = []
        for k in keys:
            if k in rows:
                res = self._result_from_row(rows[k], cached=k in cached_before, attempts=rounds.get(k, 0))
            else:
                res = LLMResult(
                    key=k,
                    ok=False,
                    error=errors.get(k) or errors.get("__batch__") or "not answered by any batch",
                    model=self._model_of(unique[k]),
                    attempts=rounds.get(k, 0),
                    budget_left_usd=left_usd.get(k) if errors.get(k) == "budget_exhausted" else None,
                )
            results.append(res)
        self._account(results)
        return results

    def _batch_within_budget(self, missing: dict, errors: dict, left_usd: dict) -> dict:
        """The requests whose worst case (at batch prices) still fits; the others are budget_exhausted."""
        todo = {}
        for k, r in missing.items():
            if self._reserve(self._worst_case_usd(r, batch=True)):
                todo[k] = r
            else:
                errors[k] = "budget_exhausted"
                left_usd[k] = max(0.0, self.budget_usd - self.total_spent()["cost_usd"] - self._reserved_usd)
        return todo

    async def _submit_batches(
        self, client, todo: dict, rnd: int, completion_window: str, work_dir
    ) -> list[str]:
        """Upload the request files of ``todo`` and create one batch per file; -> batch ids (recorded)."""
        batch_ids = []
        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            for path in self.write_batch_files(list(todo.values()), tmp):
                endpoint = ENDPOINTS["chat"] if "-chat-" in path.name else ENDPOINTS["completion"]
                f = await client.files.create(file=(path.name, path.read_bytes()), purpose="batch")
                b = await client.batches.create(
                    input_file_id=f.id, endpoint=endpoint, completion_window=completion_window
                )
                n = sum(1 for _ in path.open())
                self._cache.record_batch(b.id, self.model, endpoint, n, b.status)
                batch_ids.append(b.id)
                logger.info(f"LLMClient: submitted batch {b.id} ({n} requests, round {rnd})")
        return batch_ids

    async def _poll_and_import(
        self, client, batch_ids: list[str], poll_interval_s: float, errors: dict[str, str], imported: set[str]
    ) -> None:
        open_ids = list(batch_ids)
        while open_ids:
            still = []
            for bid in open_ids:
                b = await client.batches.retrieve(bid)
                if b.status not in TERMINAL_BATCH_STATUSES:
                    still.append(bid)
                    continue
                await self._import_batch(client, b, errors, imported)
                self._cache.record_batch(
                    bid, self.model, b.endpoint, getattr(b.request_counts, "total", 0) or 0, "imported"
                )
                logger.info(f"LLMClient: batch {bid} ended {b.status}; imported")
            open_ids = still
            if open_ids:
                await asyncio.sleep(poll_interval_s)

    async def _import_batch(self, client, batch, errors: dict[str, str], imported: set[str]) -> None:
        rows = []
        if batch.output_file_id:
            content = await client.files.content(batch.output_file_id)
            for line in content.text.splitlines():
                try:
                    item = json.loads(line)
                    key, resp = item["custom_id"], item.get("response") or {}
                    if resp.get("status_code") != 200:
                        errors[key] = self._redact(
                            f"batch line HTTP {resp.get('status_code')}: {json.dumps(resp.get('body'))[:300]}"
                        )
                        continue
                    rows.append(self._row_from_body(key, resp["body"]))
                except Exception as e:  # one bad line must not lose the others
                    logger.warning(f"LLMClient: unreadable batch output line ({type(e).__name__})")
        if batch.error_file_id:
            content = await client.files.content(batch.error_file_id)
            for line in content.text.splitlines():
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    continue
                key = item.get("custom_id")
                if key:
                    detail = item.get("error") or (item.get("response") or {}).get("body")
                    errors[key] = self._redact(f"batch error: {json.dumps(detail)[:300]}")
        if batch.status in ("expired", "failed", "cancelled"):
            errors.setdefault("__batch__", f"batch {batch.id} {batch.status}")
        for row in rows:
            self._record_spend(row["prompt_tokens"], row["completion_tokens"], row["cost_usd"])
            errors.pop(row["key"], None)
            imported.add(row["key"])
        self._cache.put_many(rows, book=True)

    def _row_from_body(self, key: str, body: dict) -> dict:
        choice = body["choices"][0]
        text = choice["message"]["content"] if "message" in choice else choice["text"]
        if text is None:
            raise ValueError("empty answer")
        usage = body.get("usage") or {}
        pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        model = body.get("model") or self.model
        return {
            "key": key,
            "model": model,
            "text": text,
            "finish_reason": choice.get("finish_reason"),
            "prompt_tokens": pt,
            "completion_tokens": ct,
            "cost_usd": cost_usd(self._price(self.model), pt, ct, batch=True),
            "system_fingerprint": body.get("system_fingerprint"),
            "source": "batch",
        }


class _NotRetryable(Exception):
    pass


class _Reservation:
    """The worst-case cost held for one request while it is in flight."""

    __slots__ = ("token", "usd", "held")

    def __init__(self, usd: float):
        import uuid

        self.token, self.usd, self.held = uuid.uuid4().hex, usd, False


def _logprobs_json(choice) -> str | None:
    """The answer tokens' top logprobs as JSON (for soft labels), or None when the server sent none."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    return json.dumps(
        [
            {"token": t.token, "logprob": t.logprob,
             "top_logprobs": [{"token": a.token, "logprob": a.logprob} for a in (t.top_logprobs or [])]}
            for t in content
        ]
    )  # fmt: skip


class _RunState:
    """Per-run shared state of the workers: limiters, a global pause (server said wait), budget releases."""

    def __init__(self, rpm: TokenBucket, tpm: TokenBucket):
        self.rpm, self.tpm = rpm, tpm
        self.pause_until = 0.0
        self.released = asyncio.Event()  # a reservation was dropped: budget waiters look again
        self.held = 0  # reservations this run holds now

    async def wait_release(self) -> None:
        # other processes sharing the cache release too, unseen here: look again after a short wait
        try:
            await asyncio.wait_for(self.released.wait(), 0.05)
        except TimeoutError:
            pass
        self.released.clear()

    def pause_for(self, seconds: float) -> None:
        self.pause_until = max(self.pause_until, time.monotonic() + seconds)

    async def wait_pause(self) -> None:
        while (left := self.pause_until - time.monotonic()) > 0:
            await asyncio.sleep(left)


def _run_coro(coro):
    """asyncio.run, or - inside a running loop (Jupyter, async callers) - in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    out: dict = {}

    def target():
        try:
            out["value"] = asyncio.run(coro)
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]
