"""What real servers do, injected on the protocol test server: refused body keys, ignored schemas,
missing logprobs. The same checks run on the real server in tests/curate/llm/test_real_server.py."""

from __future__ import annotations

from llm_helpers import stdlib_snippets

from curate.llm import LLMClient, LLMRequest
from curate.llm_labeler import LLMQualityLabeler

# the body keys `transformers serve` takes (top_k is not one: HTTP 422)
SERVE_FIELDS = {"model", "messages", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop",
                "response_format", "logprobs", "top_logprobs", "n", "stream"}  # fmt: skip


def test_refused_extra_body_is_sent_again_without_it_once_per_run(openai_server):
    srv = openai_server(responder=lambda b: "hello", accepted_fields=SERVE_FIELDS)
    client = LLMClient(model="m", base_url=srv.base_url, cache_path=None, extra_body={"top_k": 20})
    reqs = [LLMRequest(messages=[{"role": "user", "content": f"q{i}"}], max_tokens=4) for i in range(5)]
    results = client.run(reqs)
    assert all(r.ok and r.text == "hello" for r in results)
    assert client.usage["extra_body_refused"] >= 1 and client.usage["failed"] == 0
    assert "top_k" not in srv.received[-1]  # once refused, the rest of the run goes without it
    assert srv.request_count <= len(reqs) + client.max_concurrency


def test_a_422_that_names_no_extra_key_is_a_plain_failure(openai_server):
    srv = openai_server(responder=lambda b: "hello", accepted_fields=SERVE_FIELDS - {"seed"})
    client = LLMClient(model="m", base_url=srv.base_url, cache_path=None, max_retries=1)
    res = client.run([LLMRequest(messages=[{"role": "user", "content": "q"}], max_tokens=4, seed=1)])[0]
    assert not res.ok and "422" in res.error and client.usage["extra_body_refused"] == 0


def test_labeler_reads_fenced_json_with_prose_and_counts_the_fallbacks(openai_server):
    answer = 'Sure! Here is my rating:\n```json\n{"label": "high"}\n```\nThe code is clear.'
    srv = openai_server(responder=lambda b: answer, logprobs=False, accepted_fields=SERVE_FIELDS)
    lab = LLMQualityLabeler({"model": "m", "base_url": srv.base_url, "cache_path": None,
                             "extra_body": {"top_k": 20}})  # fmt: skip
    out = [d.metadata for d in lab.run(iter(stdlib_snippets(4)))]
    assert [md["quality_label"] for md in out] == ["high"] * 4
    assert {md["label_parse"] for md in out} == {"json_in_text"}
    stats = {k: v.total for k, v in lab.stats.stats.items()}
    assert stats["requests"] == 4 and stats["fallback_parsed"] == 4 and stats.get("parsed", 0) == 0
    assert stats["fallback_schema_ignored"] == 4 and stats["fallback_hard_label"] == 4
    assert stats["fallback_extra_body_refused"] >= 1 and stats["fallback_logprobs_missing"] == 4
