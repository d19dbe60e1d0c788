"""Diversity report on real code with planted duplicates: the measured rates match what was planted."""

import json
import random
import textwrap
from pathlib import Path

import pytest
from datatrove.data import Document

from curate.shards import ShardWriter
from synth.diversity import distinct_n, vendi_score, write_diversity_report


def _stdlib_functions(limit):
    """Real, distinct function sources from the standard library (code no one here wrote)."""
    import ast
    import inspect
    import json as json_mod

    out, seen = [], set()
    for mod in (
        json_mod,
        __import__("textwrap"),
        __import__("argparse"),
        __import__("difflib"),
        __import__("calendar"),
        __import__("fractions"),
        __import__("statistics"),
        __import__("shlex"),
        __import__("heapq"),
        __import__("pprint"),
        __import__("configparser"),
        __import__("tarfile"),
        __import__("zipfile"),
    ):
        src = inspect.getsource(mod)
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.FunctionDef):
                seg = ast.get_source_segment(src, node)
                if seg and 200 < len(seg) < 4000 and seg not in seen:
                    seen.add(seg)
                    out.append(textwrap.dedent(seg))
            if len(out) >= limit:
                return out
    return out


def _write(out_dir: Path, docs):
    with ShardWriter(str(out_dir / "data")) as w:
        for d in docs:
            w.write(d, 0)


@pytest.mark.parametrize("planted", [0, 25, 60])
def test_planted_exact_duplicates_are_measured_within_one_point(tmp_path, planted):
    texts = _stdlib_functions(200)
    assert len(texts) >= 150
    rng = random.Random(planted)
    docs = [
        Document(t, f"u{i}", metadata={"constraints": {"topic": f"t{i % 7}"}}) for i, t in enumerate(texts)
    ]
    # planted copies: exact, and whitespace-only variants (the same after normalisation)
    for k in range(planted):
        src = rng.choice(texts)
        docs.append(Document(src if k % 2 else src + "\n\n", f"dup{k}"))
    rng.shuffle(docs)
    _write(tmp_path / "shards", docs)
    report = write_diversity_report(tmp_path / "shards", tmp_path / "report", embed=False)
    truth = planted / len(docs)
    assert report["rows"] == len(docs)
    assert abs(report["exact_duplicate_rate"] - truth) <= 0.01, (report["exact_duplicate_rate"], truth)
    if report.get("near_duplicate_rate") is not None:
        assert report["near_duplicate_rate"] >= report["exact_duplicate_rate"] - 0.01
    saved = json.loads((tmp_path / "report" / "diversity.json").read_text())
    assert saved["exact_duplicate_rate"] == report["exact_duplicate_rate"]
    html = (tmp_path / "report" / "diversity.html").read_text()
    assert "data:image/png;base64," in html and "Imported libraries" in html


def test_planted_near_duplicates_are_measured_within_one_point(tmp_path):
    texts = _stdlib_functions(200)
    rng = random.Random(1)
    docs = [Document(t, f"u{i:03d}") for i, t in enumerate(texts)]
    exact, near = 12, 30
    for k in range(exact):
        docs.append(Document(rng.choice(texts), f"x{k:03d}"))
    for k in range(near):  # an edited copy: one added line, so not an exact duplicate
        src = rng.choice(texts)
        docs.append(Document(src + f"\n    # reviewed {k}", f"n{k:03d}"))
    _write(tmp_path / "shards", docs)
    r = write_diversity_report(tmp_path / "shards", tmp_path / "rep", embed=False, plots=False)
    n = len(docs)
    assert abs(r["exact_duplicate_rate"] - exact / n) <= 0.01
    assert abs(r["near_duplicate_rate"] - (exact + near) / n) <= 0.01, (
        r["near_duplicate_rate"],
        (exact + near) / n,
    )


