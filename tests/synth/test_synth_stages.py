"""Synthesis as datatrove stages against the OpenAI-protocol test server: the same rows whichever
executor size or backend runs it, per-task caches that a rerun reads, and a budget that stays a hard
cap over several runs of 4 tasks that share no lock."""

import os
import re
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from datatrove.executor import LocalPipelineExecutor
from openai_server import FaultPlan, body_key

from curate.llm import LLMClient, LLMRequest
from curate.llm.task_cache import TaskCache, read_ledger
from curate.shards import ExclusionWriter, ShardWriter
from synth.generate import generate_synth, make_prompts
from synth.stages import SynthGenerator, dedup_shards, shard_bounds
from synth.validate import TextbookFilter

KEY_ENV = "SYNTH_TEST_API_KEY"
os.environ.setdefault(KEY_ENV, "sk-test")
PRICES = {"test-model": {"input": 100.0, "output": 400.0}}  # USD per 1M tokens: answers cost ~1e-2


def textbook_responder(prompts, delay_s: float = 0.0):
    """Good passages, some without code, some exact duplicates of an earlier one (across shards)."""
    by_text = {p.text: p for p in prompts}

    def passage(p):
        c = p.constraints
        return (f"# {c['subtopic'].title()}\nImagine {c['theme']} and a {c['word']}.\n"
                f"```python\nitems = {list(range(p.index + 2))}\nprint(sum(items))\n```\nDone.")  # fmt: skip

    def respond(body):
        time.sleep(delay_s)  # a slow model: lets a test kill a task mid-generation
        p = by_text[body["messages"][-1]["content"]]
        if p.index % 5 == 3:
            return "Only prose about " + p.constraints["subtopic"]
        if p.index % 5 == 4 and p.index >= 7:
            return passage(prompts[p.index - 7])  # a duplicate of a passage another task wrote
        return passage(p)

    return respond


def llm_block(srv, **extra):
    return {"base_url": srv.base_url, "api_key_env": KEY_ENV, "max_retries": 2, "backoff_base_s": 0.01,
            "model": "test-model", "prices": PRICES, "max_concurrency": 4, **extra}  # fmt: skip


def run_stage(out: Path, generator: SynthGenerator, tasks: int, workers: int = 1) -> dict:
    """generate -> validate -> shards on `tasks` local tasks, then the dedup reduce job."""
    pipeline = [
        generator,
        TextbookFilter(
            exclusion_writer=ExclusionWriter(str(out / "validated/excluded/validate"), "validate")
        ),
        ShardWriter(str(out / "validated/data")),
    ]
    LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(out / "logs")).run()
    return dedup_shards(str(out / "validated"), str(out / "final"))


def rows(folder: Path) -> list[dict]:
    if not folder.exists():
        return []
    table = ds.dataset(str(folder), format="parquet").to_table(columns=["id", "text", "filter_reason"])
    return sorted(table.to_pylist(), key=lambda r: r["id"])


def test_shards_cover_every_prompt_once():
    for n, tasks in [(10, 4), (3, 4), (17, 5)]:
        spans = [shard_bounds(n, r, tasks) for r in range(tasks)]
        assert [i for lo, hi in spans for i in range(lo, hi)] == list(range(n))


def test_local_4_tasks_and_inference_runner_give_the_same_rows(openai_server, tmp_path):
    n = 20
    prompts = make_prompts("textbooks", n, seed=3)
    srv = openai_server(responder=textbook_responder(prompts))
    outputs = {}
    for name, tasks, backend in [
        ("one", 1, "client"),
        ("four", 4, "client"),
        ("runner", 4, "inference_runner"),
    ]:
        gen = SynthGenerator("textbooks", n, str(tmp_path / name / "cache"), seed=3, llm=llm_block(srv),
                             backend=backend, chunk_size=3)  # fmt: skip
        outputs[name] = run_stage(tmp_path / name, gen, tasks, workers=2 if name == "four" else 1)
    # each backend asked every prompt exactly once (three fresh caches)
    assert len(srv.received) == 3 * n
    assert set(srv.keys_received()) == {body_key(b) for b in srv.received[:n]}
    first = rows(tmp_path / "one/final/data")
    assert first and outputs["one"]["prompts"] == n
    assert outputs["one"]["duplicates"] == {"exact_duplicate": 3}
    assert outputs["one"]["rejected"] == {"no_code": 4}
    for name in ("four", "runner"):
        assert outputs[name] == outputs["one"], name
        assert rows(tmp_path / name / "final/data") == first, name
        for sub in ("validated/excluded", "final/excluded"):
            assert rows(tmp_path / name / sub) == rows(tmp_path / "one" / sub), (name, sub)
    # the one-process job gives the same kept rows
    job = generate_synth("textbooks", tmp_path / "job", n, seed=3, llm=llm_block(srv), workers=1)
    assert job["kept"] == outputs["one"]["kept"]
    assert [r["id"] for r in rows(tmp_path / "job/data")] == [r["id"] for r in first]


