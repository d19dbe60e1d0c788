"""End-to-end synth generation against the OpenAI-protocol test server: keep exactly the valid
generations, record a reason for every rejection, resume after kill -9, dry run, budget stop."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds

from curate.llm import LLMClient, LLMRequest
from curate.llm.cache import ResultCache
from synth.diversity import map_to_dict
from synth.generate import build_requests, generate_synth, make_prompts

KEY_ENV = "SYNTH_TEST_API_KEY"
os.environ.setdefault(KEY_ENV, "sk-test")
REPO = Path(__file__).resolve().parents[2]

# six real, different implementations; K makes every good solution unique
BODIES = [
    "return sorted(xs)[0] + K if xs else K",
    "total = 0\n    for x in xs:\n        total += x * x\n    return total + K",
    "seen = set()\n    for x in xs:\n        seen.add(x % 7)\n    return len(seen) * K",
    "best = None\n    for x in xs:\n        if best is None or x > best:\n            best = x\n    return (best or 0) - K",
    "return sum(i * x for i, x in enumerate(xs)) + K",
    "out = K\n    for a, b in zip(xs, xs[1:]):\n        out += abs(a - b)\n    return out",
]


def _solution(name, c, k):
    body = BODIES[k % len(BODIES)].replace("K", str(k))
    doc = f"Work on {c['noun']} in a {c['domain']} setting ({c['subtopic']}); variant {k}."
    return f'def {name}(xs: list) -> int:\n    """{doc}"""\n    {body}'


def _expected(solution, name, arg):
    ns = {}
    exec(solution, ns)  # our own fixture code, not model output
    return ns[name](arg)


EXERCISE_KINDS = [
    "good",
    "good",
    "syntax",
    "no_tests",
    "truncated",
    "tests_fail",
    "vacuous",
    "duplicate",
    "llm_error",
]
EXERCISE_REASON = {
    "syntax": "syntax_error",
    "no_tests": "no_tests",
    "truncated": "truncated",
    "tests_fail": "tests_fail",
    "vacuous": "tests_pass_on_stub",
    "duplicate": "duplicate_solution",
    "llm_error": "llm_error",
}


class ExerciseResponder:
    """Answers an exercise prompt according to its index: good, broken, test-less, truncated, ..."""

    def __init__(self, prompts, delay_s=0.0):
        self.by_name = {p.constraints["function_name"]: p for p in prompts}
        self.delay_s = delay_s

    def kind(self, index):
        return EXERCISE_KINDS[index % len(EXERCISE_KINDS)]

    def __call__(self, body):
        if self.delay_s:
            time.sleep(self.delay_s)
        name = re.search(r"named `(\w+)`", body["messages"][-1]["content"]).group(1)
        p = self.by_name[name]
        kind = self.kind(p.index)
        k = p.index - 7 if kind == "duplicate" else p.index  # same solution as an earlier good one
        sol = _solution(name, p.constraints, k)
        exp = _expected(sol, name, [3, 1, 2])
        tests = f"assert {name}([3, 1, 2]) == {exp!r}\nassert isinstance({name}([5]), int)"
        if kind == "llm_error":
            raise RuntimeError("model overloaded")
        if kind == "syntax":
            sol = sol.replace("xs: list)", "xs: list")
        if kind == "tests_fail":
            tests = f"assert {name}([3, 1, 2]) == {exp!r} + 1"
        if kind == "vacuous":
            tests = f"{name}([1, 2])\nassert True"
        text = f"### Signature\n```python\ndef {name}(xs: list) -> int:\n```\n### Docstring\nSee below.\n"
        text += f"### Solution\n```python\n{sol}\n```\n"
        if kind != "no_tests":
            text += f"### Tests\n```python\n{tests}\n```\n"
        if kind == "truncated":
            return _chat(body, text[: len(text) // 2], "length")
        return text


def _chat(body, text, finish_reason):
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "system_fingerprint": "fp_test",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": len(text.split()),
            "total_tokens": 10 + len(text.split()),
        },
    }


def _ids(out, sub="data"):
    path = Path(out) / sub
    if not path.exists():
        return {}
    t = ds.dataset(str(path), format="parquet").to_table().to_pylist()
    return {r["id"]: r for r in t}


LLM_KEYS = {"budget_usd", "max_concurrency", "prices", "extra_body", "model"}


def _run(kind, out, srv, n, **kw):
    llm = {"base_url": srv.base_url, "api_key_env": KEY_ENV, "max_retries": 0}
    llm.update({k: kw.pop(k) for k in list(kw) if k in LLM_KEYS})
    return generate_synth(kind, out, n=n, llm=llm, workers=2, sandbox_timeout_s=5, **kw)


def test_exercises_keep_exactly_the_valid_ones(openai_server, tmp_path):
    n = 36
    prompts = make_prompts("exercises", n, seed=0)
    responder = ExerciseResponder(prompts)
    srv = openai_server(responder=responder)
    summary = _run("exercises", tmp_path / "ex", srv, n)
    expected_kept = {p.id for p in prompts if responder.kind(p.index) == "good"}
    kept = _ids(tmp_path / "ex")
    assert set(kept) == expected_kept
    excluded = {**_ids(tmp_path / "ex", "excluded/validate"), **_ids(tmp_path / "ex", "excluded/dedup")}
    for p in prompts:
        kind = responder.kind(p.index)
        if kind != "good":
            assert excluded[p.id]["filter_reason"] == EXERCISE_REASON[kind], (p.index, kind)
    # the counts add up, in the summary and in the manifest
    n_rejected = sum(summary["rejected"].values()) + sum(summary["duplicates"].values())
    assert summary["kept"] + n_rejected + summary["pending"] == summary["prompts"] == n
    assert summary["kept"] == len(expected_kept) == 8
    manifest = json.loads((tmp_path / "ex" / "manifest.json").read_text())
    assert manifest["rows"] == 8
    # provenance columns
    row = kept[prompts[0].id]
    assert row["model"] == "gpt-4o-mini" and row["prompt_hash"] == prompts[0].prompt_hash
    assert map_to_dict(row["constraints"])["function_name"] == prompts[0].constraints["function_name"]
    extra = json.loads(row["extra"])
    assert extra["system_fingerprint"] == "fp_test" and len(extra["request_hash"]) == 64
    assert extra["prompt_tokens"] > 0 and extra["completion_tokens"] > 0
    assert extra["tests"].startswith("assert") and extra["signature"].startswith("def ")


TEXTBOOK_KINDS = ["good", "good", "no_code", "syntax", "truncated", "exact_dup", "near_dup"]


def test_textbooks_reasons_and_duplicates(openai_server, tmp_path):
    n = 14
    prompts = make_prompts("textbooks", n, seed=4)
    by_text = {p.text: p for p in prompts}

    def passage(p):
        c = p.constraints
        return (
            f"# {c['subtopic'].title()}\nImagine {c['theme']} and a {c['word']}; {c['audience']} will like it.\n"
            f"```python\nitems = {list(range(p.index + 2))}\nprint(sum(items), '{c['word']}')\n```\n"
            f"Each of the {p.index + 2} items counts once in {c['style']} form."
        )

    def responder(body):
        p = by_text[body["messages"][-1]["content"]]
        kind = TEXTBOOK_KINDS[p.index % 7]
        if kind == "exact_dup":
            return passage(prompts[p.index - 5])
        if kind == "near_dup":  # an earlier good passage with one sentence added
            return passage(prompts[p.index - 5]) + " That is the whole story."
        if kind == "no_code":
            return "A passage with no code at all, only prose about " + p.constraints["subtopic"]
        if kind == "syntax":
            return passage(p).replace("print(sum(items)", "print(sum(items]")
        if kind == "truncated":
            return _chat(body, passage(p)[:60] + "\n```python\nx = [", "length")
        return passage(p)

    srv = openai_server(responder=responder)
    summary = _run("textbooks", tmp_path / "tb", srv, n, seed=4, execute=True)
    reasons = {
        "no_code": "no_code",
        "syntax": "syntax_error",
        "truncated": "truncated",
        "exact_dup": "exact_duplicate",
        "near_dup": "near_duplicate",
    }
    kept = _ids(tmp_path / "tb")
    assert set(kept) == {p.id for p in prompts if TEXTBOOK_KINDS[p.index % 7] == "good"}
    excluded = {**_ids(tmp_path / "tb", "excluded/validate"), **_ids(tmp_path / "tb", "excluded/dedup")}
    for p in prompts:
        kind = TEXTBOOK_KINDS[p.index % 7]
        if kind != "good":
            assert excluded[p.id]["filter_reason"] == reasons[kind]
    assert summary["kept"] + sum(summary["rejected"].values()) + sum(summary["duplicates"].values()) == n
    assert json.loads(kept[prompts[0].id]["extra"])["exec_status"] == "passed"


def test_dry_run_writes_prompts_batch_file_and_estimate(tmp_path):
    summary = generate_synth("exercises", tmp_path / "dry", n=25, seed=2, dry_run=True)
    lines = (tmp_path / "dry" / "prompts.jsonl").read_text().splitlines()
    assert len(lines) == 25 and json.loads(lines[0])["constraints"]["function_name"]
    batch = [json.loads(x) for f in summary["batch_files"] for x in Path(f).read_text().splitlines()]
    assert len(batch) == 25 and batch[0]["url"] == "/v1/chat/completions"
    assert {b["custom_id"] for b in batch} == {json.loads(x)["request_hash"] for x in lines}
    est = json.loads((tmp_path / "dry" / "cost_estimate.json").read_text())["cost_estimate"]
    assert est["requests"] == 25 and est["usd"] > 0
    assert not (tmp_path / "dry" / "data").exists()  # nothing was generated


def test_budget_stop_leaves_pending_then_resumes(openai_server, tmp_path):
    n = 18
    prompts = make_prompts("exercises", n, seed=0)
    srv = openai_server(responder=ExerciseResponder(prompts))
    first = _run("exercises", tmp_path / "b", srv, n, budget_usd=0.0009, max_concurrency=1, chunk_size=6)
    assert 0 < first["pending"] < n
    assert (
        first["kept"] + sum(first["rejected"].values()) + sum(first["duplicates"].values()) + first["pending"]
        == n
    )
    sent_before = len(srv.received)
    second = _run("exercises", tmp_path / "b", srv, n)
    assert second["pending"] == 0
    # only the prompts left pending (and the llm_error ones, which were never answered) are sent again
    llm_errors = first["rejected"].get("llm_error", 0)
    assert len(srv.received) - sent_before == first["pending"] + llm_errors


def test_batch_api_gives_the_same_shards_as_online(openai_server, tmp_path):
    n = 18
    prompts = make_prompts("exercises", n, seed=0)
    srv = openai_server(responder=ExerciseResponder(prompts))
    online = _run("exercises", tmp_path / "online", srv, n)
    batch = _run("exercises", tmp_path / "batch", srv, n, batch_api=True, poll_interval_s=0.05)
    assert srv.batch_received and batch["kept"] == online["kept"] > 0
    assert batch["rejected"] == online["rejected"] and batch["duplicates"] == online["duplicates"]
    assert set(_ids(tmp_path / "batch")) == set(_ids(tmp_path / "online"))


KILL_SCRIPT = """
import sys
from synth.diversity import map_to_dict
from synth.generate import generate_synth
generate_synth("exercises", sys.argv[1], n=int(sys.argv[2]),
               llm={{"base_url": sys.argv[3], "api_key_env": "{key}", "max_retries": 0, "max_concurrency": 2}},
               workers=2, sandbox_timeout_s=5)
