"""LLMQualityLabeler against the local OpenAI-protocol server: faults, kill -9 + rerun, batch == online,
the API key never written anywhere."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datatrove.data import Document
from llm_helpers import rating_responder, stdlib_snippets
from openai_server import FaultPlan, body_key

from curate.llm_labeler import LLMQualityLabeler, in_sample, parse_label

FAST = dict(backoff_base_s=0.002, backoff_max_s=0.02)


def label(labeler, docs, rank=0, world_size=1):
    docs = [Document(text=d.text, id=d.id, metadata=dict(d.metadata)) for d in docs]
    return {d.id: d.metadata for d in labeler.run(iter(docs), rank, world_size)}


def test_parse_label():
    assert parse_label("High") == "high"
    assert parse_label("low.") == "low"
    assert parse_label("The educational value is **low** because it is boilerplate.") == "low"
    assert parse_label("Answer: high\n(not low)") == "high"
    assert parse_label("It is neither high nor low") is None
    assert parse_label("") is None and parse_label(None) is None
    assert parse_label("Good naming and docstrings.\nEducational score: 4", "0-5") == "4"
    assert parse_label("I'd give it 2 out of 5", "0-5") == "2"
    assert parse_label("3", "0-5") == "3"
    assert parse_label("Educational score: 7", "0-5") is None
    assert parse_label("no idea", "0-5") is None


def test_sample_is_deterministic_and_capped(openai_server, tmp_path):
    srv = openai_server(responder=rating_responder)
    docs = stdlib_snippets(300)
    lab = LLMQualityLabeler({"model": "m", "base_url": srv.base_url, "cache_path": str(tmp_path / "c.sqlite")},
                            sample_rate=0.3)  # fmt: skip
    out = label(lab, docs)
    chosen = {i for i, md in out.items() if "prompt_hash" in md}
    assert chosen == {d.id for d in docs if in_sample(d.id, 0.3)}
    assert 60 < len(chosen) < 120 and srv.request_count == len(chosen)
    untouched = [md for i, md in out.items() if i not in chosen]
    assert all(set(md) == {"source"} for md in untouched)
    # max_documents over 2 tasks: each rank labels at most ceil(50 / 2)
    capped = LLMQualityLabeler({"model": "m", "base_url": srv.base_url, "cache_path": None}, max_documents=50)
    per_rank = [sum("prompt_hash" in md for md in label(capped, docs[r::2], r, 2).values()) for r in range(2)]
    assert per_rank == [25, 25]


def test_0_5_scale(openai_server, tmp_path):
    srv = openai_server(responder=lambda b: "Clear and self-contained.\nEducational score: 3")
    lab = LLMQualityLabeler({"model": "m", "base_url": srv.base_url, "cache_path": None}, scale="0-5")
    out = label(lab, stdlib_snippets(5))
    assert {md["quality_label"] for md in out.values()} == {"3"}
    assert (
        srv.received[0]["max_tokens"] == 320
        and "additive 5-point" in srv.received[0]["messages"][0]["content"]
    )
    assert (
        srv.received[0]["response_format"]["json_schema"]["schema"]["properties"]["score"]["type"]
        == "integer"
    )


def test_2000_docs_with_30pct_faults(openai_server, tmp_path):
    """Must show: every document labeled or recorded as failed with a reason; no crash."""
    faults = FaultPlan(rate=0.3, seed=7, retry_after_s=0.01, slow_s=0.05)
    srv = openai_server(responder=rating_responder, faults=faults)
    docs = stdlib_snippets(2000)
    assert len(docs) == 2000
    lab = LLMQualityLabeler({"model": "m", "base_url": srv.base_url, "cache_path": str(tmp_path / "c.sqlite"),
                             "max_concurrency": 32, "max_retries": 4, "timeout_s": 5.0, **FAST})  # fmt: skip
    out = label(lab, docs)
    assert list(out) == [d.id for d in docs]  # nothing dropped, order kept
    labeled = [md for md in out.values() if md.get("quality_label") in ("high", "low")]
    failed = [md for md in out.values() if md.get("label_error")]
    assert len(labeled) + len(failed) == 2000
    assert all(md["label_error"] and md["label_source"] == "m" for md in failed)
    unparseable = [md for md in failed if md["label_error"] == "unparseable"]
    assert unparseable and all(md["label_raw"].startswith("I am not able") for md in unparseable)
    # every fault kind was injected, and ~30% of first attempts were faulted
    assert set(srv.fault_counts) == {"429", "500", "slow", "drop", "malformed"}
    first = [e for e in srv.events if e["attempt"] == 0]
    assert 0.25 < sum(e["fault"] is not None for e in first) / len(first) < 0.35
    # labels are the responder's verdicts for the exact prompt sent
    by_content = {b["messages"][0]["content"]: b for b in srv.received}
    for d in docs[:50]:
        md = out[d.id]
        if "quality_label" in md:
            expected = rating_responder(by_content[lab.request_for(d).messages[0]["content"]])
            assert md["quality_label"] == parse_label(expected)


WORKER = r"""
import json, sys
from datatrove.data import Document
from curate.llm_labeler import LLMQualityLabeler
base_url, cache, docs_path, out_path = sys.argv[1:5]
docs = [Document(**json.loads(x)) for x in open(docs_path)]
lab = LLMQualityLabeler({"model": "m", "base_url": base_url, "cache_path": cache, "max_concurrency": 8,
                         "backoff_base_s": 0.002, "backoff_max_s": 0.02}, batch_size=64)
