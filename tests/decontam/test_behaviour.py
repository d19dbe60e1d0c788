"""Decontamination by behaviour (issue 26): the shortlist, the batched sandbox verdicts, the rule in the
audit, the verdict cache, hostile corpus code, and the semantic rewrites it is measured on."""

from __future__ import annotations

import ast
import json
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decontam.behaviour import (
    BEHAVIOUR_HITS,
    BEHAVIOUR_VERDICTS,
    BehaviourChecker,
    BehaviourIndex,
    Candidate,
    Signature,
    item_spec,
    module_context,
    signature_of,
)
from decontam.eval_sets import BenchmarkItem, load_benchmark
from decontam.score import BEHAVIOUR_CACHE
from decontam.semantic import SEMANTIC_EDITS, semantic_rewrite

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))


# ---------------------------------------------------------------------------------------------------
# signatures and shortlist (no sandbox)
# ---------------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    n_pos=st.integers(0, 4),
    n_def=st.integers(0, 4),
    vararg=st.booleans(),
    kw_required=st.booleans(),
    calls=st.integers(0, 6),
)
def test_signature_accepts_exactly_the_calls_python_binds(n_pos, n_def, vararg, kw_required, calls):
    n_def = min(n_def, n_pos)
    params = [f"p{i}" for i in range(n_pos - n_def)] + [f"d{i}=0" for i in range(n_def)]
    params += ["*args"] if vararg else []
    params += (["*"] if not vararg else []) + ["k"] if kw_required else []
    source = f"def f({', '.join(params)}):\n    return 1\n"
    namespace: dict = {}
    exec(source, namespace)
    try:
        namespace["f"](*range(calls))
        binds = True
    except TypeError:
        binds = False
    assert signature_of(ast.parse(source).body[0]).accepts(calls, calls) == binds


def test_module_context_keeps_definitions_not_script_work():
    src = "import os\nX = 1\nfor i in range(9):\n    pass\nprint(X)\ndef f():\n    return X\nif __name__ == '__main__':\n    f()\n"
    assert module_context(ast.parse(src)) == ["import os", "X = 1", "def f():\n    return X"]


def test_shortlist_needs_a_compatible_signature_and_the_floor():
    item = BenchmarkItem("mbpp", "mbpp/1", "", "def add(a, b):\n    return a + b\n", "assert add(1, 2) == 3")
    seq = item_spec(item).sequences[0]
    same = Candidate(0, 0, "d", "plus", 1, 2, Signature(2, 2), seq)
    far = Candidate(1, 0, "d", "far", 1, 2, Signature(2, 2), "\x01" * 40)
    wrong_arity = Candidate(2, 0, "d", "one", 1, 2, Signature(1, 1), seq)
    cands = [same, far, wrong_arity]
    assert [c for _, c, _ in BehaviourIndex(floor=0.5).fit([item]).shortlist(cands)] == [0]
    assert [c for _, c, _ in BehaviourIndex(floor=0.0).fit([item]).shortlist(cands)] == [0, 1]


# ---------------------------------------------------------------------------------------------------
# batched verdicts
# ---------------------------------------------------------------------------------------------------
ADD = BenchmarkItem("mbpp", "mbpp/1", "", "def add(a, b):\n    return a + b\n",
                    "assert add(1, 2) == 3\nassert add(-2, 2) == 0\nassert add(5, 0) == 5")  # fmt: skip
FORGERS = {
    "f_eq": "class Yes:\n    def __eq__(self, other):\n        return True\ndef f_eq(a, b):\n    return Yes()",
    "f_marker": "class TbPassed_0(SystemExit):\n    pass\ndef f_marker(a, b):\n    raise TbPassed_0()",
    "f_exit": "import os\ndef f_exit(a, b):\n    os._exit(0)",
    "f_swallow": "def f_swallow(a, b):\n    while True:\n        try:\n            while True:\n                pass\n        except BaseException:\n            pass",
    "f_real": "def f_real(x, y):\n    total = x\n    total += y\n    return total",
}


def _one_document(sources: dict[str, str]) -> tuple[list[Candidate], dict[str, list[str]]]:
    """Every function in one document (one module context), as the audit batches a document's pairs."""
    context = module_context(ast.parse("\n".join(sources.values())))
    cands = [Candidate(k, 0, "doc", name, 1, 2, Signature(2, 2), "", "ctx") for k, name in enumerate(sources)]
    return cands, {"ctx": context}