def test_rerun_on_another_task_count_reads_every_cache(openai_server, tmp_path):
    n = 12
    prompts = make_prompts("textbooks", n, seed=1)
    srv = openai_server(responder=textbook_responder(prompts))
    cache = f"memory://{tmp_path.name}/cache"  # an fsspec URL (s3:// works the same); tasks run in-process
    llm = llm_block(srv, budget_usd=1000.0)  # with a budget: claims close their segment (object store)
    run_stage(tmp_path / "a", SynthGenerator("textbooks", n, cache, seed=1, llm=llm), tasks=4)
    sent = len(srv.received)
    assert read_ledger(cache).spent()["answers"] == n
    run_stage(tmp_path / "b", SynthGenerator("textbooks", n, cache, seed=1, llm=llm), tasks=3)
    assert sent == n and len(srv.received) == n  # 3 tasks answered everything from 4 tasks' files
    assert rows(tmp_path / "a/final/data") == rows(tmp_path / "b/final/data")


def test_three_budgeted_runs_on_4_tasks_never_bill_over_the_budget(openai_server, tmp_path):
    """Must show (issue 21): billed total never over the budget; a rerun pays 0 for answered requests."""
    n = 24
    prompts = make_prompts("textbooks", n, seed=5)
    faults = FaultPlan(rate=0.25, seed=2, kinds=("500", "429"), max_faults_per_key=1)
    srv = openai_server(responder=textbook_responder(prompts), faults=faults)
    cache = str(tmp_path / "cache")
    price = PRICES["test-model"]

    def billed_usd():
        u = srv.billed_usage()
        return (u["prompt_tokens"] * price["input"] + u["completion_tokens"] * price["output"]) / 1e6

    one_worst = LLMClient(model="test-model", prices=PRICES).estimate_cost(
        [LLMRequest(messages=prompts[0].messages, max_tokens=1500)])["usd_worst_case"]  # fmt: skip
    budgets = [2.5 * one_worst, 6 * one_worst, 200 * one_worst]
    pending = []
    for run, budget in enumerate(budgets):
        gen = SynthGenerator("textbooks", n, cache, seed=5, llm=llm_block(srv, budget_usd=budget))
        summary = run_stage(tmp_path / f"run{run}", gen, tasks=4)
        assert billed_usd() <= budget + 1e-9, run  # what the server billed, cumulative over the runs
        assert read_ledger(cache).charged() <= budget + 1e-9
        assert summary["prompts"] == n  # every prompt is kept, rejected or pending (budget_exhausted)
        pending.append(summary["rejected"].get("budget_exhausted", 0))
    assert pending[0] > pending[1] > 0 and pending[2] == 0
    answered = [e["key"] for e in srv.events if e.get("usage")]
    assert len(answered) == len(set(answered)) == n  # no answer paid twice
    received = len(srv.received)
    gen = SynthGenerator("textbooks", n, cache, seed=5, llm=llm_block(srv, budget_usd=budgets[-1]))
    again = run_stage(tmp_path / "run3", gen, tasks=4)
    assert len(srv.received) == received  # the rerun pays 0: everything answered comes from the caches
    assert rows(tmp_path / "run3/final/data") == rows(tmp_path / "run2/final/data")
    assert again["rejected"].get("budget_exhausted", 0) == 0


