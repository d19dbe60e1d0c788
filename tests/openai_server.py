"""An OpenAI-protocol test server on 127.0.0.1, with fault injection, for the test suite.

It is the one stand-in the suite allows: it sits at the network edge, so the real ``openai`` client,
our retry/caching code and the labeling/generation steps all run for real against it.

    from openai_server import OpenAITestServer, FaultPlan

    with OpenAITestServer(responder=lambda body: "high", faults=FaultPlan(rate=0.3, seed=0)) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="sk-test")
        ...
        srv.request_count   # every HTTP request received, all endpoints
        srv.received        # parsed JSON bodies of chat/completions requests, in arrival order

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``POST /v1/files`` (multipart
upload), ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``POST /v1/batches``,
``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``, ``GET /v1/models``.

``responder(body) -> str | dict``: a ``str`` becomes the message content (chat) or completion text;
a ``dict`` is returned verbatim as the JSON response (full control, e.g. for odd finish reasons).
An exception raised by the responder becomes a 500.

Real servers' gaps, on request: ``accepted_fields`` (any other body key is an HTTP 422 naming it, as
``transformers serve`` answers ``top_k``), ``logprobs=False`` (asked-for logprobs silently not sent),
``json_schema=False`` (a json_schema response_format is a 400), ``truncate_at_max_tokens``.

Faults are deterministic: whether attempt ``n`` of a request (key = sha256 of its canonical JSON body)
is faulted depends only on ``(seed, key, n)``, so a retried request can succeed and a rerun against
a fresh server with the same plan sees the same faults. The server runs aiohttp on its own event loop
in a background thread, so hundreds of concurrent connections cost nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

FAULT_KINDS = ("429", "500", "slow", "drop", "malformed")
# also accepted in ``kinds``: "503" (with Retry-After), "hang" (no reply for ``hang_s``: past the client's
# timeout), "empty" (HTTP 200 with ``choices: []``)
EXTRA_FAULT_KINDS = ("503", "hang", "empty")
HOSTILE_FAULT_MIX = ("429", "500", "503", "hang", "malformed", "empty", "drop")


@dataclass
class Answer:
    """What a responder may return instead of a plain string.

    ``logprobs``: per answer token, ``(token, [(alternative, logprob), ...])`` - sent when the request
    asked for logprobs (otherwise each token gets logprob 0 and itself as the only alternative).
    ``finish_reason``: e.g. "length" for an answer cut by max_tokens.
    """

    text: str
    finish_reason: str = "stop"
    logprobs: list[tuple[str, list[tuple[str, float]]]] | None = None


@dataclass
class FaultPlan:
    """Which requests fail, and how.

    rate: probability that one attempt of one request is faulted (decided by hashing seed+key+attempt).
    kinds: fault kinds drawn from (uniformly, by the same hash): "429" (with Retry-After), "500",
        "slow" (reply after ``slow_s``; still a valid answer unless the client times out first),
        "drop" (connection closed without a response), "malformed" (HTTP 200 with a non-JSON body).
    retry_after_s: value of the Retry-After header sent with 429s (also x-ratelimit-reset-requests).
    max_faults_per_key: after this many faulted attempts a request always succeeds (None = no cap).
    batch_line_rate: probability that a line of a batch job fails (goes to the error file);
        None -> same as ``rate``.
    """

    rate: float = 0.0
    seed: int = 0
    kinds: tuple[str, ...] = FAULT_KINDS
    retry_after_s: float = 0.05
    slow_s: float = 0.3
    hang_s: float = 30.0
    max_faults_per_key: int | None = None
    batch_line_rate: float | None = None

    def __post_init__(self):
        bad = set(self.kinds) - set(FAULT_KINDS) - set(EXTRA_FAULT_KINDS)
        if bad:
            raise ValueError(f"unknown fault kinds {sorted(bad)}; known: {FAULT_KINDS + EXTRA_FAULT_KINDS}")

    def _draw(self, key: str, attempt: int, salt: str = "") -> tuple[float, int]:
        h = hashlib.sha256(f"{self.seed}:{salt}:{key}:{attempt}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64, int.from_bytes(h[8:12], "big")

    def fault_for(self, key: str, attempt: int) -> str | None:
        """The fault kind for attempt ``attempt`` (0-based) of request ``key``, or None."""
        if self.rate <= 0 or not self.kinds:
            return None
        if self.max_faults_per_key is not None and attempt >= self.max_faults_per_key:
            return None
        u, pick = self._draw(key, attempt)
        return self.kinds[pick % len(self.kinds)] if u < self.rate else None

    def batch_line_fails(self, key: str, attempt: int) -> bool:
        rate = self.rate if self.batch_line_rate is None else self.batch_line_rate
        return rate > 0 and self._draw(key, attempt, "batch")[0] < rate


def body_key(body: Any) -> str:
    """sha256 of the canonical JSON of a request body: the server's notion of 'the same request'."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _count_tokens(text: str) -> int:
    # a rough, deterministic token count (whitespace words) so usage/cost accounting has real numbers
    return max(1, len(text.split())) if text else 0