def test_one_run_settles_a_documents_failing_pairs_and_a_pass_is_confirmed_alone(tmp_path):
    sources = {f"wrong_{k}": f"def wrong_{k}(a, b):\n    return a - b + {k}" for k in range(30)}
    sources["f_real"] = FORGERS["f_real"]
    cands, contexts = _one_document(sources)
    spec = item_spec(ADD)
    with BehaviourChecker(tmp_path / "v.jsonl") as checker:
        verdicts = checker.check([(spec, c) for c in cands], contexts)
        assert [c.name for c, v in zip(cands, verdicts, strict=True) if v["passed"]] == ["f_real"]
        assert checker.stats.executions == 2  # the batch, then the pass confirmed in a run of its own
        again = checker.check([(spec, c) for c in cands], contexts)
    assert [v["passed"] for v in again] == [v["passed"] for v in verdicts] and all(v["cached"] for v in again)
    assert checker.stats.executions == 2
    with BehaviourChecker(tmp_path / "v.jsonl") as fresh:  # the cache file serves a new audit
        fresh.check([(spec, c) for c in cands], contexts)
    assert fresh.stats.executions == 0


def test_forging_and_breaking_candidates_in_a_batch_neither_pass_nor_hide_the_real_one(tmp_path):
    cands, contexts = _one_document(FORGERS)
    spec = item_spec(ADD)
    with BehaviourChecker(tmp_path / "v.jsonl", timeout_s=5) as checker:
        verdicts = checker.check([(spec, c) for c in cands], contexts)
    assert [c.name for c, v in zip(cands, verdicts, strict=True) if v["passed"]] == ["f_real"]


# ---------------------------------------------------------------------------------------------------
# the rule inside the audit
# ---------------------------------------------------------------------------------------------------
def _planted(n_items: int, stdlib_files) -> list[tuple[str, str, str]]:
    """(id, text, tier): semantic rewrites of the first HumanEval solutions, renamed, and stdlib files."""
    from decontam.mutate import disguise

    docs = [(f"clean/{p.name}", p.read_text(), "clean") for p in stdlib_files[:3]]
    for k, item in enumerate(load_benchmark("humaneval")[:n_items]):
        text, edits = semantic_rewrite(item.solution, seed=k, n_edits=3)
        docs.append((f"semantic/{item.id}", disguise(text, seed=k, strip_annotations=True), "semantic"))
    return docs


def test_audit_rule_ast_or_behaviour_finds_semantic_rewrites_and_reruns_nothing(tmp_path, write_shards, stdlib_files):
    """Through the stages (decontam_audit): score tasks run the measure, the reduce decides, prune removes."""
    import pandas as pd

    from decontam.report import decontam_audit

    docs = _planted(6, stdlib_files)
    semantic = {doc_id for doc_id, _, tier in docs if tier == "semantic"}
    shards = write_shards(tmp_path / "in", [(doc_id, text) for doc_id, text, _ in docs])
    out = tmp_path / "out"
    kwargs = dict(benchmarks={"humaneval": {}}, taus=[0.9], embeddings=False, behaviour={"floor": 0.3})

    def audit(rule, workers):
        decontam_audit(str(shards), str(out), rule=rule, workers=workers, **kwargs)
        return json.loads((out / "decontam.json").read_text())

    first = audit("ast|behaviour", 2)
    hits = [json.loads(x) for x in (out / BEHAVIOUR_HITS).read_text().splitlines()]
    found = {h["doc_id"] for h in hits}
    assert semantic <= found
    assert first["behaviour"]["executions"] > 0 and first["behaviour"]["hits"] == len(hits)
    for h in hits:
        assert h["tests_passed"] > 0 and h["lineno"] <= h["end_lineno"] and h["item_id"].startswith("HumanEval/")
    scores = pd.read_parquet(out / "scores.parquet")
    assert set(scores[scores["beh_hit_humaneval"]]["id"]) == found
    split = json.loads((out / "split.json").read_text())
    assert "behaviour" in split["measures"]
    assert {h["item_id"] for h in hits} <= set(split["benchmarks"]["humaneval"]["taus"]["0.9"]["similar"])
    excluded = pd.concat(pd.read_parquet(f) for f in (out / "tau_0.9" / "excluded" / "decontam").rglob("*.parquet"))
    assert semantic <= set(excluded["id"])
    assert any("behaviour" in r for r in first["taus"]["0.9"]["reasons"])
    html = Path(out / "report" / "report.html").read_text()
    assert "Behavioural hits" in html and sorted(semantic)[0] in html
    # one task instead of two re-scores every file: all verdicts come from the tasks' caches
    rerun = audit("ast|behaviour", 1)
    assert rerun["timings"]["score_tasks_reused"] == 0
    assert rerun["behaviour"]["executions"] == 0
    assert rerun["behaviour"]["calibration_executions"] == 0 and first["behaviour"]["calibration_executions"] > 0
    assert rerun["behaviour"]["cached"] >= first["behaviour"]["shortlisted"] > 0
    assert rerun["taus"]["0.9"]["removed_docs"] == first["taus"]["0.9"]["removed_docs"]
    # & combines as for the other measures: ast&behaviour removes no more than either alone
    both = audit("ast&behaviour", 1)
    assert both["taus"]["0.9"]["removed_docs"] <= first["taus"]["0.9"]["removed_docs"]
    assert both["behaviour"]["executions"] == 0
    assert any((out / BEHAVIOUR_CACHE).glob("*.jsonl"))


