"""The LLM-judge rule against the OpenAI-protocol test server: candidates shortlisted by AST, answers
cached (a rerun sends nothing), verdicts in the report, rules combined with | and &."""

import json

import pyarrow.parquet as pq
import pytest

from decontam.ast_match import ast_match_rate, benchmark_sequences
from decontam.eval_sets import load_benchmark
from decontam.llm_judge import parse_verdict
from decontam.mutate import disguise, light_edit
from decontam.prune import parse_rule
from decontam.report import decontam_audit


def judge_responder(body: dict) -> str:
    """A deterministic stand-in 'model': same problem when the two programs' plain AST rate is >= 0.75
    (it reads both from the prompt, as a model would). Unclear once in a while."""
    text = body["messages"][-1]["content"]
    solution = text.split("Benchmark solution:\n```python\n")[1].split("\n```")[0]
    candidate = text.split("Training code:\n```python\n")[1].split("\n```")[0]
    try:
        rate = ast_match_rate(solution, candidate)
    except SyntaxError:
        return "I cannot tell."
    return "True" if rate >= 0.75 else "False."


@pytest.fixture
def corpus(tmp_path, stdlib_files, write_shards):
    items = [i for i in load_benchmark("humaneval") if len(benchmark_sequences(i.solution, 30)) == 1][:12]
    docs = [(f"std/{p.name}", p.read_text(encoding="utf-8", errors="replace")) for p in stdlib_files[:20]]
    edited = {}
    for k, item in enumerate(items):
        text, done = light_edit(item.solution, seed=k, n_edits=3)
        if len(done) >= 2:
            # plus a statement inserted or deleted: an edit the AST normal form does not undo (a
            # deletion can take the whole function; such a document is no copy and is left out)
            copy = disguise(text, seed=k, structural=True)
            if ast_match_rate(item.solution, copy) >= 0.8:
                edited[f"edited/{k}"] = item.id
                docs.append((f"edited/{k}", copy))
    assert len(edited) >= 5
    return write_shards(tmp_path / "in", docs), edited


def _removed(out, tau="0.95"):
    scores = pq.read_table(out / "scores.parquet").to_pandas()
    return set(scores.loc[scores[f"removed_{tau}"], "id"])


def test_llm_rule_catches_edited_copies_and_caches_answers(corpus, tmp_path, openai_server):
    from openai_server import FaultPlan

    shards, edited = corpus
    srv = openai_server(responder=judge_responder, faults=FaultPlan(rate=0.2, seed=1, max_faults_per_key=2))
    llm = {
        "model": "judge",
        "base_url": srv.base_url,
        "cache_path": str(tmp_path / "cache.sqlite"),
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_retry_after_s": 0.1,
    }
    common = dict(benchmarks=["humaneval"], taus=[0.95], embeddings=False, ngram=False)
    decontam_audit(str(shards), str(tmp_path / "a"), rule="ast", **common)
    ast_only = _removed(tmp_path / "a")
    missed = set(edited) - ast_only
    assert missed, "the light edits should defeat AST at 0.95 for some copies"

    decontam_audit(str(shards), str(tmp_path / "b"), rule="ast|llm", llm=llm, **common)
    with_llm = _removed(tmp_path / "b")
    assert set(edited) <= with_llm  # the judge recovers every edited copy
    assert not any(d.startswith("std/") for d in with_llm)  # and removes no clean file
    verdicts = [json.loads(x) for x in (tmp_path / "b" / "llm_verdicts.jsonl").read_text().splitlines()]
    assert {v["doc_id"] for v in verdicts if v["same"]} >= missed
    assert all(v["answer"] for v in verdicts) and not any(v["cached"] for v in verdicts)
    answers = json.loads((tmp_path / "b" / "decontam.json").read_text())["llm_answers"]
    assert answers["requests"] == len(verdicts)  # counted by the stages' reduce
    assert answers["failed"] == sum(v["same"] is None for v in verdicts)  # "I cannot tell." is no verdict
    html = (tmp_path / "b" / "report" / "report.html").read_text()
    assert "LLM judge verdicts" in html and "same problem" in html
    for doc_id in missed:
        assert f">{doc_id}<" in html
    report = json.loads((tmp_path / "b" / "report" / "report.json").read_text())
    judged = {p["doc_id"]: p["llm"] for p in report["pairs"] if p.get("llm")}
    assert all(judged[d]["same"] for d in missed)  # each pair carries its verdict

    sent = srv.request_count
    decontam_audit(str(shards), str(tmp_path / "c"), rule="ast|llm", llm=llm, **common)
    assert srv.request_count == sent  # every answer came from the cache: nothing is paid twice
    again = [json.loads(x) for x in (tmp_path / "c" / "llm_verdicts.jsonl").read_text().splitlines()]
    assert all(v["cached"] for v in again) and len(again) == len(verdicts)
    assert _removed(tmp_path / "c") == with_llm


def test_rule_grammar_and_verdict_parsing():
    assert parse_rule("both|llm") == [["ast", "embedding"], ["llm"]]
    with pytest.raises(ValueError, match="rule must combine"):
        parse_rule("ast|gpt")
    assert [parse_verdict(a) for a in ("**True**", "No, it differs", "", None, "Possibly")] == [
        True,
        False,
        None,
        None,
        None,
    ]