def test_task_cache_on_an_fsspec_memory_path_survives_a_killed_attempt():
    folder = "memory://tc_kill"
    killed = TaskCache(folder, run_id="r1", rank=0, roll_every=2)
    assert killed.reserve("a", 1.0, budget_usd=4.0)[0]
    killed.settle("a", {"key": "k1", "cost_usd": 0.25}, {"key": "k1", "text": "one"})
    killed._file.close()  # the process dies: no settle record, the open segment was flushed by the OS
    snap = read_ledger(folder)
    # the dead attempt is charged its whole claim (it may have paid for requests it never recorded)
    assert snap.charged() == pytest.approx(1.0) and snap.charged_to("r1", 0) == pytest.approx(1.0)
    retry = TaskCache(folder, run_id="r1", rank=0)
    assert retry.get_many(["k1", "k2"]) == {"k1": {"key": "k1", "text": "one", "cost_usd": 0.25,
                                                  "prompt_tokens": 0}}  # fmt: skip
    # a torn last line (killed mid-write) is counted as unreadable, never crashes a reader
    with retry.fs.open(retry.root + "/r1-00000-zz-00000.jsonl", "wb") as f:
        f.write(b'{"t": "answer", "key": "k2", "te')
    assert read_ledger(folder).unreadable == 1


def test_recipe_with_the_stage_form(openai_server, tmp_path):
    from recipes.engine import run_recipe

    n = 8
    prompts = make_prompts("textbooks", n, seed=0)
    srv = openai_server(responder=textbook_responder(prompts))
    overrides = {"out": str(tmp_path / "r"), "n": n, "endpoint": srv.base_url, "api_key_env": KEY_ENV,
                 "tasks": 4, "workers": 1, "diversity_embed": False, "model": "test-model"}  # fmt: skip
    result = run_recipe("phi1-textbooks-stages", overrides=overrides)
    summary = result.stage("dedup").summary
    assert summary["prompts"] == n and summary["kept"] > 0
    assert len(srv.received) == n
    assert re.search(r"synth_generate", (tmp_path / "r/textbooks-validated/manifest.json").read_text())


def test_dry_run_of_the_stage_recipe_sends_nothing(openai_server, tmp_path):
    from recipes.engine import run_recipe

    srv = openai_server(responder=lambda body: "unused")
    overrides = {"out": str(tmp_path / "d"), "n": 6, "endpoint": srv.base_url, "api_key_env": KEY_ENV,
                 "tasks": 2, "workers": 1, "diversity_embed": False}  # fmt: skip
    result = run_recipe("phi1-textbooks-stages", overrides=overrides, dry_run=True)
    estimate = result.stage("generate").summary["estimates"]["SynthGenerator"]
    assert estimate["requests"] == 6 and estimate["usd"] > 0 and len(estimate["batch_files"]) == 1
    assert srv.request_count == 0 and not (tmp_path / "d/textbooks-validated/data").exists()


@pytest.mark.slow  # sandbox runs of every exercise, twice (stages and job): ~40-100 s on 2 shared cores
def test_exercise_stage_recipe_keeps_what_the_job_keeps(openai_server, tmp_path):
    from test_generate import ExerciseResponder

    from recipes.engine import run_recipe

    n = 18
    prompts = make_prompts("exercises", n, seed=0)
    srv = openai_server(responder=ExerciseResponder(prompts))
    overrides = {"out": str(tmp_path / "r"), "n": n, "endpoint": srv.base_url, "api_key_env": KEY_ENV,
                 "tasks": 3, "workers": 1, "diversity_embed": False}  # fmt: skip
    summary = run_recipe("phi1-exercises-stages", overrides=overrides).stage("dedup").summary
    job = generate_synth("exercises", tmp_path / "job", n, llm=llm_block(srv, model="gpt-4o-mini"), workers=2)
    assert summary["kept"] == job["kept"] > 0 and summary["prompts"] == n
    assert summary["rejected"] == job["rejected"] and summary["duplicates"] == job["duplicates"]
    assert [r["id"] for r in rows(tmp_path / "r/exercises/data")] == [r["id"] for r in rows(tmp_path / "job/data")]
