"""decontam on code of every Python version: a benchmark solution planted in a Python 2 file or in a file
using 3.12+ syntax is found by the AST measure, and an input where no document parses is audited, not a
crash (it used to raise IndexError in score_ast)."""

import json
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from curate.pyparse import parse_python
from decontam.eval_sets import load_benchmark
from decontam.mutate import disguise
from decontam.report import decontam_audit

VERSIONS = Path(__file__).resolve().parents[1] / "curate" / "python_versions"


def _hosts() -> dict[str, str]:
    return {
        name: (VERSIONS / f"{name}.pysrc").read_text()
        for name in ("py2_idioms", "py2_class", "py3.12", "py3.14")
    }


def test_solutions_planted_in_python2_and_newer_hosts_are_found(tmp_path, write_shards):
    he = load_benchmark("humaneval")
    hosts = _hosts()
    docs, planted = [], {}
    for k, (name, host) in enumerate(hosts.items()):
        item = he[7 + 29 * k]
        # renamed and reformatted, then put in the middle of the host (after its first function)
        cut = host.index("\ndef ", host.index("def ") + 4)
        text = host[:cut] + "\n\n" + disguise(item.solution, seed=k) + "\n" + host[cut:]
        assert parse_python(text).dialect == parse_python(host).dialect != "syntax_error"
        docs.append((f"planted/{name}", text))
        planted[f"planted/{name}"] = item.id
        docs.append((f"clean/{name}", host))
    docs.append(("broken", "def f(:\n    return 1\n"))
    write_shards(tmp_path / "in", docs)
    summary = decontam_audit(str(tmp_path / "in"), str(tmp_path / "out"), benchmarks=["humaneval"], rule="ast",
                             embeddings=False, ngram=False, workers=1, taus=[0.9])  # fmt: skip
    scores = pq.read_table(tmp_path / "out" / "scores.parquet").to_pandas().set_index("id")
    for doc_id, item_id in planted.items():
        assert scores.loc[doc_id, "ast_max_humaneval"] >= 0.9, doc_id
        assert scores.loc[doc_id, "ast_item_humaneval"] == item_id
    for name in hosts:  # the host files themselves hold no benchmark solution
        assert scores.loc[f"clean/{name}", "ast_max_humaneval"] < 0.9
    kept = ds.dataset(tmp_path / "out" / "tau_0.9" / "data").to_table(columns=["id"]).column("id").to_pylist()
    assert sorted(kept) == sorted(d for d, _ in docs if d not in planted)
    assert json.loads((tmp_path / "out" / "decontam.json").read_text())["parse_failures"] == {
        "SyntaxError": 1
    }
    assert summary["docs"] == len(docs)


def test_audit_when_no_document_parses(tmp_path, write_shards):
    docs = [("a", "def f(:\n"), ("b", ""), ("c", "x = " + "(" * 5000 + ")" * 5000), ("d", "class (:\n")]
    write_shards(tmp_path / "in", docs)
    summary = decontam_audit(str(tmp_path / "in"), str(tmp_path / "out"), benchmarks=["humaneval"], rule="ast",
                             embeddings=False, ngram=False, workers=1, taus=[0.9])  # fmt: skip
    assert summary["docs"] == len(docs)
    kept = ds.dataset(tmp_path / "out" / "tau_0.9" / "data").to_table(columns=["id"]).column("id").to_pylist()
    assert sorted(kept) == ["a", "b", "c", "d"]  # nothing parsed, so nothing matched and nothing is lost