def test_behaviour_rule_is_validated_before_work(tmp_path):
    from decontam.prune import parse_rule, prune_shards
    from decontam.report import decontam_audit

    assert parse_rule("ast|behaviour") == [["ast"], ["behaviour"]]
    for run in (prune_shards, decontam_audit):
        with pytest.raises(ValueError, match="rule"):
            run(str(tmp_path / "missing"), str(tmp_path / "out"), rule="ast|behavior")
        with pytest.raises(ValueError, match="flor"):
            run(str(tmp_path / "missing"), str(tmp_path / "out"), rule="ast|behaviour", behaviour={"flor": 0.5})


def test_prune_shards_keeps_the_behaviour_rule(tmp_path, write_shards, stdlib_files):
    """The single-process path (the stages' reference) runs the same measure, with its own cache file."""
    from decontam.prune import prune_shards

    docs = _planted(2, stdlib_files)
    shards = write_shards(tmp_path / "in", [(doc_id, text) for doc_id, text, _ in docs])
    kwargs = dict(benchmarks={"humaneval": {}}, taus=[0.9], embeddings=False, write_shards=False,
                  behaviour={"floor": 0.3})  # fmt: skip
    first = prune_shards(shards, tmp_path / "out", rule="ast|behaviour", **kwargs)
    found = {json.loads(x)["doc_id"] for x in (tmp_path / "out" / BEHAVIOUR_HITS).read_text().splitlines()}
    assert {d for d, _, tier in docs if tier == "semantic"} <= found
    rerun = prune_shards(shards, tmp_path / "out", rule="ast|behaviour", **kwargs)
    assert rerun["behaviour"]["executions"] == 0 < first["behaviour"]["executions"]
    assert (tmp_path / "out" / BEHAVIOUR_VERDICTS).is_file()


# ---------------------------------------------------------------------------------------------------
# hostile corpus code
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def active():
    from curate.sandbox import Sandbox, isolation_probe

    with Sandbox(timeout_s=10) as sb:
        probe = isolation_probe(sb)
    if not probe["active"]:
        pytest.skip(f"hostile corpus code NOT run: sandbox isolation inactive here (probe: {probe})")
    return probe


def hostile_docs(victim: Path, port: int) -> dict[str, str]:
    """Corpus documents whose functions fit HumanEval/0's signature (numbers, threshold) and attack."""
    sig = "def has_close_elements(numbers, threshold):\n"
    return {
        "fork_bomb": f"import os\n{sig}    while True:\n        os.fork()\n",
        "file_write": f"{sig}    open({str(victim / 'pwned.txt')!r}, 'w').write('x')\n    return False\n",
        "network": f"import socket\n{sig}    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    return True\n",
        "infinite_loop": f"{sig}    while True:\n        pass\n",
        "module_loop": f"def spin():\n    while True:\n        pass\nX = spin()\n{sig}    return False\n",
        "kill_parent": f"import os, signal\n{sig}    os.kill(os.getppid(), signal.SIGKILL)\n    return False\n",
        "memory": f"{sig}    blob = [bytearray(1 << 20) for _ in range(100000)]\n    return len(blob) > 0\n",
        "exit": f"import sys\n{sig}    sys.exit(0)\n",
    }


def test_hostile_corpus_code_is_contained_and_the_check_finishes(active, tmp_path, listener):
    """Hostile functions shortlisted for HumanEval/0 next to a real copy: no escape, no false pass, the
    copy still found, the check returns (the audit runs this same checker; see the rule test above)."""
    port, accepted = listener
    (REPO / ".pytest_cache").mkdir(exist_ok=True)
    victim = Path(tempfile.mkdtemp(prefix="behaviour-victim-", dir=REPO / ".pytest_cache"))
    item = load_benchmark("humaneval")[0]
    sources = hostile_docs(victim, port)
    sources["copy"] = semantic_rewrite(item.solution, seed=1)[0]
    cands, contexts = [], {}
    for k, (doc_id, text) in enumerate(sources.items()):
        contexts[doc_id] = module_context(ast.parse(text))
        cands.append(Candidate(k, k, doc_id, "has_close_elements", 1, 2, Signature(2, 2), "", doc_id))
    with BehaviourChecker(tmp_path / "v.jsonl", timeout_s=3) as checker:
        verdicts = checker.check([(item_spec(item), c) for c in cands], contexts)
    escapes = {"file_write": (victim / "pwned.txt").exists(), "network": bool(accepted)}
    print(f"hostile corpus functions run: {len(cands) - 1}, escapes: {sum(escapes.values())}, {checker.stats}")
    assert not any(escapes.values()), escapes
    assert [c.doc_id for c, v in zip(cands, verdicts, strict=True) if v["passed"]] == ["copy"]
    assert {v["status"] for v in verdicts} >= {"passed"} and checker.stats.executions >= 2
    victim.rmdir()


