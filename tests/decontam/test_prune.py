import json

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from decontam.eval_sets import load_benchmark
from decontam.mutate import disguise
from decontam.prune import prune_shards
from decontam.report import decontam_audit, write_decontam_report

TAUS = ["0.95", "0.9", "0.85", "0.8"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, stdlib_files, mbpp_path):
    """30 stdlib files, 8 disguised HumanEval + 8 disguised MBPP solutions, one verbatim copy, bad input."""
    from datatrove.data import Document

    from curate.shards import ShardWriter

    he = load_benchmark("humaneval")
    mb = load_benchmark("mbpp", path=mbpp_path, split="test")
    docs = [(f"std/{p.name}", p.read_text(encoding="utf-8", errors="replace")) for p in stdlib_files[:30]]
    planted = {}
    for k in range(8):
        for items, stride in ((he, 19), (mb, 61)):
            item = items[(k * stride) % len(items)]
            doc_id = f"planted/{item.id}"
            docs.append((doc_id, "import os\n\n" + disguise(item.solution, seed=k) + "\n\nVALUE = 3\n"))
            planted[doc_id] = item.id
    docs.append(("verbatim", he[10].solution))
    planted["verbatim"] = he[10].id
    docs += [("bad/syntax", "def f(:\n"), ("bad/empty", ""), ("bad/deep", "x = " + "(" * 5000 + ")" * 5000)]
    root = tmp_path_factory.mktemp("decontam")
    with ShardWriter(str(root / "in" / "data")) as writer:
        for doc_id, text in docs:
            writer.write(Document(text=text, id=doc_id, metadata={"source": "test", "path": doc_id}))
    return root, docs, planted


@pytest.fixture(scope="module")
def audited(corpus, mbpp_path):
    root, _, _ = corpus
    summary = decontam_audit(
        str(root / "in"), str(root / "out"), mbpp_path=str(mbpp_path), rule="ast", embeddings=False
    )
    return root / "out", summary


def test_prune_writes_scores_split_and_pruned_shards(corpus, audited):
    _, docs, planted = corpus
    out, job = audited
    summary = json.loads((out / "decontam.json").read_text())
    assert summary["docs"] == len(docs) and summary["parse_failures"] == {"SyntaxError": 2, "empty": 1}
    # every planted document is removed at tau = 0.95 with an AST reason, and nothing is lost
    for tau in TAUS:
        kept = ds.dataset(out / f"tau_{tau}" / "data").to_table(columns=["id"]).column("id").to_pylist()
        removed = pq.read_table(out / f"tau_{tau}" / "excluded" / "decontam").to_pylist()
        assert sorted(kept + [r["id"] for r in removed]) == sorted(d for d, _ in docs)
        assert set(planted) <= {r["id"] for r in removed}
        assert {r["filter_reason"] for r in removed} == {f"contaminated_ast_{tau}"}
        assert {"bad/syntax", "bad/empty", "bad/deep"} <= set(kept)
        manifest = json.loads((out / f"tau_{tau}" / "manifest.json").read_text())
        assert manifest["rows"] == len(kept) and manifest["decontam"]["removed_docs"] == len(removed)
        assert json.loads(removed[0]["extra"])["decontam"]["ast_max"]
    removed_counts = [job["removed_docs"][t] for t in TAUS]
    assert removed_counts == sorted(removed_counts)  # lower tau never removes fewer documents
    scores = pq.read_table(out / "scores.parquet").to_pandas().set_index("id")
    assert scores.loc["verbatim", "ast_max_humaneval"] == 1.0
    assert scores.loc["bad/empty", "parse_error"] == "empty" and scores.loc["bad/deep", "n_units"] == 0
    assert {"ast_max_mbpp", "ast_item_mbpp", "ast_unit_humaneval"} <= set(scores.columns)


