"""The synth stages on a two-node Ray cluster (``ray.cluster_utils.Cluster``: two raylets on this
machine) give the rows of the local executor; a node killed mid-stage and the stage rerun give them
too, and no answer the caches hold is paid for again."""

import threading
import time
from collections import Counter

import pytest
from datatrove.executor import LocalPipelineExecutor

from curate.llm import LLMClient
from curate.llm.task_cache import read_ledger
from curate.shards import ExclusionWriter, ShardWriter
from synth.generate import make_prompts
from synth.stages import SynthGenerator, dedup_shards
from synth.validate import TextbookFilter

ray = pytest.importorskip("ray")
from test_synth_stages import PRICES, llm_block, rows, textbook_responder  # noqa: E402

pytestmark = pytest.mark.slow


def pipeline(out, gen):
    return [
        gen,
        TextbookFilter(exclusion_writer=ExclusionWriter(str(out / "validated/excluded/validate"), "validate")),
        ShardWriter(str(out / "validated/data")),
    ]


@pytest.fixture
def two_nodes():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, include_dashboard=False)
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


def run_ray(out, gen, tasks=4):
    from datatrove.executor.ray import RayPipelineExecutor

    executor = RayPipelineExecutor(pipeline(out, gen), tasks=tasks, workers=3, logging_dir=str(out / "logs"),
                                   mem_per_cpu_gb=0.25)  # fmt: skip
    try:
        executor.run()
    except Exception:  # noqa: BLE001 - tasks of a dead node fail; the rerun picks them up
        pass


def test_two_node_ray_matches_local_and_a_killed_node_rerun_pays_nothing_twice(openai_server, tmp_path, two_nodes):
    cluster, worker = two_nodes
    n = 24
    prompts = make_prompts("textbooks", n, seed=7)
    srv = openai_server(responder=textbook_responder(prompts, delay_s=0.15))
    local = tmp_path / "local"
    gen = SynthGenerator("textbooks", n, str(local / "cache"), seed=7, llm=llm_block(srv, max_concurrency=1))
    LocalPipelineExecutor(pipeline(local, gen), tasks=4, workers=1, logging_dir=str(local / "logs")).run()
    expected = dedup_shards(str(local / "validated"), str(local / "final"))
    paid_local = len(srv.received)

    # the same stage on two nodes, with the worker node killed while tasks are mid-generation, under a
    # budget: the killed tasks are charged their claims, and what the server bills stays under it
    out = tmp_path / "ray"
    worst = LLMClient(model="test-model", prices=PRICES).worst_case_usd(gen.requests_of(prompts)[0])
    llm = llm_block(srv, max_concurrency=1, budget_usd=40 * worst)
    gen = SynthGenerator("textbooks", n, str(out / "cache"), seed=7, llm=llm)
    runner = threading.Thread(target=run_ray, args=(out, gen))
    runner.start()
    deadline = time.time() + 120
    while len(srv.received) < paid_local + 6 and time.time() < deadline:
        time.sleep(0.05)
    at_kill = len(srv.received) - paid_local
    cluster.remove_node(worker, allow_graceful=False)
    runner.join(300)
    assert 0 < at_kill < n  # the node died mid-stage
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    probe = LLMClient(gen.llm)
    key_of = {p.text: probe.key_for(r) for p, r in zip(prompts, gen.requests_of(prompts), strict=True)}
    mark = len(srv.received)
    cached = set(read_ledger(str(out / "cache")).locations)  # what the first pass recorded
    # the rerun: a new run of the stage (finished tasks are skipped, the rest read every cache)
    gen = SynthGenerator("textbooks", n, str(out / "cache"), seed=7, llm=llm)
    run_ray(out, gen)
    assert dedup_shards(str(out / "validated"), str(out / "final")) == expected
    for sub in ("final/data", "validated/excluded", "final/excluded"):
        assert rows(out / sub) == rows(local / sub), sub
    resent = {key_of[b["messages"][-1]["content"]] for b in srv.received[mark:]}
    assert not resent & cached  # no answer a cache holds is sent again
    assert resent | cached == set(key_of.values())
    # paid twice: only requests in flight on the killed node (answered, never recorded): <= its 2 CPUs
    answered = Counter(key_of[b["messages"][-1]["content"]] for b in srv.received[paid_local:])
    assert sum(c - 1 for c in answered.values()) <= 2, answered
    price = PRICES["test-model"]
    billed = sum(e["usage"]["prompt_tokens"] * price["input"] + e["usage"]["completion_tokens"] * price["output"]
                 for e in srv.events[paid_local:] if e.get("usage")) / 1e6  # fmt: skip
    assert billed <= read_ledger(str(out / "cache")).charged() <= 40 * worst
