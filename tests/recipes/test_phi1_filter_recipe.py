"""The bundled `phi1-filter` recipe end to end at toy scale: a The Stack-style Parquet shard and a
Stack Exchange `Posts.xml`, LLM labels from the local OpenAI-protocol test server, bundled-MiniLM
embeddings, the random forest, the classifier filter and datatrove's MinHash near-dedup, on the local
executor. A rerun from scratch on the same output pays for no request twice, and the key is nowhere."""

from __future__ import annotations

import html
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.manifest import read_manifest
from curate.shards import ShardReader
from recipes.engine import run_recipe

STDLIB = Path(sysconfig.get_paths()["stdlib"])
FAKE_KEY = "sk-phi1-filter-test-" + "k" * 24


def educational(text: str) -> bool:
    """The test server's stand-in for GPT-4's judgement: documented code is educational."""
    return '"""' in text


def stack_fixture(folder: Path) -> int:
    """One Parquet shard in The Stack's column layout, from small stdlib modules (plus a copy of one)."""
    files = [p for p in sorted(STDLIB.glob("*.py")) if 300 < p.stat().st_size < 5000][:60]
    files += [p for p in sorted((STDLIB / "json").glob("*.py"))]
    rows = [
        {
            "content": p.read_text(),
            "hexsha": f"{i:040x}",
            "max_stars_repo_name": "python/cpython",
            "max_stars_repo_path": str(p.relative_to(STDLIB)),
            "max_stars_repo_licenses": ["PSF-2.0"],
            "size": p.stat().st_size,
        }
        for i, p in enumerate(files)
    ]
    rows.append(
        {**rows[0], "hexsha": "f" * 40, "max_stars_repo_path": "copy_of_" + rows[0]["max_stars_repo_path"]}
    )
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "train-00000-of-00001.parquet")
    return len(rows)


def posts_fixture(path: Path, questions: int = 40) -> None:
    """A Posts.xml in the public dumps' format: each question with an accepted answer holding code, half of
    it documented; a few non-python questions that the tag filter must skip."""
    rows = []
    for q in range(1, 2 * questions, 2):
        tag = "&lt;python&gt;" if q % 10 != 1 else "&lt;java&gt;"
        doc = '    """Return the running total of xs."""\n' if q % 4 == 1 else ""
        code = f"def total_{q}(xs):\n{doc}    acc = 0\n    for x in xs:\n        acc += x * {q}\n    return acc\n"
        answer = html.escape(f"<p>Try this:</p><pre><code>{code}</code></pre>", quote=True)
        question = html.escape(f"<p>How do I sum a list times {q}?</p>", quote=True)
        rows.append(
            f'<row Id="{q}" PostTypeId="1" AcceptedAnswerId="{q + 1}" Score="3" Title="Sum times {q}" '
            f'Body="{question}" Tags="{tag}" />'
        )
        rows.append(f'<row Id="{q + 1}" PostTypeId="2" ParentId="{q}" Score="2" Body="{answer}" />')
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n' + "\n".join(rows) + "\n</posts>\n")


def test_phi1_filter_recipe_end_to_end(tmp_path, openai_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)

    def judge(body: dict) -> str:
        return "high" if educational(body["messages"][-1]["content"]) else "low"

    server = openai_server(responder=judge)
    n_stack = stack_fixture(tmp_path / "stack")
    posts_fixture(tmp_path / "Posts.xml")
    out = tmp_path / "out"
    overrides = {
        "out": str(out),
        "stack_dir": str(tmp_path / "stack"),
        "so_posts": str(tmp_path / "Posts.xml"),
        "endpoint": server.base_url,
        "executor": "local",
        "tasks": 2,
        # in-process tasks: the key is set here, after an earlier test may have started datatrove's
        # forkserver, whose workers would see the environment of that moment instead
        "workers": 1,
        "label_rate": 1.0,
        "embed_model": None,  # the bundled MiniLM: offline
        "embed_kind": "sentence",
        "target_precision": 0.8,
    }
    result = run_recipe("phi1-filter", overrides=overrides)

    # every stack row went in; the labeled stages labeled every document, one request each
    stack = read_manifest(out / "stack")
    assert stack["rows"] + sum(stack["drop_reasons"].values()) == n_stack
    labeled = {}
    for name in ("stack-labeled", "stackoverflow-labeled"):
        for doc in ShardReader(str(out / name / "data")).run():
            labeled[doc.id] = doc
    assert read_manifest(out / "stackoverflow")["rows"] == 32  # 40 questions, 8 tagged java
    assert len(labeled) == stack["rows"] + 32
    # one request per distinct text: the planted copy is answered from the content-addressed cache
    assert server.request_count == len({d.text for d in labeled.values()}) == len(labeled) - 1
    assert all(
        d.metadata["quality_label"] == ("high" if educational(d.text) else "low") for d in labeled.values()
    )

    # the classifier learned the labels and filtered with them; its cross-validated metrics are recorded
    trained = result.stage("train").summary
    assert trained["embeddings_computed"] == 0  # the labeled stages' stored embeddings were reused
    assert trained["n_labeled"] == len(labeled) and trained["metrics"]["roc_auc"] > 0.8
    for source in ("stack", "stackoverflow"):
        quality = read_manifest(out / f"{source}-quality")
        final = read_manifest(out / f"{source}-final")
        labeled_rows = read_manifest(out / f"{source}-labeled")["rows"]
        assert 0 < final["rows"] <= quality["rows"] < labeled_rows
        assert quality["drop_reasons"].get("low_quality", 0) > 0
    kept = list(ShardReader(str(out / "stack-final" / "data")).run())
    assert sum(educational(d.text) for d in kept) / len(kept) > 0.8  # mostly documented code survives
    # the planted copy is gone: exactly one of the pair reached the final shards
    copies = [
        d for d in ShardReader(str(out / "stack-quality" / "data")).run() if d.id in {f"{0:040x}", "f" * 40}
    ]
    finals = [d for d in kept if d.id in {f"{0:040x}", "f" * 40}]
    assert len(copies) == 2 and len(finals) == 1  # identical texts score alike: both passed the filter

    # a rerun from scratch on the same output reuses the LLM cache: no request is paid for twice
    before = server.request_count
    rerun = run_recipe("phi1-filter", overrides=overrides, fresh=True)
    assert server.request_count == before
    assert [d.id for d in ShardReader(str(out / "stack-final" / "data")).run()] == [d.id for d in kept]
    assert rerun.stage("train").summary["threshold"] == trained["threshold"]

    # the key went over the wire (the server saw it) but was written nowhere
    assert any(FAKE_KEY in a for a in server.authorizations)
    for path in out.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path
