"""The audit report at 1,000 contaminated documents: every removed document id is in the HTML."""

import json
import re
import shutil
import subprocess

import pyarrow.parquet as pq
import pytest

from decontam.ast_match import benchmark_sequences
from decontam.eval_sets import load_benchmark
from decontam.mutate import disguise
from decontam.report import decontam_audit


@pytest.fixture(scope="module")
def big_audit(tmp_path_factory, stdlib_files):
    """1,000 disguised HumanEval copies (seeds vary), 40 clean stdlib files, an unparseable file."""
    items = [i for i in load_benchmark("humaneval") if benchmark_sequences(i.solution, 10)]
    docs = [(f"std/{p.name}", p.read_text(encoding="utf-8", errors="replace")) for p in stdlib_files[:40]]
    docs += [(f"copy/{k:04d}", disguise(items[k % len(items)].solution, seed=k)) for k in range(1000)]
    docs.append(("broken.py", "def f(:\n"))
    root = tmp_path_factory.mktemp("scale")
    from datatrove.data import Document

    from curate.shards import ShardWriter

    with ShardWriter(str(root / "in" / "data")) as writer:
        for doc_id, text in docs:
            writer.write(
                Document(text=text, id=doc_id, metadata={"source": "test", "path": f"src/{doc_id}.py"})
            )
    decontam_audit(
        str(root / "in"), str(root / "out"), benchmarks=["humaneval"], rule="ast", embeddings=False
    )
    return root / "out"


def test_report_names_every_removed_document(big_audit):
    html = (big_audit / "report" / "report.html").read_text()
    scores = pq.read_table(big_audit / "scores.parquet").to_pandas()
    removed = set(scores.loc[scores["removed_0.8"], "id"])
    assert len(removed) >= 1000  # every disguised copy is removed
    assert {f"copy/{k:04d}" for k in range(1000)} <= removed
    cells = set(re.findall(r"<td class='l'>([^<]*)</td>", html))
    assert removed <= cells, sorted(removed - cells)[:5]
    report = json.loads((big_audit / "report" / "report.json").read_text())
    assert report["removed_union"]["0.8"] == len(removed)
    assert "broken.py" in {r["id"] for r in report["not_ast_checked"]}
    assert "<script>" in html and "<script src" not in html  # the table script is inline


@pytest.mark.slow
def test_report_renders_in_headless_chromium(big_audit, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on PATH")
    shot = tmp_path / "report.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
    ]
    subprocess.run(
        [
            browser,
            *flags,
            f"--screenshot={shot}",
            "--window-size=1400,2000",
            f"file://{big_audit}/report/report.html",
        ],
        check=True,
        timeout=180,
        capture_output=True,
    )
    assert shot.stat().st_size > 10_000
