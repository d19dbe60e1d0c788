"""``manifest.json`` and the Hugging Face dataset card (``README.md``) of a shard directory.

The manifest is what a reviewer audits: schema version, toolkit version, the recipe and its hash,
rows/bytes/sha256 for every shard, counts per step and per drop reason, the unreadable inputs and
the wall time. Everything in it is recomputed from the files on disk, so it is right after a resume.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from curate.schema import SCHEMA_VERSION, SHARD_SCHEMA
from curate.shards import DATA_DIR, EXCLUDED_DIR, LOGS_DIR, UNREADABLE_DIR

MANIFEST_NAME = "manifest.json"


def toolkit_version() -> str:
    """The installed ``textbooks`` version (``0+unknown`` when run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("textbooks")
    except PackageNotFoundError:
        return "0+unknown"


def file_sha256(path: str | os.PathLike, chunk: int = 2**20) -> str:
    """Streaming sha256 of a file (constant memory).

    Example:
        >>> file_sha256(__file__)[:8]  # doctest: +SKIP
        '3b1f...'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _shard_entries(folder: Path, root: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    entries = []
    for path in sorted(folder.rglob("*.parquet")):
        entries.append(
            {
                "path": path.relative_to(root).as_posix(),
                "rows": pq.ParquetFile(path).metadata.num_rows,
                "bytes": path.stat().st_size,
                "sha256": file_sha256(path),
            }
        )
    return entries


#: the step counters of an LLM step that the manifest reports under ``answers`` (with every ``fallback_*``)
ANSWER_COUNTS = ("requests", "parsed", "failed", "truncated", "unparseable", "ambiguous", "request_failed",
                 "budget_exhausted")  # fmt: skip


def _metric_total(value: Any) -> float:
    return value.get("total", 0) if isinstance(value, dict) else (value or 0)


def _step_counts(logs: Path) -> list[dict[str, Any]]:
    """Sum datatrove's per-task stats files (``.logs/stats/*.json``) into one entry per pipeline step."""
    steps: list[dict[str, Any]] = []
    for stats_file in sorted((logs / "stats").glob("*.json")):
        for index, step in enumerate(json.loads(stats_file.read_text())):
            if index == len(steps):
                steps.append({"name": step["name"], "time_s": 0.0, "counts": Counter()})
            steps[index]["time_s"] += _metric_total(step.get("time_stats"))
            for key, value in step.get("stats", {}).items():
                steps[index]["counts"][key] += _metric_total(value)
    out = []
    for step in steps:
        counts = step.pop("counts")
        entry: dict[str, Any] = {"name": step["name"], "time_s": round(step["time_s"], 3)}
        for key in ("total", "forwarded", "dropped", "documents", "input_files", "unreadable"):
            if key in counts:
                entry[key] = int(counts[key])
        reasons = {k.removeprefix("dropped_"): int(v) for k, v in counts.items() if k.startswith("dropped_")}
        if reasons:
            entry["drop_reasons"] = dict(sorted(reasons.items()))
        if "requests" in counts:  # an LLM step: how each answer ended, and the fallbacks it took
            entry["answers"] = {"requests": 0, "parsed": 0, "fallback_parsed": 0, "failed": 0} | {
                k: int(v) for k, v in sorted(counts.items()) if k in ANSWER_COUNTS or k.startswith("fallback_")}  # fmt: skip
        out.append(entry)
    return out


def _excluded_reasons(folder: Path) -> dict[str, dict[str, int]]:
    import pyarrow.parquet as pq

    by_step: dict[str, Counter] = {}
    for path in sorted(folder.rglob("*.parquet")):
        table = pq.read_table(path, columns=["filter_step", "filter_reason"])
        for step, reason in zip(
            table.column("filter_step").to_pylist(), table.column("filter_reason").to_pylist(), strict=True
        ):
            by_step.setdefault(step or "unknown", Counter())[reason or "unknown"] += 1
    return {step: dict(sorted(c.items())) for step, c in sorted(by_step.items())}


def _unreadable(folder: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(folder.glob("*.jsonl")):
        records.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return sorted(records, key=lambda r: r["path"])


def recipe_hash(recipe: dict[str, Any] | None) -> str | None:
    """sha256 of the recipe's canonical JSON: the same recipe always gives the same hash."""
    if recipe is None:
        return None
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()


def write_manifest(
    output_dir: str | os.PathLike,
    *,
    stage: str | None = None,
    recipe: dict[str, Any] | None = None,
    wall_time_s: float | None = None,
    inputs: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``manifest.json`` and the dataset card for a finished shard directory; return the manifest.

    Example:
        >>> manifest = write_manifest("textbooks-out/quickstart", stage="curate")  # doctest: +SKIP
        >>> manifest["rows"]  # doctest: +SKIP
        1873
    """
    root = Path(output_dir)
    shards = _shard_entries(root / DATA_DIR, root)
    excluded = _shard_entries(root / EXCLUDED_DIR, root)
    excluded_reasons = _excluded_reasons(root / EXCLUDED_DIR)
    unreadable = _unreadable(root / UNREADABLE_DIR)
    drop_reasons: Counter = Counter()
    for reasons in excluded_reasons.values():
        drop_reasons.update(reasons)
    rows = sum(s["rows"] for s in shards)
    excluded_rows = sum(s["rows"] for s in excluded)
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "toolkit_version": toolkit_version(),
        "stage": stage,
        "inputs": inputs or [],
        "recipe": recipe,
        "recipe_hash": recipe_hash(recipe),
        "rows": rows,
        "bytes": sum(s["bytes"] for s in shards),
        "excluded_rows": excluded_rows,
        "unreadable_inputs": len(unreadable),
        # every input is accounted for: kept + excluded + unreadable
        "accounted_inputs": rows + excluded_rows + len(unreadable),
        "shards": shards,
        "excluded_shards": excluded,
        "steps": _step_counts(root / LOGS_DIR),
        "drop_reasons": dict(sorted(drop_reasons.items())),
        "drop_reasons_by_step": excluded_reasons,
        "licenses": _column_counts(root / DATA_DIR, "license"),
        "unreadable": unreadable,
        "wall_time_s": None if wall_time_s is None else round(wall_time_s, 3),
    }
    if extra:
        manifest.update(extra)
    (root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")
    write_dataset_card(root, manifest)
    return manifest


def read_manifest(output_dir: str | os.PathLike) -> dict[str, Any]:
    """Load a shard directory's ``manifest.json``."""
    return json.loads((Path(output_dir) / MANIFEST_NAME).read_text())


def _column_counts(folder: Path, column: str) -> dict[str, int]:
    """Rows per distinct value of one column over a folder's shards (``None`` counted as ``unknown``)."""
    import pyarrow.parquet as pq

    counts: Counter = Counter()
    for path in sorted(folder.rglob("*.parquet")):
        parquet = pq.ParquetFile(path)
        if column in parquet.schema_arrow.names:
            counts.update(v if v else "unknown" for v in parquet.read(columns=[column]).column(0).to_pylist())
    return dict(sorted(counts.items()))


def write_dataset_card(output_dir: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write a Hugging Face dataset card (``huggingface_hub.DatasetCard``) whose metadata comes from the
    data (licence, size, sources, recipe + hash) and whose ``configs`` make ``load_dataset(DIR)`` work."""
    from huggingface_hub import DatasetCard

    from curate.cards import dataset_card_data, repository_url, unknown_license_note

    root = Path(output_dir)
    licenses = manifest["licenses"] if "licenses" in manifest else _column_counts(root / DATA_DIR, "license")
    sources = [s for s in _column_counts(root / DATA_DIR, "source") if s != "unknown"]
    card_data = dataset_card_data(manifest, licenses, sources)
    url = repository_url()
    toolkit = f"[textbooks]({url})" if url else "textbooks"
    columns = "\n".join(f"| `{f.name}` | `{f.type}` |" for f in SHARD_SCHEMA)
    reasons = (
        "\n".join(f"| {r} | {n} |" for r, n in manifest.get("drop_reasons", {}).items()) or "| (none) | 0 |"
    )
    license_rows = "\n".join(f"| {name} | {n} |" for name, n in licenses.items()) or "| (none) | 0 |"
    license_note = f"\n{note}\n" if (note := unknown_license_note(licenses)) else ""
    recipe = manifest.get("recipe_name") or (manifest.get("recipe") or {}).get("name")
    body = f"""# {manifest.get("stage") or root.name}

Shards written by {toolkit} {manifest.get("toolkit_version")}, schema version
{manifest.get("schema_version")}, recipe `{recipe}` (hash `{manifest.get("recipe_hash")}`).

- rows kept: **{manifest.get("rows")}** in {len(manifest.get("shards", []))} shard(s), {manifest.get("bytes")} bytes
- rows excluded (with a reason): {manifest.get("excluded_rows")}
- unreadable inputs: {manifest.get("unreadable_inputs")}

```python
from datasets import load_dataset
ds = load_dataset("{root.as_posix()}", split="train", download_mode="force_redownload")
```

(`datasets` caches a local directory under its name alone, not its contents: without
`force_redownload` a rerun's new shards, or another directory of the same name, can be answered from
the old cache. `load_dataset("parquet", data_files="{root.as_posix()}/data/*.parquet")` has no such issue.)

## Licences

Each row's `license` column says the licence of the file it came from:

| licence | rows |
| --- | --- |
{license_rows}
{license_note}
## Columns

| column | type |
| --- | --- |
{columns}

## Drop reasons

| reason | rows |
| --- | --- |
{reasons}

See `manifest.json` for per-shard checksums and per-step counts.
"""
    path = root / "README.md"
    DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}").save(path)
    return path
