"""Readers: Python source trees and git checkouts, JSONL, Parquet/HF datasets and Stack Exchange dumps; stable ids, licence hints, bad input recorded."""

import gzip
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.readers import (
    HFDatasetSourceReader,
    JsonlSourceReader,
    PythonSourceReader,
    StackExchangeReader,
    html_to_markdown,
)
from curate.shards import ShardReader

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def test_python_source_reader_stable_ids_globs_and_git(tmp_path):
    repo = tmp_path / "proj"
    (repo / "pkg" / "tests").mkdir(parents=True)
    (repo / "pkg" / "a.py").write_text("a = 1\n")
    (repo / "pkg" / "tests" / "test_a.py").write_text("assert True\n")
    (repo / "pkg" / "ignored.py").write_text("b = 2\n")
    (repo / "notes.txt").write_text("not code")
    (repo / "LICENSE").write_text("MIT License\n\nPermission is hereby granted, free of charge")
    (repo / ".gitignore").write_text("pkg/ignored.py\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    reader = PythonSourceReader(str(repo), exclude=["*/tests/*"])
    docs = list(reader.run())
    assert [d.metadata["path"] for d in docs] == ["pkg/a.py"]  # git-ignored and excluded files are skipped
    assert docs[0].metadata["license"] == "MIT" and docs[0].metadata["repo"] == "proj"
    assert [d.id for d in PythonSourceReader(str(repo), exclude=["*/tests/*"]).run()] == [docs[0].id]


def test_tasks_split_files_in_contiguous_blocks_and_dedup_keeps_the_same_copy(tmp_path):
    """Ranks read back in order give the one-task order for any task count, so which duplicate a one-task
    exact dedup keeps does not depend on how many tasks read the files."""
    from recipes.engine import run_recipe

    reader = PythonSourceReader([str(STDLIB / "json"), str(STDLIB / "email")])
    single = [d.id for d in reader.run()]
    for tasks in (2, 3, 7):
        ranks = [[d.id for d in reader.run(rank=r, world_size=tasks)] for r in range(tasks)]
        assert sum(ranks, []) == single and all(ranks)

    tree = tmp_path / "tree"
    for i, name in enumerate(["base64.py", "bisect.py", "colorsys.py", "fnmatch.py", "glob.py", "heapq.py"]):
        text = (STDLIB / name).read_text()
        for copy in ("a", "m", "z")[: 1 + i % 3]:  # 0-2 copies of each, spread over the sorted order
            (tree / copy).mkdir(parents=True, exist_ok=True)
            (tree / copy / name).write_text(text)
    kept = {}
    for tasks in (1, 3, 5):
        out = tmp_path / f"out{tasks}"
        stages = [
            {
                "name": "read",
                "input": {"uses": "python_source", "with": {"paths": [str(tree)]}},
                "output": str(out / "read"),
                "executor": {"tasks": tasks, "workers": 1},
            },
            {
                "name": "dedup",
                "input": {"from": "read"},
                "steps": [{"uses": "exact_dedup"}],
                "output": str(out / "dedup"),
            },
        ]
        run_recipe({"name": "dedup-order", "stages": stages})
        kept[tasks] = sorted(d.metadata["path"] for d in ShardReader(str(out / "dedup" / "data")).run())
    assert kept[1] == kept[3] == kept[5] and len(kept[1]) == 6
    assert all(path.startswith("a/") for path in kept[1])  # the first copy in path order


def test_site_packages_preset_has_licence_hints():
    reader = PythonSourceReader.preset("site-packages", include=["pyarrow/__init__.py"])
    [document] = list(reader.run())
    assert document.metadata["source"] == "site-packages" and document.metadata["repo"] == "pyarrow"
    assert document.metadata.get("license")


def test_jsonl_reader_the_stack_columns_and_bad_lines(tmp_path):
    rows = [
        {
            "content": "x = 1\n",
            "hexsha": "abc",
            "max_stars_repo_name": "o/r",
            "max_stars_repo_path": "a.py",
            "max_stars_repo_licenses": ["MIT", "Apache-2.0"],
            "size": 6,
            "lang": "Python",
        }
    ]
    with gzip.open(tmp_path / "stack.jsonl.gz", "wt") as f:
        f.write(json.dumps(rows[0]) + "\n")
        f.write("{not json\n")
    reader = JsonlSourceReader(
        str(tmp_path), columns="the-stack", source="the-stack", unreadable_folder=str(tmp_path / "unreadable")
    )
    [document] = list(reader.run())
    assert document.id == "abc" and document.metadata["repo"] == "o/r"
    assert document.metadata["license"] == "MIT OR Apache-2.0" and document.metadata["lang"] == "Python"
    [record] = [
        json.loads(line) for line in (tmp_path / "unreadable" / "00000.jsonl").read_text().splitlines()
    ]
    assert record["path"].endswith("stack.jsonl.gz:2") and "JSONDecodeError" in record["error"]


def test_hf_dataset_reader_with_a_local_parquet_builder(tmp_path):
    pq.write_table(
        pa.table({"content": ["x = 1\n", "y = 2\n"], "max_stars_repo_path": ["a.py", "b.py"]}),
        tmp_path / "part.parquet",
    )
    reader = HFDatasetSourceReader(
        "parquet",
        {"data_files": str(tmp_path / "part.parquet"), "split": "train"},
        columns="the-stack",
        source="the-stack",
    )
    docs = list(reader.run())
    assert [d.text for d in docs] == ["x = 1\n", "y = 2\n"] and docs[1].metadata["path"] == "b.py"
    assert len({d.id for d in docs}) == 2


POSTS_XML = """<?xml version="1.0" encoding="utf-8"?>
<posts>
  <row Id="1" PostTypeId="1" AcceptedAnswerId="3" CreationDate="2008-07-31T21:42:52.667" Score="10" Title="How do I reverse a list?" Body="&lt;p&gt;I have &lt;code&gt;xs&lt;/code&gt;.&lt;/p&gt;" Tags="&lt;python&gt;&lt;list&gt;" AnswerCount="2" />
  <row Id="2" PostTypeId="2" ParentId="1" Score="50" Body="&lt;p&gt;Popular but not accepted&lt;/p&gt;" />
  <row Id="3" PostTypeId="2" ParentId="1" Score="5" Body="&lt;p&gt;Use slicing:&lt;/p&gt;&lt;pre&gt;&lt;code&gt;xs[::-1]&#xA;&lt;/code&gt;&lt;/pre&gt;" />
  <row Id="4" PostTypeId="1" Score="3" Title="Java question" Body="&lt;p&gt;x&lt;/p&gt;" Tags="|java|" />
  <row Id="5" PostTypeId="1" Score="1" Title="Sort a dict?" Body="&lt;p&gt;How?&lt;/p&gt;" Tags="|python|dictionary|" />
  <row Id="6" PostTypeId="2" ParentId="5" Score="2" Body="&lt;p&gt;Low&lt;/p&gt;" />
  <row Id="7" PostTypeId="2" ParentId="5" Score="9" Body="&lt;pre&gt;&lt;code&gt;sorted(d.items())&lt;/code&gt;&lt;/pre&gt;" />
  <row Id="8" PostTypeId="1" Score="1" Title="Unanswered" Body="&lt;p&gt;?&lt;/p&gt;" Tags="&lt;python&gt;" />
</posts>
"""


def test_stackexchange_reader_joins_accepted_else_top_answer(tmp_path):
    path = tmp_path / "Posts.xml"
    path.write_text(POSTS_XML)
    docs = list(StackExchangeReader(str(path)).run())
    assert [d.metadata["path"] for d in docs] == ["questions/1", "questions/5"]
    first, second = docs
    assert "```\nxs[::-1]\n```" in first.text and "Popular" not in first.text  # accepted answer wins
    assert "sorted(d.items())" in second.text and "Low" not in second.text  # else the top-scored one
    assert first.metadata["tags"] == ["python", "list"]
    # tasks split questions without overlap
    parts = [list(StackExchangeReader(str(path)).run(rank=r, world_size=2)) for r in range(2)]
    assert sorted(d.id for p in parts for d in p) == sorted(d.id for d in docs)


def test_stackexchange_reader_constant_memory_on_a_large_dump(tmp_path):
    """40k posts: peak RSS growth of a child process stays far below the dump's size."""
    path = tmp_path / "Posts.xml"
    body = "&lt;p&gt;" + "word " * 200 + "&lt;/p&gt;"
    with open(path, "w") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
        for q in range(1, 40001, 2):
            f.write(
                f'  <row Id="{q}" PostTypeId="1" Score="1" Title="q{q}" Body="{body}" Tags="|python|" />\n'
            )
            f.write(f'  <row Id="{q + 1}" PostTypeId="2" ParentId="{q}" Score="1" Body="{body}" />\n')
        f.write("</posts>\n")
    size_mb = path.stat().st_size / 2**20
    script = f"""
import resource
from curate.readers import StackExchangeReader
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = sum(1 for _ in StackExchangeReader({str(path)!r}).run())
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(n, (after - before) / 1024)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(out[0]) == 20000
    assert float(out[1]) < size_mb / 2, f"RSS grew {out[1]} MB on a {size_mb:.0f} MB dump"


def test_html_to_markdown_keeps_code_blocks():
    markdown = html_to_markdown(
        "<p>Try <b>this</b>:</p><pre><code>for i in range(3):\n    print(i &lt; 2)\n</code></pre>"
    )
    assert "```\nfor i in range(3):\n    print(i < 2)\n```" in markdown and "**this**" in markdown


def test_hf_dataset_reader_runs_in_a_recipe_with_every_row_accounted(tmp_path):
    """The HF reader validates and runs as a recipe input (it has no data folder to check or list)."""
    from recipes.engine import run_recipe

    data = tmp_path / "d.parquet"
    pq.write_table(
        pa.table({"text": ["def f():\n    return 1\n", "x = 2\n", ""], "id": ["a", "b", "c"]}), data
    )
    recipe = tmp_path / "hf.yaml"
    recipe.write_text(
        "name: hf\nstages:\n  - name: read\n    input:\n      uses: hf_dataset\n"
        f"      with: {{dataset: parquet, dataset_options: {{data_files: '{data}', split: train}}}}\n"
        f"    steps:\n      - uses: encoding\n    output: '{tmp_path / 'out'}'\n"
    )
    run_recipe(str(recipe))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["rows"] == 2 and manifest["excluded_rows"] == 1  # the empty row, with its reason
    assert manifest["accounted_inputs"] == 3 and manifest["unreadable_inputs"] == 0


def test_an_input_that_lists_no_files_runs_but_is_logged_and_noted_in_the_manifest(tmp_path):
    """An empty input folder is legitimate (the stage writes no rows) but never silent: a warning in the
    run's log, a note in the manifest and the run summary, and the empty listing snapshot."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "jsonl").mkdir()
    (tmp_path / "jsonl" / "notes.txt").write_text("not a match for the glob\n")
    recipe = tmp_path / "empty.yaml"
    recipe.write_text(
        f"name: empty-inputs\nvars: {{out: '{tmp_path / 'out'}'}}\nstages:\n"
        f"  - {{name: py, input: {{uses: python_source, with: {{paths: ['{tmp_path / 'empty'}']}}}}, output: '${{out}}/py'}}\n"
        f"  - name: js\n    input: {{uses: jsonl_source, with: {{data_folder: '{tmp_path / 'jsonl'}', glob_pattern: '*.jsonl'}}}}\n"
        "    output: ${out}/js\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "recipes.cli", "run", str(recipe)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / ".textbooks-logs" / "empty-inputs.log").read_text()
    terminal = " ".join(result.stdout.split())
    for stage, folder, pattern in (("py", "empty", "*.py"), ("js", "jsonl", "*.jsonl")):
        manifest = json.loads((tmp_path / "out" / stage / "manifest.json").read_text())
        assert manifest["rows"] == 0 and manifest["listed_inputs"] == 0 and manifest["accounted_inputs"] == 0
        [note] = manifest["notes"]
        assert note["note"] == "empty_listing" and note["step"] == "read"
        assert f"no input files found in {tmp_path / folder} matching {pattern}" in note["message"]
        assert "WARNING" in log and note["message"] in log
        assert f"{stage}: {note['message']}" in terminal
        listing = json.loads((tmp_path / "out" / stage / ".logs" / "listing.json").read_text())
        assert listing == {"files": []}


def test_an_input_with_files_has_no_empty_listing_note(tmp_path):
    from recipes.engine import run_recipe

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("a = 1\n")
    recipe = {
        "name": "one",
        "stages": [
            {"name": "py", "input": {"uses": "python_source", "with": {"paths": [str(tmp_path / "src")]}},
             "output": str(tmp_path / "out")},
        ],
    }  # fmt: skip
    run_recipe(recipe)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["rows"] == 1 and manifest["listed_inputs"] == 1 and "notes" not in manifest