with open(out_path, "w") as f:
    for d in lab.run(iter(docs)):
        f.write(json.dumps({"id": d.id, "label": d.metadata.get("quality_label"), "error": d.metadata.get("label_error")}) + "\n")
"""


def _cache_rows(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with sqlite3.connect(path, timeout=30) as conn:
        try:
            return {r[0] for r in conn.execute("SELECT key FROM results")}
        except sqlite3.OperationalError:  # table not created yet
            return set()


def test_kill9_and_rerun_resends_nothing_answered(openai_server, tmp_path):
    """Must show: kill -9 mid-labeling, rerun: no second request for an already-answered document, and the
    final labels equal an uninterrupted run's."""
    docs = stdlib_snippets(600)
    docs_path = tmp_path / "docs.jsonl"
    docs_path.write_text(
        "".join(json.dumps({"text": d.text, "id": d.id, "metadata": d.metadata}) + "\n" for d in docs)
    )
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    faults = FaultPlan(rate=0.1, seed=1, kinds=("429", "500"), retry_after_s=0.01)

    # the uninterrupted reference run (its own server and cache)
    ref_srv = openai_server(responder=rating_responder, faults=faults)
    subprocess.run([sys.executable, str(script), ref_srv.base_url, str(tmp_path / "ref.sqlite"), str(docs_path),
                    str(tmp_path / "ref.jsonl")], check=True, timeout=180)  # fmt: skip
    reference = [json.loads(x) for x in (tmp_path / "ref.jsonl").read_text().splitlines()]

    srv = openai_server(responder=rating_responder, faults=faults, latency_s=0.02)
    cache = tmp_path / "c.sqlite"
    proc = subprocess.Popen(
        [sys.executable, str(script), srv.base_url, str(cache), str(docs_path), str(tmp_path / "a.jsonl")]
    )
    deadline = time.monotonic() + 120
    while len(_cache_rows(cache)) < 150 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    answered_before = _cache_rows(cache)
    assert 150 <= len(answered_before) < 600, "the kill must land midway"
    n_before = len(srv.received)
    served_ok_before = srv.successful_keys()

    subprocess.run([sys.executable, str(script), srv.base_url, str(cache), str(docs_path), str(tmp_path / "b.jsonl")],
                   check=True, timeout=180)  # fmt: skip
    final = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]

    # map server-side body keys to the client's cache keys
    lab = LLMQualityLabeler({"model": "m", "cache_path": None})
    from curate.llm import LLMClient

    client = LLMClient(model="m", cache_path=None)
    to_cache_key = {body_key(lab.request_for(d).body("m")): client.key_for(lab.request_for(d)) for d in docs}
    resent = [to_cache_key[body_key(b)] for b in srv.received[n_before:]]
    assert resent, "the rerun had work left to do"
    assert not set(resent) & answered_before, "a request with a cached answer was sent again"
    # answers the server sent but the killed process never stored can only be the ones in flight
    in_flight = {k for k in served_ok_before if to_cache_key[k] not in answered_before}
    assert len(in_flight) <= 8
    assert final == reference
    assert sum(r["label"] is not None for r in final) > 550


