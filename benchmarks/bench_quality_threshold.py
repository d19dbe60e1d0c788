"""Code of every Python version through the quality filter, and thresholds chosen by a stated rule.

Three parts, all in one process:

1. **Parse census** of code nobody here wrote: every ``.py`` file of this interpreter's standard library
   and site-packages (200 B - 1 MB), by dialect (:func:`curate.pyparse.parse_python`), against plain
   ``ast.parse``; with how many files the structure features see as ``parses = 0`` before and after.
2. **Held-out ranking and thresholds.** The quickstart's classifier (heuristic labels on the quickstart's
   50 % id-sample of the stdlib, structure features, random forest, 5-fold CV) is trained twice: with
   ``ast``-only parsing (the baseline, what main did) and with ``curate.pyparse`` (ours). Each threshold
   rule is applied to the out-of-fold scores of the *training labels only* (target precision 0.9 = what
   the quickstart shipped, target precision 0.8, best F1, keep rate 0.25, the default 0.5); the dev set
   and the other held-out sets are then only measured: ROC-AUC (textbook-style vs boilerplate) and the
   keep rate each rule gives on keon/algorithms (dev), HumanEval, the site-packages boilerplate, the
   version samples (``tests/curate/python_versions``: 3.0-3.14 and Python 2) and the curated data itself
   (every stdlib file the quickstart would curate).
3. **Files scored exactly 0.0** among the held-out sets and the version samples, and why.

    python benchmarks/bench_quality_threshold.py [--skip-census]
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_sets import REPO, boilerplate_negatives, humaneval_positives, keon_positives  # noqa: E402

from curate import labelers, pyparse  # noqa: E402
from curate.classifier import QualityClassifier, choose_threshold  # noqa: E402
from curate.labelers import heuristic_score, in_sample  # noqa: E402

VERSIONS = REPO / "tests" / "curate" / "python_versions"
RULES = {
    "target_precision 0.9 (the rule before)": {"target_precision": 0.9},
    "target_precision 0.8": {"target_precision": 0.8},
    "best_f1": {"best_f1": True},
    "keep_rate 0.25": {"keep_rate": 0.25},
    "default 0.5": {},
}


def ast_only(text: str) -> pyparse.ParsedSource:
    """The baseline parser: this interpreter's ``ast`` and nothing else (what main did)."""
    tree, reason, err = pyparse._ast_parse(text.removeprefix("\ufeff"))
    return (
        pyparse.ParsedSource("python3", tree, text) if tree else pyparse.ParsedSource(reason, error=str(err))
    )


