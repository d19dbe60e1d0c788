"""LLMClient against the local OpenAI-protocol server: retries, Retry-After, cache, budget, batch files."""

import json
import sqlite3
import subprocess
import sys
import time

import pytest
from openai_server import FaultPlan

from curate.llm import BudgetExceeded, LLMClient, LLMRequest, ResultCache
from curate.llm.limits import parse_duration_s, retry_after_s

FAST = dict(backoff_base_s=0.002, backoff_max_s=0.02, timeout_s=5.0)


def reqs(n, prefix="q", **kw):
    return [
        LLMRequest(messages=[{"role": "user", "content": f"{prefix} {i}"}], max_tokens=8, **kw)
        for i in range(n)
    ]


def test_cache_rerun_sends_only_missing(openai_server, tmp_path):
    srv = openai_server(responder=lambda b: b["messages"][0]["content"].upper())
    client = LLMClient(model="m", base_url=srv.base_url, cache_path=tmp_path / "c.sqlite", **FAST)
    first = client.run(reqs(30))
    assert [r.text for r in first] == [f"Q {i}" for i in range(30)]
    assert srv.request_count == 30 and not any(r.cached for r in first)
    # a new client (a new process would be the same) on the same cache: only the 10 new requests go out
    again = LLMClient(model="m", base_url=srv.base_url, cache_path=tmp_path / "c.sqlite", **FAST)
    res = again.run(reqs(40))
    assert srv.request_count == 40
    assert [r.cached for r in res] == [True] * 30 + [False] * 10
    assert [r.text for r in res] == [f"Q {i}" for i in range(40)]
    # the key covers the model and sampling params: a change is a new request
    other = LLMClient(model="m2", base_url=srv.base_url, cache_path=tmp_path / "c.sqlite", **FAST)
    other.run(reqs(1))
    again.run(reqs(1, temperature=0.7))
    assert srv.request_count == 42
    # duplicates within one run are sent once
    again.run(reqs(1, prefix="dup") * 5)
    assert srv.request_count == 43


def test_retry_after_is_honoured(openai_server, tmp_path):
    srv = openai_server(faults=FaultPlan(rate=1.0, kinds=("429",), retry_after_s=0.6, max_faults_per_key=1))
    client = LLMClient(model="m", base_url=srv.base_url, cache_path=None, **FAST)
    t0 = time.monotonic()
    (res,) = client.run(reqs(1))
    elapsed = time.monotonic() - t0
    assert res.ok and res.attempts == 2
    # backoff alone would be ~2 ms: the wait came from Retry-After
    assert elapsed >= 0.6, elapsed
    assert srv.request_count == 2


def test_rpm_and_tpm_limits(openai_server):
    srv = openai_server()
    client = LLMClient(
        model="m", base_url=srv.base_url, cache_path=None, rpm=1200, max_concurrency=16, **FAST
    )
    t0 = time.monotonic()
    assert all(r.ok for r in client.run(reqs(40)))
    # 1200 rpm = 20/s with a one-second bucket: 20 at once, the other 20 over ~1 s
    assert time.monotonic() - t0 > 0.9  # the limiter made them wait (a lower bound: load cannot break it)
    # tpm: each request is worth ~ 4 + 1 prompt + 8 completion tokens; 6000 tpm = 100 tokens/s
    client = LLMClient(
        model="m", base_url=srv.base_url, cache_path=None, tpm=6000, max_concurrency=16, **FAST
    )
    t0 = time.monotonic()
    assert all(r.ok for r in client.run(reqs(16, prefix="t")))
    assert time.monotonic() - t0 > 0.8


def test_header_parsing():
    assert parse_duration_s("20ms") == pytest.approx(0.02)
    assert parse_duration_s("6m0s") == 360
    assert parse_duration_s("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_duration_s("2") == 2
    assert parse_duration_s("soon") is None
    assert retry_after_s({"retry-after": "3"}) == 3
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "3"}) == pytest.approx(0.25)
    assert retry_after_s({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}) == 360
    assert retry_after_s({}) is None


def test_failures_are_recorded_not_dropped(openai_server, tmp_path):
    srv = openai_server(faults=FaultPlan(rate=1.0, kinds=("500",)))
    client = LLMClient(
        model="m", base_url=srv.base_url, cache_path=tmp_path / "c.sqlite", max_retries=2, **FAST
    )
    res = client.run(reqs(3))
    assert [r.ok for r in res] == [False] * 3
    assert all(r.attempts == 3 and "500" in r.error for r in res)
    assert srv.request_count == 9
    assert len(ResultCache(tmp_path / "c.sqlite")) == 0  # failures are never cached
    assert client.usage["failed"] == 3


def test_timeouts_and_dropped_connections_are_retried(openai_server):
    srv = openai_server(
        faults=FaultPlan(rate=1.0, kinds=("slow", "drop", "malformed"), slow_s=1.5, max_faults_per_key=2)
    )
    client = LLMClient(model="m", base_url=srv.base_url, cache_path=None, max_retries=4, backoff_base_s=0.002,
                       backoff_max_s=0.02, timeout_s=0.5)  # fmt: skip
    res = client.run(reqs(12))
    assert all(r.ok for r in res), [r.error for r in res if not r.ok]
    # two faults per request, each retried: a slow reply waited out instead of cut by the timeout would
    # have answered that attempt, leaving fewer than 3 attempts
    assert all(r.attempts == 3 for r in res)
    assert set(srv.fault_counts) <= {"slow", "drop", "malformed"} and sum(srv.fault_counts.values()) == 24