def _tokens(text: str) -> list[str]:
    import re

    return re.findall(r"\s*\S+", text) or ([text] if text else [])


def _logprobs_json(answer: Answer, top: int) -> dict:
    if answer.logprobs is None:
        pairs = [(t, [(t, 0.0)]) for t in _tokens(answer.text)]
    else:
        pairs = answer.logprobs
    content = []
    for token, alternatives in pairs:
        chosen = next((lp for alt, lp in alternatives if alt == token), 0.0)
        content.append(
            {
                "token": token,
                "logprob": chosen,
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {"token": alt, "logprob": lp, "bytes": list(alt.encode())}
                    for alt, lp in alternatives[:top]
                ],
            }
        )
    return {"content": content, "refusal": None}


def _prompt_text(body: dict) -> str:
    if "messages" in body:
        return " ".join(str(m.get("content") or "") for m in body.get("messages") or [])
    p = body.get("prompt")
    return " ".join(p) if isinstance(p, list) else str(p or "")


class OpenAITestServer:
    """OpenAI-compatible HTTP server on 127.0.0.1 in a background thread (context manager).

    Attributes: ``base_url``, ``request_count``, ``authorizations`` (headers seen, in memory only), ``received`` (chat/completions bodies in arrival
    order), ``batch_received`` (bodies of batch lines processed), ``events`` (one dict per
    chat/completions request: ``{"key", "attempt", "fault", "status"}``), ``fault_counts``
    (Counter of injected fault kinds), ``files`` (id -> bytes), ``batches`` (id -> batch object).

    ``batch_expire_after``: if set, a batch job processes at most that many lines and then ends
    ``expired`` (the rest are absent from its output), to test re-queueing.
    ``batch_delay_s``: time a batch stays ``in_progress`` before it completes.
    ``latency_s``: added to every chat/completions reply (makes a run long enough to kill midway).
    """

    def __init__(
        self,
        responder: Callable[[dict], str | dict] | None = None,
        faults: FaultPlan | None = None,
        *,
        latency_s: float = 0.0,
        batch_delay_s: float = 0.2,
        batch_expire_after: int | None = None,
        port: int = 0,
        json_schema: bool = True,
        truncate_at_max_tokens: bool = False,
        accepted_fields: set[str] | None = None,
        logprobs: bool = True,
    ):
        self.responder = responder or (lambda body: "ok")
        self.faults = faults or FaultPlan()
        self.latency_s = latency_s
        self.batch_delay_s = batch_delay_s
        self.batch_expire_after = batch_expire_after
        self._port = port
        self.json_schema = (
            json_schema  # False: a response_format of type json_schema is a 400, as on old servers
        )
        self.truncate_at_max_tokens = (
            truncate_at_max_tokens  # cut answers at max_tokens words, finish "length"
        )
        # like `transformers serve`: a body key outside these is a 422 naming it (None: anything goes)
        self.accepted_fields = accepted_fields
        self.logprobs = logprobs  # False: logprobs asked for are silently not sent
        self._lock = threading.Lock()
        self.request_count = 0
        self.received: list[dict] = []
        self.batch_received: list[dict] = []
        self.batch_usages: list[dict] = []
        self.events: list[dict] = []
        self.fault_counts: Counter = Counter()
        self.authorizations: set[str] = (
            set()
        )  # Authorization headers seen (memory only; lets tests prove a key was sent)
        self.files: dict[str, bytes] = {}
        self._file_meta: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self._attempts: Counter = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OpenAITestServer:
        ready = threading.Event()
        errors: list[BaseException] = []

        def serve():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start_app())
            except BaseException as e:  # surface bind errors to the caller
                errors.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="openai-test-server", daemon=True)
        self._thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _start_app(self) -> None:
        app = web.Application(client_max_size=512 * 1024**2)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/files", self._upload_file)
        app.router.add_get("/v1/files/{file_id}", self._get_file)
        app.router.add_get("/v1/files/{file_id}/content", self._file_content)
        app.router.add_post("/v1/batches", self._create_batch)
        app.router.add_get("/v1/batches/{batch_id}", self._get_batch)
        app.router.add_post("/v1/batches/{batch_id}/cancel", self._cancel_batch)
        app.router.add_get("/v1/models", self._models)  # readiness probe of datatrove's InferenceRunner
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "test-model", "object": "model"}]})

    # ------------------------------------------------------------------ helpers
    def keys_received(self) -> list[str]:
        """body_key of every chat/completions request received, in arrival order."""
        with self._lock:
            return [body_key(b) for b in self.received]

    def successful_keys(self) -> set[str]:
        """Keys of requests the server answered with a valid 200 (fault-free) at least once."""
        with self._lock:
            return {e["key"] for e in self.events if e["status"] == 200 and e["fault"] in (None, "slow")}

    def billed_usage(self) -> dict:
        """Tokens the server reported in the answers it sent (what a provider bills), over all endpoints.

        Includes answers the client may never have read (e.g. it timed out first), as a provider would."""
        with self._lock:
            usages = [e["usage"] for e in self.events if e.get("usage")] + list(self.batch_usages)
        return {
            "prompt_tokens": sum(u["prompt_tokens"] for u in usages),
            "completion_tokens": sum(u["completion_tokens"] for u in usages),
            "answers": len(usages),
        }

    def _bump(self) -> None:
        with self._lock:
            self.request_count += 1

    def _answer(self, body: dict, kind: str) -> dict:
        """Build the response JSON for one chat/completions body (shared by online and batch)."""
        out = self.responder(body)
        if isinstance(out, dict):
            return out
        answer = out if isinstance(out, Answer) else Answer(str(out))
        if self.truncate_at_max_tokens and body.get("max_tokens"):
            words = _tokens(answer.text)
            if len(words) > int(body["max_tokens"]):
                answer = Answer("".join(words[: int(body["max_tokens"])]), "length", answer.logprobs)
        text = answer.text
        logprobs = None
        if kind == "chat" and body.get("logprobs") and self.logprobs:
            logprobs = _logprobs_json(answer, int(body.get("top_logprobs") or 1))
        prompt_tokens = _count_tokens(_prompt_text(body))
        completion_tokens = _count_tokens(text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        rid = uuid.uuid4().hex[:24]
        if kind == "chat":
            return {
                "id": f"chatcmpl-{rid}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "test-model"),
                "system_fingerprint": "fp_test",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": answer.finish_reason,
                        "logprobs": logprobs,
                    }
                ],
                "usage": usage,
            }
        return {
            "id": f"cmpl-{rid}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.get("model", "test-model"),
            "system_fingerprint": "fp_test",
            "choices": [{"index": 0, "text": text, "finish_reason": answer.finish_reason, "logprobs": None}],
            "usage": usage,
        }

    async def _generate(self, request: web.Request, kind: str) -> web.StreamResponse:
        self._bump()
        if "Authorization" in request.headers:
            self.authorizations.add(request.headers["Authorization"])
        try:
            body = await request.json()
        except Exception:
            return web.json_response(
                {"error": {"message": "invalid JSON body", "type": "invalid_request_error"}}, status=400
            )
        key = body_key(body)
        with self._lock:
            attempt = self._attempts[key]
            self._attempts[key] += 1
            self.received.append(body)
        fault = self.faults.fault_for(key, attempt)
        event = {"key": key, "attempt": attempt, "fault": fault, "status": None}
        with self._lock:
            self.events.append(event)
            if fault:
                self.fault_counts[fault] += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if fault == "429":
            event["status"] = 429
            ra = self.faults.retry_after_s
            return web.json_response(
                {
                    "error": {
                        "message": "Rate limit reached (injected)",
                        "type": "rate_limit_error",
                        "code": "rate_limit_exceeded",
                    }
                },
                status=429,
                headers={
                    "Retry-After": f"{ra:g}",
                    "retry-after-ms": str(int(ra * 1000)),
                    "x-ratelimit-reset-requests": f"{int(ra * 1000)}ms",
                    "x-ratelimit-remaining-requests": "0",
                },
            )
        if fault == "503":
            event["status"] = 503
            return web.json_response(
                {"error": {"message": "Overloaded (injected)", "type": "server_error"}},
                status=503,
                headers={"Retry-After": f"{self.faults.retry_after_s:g}"},
            )
        if fault == "hang":
            event["status"] = "hang"
            await asyncio.sleep(self.faults.hang_s)
            return web.json_response({"error": {"message": "hung (injected)"}}, status=504)
        unexpected = set(body) - self.accepted_fields if self.accepted_fields is not None else set()
        if unexpected:
            event["status"] = 422
            return web.json_response({"detail": f"Unexpected fields in the request: {unexpected}"}, status=422)
        rf = body.get("response_format")
        if not self.json_schema and isinstance(rf, dict) and rf.get("type") == "json_schema":
            event["status"] = 400
            return web.json_response(
                {"error": {"message": "response_format json_schema is not supported", "type": "invalid_request_error",
                           "param": "response_format"}},
                status=400,
            )  # fmt: skip
        if fault == "500":
            event["status"] = 500
            return web.json_response(
                {"error": {"message": "Internal error (injected)", "type": "server_error"}}, status=500
            )
        if fault == "drop":
            event["status"] = "dropped"
            # close the socket without any response: the client sees a dropped connection
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError()
        if fault == "slow":
            await asyncio.sleep(self.faults.slow_s)
        try:
            payload = self._answer(body, kind)
        except Exception as e:
            event["status"] = 500
            return web.json_response(
                {"error": {"message": f"responder failed: {e!r}", "type": "server_error"}}, status=500
            )
        if fault == "empty" and "choices" in payload:
            event["status"] = "empty"
            return web.json_response({**payload, "choices": [], "usage": None})
        if fault == "malformed":
            event["status"] = "malformed"
            return web.Response(
                text='{"id": "chatcmpl-broken", "choices": [ {"mess',
                status=200,
                content_type="application/json",
            )
        event["status"] = 200
        event["usage"] = payload.get("usage")
        return web.json_response(payload)

    async def _chat(self, request):
        return await self._generate(request, "chat")

    async def _completions(self, request):
        return await self._generate(request, "completion")

    # ------------------------------------------------------------------ files
    def _store_file(self, data: bytes, filename: str, purpose: str) -> dict:
        fid = f"file-{uuid.uuid4().hex[:24]}"
        meta = {
            "id": fid,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        with self._lock:
            self.files[fid] = data
            self._file_meta[fid] = meta
        return meta

    async def _upload_file(self, request):
        self._bump()
        reader = await request.multipart()
        data, filename, purpose = b"", "upload.jsonl", "batch"
        while True:
            part = await reader.next()
            if part is None:
                break
            if part.name == "file":
                filename = part.filename or filename
                data = await part.read(decode=False)
            elif part.name == "purpose":
                purpose = (await part.text()).strip()
        return web.json_response(self._store_file(bytes(data), filename, purpose))

    async def _get_file(self, request):
        self._bump()
        meta = self._file_meta.get(request.match_info["file_id"])
        if meta is None:
            return web.json_response(
                {"error": {"message": "No such file", "type": "invalid_request_error"}}, status=404
            )
        return web.json_response(meta)

    async def _file_content(self, request):
        self._bump()
        data = self.files.get(request.match_info["file_id"])
        if data is None:
            return web.json_response(
                {"error": {"message": "No such file", "type": "invalid_request_error"}}, status=404
            )
        return web.Response(body=data, content_type="application/octet-stream")

    # ------------------------------------------------------------------ batches
    async def _create_batch(self, request):
        self._bump()
        body = await request.json()
        fid = body.get("input_file_id")
        if fid not in self.files:
            return web.json_response(
                {"error": {"message": f"No such file {fid}", "type": "invalid_request_error"}}, status=400
            )
        bid = f"batch_{uuid.uuid4().hex[:24]}"
        now = int(time.time())
        batch = {
            "id": bid,
            "object": "batch",
            "endpoint": body.get("endpoint", "/v1/chat/completions"),
            "errors": None,
            "input_file_id": fid,
            "completion_window": body.get("completion_window", "24h"),
            "status": "in_progress",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": now,
            "expires_at": now + 86400,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        with self._lock:
            self.batches[bid] = batch
        asyncio.get_running_loop().create_task(self._process_batch(bid))
        return web.json_response(batch)

    async def _process_batch(self, bid: str) -> None:
        await asyncio.sleep(self.batch_delay_s)
        batch = self.batches[bid]
        if batch["status"] != "in_progress":
            return
        lines = [ln for ln in self.files[batch["input_file_id"]].decode().splitlines() if ln.strip()]
        out_lines, err_lines = [], []
        expired = False
        for i, line in enumerate(lines):
            if self.batch_expire_after is not None and i >= self.batch_expire_after:
                expired = True
                break
            try:
                item = json.loads(line)
                custom_id, url, body = item["custom_id"], item["url"], item["body"]
            except Exception as e:
                err_lines.append(
                    {
                        "id": f"batch_req_{i}",
                        "custom_id": None,
                        "response": None,
                        "error": {"code": "invalid_line", "message": repr(e)},
                    }
                )
                continue
            kind = "chat" if url.endswith("/chat/completions") else "completion"
            key = body_key(body)
            with self._lock:
                attempt = self._attempts[key]
                self._attempts[key] += 1
                self.batch_received.append(body)
            rid = f"batch_req_{uuid.uuid4().hex[:16]}"
            if self.faults.batch_line_fails(key, attempt):
                err_lines.append(
                    {
                        "id": rid,
                        "custom_id": custom_id,
                        "response": {
                            "status_code": 500,
                            "request_id": rid,
                            "body": {
                                "error": {"message": "injected batch line failure", "type": "server_error"}
                            },
                        },
                        "error": None,
                    }
                )
                continue
            try:
                payload = self._answer(body, kind)
            except Exception as e:
                err_lines.append(
                    {
                        "id": rid,
                        "custom_id": custom_id,
                        "response": None,
                        "error": {"code": "responder_error", "message": repr(e)},
                    }
                )
                continue
            if payload.get("usage"):
                self.batch_usages.append(payload["usage"])
            out_lines.append(
                {
                    "id": rid,
                    "custom_id": custom_id,
                    "response": {"status_code": 200, "request_id": rid, "body": payload},
                    "error": None,
                }
            )
        now = int(time.time())
        if out_lines:
            data = "".join(json.dumps(x) + "\n" for x in out_lines).encode()
            batch["output_file_id"] = self._store_file(data, f"{bid}_output.jsonl", "batch_output")["id"]
        if err_lines:
            data = "".join(json.dumps(x) + "\n" for x in err_lines).encode()
            batch["error_file_id"] = self._store_file(data, f"{bid}_error.jsonl", "batch_output")["id"]
        batch["request_counts"] = {"total": len(lines), "completed": len(out_lines), "failed": len(err_lines)}
        if expired:
            batch["status"], batch["expired_at"] = "expired", now
        else:
            batch["status"], batch["completed_at"] = "completed", now

    async def _get_batch(self, request):
        self._bump()
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return web.json_response(
                {"error": {"message": "No such batch", "type": "invalid_request_error"}}, status=404
            )
        return web.json_response(batch)

    async def _cancel_batch(self, request):
        self._bump()
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return web.json_response(
                {"error": {"message": "No such batch", "type": "invalid_request_error"}}, status=404
            )
        if batch["status"] == "in_progress":
            batch["status"], batch["cancelled_at"] = "cancelled", int(time.time())
        return web.json_response(batch)