def test_batch_mode_matches_online_from_same_cache(openai_server, tmp_path):
    """Must show: batch mode through files/batches gives the same labels as online mode, from the same cache."""
    docs = stdlib_snippets(120)
    online_srv = openai_server(responder=rating_responder)
    online = LLMQualityLabeler(
        {"model": "m", "base_url": online_srv.base_url, "cache_path": str(tmp_path / "online.sqlite")}
    )
    online_labels = {i: md.get("quality_label") for i, md in label(online, docs).items()}

    batch_srv = openai_server(responder=rating_responder, faults=FaultPlan(batch_line_rate=0.1, seed=6),
                              batch_delay_s=0.05)  # fmt: skip
    cache = str(tmp_path / "batch.sqlite")
    batch = LLMQualityLabeler({"model": "m", "base_url": batch_srv.base_url, "cache_path": cache}, mode="batch",
                              poll_interval_s=0.05)  # fmt: skip
    batch_labels = {i: md.get("quality_label") for i, md in label(batch, docs).items()}
    assert batch_labels == online_labels
    assert batch_srv.received == [] and len(batch_srv.batches) >= 2  # line failures were re-queued
    # online mode on the batch-filled cache: same labels, nothing sent
    n = batch_srv.request_count
    again = LLMQualityLabeler({"model": "m", "base_url": batch_srv.base_url, "cache_path": cache})
    assert {i: md.get("quality_label") for i, md in label(again, docs).items()} == online_labels
    assert batch_srv.request_count == n


def test_dry_run_helpers(tmp_path):
    docs = stdlib_snippets(40)
    lab = LLMQualityLabeler(
        {"model": "gpt-4o-mini", "cache_path": str(tmp_path / "c.sqlite")}, sample_rate=0.5
    )
    est = lab.estimate_cost(docs)
    assert est["requests"] == sum(in_sample(d.id, 0.5) for d in docs) and est["usd"] > 0
    paths = lab.write_batch_files(docs, str(tmp_path / "batch"))
    assert sum(len(p.read_text().splitlines()) for p in paths) == est["requests"]


KEY = "sk-test-LEAKCHECK-9f8e7d6c5b4a39281706"


def test_api_key_is_written_nowhere(openai_server, tmp_path, monkeypatch):
    """Must show: the API key appears in no log, cache, manifest or shard (every file is searched)."""
    from datatrove.executor import LocalPipelineExecutor
    from loguru import logger

    from curate.manifest import write_manifest
    from curate.shards import ShardWriter

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    srv = openai_server(
        responder=rating_responder, faults=FaultPlan(rate=0.5, seed=2, retry_after_s=0.01, slow_s=0.05)
    )
    out = tmp_path / "out"
    lab = LLMQualityLabeler({"model": "m", "base_url": srv.base_url, "cache_path": str(out / "llm_cache.sqlite"),
                             "max_retries": 1, "timeout_s": 2.0, **FAST})  # fmt: skip
    LocalPipelineExecutor([stdlib_snippets(200), lab, ShardWriter(str(out / "data"))], tasks=1,
                          logging_dir=str(out / ".logs")).run()  # fmt: skip
    # datatrove's executor resets loguru's handlers, so the extra debug sink goes on afterwards
    sink = logger.add(tmp_path / "loguru.log", level="DEBUG")
    try:
        batch = LLMQualityLabeler({"model": "m", "base_url": srv.base_url, "cache_path": str(out / "llm_cache.sqlite")},
                                  mode="batch", poll_interval_s=0.05, overwrite=True)  # fmt: skip
        label(batch, stdlib_snippets(220))
        write_manifest(out, stage="label")
    finally:
        logger.remove(sink)
    assert f"Bearer {KEY}" in srv.authorizations  # the key really was used
    import pyarrow.dataset as ds

    table = ds.dataset(out / "data", format="parquet").to_table()
    assert table.num_rows == 200
    errors = table.column("label_error").to_pylist()
    assert any(e and e != "unparseable" for e in errors), "some requests failed, so error texts were written"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".sqlite") for p in files) and any(".logs" in p.parts for p in files)
    assert (out / "manifest.json").exists()
    # Parquet pages are zstd-compressed: search the decoded rows too
    assert KEY not in json.dumps(table.to_pylist(), default=str)
    for p in files:
        data = p.read_bytes()
        assert KEY.encode() not in data, f"API key leaked into {p}"
        assert KEY[8:].encode() not in data, f"part of the API key leaked into {p}"


@pytest.mark.parametrize("bad", ["{text", "no placeholder"])
def test_bad_prompt_is_rejected(bad):
    with pytest.raises(ValueError):
        LLMQualityLabeler(prompt=bad)
