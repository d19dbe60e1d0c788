"""The core install runs curation and the AST/13-gram audit without any optional extra.

`.ci/run` proves it in a fresh `pip install -e .` venv; this test gives the same answer in seconds: the
bundled `curate-core` recipe runs in processes (its executor's workers included) where importing torch,
transformers, sentence-transformers, scikit-learn, lightgbm or openai raises ImportError."""

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import yaml
from core_install import BLOCKED_MESSAGE, core_install_env

REPO = Path(__file__).resolve().parents[2]


def test_curate_core_recipe_runs_without_any_extra(tmp_path, mbpp_path):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    src = tmp_path / "src"
    src.mkdir()
    for path in sorted(stdlib.glob("*.py"))[:40]:
        (src / path.name).write_bytes(path.read_bytes())
    (src / "copy_of_abc.py").write_bytes((src / "abc.py").read_bytes())  # an exact duplicate
    (src / "broken.py").write_text("def broken(:\n")
    recipe = yaml.safe_load((REPO / "recipes" / "curate-core.yaml").read_text())
    recipe["stages"][0]["input"]["with"] = {"paths": [str(src)]}
    (tmp_path / "core.yaml").write_text(yaml.safe_dump(recipe))
    env = {**core_install_env(tmp_path / "blocker"), "TEXTBOOKS_MBPP_PATH": str(mbpp_path)}
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and BLOCKED_MESSAGE in probe.stderr  # the blocker is active
    code = textwrap.dedent(
        f"""
        from recipes.engine import run_recipe
        run_recipe({str(tmp_path / "core.yaml")!r}, overrides={{"out": {str(tmp_path / "out")!r}}})
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    filtered = json.loads((tmp_path / "out" / "filtered" / "manifest.json").read_text())
    curated = json.loads((tmp_path / "out" / "curated" / "manifest.json").read_text())
    assert filtered["accounted_inputs"] == 42 and filtered["drop_reasons"].get("syntax_error", 0) >= 1
    assert curated["drop_reasons"] == {"exact_duplicate": 1} and curated["rows"] == filtered["rows"] - 1
    audit = json.loads((tmp_path / "out" / "decontam" / "decontam.json").read_text())
    assert set(audit["benchmarks"]) == {"humaneval", "mbpp"} and audit["docs"] == curated["rows"]
    assert (tmp_path / "out" / "decontam" / "report" / "report.html").is_file()