def test_budget_cap_stops_cleanly(openai_server, tmp_path):
    srv = openai_server(responder=lambda b: "word " * 8)
    prices = {"pricey": {"input": 1000.0, "output": 1000.0}}  # $0.001 per token
    client = LLMClient(model="pricey", base_url=srv.base_url, cache_path=tmp_path / "c.sqlite", max_concurrency=4,
                       budget_usd=0.2, prices=prices, **FAST)  # fmt: skip
    requests = reqs(50)
    est = client.estimate_cost(requests)
    assert est["requests"] == 50 and est["usd"] > 0.2 and est["priced"]
    res = client.run(requests)
    ok = [r for r in res if r.ok]
    stopped = [r for r in res if not r.ok]
    assert ok and stopped and all(r.error == "budget_exhausted" for r in stopped)
    assert client.spent_usd <= 0.2
    assert srv.request_count == len(ok)
    with pytest.raises(BudgetExceeded) as exc:
        client.run(requests, raise_on_budget=True)
    assert len(exc.value.results) == 50
    # raising the budget finishes the job; paid answers are not bought twice
    more = LLMClient(model="pricey", base_url=srv.base_url, cache_path=tmp_path / "c.sqlite", budget_usd=10.0,
                     prices=prices, **FAST)  # fmt: skip
    assert all(r.ok for r in more.run(requests))
    assert srv.request_count == 50


def test_estimate_cost_and_batch_files_offline(tmp_path):
    client = LLMClient(
        model="gpt-4o-mini", cache_path=tmp_path / "c.sqlite", base_url="http://127.0.0.1:9/v1"
    )
    requests = reqs(25) + reqs(5) + [LLMRequest(kind="completion", prompt="def f(", max_tokens=16)]
    est = client.estimate_cost(requests)
    assert est["requests"] == 26 and est["duplicates"] == 5
    assert est["max_completion_tokens"] == 25 * 8 + 16
    assert est["usd"] == pytest.approx(
        (est["prompt_tokens"] * 0.15 + est["max_completion_tokens"] * 0.60) / 1e6, rel=1e-3
    )
    paths = client.write_batch_files(requests, tmp_path / "batch", max_requests=10)
    assert [p.name for p in paths] == ["batch-chat-00000.jsonl", "batch-chat-00001.jsonl", "batch-chat-00002.jsonl",
                                       "batch-completion-00000.jsonl"]  # fmt: skip
    lines = [json.loads(x) for p in paths for x in p.read_text().splitlines()]
    assert len(lines) == 26
    assert {x["custom_id"] for x in lines} == {client.key_for(r) for r in requests}
    assert lines[0]["url"] == "/v1/chat/completions" and lines[-1]["url"] == "/v1/completions"
    assert lines[0]["body"]["model"] == "gpt-4o-mini"
    by_size = client.write_batch_files(requests[:25], tmp_path / "batch2", max_bytes=2000)
    assert len(by_size) > 1 and all(p.stat().st_size <= 2000 for p in by_size)


def test_run_batch_requeues_only_missing(openai_server, tmp_path):
    srv = openai_server(responder=lambda b: "ok " + b["messages"][0]["content"], batch_expire_after=40,
                        faults=FaultPlan(batch_line_rate=0.1, seed=3), batch_delay_s=0.05)  # fmt: skip
    client = LLMClient(model="m", base_url=srv.base_url, cache_path=tmp_path / "c.sqlite", **FAST)
    requests = reqs(100)
    res = client.run_batch(requests, poll_interval_s=0.05, max_rounds=5)
    assert all(r.ok for r in res), [r.error for r in res if not r.ok][:3]
    assert [r.text for r in res] == [f"ok q {i}" for i in range(100)]
    inputs = [srv.files[b["input_file_id"]].decode().splitlines() for b in srv.batches.values()]
    sizes = [len(x) for x in inputs]
    assert sizes[0] == 100 and len(sizes) >= 3
    # each round re-queues exactly the ids the earlier rounds did not answer
    answered = set()
    for lines in inputs:
        ids = {json.loads(x)["custom_id"] for x in lines}
        assert not ids & answered
        batch = next(
            b for b in srv.batches.values() if srv.files[b["input_file_id"]].decode().splitlines() == lines
        )
        if batch["output_file_id"]:
            answered |= {
                json.loads(x)["custom_id"] for x in srv.files[batch["output_file_id"]].decode().splitlines()
            }
    assert srv.received == []  # nothing went through the online endpoint
    # online now answers everything from the same cache
    n = srv.request_count
    assert [r.text for r in client.run(requests)] == [r.text for r in res]
    assert srv.request_count == n


def test_parallel_processes_share_the_cache(openai_server, tmp_path):
    srv = openai_server(responder=lambda b: "x", latency_s=0.005)
    code = (
        "import sys; from curate.llm import LLMClient, LLMRequest\n"
        "c = LLMClient(model='m', base_url=sys.argv[1], cache_path=sys.argv[2], max_concurrency=8)\n"
        "rs = c.run([LLMRequest(messages=[{'role': 'user', 'content': f'p {i}'}], max_tokens=4) for i in range(300)])\n"
        "assert all(r.ok for r in rs), [r.error for r in rs if not r.ok][:3]\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, srv.base_url, str(tmp_path / "c.sqlite")])
        for _ in range(3)
    ]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    assert len(ResultCache(tmp_path / "c.sqlite")) == 300
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