def test_split_json_has_the_pinned_format(corpus, audited):
    _, _, planted = corpus
    out, _ = audited
    split = json.loads((out / "split.json").read_text())
    assert split["version"] == 1 and split["rule"] == "ast" and "embedding_threshold" in split
    assert set(split["benchmarks"]) == {"humaneval", "mbpp"}
    he = split["benchmarks"]["humaneval"]
    assert he["n_items"] == 164 and he["checksum"] == load_benchmark("humaneval")[0].checksum
    assert list(he["taus"]) == TAUS
    for bench in split["benchmarks"].values():
        for tau in TAUS:
            similar, non_similar = bench["taus"][tau]["similar"], bench["taus"][tau]["non_similar"]
            assert not set(similar) & set(non_similar) and len(similar) + len(non_similar) == bench["n_items"]
        assert set(bench["taus"]["0.95"]["similar"]) <= set(bench["taus"]["0.8"]["similar"])
    planted_ids = set(planted.values())
    for bench in split["benchmarks"].values():
        assert {i for i in planted_ids if i in bench["taus"]["0.95"]["non_similar"]} == set()


def test_report_is_self_contained_with_evidence(corpus, audited):
    out, job = audited
    assert job["ngram_hits"] >= 1 and job["report"].endswith("report.html")
    html = (out / "report" / "report.html").read_text()
    assert (
        html.count("data:image/png;base64,") == 2
        and "<script src" not in html
        and "http" not in html.split("<body>")[1][:200]
    )
    assert load_benchmark("humaneval")[0].checksum in html
    report = json.loads((out / "report" / "report.json").read_text())
    assert any(h["doc_id"] == "verbatim" and h["item_id"] == "HumanEval/10" for h in report["ngram_hits"])
    top = [p for p in report["pairs"] if p["measure"] == "ast"]
    assert top and top[0]["score"] == 1.0 and top[0]["benchmark_solution"] and top[0]["training_snippet"]
    assert top[0]["path"] and top[0]["line_start"] >= 1 and top[0]["line_end"] >= top[0]["line_start"]
    # every removed document is in the report, the 13-gram is highlighted, numbers are plain
    assert all(f">{r['doc_id']}<" in html for r in report["removed_docs"])
    assert "<span class='hit'>" in html and "0000000" not in html.split("<h2>Maximum")[0]
    assert {r["id"] for r in report["not_ast_checked"]} == {"bad/syntax", "bad/empty", "bad/deep"}
    md = (out / "report" / "report.md").read_text()
    assert "| humaneval | 0.95 |" in md
    again = write_decontam_report(out, out / "report2")
    assert again["table3"] == report["table3"]


def test_job_is_registered_and_rules_are_validated(tmp_path):
    import decontam

    assert decontam.JOBS["decontam_audit"] == "decontam.report:decontam_audit"
    assert decontam.decontam_audit is decontam_audit
    with pytest.raises(ValueError, match="rule must combine"):
        prune_shards(tmp_path, tmp_path / "o", rule="any")
    with pytest.raises(ValueError, match="needs embeddings"):
        prune_shards(tmp_path, tmp_path / "o", rule="both", embeddings=False)
    with pytest.raises(ValueError, match="embedding_view must be one of"):
        prune_shards(tmp_path, tmp_path / "o", rule="ast", embedding_view="tokens")


def test_empty_shard_dir_and_stale_tau_dirs(tmp_path, write_shards, stdlib_files):
    """An empty shard directory (only a README) audits as 0 documents; a rerun with other taus removes
    the tau directories of the first run."""
    empty = tmp_path / "empty"
    (empty / "data").mkdir(parents=True)
    (empty / "README.md").write_text("# a dataset card, not Parquet\n")
    job = decontam_audit(
        str(empty), str(tmp_path / "e"), benchmarks=["humaneval"], rule="ast", embeddings=False
    )
    assert job["docs"] == 0 and job["removed_docs"] == {t: 0 for t in TAUS}
    assert "0 documents" in (tmp_path / "e" / "report" / "report.html").read_text()

    shards = write_shards(tmp_path / "in", [("std", stdlib_files[0].read_text()), ("bad", "def (")])
    prune_shards(
        shards, tmp_path / "o", benchmarks=["humaneval"], taus=[0.95, 0.8], embeddings=False, rule="ast"
    )
    summary = prune_shards(
        shards, tmp_path / "o", benchmarks=["humaneval"], taus=[0.9], embeddings=False, rule="ast"
    )
    assert sorted(p.name for p in (tmp_path / "o").glob("tau_*")) == ["tau_0.9"]
    assert summary["stale_tau_dirs_removed"] == ["tau_0.8", "tau_0.95"]


