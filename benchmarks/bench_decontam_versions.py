"""decontam's AST measure on hosts of other Python versions: planted-solution recall, ast-only vs ours.

40 HumanEval solutions (every 4th problem), each disguised (``decontam.mutate.disguise``: renamed,
reformatted) and planted after the first function of a Python 2 host and of a 3.12+ host (the samples in
``tests/curate/python_versions``: ``py2_idioms``/``py2_class`` and ``py3.12``/``py3.13``/``py3.14``,
alternating), plus the clean hosts. Both runs parse and score the same documents in one process; the
baseline parses with this interpreter's ``ast`` only (what main did), ours with ``curate.pyparse``.

    python benchmarks/bench_decontam_versions.py [--tau 0.9]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_sets import REPO  # noqa: E402

from decontam import ast_match  # noqa: E402
from decontam.eval_sets import load_benchmark  # noqa: E402
from decontam.mutate import disguise  # noqa: E402
from decontam.prune import parse_batches, score_ast  # noqa: E402

VERSIONS = REPO / "tests" / "curate" / "python_versions"
HOSTS = {"python2": ("py2_idioms", "py2_class"), "3.12+": ("py3.12", "py3.13", "py3.14")}


def planted_corpus(n: int = 40) -> tuple[list[str], list[str], dict[str, int]]:
    items = load_benchmark("humaneval")
    ids, texts, truth = [], [], {}
    for kind, names in HOSTS.items():
        hosts = [(VERSIONS / f"{name}.pysrc").read_text() for name in names]
        for k in range(n):
            host = hosts[k % len(hosts)]
            cut = host.index("\ndef ", host.index("def ") + 4)
            item = 4 * k + (1 if kind == "3.12+" else 0)
            ids.append(f"{kind}/{k}")
            texts.append(host[:cut] + "\n\n" + disguise(items[item].solution, seed=k) + "\n" + host[cut:])
            truth[ids[-1]] = item
        for name, host in zip(names, hosts, strict=True):
            ids.append(f"clean/{name}")
            texts.append(host)
    return ids, texts, truth


def recall(ids, texts, truth, tau: float) -> dict[str, str]:
    items = load_benchmark("humaneval")
    table = parse_batches(iter([(ids, texts)]), workers=1)
    scores = score_ast(table, "humaneval", items, floor=0.5, workers=1)
    out = {}
    for kind in HOSTS:
        rows = [i for i, d in enumerate(ids) if d.startswith(kind + "/")]
        found = sum(scores.doc_score[i] >= tau and scores.doc_item[i] == truth[ids[i]] for i in rows)
        parsed = sum(table.doc_error[i] is None for i in rows)
        out[kind] = f"{found}/{len(rows)} found, {parsed}/{len(rows)} parsed"
    clean = [i for i, d in enumerate(ids) if d.startswith("clean/")]
    out["clean hosts flagged"] = f"{int(np.sum(scores.doc_score[clean] >= tau))}/{len(clean)}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tau", type=float, default=0.9)
    args = parser.parse_args()
    ids, texts, truth = planted_corpus()
    with mock.patch.object(ast_match, "_parse", ast.parse):
        baseline = recall(ids, texts, truth, args.tau)
    ours = recall(ids, texts, truth, args.tau)
    print(f"planted HumanEval solutions found at AST tau {args.tau}")
    for key in baseline:
        print(f"  {key:22s} ast only: {baseline[key]:28s} curate.pyparse: {ours[key]}")


if __name__ == "__main__":
    main()