"""


def _key_of(body):
    """The client's cache key of a request body the server received."""
    req = LLMRequest(
        messages=body["messages"],
        temperature=body["temperature"],
        max_tokens=body["max_tokens"],
        seed=body.get("seed"),
    )
    return LLMClient(cache_path=None).key_for(req)


def test_kill_9_mid_generation_then_rerun_resends_nothing_and_matches(openai_server, tmp_path):
    n = 54
    prompts = make_prompts("exercises", n, seed=0)
    srv = openai_server(responder=ExerciseResponder(prompts, delay_s=0.05))
    out = tmp_path / "killed"
    env = {**os.environ, KEY_ENV: "sk-test", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT.format(key=KEY_ENV), str(out), str(n), srv.base_url],
        env=env,
        cwd=REPO,
    )
    deadline = time.time() + 60
    while len(srv.received) < 20 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()  # it really died mid-generation
    keys = [LLMClient(cache_path=None).key_for(r) for r in build_requests(prompts, 0.8, 900, 0)]
    completed = set(ResultCache(out / ".cache" / "llm.sqlite").get_many(keys))
    assert 0 < len(completed) < n
    before = len(srv.received)
    resumed = _run("exercises", out, srv, n)
    resent = [_key_of(b) for b in srv.received[before:]]
    assert not set(resent) & completed  # no request re-sent for a completed prompt
    assert set(resent) | completed >= set(keys) - {
        k for k, p in zip(keys, prompts, strict=True) if p.index % 9 == 8
    }

    srv2 = openai_server(responder=ExerciseResponder(prompts))
    clean = _run("exercises", tmp_path / "clean", srv2, n)
    assert {k: v for k, v in resumed.items() if k not in ("llm", "output_dir")} == {
        k: v for k, v in clean.items() if k not in ("llm", "output_dir")
    }
    for sub in ("data", "excluded/validate", "excluded/dedup"):
        assert _ids(out, sub) == _ids(tmp_path / "clean", sub), sub


def test_exercise_generation_sends_extra_body_and_reports_cumulative_spend(openai_server, tmp_path):
    """Issue 12: `llm: {extra_body: {top_k: 20}}` reaches the server; the summary shows the cache's total spend."""
    n = 6
    prompts = make_prompts("exercises", n, seed=0)
    srv = openai_server(responder=ExerciseResponder(prompts))
    first = _run("exercises", tmp_path / "x", srv, n, extra_body={"top_k": 20, "repetition_penalty": 1.05})
    assert len(srv.received) == n
    assert all(b["top_k"] == 20 and b["repetition_penalty"] == 1.05 for b in srv.received)
    assert first["llm"]["spent_total_usd"] == first["llm"]["spent_this_run_usd"] > 0
    again = _run("exercises", tmp_path / "x", srv, n, extra_body={"top_k": 20, "repetition_penalty": 1.05})
    assert len(srv.received) == n  # all cached: the same parameters are the same requests
    assert (
        again["llm"]["spent_this_run_usd"] == 0
        and again["llm"]["spent_total_usd"] == first["llm"]["spent_total_usd"]
    )