def test_embedding_measure_reuses_stored_embeddings(tmp_path, write_shards):
    """Custom 3-item benchmark, 4 documents: stored vectors are reused; a copy is caught by embedding."""
    import pyarrow as pa

    from curate.embed import SentenceEmbedder, embeddings_dir

    bench = tmp_path / "mini.jsonl"
    sols = [
        "def area(r):\n    return 3.14159 * r * r\n",
        "def greet(name):\n    print('hello ' + name)\n",
        "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n",
    ]
    bench.write_text(
        "\n".join(json.dumps({"id": f"mini/{i}", "prompt": "p", "solution": s}) for i, s in enumerate(sols))
    )
    docs = [
        ("copy", sols[1]),
        ("other1", "import socket\nsock = socket.socket()\nsock.bind(('', 80))\n"),
        ("other2", "class Stack(list):\n    push = list.append\n"),
        ("other3", "SELECT * FROM users;"),
    ]
    write_shards(tmp_path / "in", docs)
    emb = SentenceEmbedder()
    store = embeddings_dir(tmp_path / "in", emb.model_id)
    store.mkdir(parents=True)
    X = emb.transform([t for _, t in docs])
    pq.write_table(
        pa.table({"id": [d for d, _ in docs], "embedding": [list(map(float, r)) for r in X]}),
        store / "00000.parquet",
    )
    summary = prune_shards(
        tmp_path / "in",
        tmp_path / "out",
        benchmarks={"mini": {"name": "custom", "path": str(bench)}},
        taus=[0.95],
        rule="embedding",
        embedder=emb,
    )
    assert (
        summary["timings"]["embeddings"]["reused"] == 4 and summary["timings"]["embeddings"]["computed"] == 0
    )
    assert summary["taus"]["0.95"]["reasons"] == {"contaminated_embedding_0.95": 1}
    split = json.loads((tmp_path / "out" / "split.json").read_text())
    assert split["benchmarks"]["mini"]["taus"]["0.95"]["similar"] == ["mini/1"]
    scores = pq.read_table(tmp_path / "out" / "scores.parquet").to_pandas().set_index("id")
    assert scores.loc["copy", "emb_min_mini"] < 0.05 and scores.loc["other3", "emb_min_mini"] > 0.3


def test_normalised_unit_vectors_are_computed_once(tmp_path, write_shards):
    """The rephrase-robust view: a renamed copy is at distance ~0; the second audit computes nothing."""
    from curate.embed import SentenceEmbedder

    bench = tmp_path / "mini.jsonl"
    sol = "def total(xs):\n    s = 0\n    for x in xs:\n        if x > 0:\n            s += x * 2\n    return s\n"
    bench.write_text(json.dumps({"id": "mini/0", "prompt": "p", "solution": sol}))
    renamed = (
        'def acc(values):\n    """Sum."""\n    r = 0\n    for v in values:\n'
        "        if v > 0:\n            r = r + v * 2\n    return r\n"
    )
    other = (
        "def parse(line):\n    key, _, value = line.partition('=')\n    return key.strip(), value.strip()\n"
    )
    write_shards(
        tmp_path / "in", [("renamed", "import os\n\n" + renamed), ("other", other), ("bad", "def (")]
    )
    kwargs = dict(
        benchmarks={"mini": {"name": "custom", "path": str(bench)}},
        taus=[0.95],
        rule="embedding",
        embedder=SentenceEmbedder(),
        embedding_view="normalised_units",
        min_nodes=5,
    )
    first = prune_shards(tmp_path / "in", tmp_path / "out", **kwargs)
    assert first["timings"]["embeddings"]["computed"] == 2
    second = prune_shards(tmp_path / "in", tmp_path / "out", **kwargs)
    assert second["timings"]["embeddings"] == {**first["timings"]["embeddings"], "computed": 0, "reused": 2}
    scores = pq.read_table(tmp_path / "out" / "scores.parquet").to_pandas().set_index("id")
    assert scores.loc["renamed", "emb_min_mini"] < 0.01 < 0.2 < scores.loc["other", "emb_min_mini"]
    assert scores.loc["bad", "emb_min_mini"] == float("inf") and second["taus"]["0.95"]["removed_docs"] == 1
