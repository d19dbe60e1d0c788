"""The audit as stages (score -> reduce -> prune) against the single-process audit it replaces: the same
scores, ids, decisions, split and pruned rows on a planted corpus, for every documented option."""

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from decontam.eval_sets import load_benchmark
from decontam.prune import prune_shards
from decontam.report import decontam_audit, scan_ngrams

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.planted_corpus import build_corpus  # noqa: E402

TAUS = [0.95, 0.9, 0.85, 0.8]


@pytest.fixture(scope="module")
def planted(tmp_path_factory, mbpp_path):
    """30 clean files, every tier of 12 HumanEval + 12 MBPP items, an exact duplicate (ties), bad input;
    written as 3 shard files so tasks and files interleave."""
    from datatrove.data import Document

    from curate.shards import ShardWriter

    benchmarks = {
        "humaneval": load_benchmark("humaneval")[:12],
        "mbpp": load_benchmark("mbpp", path=str(mbpp_path), split="test")[:12],
    }
    docs = [(d.id, d.text) for d in build_corpus(benchmarks, n_clean=30, seed=1)]
    docs.append(("dup/" + docs[-1][0], docs[-1][1]))
    docs += [("bad/syntax", "def f(:\n"), ("bad/empty", ""), ("bad/deep", "x = " + "(" * 5000 + ")" * 5000)]
    root = tmp_path_factory.mktemp("stages")
    for part in range(3):
        with ShardWriter(str(root / "in" / "data" / f"part{part}")) as writer:
            for doc_id, text in docs[part::3]:
                writer.write(Document(text=text, id=doc_id, metadata={"source": "test", "path": doc_id}))
    return root / "in", docs


def old_audit(input_dir, out, **kwargs):
    """The single-process path (prune_shards + the 13-gram scan), the reference."""
    summary = prune_shards(input_dir, out, **kwargs)
    names = kwargs.get("benchmarks", ("humaneval", "mbpp"))
    summary["ngram"] = scan_ngrams(input_dir, out, names, kwargs.get("mbpp_path"))
    return summary


def rows(folder: Path) -> list[dict]:
    files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
    out = [r for f in files for r in pq.read_table(f).to_pylist()]
    for r in out:
        r["extra"] = json.loads(r["extra"]) if r.get("extra") else r.get("extra")
    return sorted(out, key=lambda r: r["id"])


def assert_same_outputs(old: Path, new: Path, taus=TAUS):
    for name in ("scores", "units", "items"):
        a, b = pq.read_table(old / f"{name}.parquet"), pq.read_table(new / f"{name}.parquet")
        assert b.select(a.column_names).to_pylist() == a.to_pylist(), name
    assert json.loads((new / "split.json").read_text()) == json.loads((old / "split.json").read_text())
    old_sum, new_sum = (json.loads((d / "decontam.json").read_text()) for d in (old, new))
    for key in ("docs", "units", "parse_failures", "taus", "rule", "embedding_threshold", "ast_floor"):
        assert new_sum[key] == old_sum[key], key
    for name, bench in old_sum["benchmarks"].items():
        for key in ("checksum", "n_items", "unparseable_items", "too_small_items", "taus"):
            assert new_sum["benchmarks"][name][key] == bench[key], (name, key)
    assert (new / "ngram_hits.jsonl").read_text() == (old / "ngram_hits.jsonl").read_text()
    assert rows(new / f"tau_{taus[-1]:g}" / "data") and rows(new / f"tau_{taus[-1]:g}" / "excluded")
    for tau in taus:
        for part in ("data", "excluded"):
            assert rows(new / f"tau_{tau:g}" / part) == rows(old / f"tau_{tau:g}" / part), (tau, part)


def test_stages_match_the_single_process_audit(planted, tmp_path, mbpp_path):
    """Rule ast (+ the 13-gram scan) on 3 local tasks: identical tables, split, decisions and pruned rows."""
    input_dir, docs = planted
    common = dict(mbpp_path=str(mbpp_path), taus=TAUS, rule="ast", embeddings=False)
    old_audit(input_dir, tmp_path / "old", **common)
    job = decontam_audit(
        str(input_dir), str(tmp_path / "new"), executor={"type": "local", "tasks": 3, "workers": 1}, **common
    )
    assert_same_outputs(tmp_path / "old", tmp_path / "new")
    assert job["docs"] == len(docs) and job["removed_docs"]["0.8"] > 24 and Path(job["report"]).is_file()
    scores = pq.read_table(tmp_path / "new" / "scores.parquet").to_pandas().set_index("id")
    assert scores.loc["bad/empty", "parse_error"] == "empty" and scores["ngram_hits"].sum() == job["ngram_hits"]
