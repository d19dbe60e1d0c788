"""What real servers do, injected on the protocol test server: refused body keys, ignored schemas,
missing logprobs. The same checks run on the real server in tests/curate/llm/test_real_server.py."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from llm_helpers import stdlib_snippets

from curate.llm import LLMClient, LLMRequest
from curate.llm.answers import read_label_how
from curate.llm_labeler import LLMQualityLabeler
from decontam.llm_judge import read_verdict
from synth.parse import parse_outcome
from train.evaluate.grader import read_score

REPO = Path(__file__).resolve().parents[3]
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


# ---------------------------------------------------------------- the fallback readers, on any text

_prose = st.text(st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)), max_size=80)


@settings(max_examples=150, deadline=None)
@given(before=_prose, after=_prose, label=st.sampled_from(["high", "low"]), fenced=st.booleans())
def test_a_label_json_inside_any_prose_is_read(before, after, label, fenced):
    obj = json.dumps({"label": label})
    text = f"{before}\n```json\n{obj}\n```\n{after}" if fenced else f"{before} {obj} {after}"
    found, problem, how = read_label_how(text)
    assert (found, problem) == (label, None) and how in ("json", "json_in_text")


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200))
def test_readers_never_raise_and_say_how(text):
    label, problem, how = read_label_how(text, "0-5")
    assert (label is None) != (problem is None) and how in ("json", "json_in_text", "free_text")
    verdict, way = read_verdict(text)
    assert (verdict is None) == (way == "failed")
    score, kind = read_score(text)
    assert (score is None) == (kind == "failed") and (score is None or 0 <= score <= 10)
    outcome, why = parse_outcome("exercises", text)
    assert outcome in ("parsed", "fallback_parsed", "failed") and (outcome == "parsed") == (why is None)


def test_synth_keeps_the_finished_blocks_of_an_answer_cut_at_max_tokens(openai_server, tmp_path):
    from synth.generate import generate_synth

    passage = "Sets hold unique items.\n```python\ns = {1, 2, 2}\nprint(len(s))\n```\nNext we look at " + "x " * 300
    srv = openai_server(responder=lambda b: passage, truncate_at_max_tokens=True)
    llm = {"model": "m", "base_url": srv.base_url, "max_tokens": 60}
    kept = generate_synth("textbooks", tmp_path / "kept", n=2, workers=1, keep_cut=True, llm=llm)
    dropped = generate_synth("textbooks", tmp_path / "dropped", n=2, workers=1, llm=llm)
    assert kept["answers"]["fallback_parsed"] == 2 and kept["answers"]["fallback_reasons"] == {"cut_at_max_tokens": 2}
    assert kept["kept"] + sum(kept["duplicates"].values()) == 2
    assert dropped["answers"]["failed_reasons"] == {"truncated": 2} and dropped["kept"] == 0
    import pyarrow.parquet as pq

    texts = pq.read_table(tmp_path / "kept" / "data").column("text").to_pylist()
    assert texts and all(t.endswith("print(len(s))\n```") for t in texts)  # the unfinished tail is gone


def test_an_llm_stage_manifest_counts_its_answers(openai_server, tmp_path):
    from recipes.engine import run_recipe

    srv = openai_server(responder=lambda b: "Honestly? high.", logprobs=False)
    recipe = {"name": "labels", "llm": {"model": "m", "base_url": srv.base_url, "cache_path": str(tmp_path / "c.sqlite")},
              "stages": [{"name": "label", "input": {"uses": "python_source", "with": {"paths": [str(REPO / "curate" / "llm")]}},
                          "steps": [{"uses": "llm_quality_labeler", "with": {"max_documents": 3}}],
                          "output": str(tmp_path / "labeled"), "executor": {"type": "local", "tasks": 1}}]}  # fmt: skip
    result = run_recipe(recipe)
    answers = next(s["answers"] for s in result.stage("label").manifest["steps"] if "answers" in s)
    assert answers["requests"] == 3 and answers["fallback_parsed"] == 3
    assert answers["parsed"] == 0 and answers["failed"] == 0 and answers["fallback_schema_ignored"] == 3


def test_base_url_local_without_its_extra_fails_validation_naming_the_key(monkeypatch):
    import pytest

    from curate import extras
    from recipes.schema import RecipeError, load_recipe

    monkeypatch.setitem(extras.EXTRA_MODULES, "local-llm", ("no_such_module_for_the_test",))
    with pytest.raises(RecipeError) as error:
        load_recipe("quickstart-llm")
    assert "llm.base_url" in str(error.value) and 'pip install "textbooks[local-llm]"' in str(error.value)