def test_report_metrics_on_a_generated_shard(tmp_path):
    """Function names, openings, imports and constraint coverage from real-looking exercise rows."""
    docs = []
    for i in range(40):
        name = f"count_items_{i % 30}"  # 10 name collisions
        lib = ["math", "collections", "re", "itertools"][i % 4]
        text = f"import {lib}\n\ndef {name}(xs):\n    '''Count {i}.'''\n    return len(xs) + {i}\n"
        docs.append(
            Document(
                text,
                f"e{i}",
                metadata={
                    "constraints": {"function_name": name, "difficulty": ["easy", "hard"][i % 2]},
                    "entry_point": name,
                },
            )
        )
    _write(tmp_path / "ex", docs)
    r = write_diversity_report(tmp_path / "ex", tmp_path / "rep", embed=False)
    assert r["function_names"]["distinct"] == 30 and r["function_names"]["collision_rate"] == pytest.approx(
        0.25
    )
    assert r["imports"]["share_importing"] == {
        "math": 0.25,
        "collections": 0.25,
        "re": 0.25,
        "itertools": 0.25,
    }
    assert r["openings"]["top_share"] == pytest.approx(0.25)  # "import math def" etc.
    assert r["constraints"]["keys"]["difficulty"] == {
        "distinct": 2,
        "entropy_bits": 1.0,
        "entropy_norm": 1.0,
        "max_over_min": 1.0,
        "taxonomy_values": 3,
        "coverage": pytest.approx(2 / 3, abs=1e-6),
    }
    assert r["compression_ratio"] > 1 and 0 < r["distinct_n"]["4"] <= 1


def test_empty_and_missing_inputs_do_not_crash(tmp_path):
    r = write_diversity_report(tmp_path / "nothing", tmp_path / "rep", embed=False)
    assert r["rows"] == 0 and (tmp_path / "rep" / "diversity.html").exists()


def test_metric_helpers():
    assert distinct_n(["a a a a"], 1) == 0.25 and distinct_n([], 2) == 0.0
    import numpy as np

    X = np.random.default_rng(0).normal(size=(50, 8))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    assert 1.0 < vendi_score(X) <= 8.0 + 1e-9  # bounded by the dimension
    assert vendi_score(np.repeat(X[:1], 10, axis=0)) == pytest.approx(1.0)


@pytest.mark.slow
def test_embedding_coverage_with_the_bundled_model(tmp_path):
    texts = _stdlib_functions(60)
    _write(tmp_path / "s", [Document(t, f"u{i}") for i, t in enumerate(texts)])
    _write(tmp_path / "d", [Document(texts[i % 5], f"d{i}") for i in range(60)])
    diverse = write_diversity_report(tmp_path / "s", tmp_path / "rs")["embedding"]
    narrow = write_diversity_report(tmp_path / "d", tmp_path / "rd")["embedding"]
    assert diverse["vendi_score"] > 2 * narrow["vendi_score"]


def test_report_images_fit_the_page(tmp_path):
    """Issue 12: the constraint-coverage image of 8 keys was 1716 px wide in a 1000 px page and cut off."""
    import base64
    import re
    import struct

    keys = ["topic", "difficulty", "style", "audience", "length", "library", "concept", "format"]
    docs = [
        Document(f"def f{i}(x):\n    return x + {i}\n", f"d{i}",
                 metadata={"constraints": {k: f"{k}-{(i * (j + 1)) % 7}" for j, k in enumerate(keys)}})
        for i in range(60)
    ]  # fmt: skip
    _write(tmp_path / "ex", docs)
    write_diversity_report(tmp_path / "ex", tmp_path / "rep", embed=False, near=False)
    page = (tmp_path / "rep" / "diversity.html").read_text()
    assert "max-width:1000px" in page and "img{max-width:100%" in page
    images = re.findall(r"<h2>([^<]+)</h2><img src='data:image/png;base64,([^']+)'", page)
    assert any(title.startswith("Constraint-grid coverage") for title, _ in images)
    for title, data in images:
        width, height = struct.unpack(">II", base64.b64decode(data)[16:24])  # the PNG IHDR chunk
        assert width <= 1000, (title, width)