# ---------------------------------------------------------------------------------------------------
# semantic rewrites keep behaviour
# ---------------------------------------------------------------------------------------------------
def _rewrite_jobs(items, kinds, seeds):
    jobs, done_kinds = [], set()
    for k, item in enumerate(items):
        spec = item_spec(item)
        for seed in seeds:
            out, done = semantic_rewrite(item.solution, seed=k * 7 + seed, n_edits=3, kinds=kinds)
            if done:
                done_kinds |= set(done)
                jobs.append((out, spec.tests, item.solution, spec.provided))
    return jobs, done_kinds


def test_semantic_rewrites_keep_behaviour_and_change_shape():
    from curate.sandbox import Sandbox
    from decontam.ast_match import ast_match_rate

    items = load_benchmark("humaneval")[:25]
    jobs, kinds = _rewrite_jobs(items, SEMANTIC_EDITS, seeds=(0,))
    assert kinds >= {"for_to_while", "swap_if", "extract_helper", "add_line"}
    with Sandbox(timeout_s=10) as sb:
        results = sb.map(jobs, workers=2)
    assert [r.status for r in results] == ["passed"] * len(jobs)
    rates = [ast_match_rate(item.solution, job[0]) for item, job in zip(items, jobs, strict=False)]
    assert sum(r < 0.9 for r in rates) >= len(rates) // 3  # many leave the AST measure's reach


@pytest.mark.slow
def test_semantic_rewrites_keep_behaviour_on_every_benchmark_item(mbpp_path):
    from curate.sandbox import Sandbox

    items = load_benchmark("humaneval") + load_benchmark("mbpp", path=mbpp_path, split="test")
    with Sandbox(timeout_s=60) as sb:  # mbpp/123's tests take seconds: the claim is behaviour, not speed
        originals = sb.map([(it.solution, item_spec(it).tests, it.solution, item_spec(it).provided) for it in items])
        keep = [it for it, r in zip(items, originals, strict=True) if r.passed]
        jobs, kinds = _rewrite_jobs(keep, SEMANTIC_EDITS, seeds=(0, 1))
        results = sb.map(jobs, workers=2)
    assert kinds == set(SEMANTIC_EDITS)
    broken = [j[0] for j, r in zip(jobs, results, strict=True) if not r.passed]
    assert not broken, broken[:3]


@pytest.mark.slow
def test_semantic_recall_and_clean_fp_on_the_planted_corpus(tmp_path, write_shards, mbpp_path):
    """The issue's bar, on HumanEval + MBPP-test semantic rewrites among 400 clean files (the bench's
    sample: benchmarks/bench_decontam_behaviour.py), at the default floor."""
    from planted_corpus import build_corpus

    from decontam.report import decontam_audit

    benches = {"humaneval": load_benchmark("humaneval"), "mbpp": load_benchmark("mbpp", path=mbpp_path)}
    docs = build_corpus(benches, n_clean=400, semantic=True, planted=False)
    shards = write_shards(tmp_path / "in", [(d.id, d.text) for d in docs])
    decontam_audit(str(shards), str(tmp_path / "out"), benchmarks={"humaneval": {}, "mbpp": {"path": str(mbpp_path)}},
                   taus=[0.9], rule="ast|behaviour", embeddings=False, write_shards=False)  # fmt: skip
    import pandas as pd

    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    removed = dict(zip(scores["id"], scores["removed_0.9"], strict=True))
    semantic = [d.id for d in docs if d.tier == "semantic"]
    clean = [d.id for d in docs if d.tier == "clean"]
    recall = sum(removed[i] for i in semantic) / len(semantic)
    fp = sum(removed[i] for i in clean) / len(clean)
    print(f"semantic recall {recall:.3f} ({len(semantic)} docs), clean FP {fp:.4f} ({len(clean)} files)")
    assert recall >= 0.9
    assert fp <= 0.005