def python_files(root: Path) -> list[tuple[str, str]]:
    out = []
    for path in sorted(root.rglob("*.py")):
        try:
            if path.is_file() and 200 <= path.stat().st_size <= 1_000_000:
                out.append((path.relative_to(root).as_posix(), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return out


def census() -> dict[str, list[tuple[str, str]]]:
    """Part 1: dialects of the stdlib and site-packages; returns the non-python3 files by dialect."""
    roots = {
        "stdlib": Path(sysconfig.get_paths()["stdlib"]),
        "site-packages": Path(sysconfig.get_paths()["purelib"]),
    }
    found: dict[str, list[tuple[str, str]]] = {}
    print("\n1. parse census (files of 200 B - 1 MB that decode as UTF-8)")
    print(
        f"{'tree':14s} {'files':>7s} {'ast ok':>7s} "
        + " ".join(f"{d:>14s}" for d in (*pyparse.VALID_DIALECTS, *pyparse.FAILURES))
    )
    for name, root in roots.items():
        files = [
            (rel, text) for rel, text in python_files(root) if name != "stdlib" or "site-packages" not in rel
        ]
        t0 = time.perf_counter()
        dialects = Counter()
        for rel, text in files:
            parsed = pyparse.parse_python(text)
            dialects[parsed.dialect] += 1
            if parsed.dialect != "python3":
                found.setdefault(parsed.dialect, []).append((f"{name}/{rel}", text))
        cells = " ".join(f"{dialects[d]:14d}" for d in (*pyparse.VALID_DIALECTS, *pyparse.FAILURES))
        print(
            f"{name:14s} {len(files):7d} {dialects['python3']:7d} {cells}  ({time.perf_counter() - t0:.0f} s)"
        )
    for dialect, rows in found.items():
        print(f"   {dialect}: e.g. " + ", ".join(rel for rel, _ in rows[:6]))
    return found


def stdlib_curated() -> list[tuple[str, str]]:
    """What the quickstart curates: stdlib files of at most 1 MB in the newest Python 3 (python3 + newer)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return [
        (rel, text)
        for rel, text in python_files(root)
        if "site-packages" not in rel and pyparse.parse_python(text).dialect in ("python3", "newer_syntax")
    ]


def train_and_score(curated, evals: dict[str, list[str]]) -> dict:
    """The quickstart's classifier: labels on its 50 % sample, 5-fold CV, then every set scored."""
    train = [text for rel, text in curated if in_sample(rel, 0.5)]
    y = np.array([int(heuristic_score(t) >= 0.6) for t in train])
    clf = QualityClassifier(kind="random_forest", featurizer="structure")
    clf.cross_validate(train, y, folds=5)
    oof = clf.oof_scores_
    clf.fit(train, y)
    scores = {name: clf.quality_score(texts) for name, texts in evals.items()}
    scores["curated"] = clf.quality_score([t for _, t in curated])
    return {"y": y, "oof": oof, "scores": scores}


def report_run(title: str, run: dict, labels: dict[str, int]) -> None:
    s = run["scores"]
    neg = s["boilerplate"]
    print(f"\n   {title}: {len(run['y'])} labelled stdlib files, {run['y'].mean():.1%} high")
    for pos in ("keon", "humaneval"):
        auc = roc_auc_score([1] * len(s[pos]) + [0] * len(neg), np.r_[s[pos], neg])
        print(f"   ROC-AUC {pos} vs boilerplate: {auc:.4f}")
    head = ("rule", "thr", "cv P", "cv R", "keon", "humaneval", "boilerpl.", "versions", "curated")
    print("   " + f"{head[0]:38s}" + "".join(f"{h:>10s}" for h in head[1:]))
    for rule, kwargs in RULES.items():
        choice = choose_threshold(run["y"], run["oof"], **kwargs)
        t = choice["threshold"]
        pred = run["oof"] >= t
        precision = (run["y"][pred].mean()) if pred.any() else 0.0
        recall = pred[run["y"] == 1].mean()
        keeps = [
            float((s[name] >= t).mean())
            for name in ("keon", "humaneval", "boilerplate", "versions", "curated")
        ]
        print(
            "   "
            + f"{rule:38s}{t:10.3f}{precision:10.3f}{recall:10.3f}"
            + "".join(f"{k:10.1%}" for k in keeps)
        )
    zero = {name: int((s[name] == 0.0).sum()) for name in ("keon", "humaneval", "versions")}
    print(f"   positives scored exactly 0.0: {zero}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-census", action="store_true", help="leave out part 1 (site-packages parse)")
    args = parser.parse_args()
    started = time.perf_counter()
    found = {} if args.skip_census else census()
    versions = [(p.name, p.read_text()) for p in sorted(VERSIONS.glob("*.pysrc"))]
    evals = {
        "keon": [r["text"] for r in keon_positives()],
        "humaneval": [r["text"] for r in humaneval_positives()],
        "boilerplate": [r["text"] for r in boilerplate_negatives()],
        "versions": [t for _, t in versions],
    }
    curated = stdlib_curated()
    print(f"\n2. quickstart classifier, thresholds by rule (curated stdlib: {len(curated)} files)")
    with mock.patch.object(labelers, "parse_python", ast_only):
        baseline = train_and_score(curated, evals)
    report_run("baseline: ast-only parsing", baseline, {})
    ours = train_and_score(curated, evals)
    report_run("ours: curate.pyparse", ours, {})
    print("\n3. version samples: score (baseline -> ours)")
    for (name, _), b, o in zip(
        versions, baseline["scores"]["versions"], ours["scores"]["versions"], strict=True
    ):
        print(f"   {name:20s} {b:.3f} -> {o:.3f}  dialect {pyparse.python_dialect(_)}")
    for dialect, rows in found.items():
        if dialect in ("python2", "newer_syntax"):
            features = [labelers.code_features(t) for _, t in rows]
            print(f"   real {dialect} files of the census: {len(rows)}, parses=1 for "
                  f"{sum(f['parses'] == 1.0 for f in features)}, mean defs {np.mean([f.get('defs', 0) for f in features]):.1f}")  # fmt: skip
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
