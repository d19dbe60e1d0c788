import gzip
import hashlib
import json

import pytest

from decontam.eval_sets import benchmark_checksum, humaneval_path, load_benchmark


def test_humaneval_items_are_complete_programs():
    items = load_benchmark("humaneval")
    assert len(items) == 164
    assert [i.id for i in items[:2]] == ["HumanEval/0", "HumanEval/1"]
    raw = [json.loads(line) for line in gzip.open(humaneval_path(), "rt")]
    for item, row in zip(items, raw, strict=True):
        assert item.solution == row["prompt"] + row["canonical_solution"]
        assert item.tests == row["test"] and item.entry_point == row["entry_point"]
        compile(item.solution, item.id, "exec")  # every canonical solution is a runnable program
    namespace: dict = {}
    exec(items[0].solution + "\n" + items[0].tests, namespace)
    namespace["check"](namespace[items[0].entry_point])


def test_mbpp_splits_and_fields(mbpp_path):
    sizes = {
        s: len(load_benchmark("mbpp", path=mbpp_path, split=s))
        for s in ("test", "validation", "train", "prompt", "all")
    }
    assert sizes == {"test": 500, "validation": 90, "train": 374, "prompt": 10, "all": 974}
    test = load_benchmark("mbpp", path=mbpp_path)
    assert test[0].id == "mbpp/11" and test[-1].id == "mbpp/510"
    item = test[0]
    assert "\r" not in item.solution and item.tests.count("assert") >= 3
    namespace: dict = {}
    exec(item.setup_code + "\n" + item.solution + "\n" + item.tests, namespace)  # canonical solution passes


def test_checksums_match_the_files(mbpp_path):
    expected = hashlib.sha256(humaneval_path().read_bytes()).hexdigest()
    assert benchmark_checksum("humaneval") == expected
    assert {i.checksum for i in load_benchmark("humaneval")} == {expected}
    mbpp_sha = hashlib.sha256(mbpp_path.read_bytes()).hexdigest()
    assert benchmark_checksum("mbpp", path=mbpp_path) == benchmark_checksum(str(mbpp_path)) == mbpp_sha
    assert load_benchmark("mbpp", path=mbpp_path)[0].checksum == mbpp_sha


def test_custom_jsonl_with_field_mapping(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [
        {
            "task_id": f"t{i}",
            "q": f"add {i}",
            "a": f"def f(x):\n    return x + {i}\n",
            "t": [f"assert f(0) == {i}"],
            "lvl": i,
        }
        for i in range(3)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    items = load_benchmark(
        "custom", path=path, fields={"id": "task_id", "prompt": "q", "solution": "a", "tests": "t"}
    )
    assert [i.id for i in items] == ["t0", "t1", "t2"]
    assert (
        items[2].tests == "assert f(0) == 2" and items[2].extra == {"lvl": 2} and items[1].benchmark == "mine"
    )
    assert items[0].checksum == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="lacks field"):
        load_benchmark("custom", path=path, fields={"solution": "missing"})


def test_bad_requests_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("TEXTBOOKS_MBPP_PATH", raising=False)
    with pytest.raises(FileNotFoundError, match="MBPP needs a local jsonl"):
        load_benchmark("mbpp")
    with pytest.raises(ValueError, match="unknown MBPP split"):
        load_benchmark("mbpp", path=__file__, split="dev")
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_benchmark("apps")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "solution": "y"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_benchmark("custom", path=bad)
