"""Hugging Face dataset cards for shard directories, through ``huggingface_hub``'s ``DatasetCard``.

The card's metadata comes from the data, not from a template: the licence from the ``license`` column
(a Hub licence id, or ``other`` with a ``license_name`` and, when known, a ``license_link``), the
``configs`` that make ``load_dataset(DIR)`` work, the size category from the row count, the source
datasets from the ``source`` column, and the recipe with its hash. :func:`validate_dataset_card`
checks a card offline against the Hub's metadata rules (``DatasetCard.validate`` needs the network).

Example:
    >>> data = dataset_card_data({"rows": 1873, "excluded_rows": 0}, {"PSF-2.0": 1873}, ["stdlib"])
    >>> data.license, data.license_name, data.size_categories
    ('other', 'psf-2.0', ['1K<n<10K'])
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

# SPDX id -> the Hub's licence id, for the licences code corpora carry most often
HUB_LICENSES = {
    "apache-2.0": "apache-2.0",
    "mit": "mit",
    "bsd-2-clause": "bsd-2-clause",
    "bsd-3-clause": "bsd-3-clause",
    "bsd-3-clause-clear": "bsd-3-clause-clear",
    "bsd": "bsd",
    "isc": "isc",
    "mpl-2.0": "mpl-2.0",
    "gpl-2.0": "gpl-2.0",
    "gpl-3.0": "gpl-3.0",
    "lgpl-2.1": "lgpl-2.1",
    "lgpl-3.0": "lgpl-3.0",
    "agpl-3.0": "agpl-3.0",
    "epl-2.0": "epl-2.0",
    "artistic-2.0": "artistic-2.0",
    "unlicense": "unlicense",
    "zlib": "zlib",
    "cc0-1.0": "cc0-1.0",
    "cc-by-4.0": "cc-by-4.0",
    "cc-by-sa-4.0": "cc-by-sa-4.0",
    "postgresql": "postgresql",
}

# licences the Hub has no id for, and where their text lives
LICENSE_LINKS = {
    "psf-2.0": "https://docs.python.org/3/license.html",
    "python-2.0": "https://opensource.org/license/python-2-0",
    "hpnd": "https://opensource.org/license/historical-php",
}

# the Hub's size categories (the same list ships with `datasets` as size_categories.json)
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)
# what a licence column holds for a row whose licence nobody determined
UNKNOWN_LICENSES = {"unknown", "noassertion"}
_LICENSE_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


def size_category(rows: int) -> str:
    """The Hub's size category for a row count.

    Example:
        >>> size_category(999), size_category(1000), size_category(2 * 10**12)
        ('n<1K', '1K<n<10K', 'n>1T')
    """
    return next((name for bound, name in SIZE_CATEGORIES if rows < bound), "n>1T")


def _license_slug(spdx: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", spdx.lower()).strip("-.") or "unknown"


def card_license(licenses: dict[str, int]) -> dict[str, Any]:
    """Card metadata for the licences found in the data (licence -> rows).

    One or more licences the Hub knows become ``license``; anything else becomes ``license: other``
    with a ``license_name`` (and a ``license_link`` when the licence's text has a known home). Rows
    without a licence (``unknown``, SPDX ``NOASSERTION``) leave the field to the licences that are
    known, so MIT plus some unknown rows stays ``mit`` (a valid id on dataset and model cards, found by
    the Hub's licence filter); :func:`unknown_license_note` states their share in the card's text, and
    only data with no known licence at all is ``unknown``.

    Example:
        >>> card_license({"MIT": 3, "Apache-2.0": 1})
        {'license': ['apache-2.0', 'mit']}
        >>> card_license({"MIT": 3, "unknown": 2})
        {'license': 'mit'}
        >>> card_license({"PSF-2.0": 10})
        {'license': 'other', 'license_name': 'psf-2.0', 'license_link': 'https://docs.python.org/3/license.html'}
        >>> card_license({}), card_license({"unknown": 2})
        ({'license': 'unknown'}, {'license': 'unknown'})
    """
    slugs = sorted(
        {_license_slug(name) for part in licenses for name in re.split(r"\s+OR\s+|\s+AND\s+", part)}
    )
    known = [slug for slug in slugs if slug not in UNKNOWN_LICENSES]
    if not known:
        return {"license": "unknown"}
    if all(slug in HUB_LICENSES for slug in known):
        ids = sorted({HUB_LICENSES[slug] for slug in known})
        return {"license": ids[0] if len(ids) == 1 else ids}
    if len(known) == 1:
        card = {"license": "other", "license_name": known[0]}
        if known[0] in LICENSE_LINKS:
            card["license_link"] = LICENSE_LINKS[known[0]]
        return card
    # several licences: the card names them all in its body, per row count
    return {"license": "other", "license_name": "mixed"}


def unknown_license_rows(licenses: dict[str, int]) -> int:
    """Rows whose licence is not known (licence -> rows).

    Example:
        >>> unknown_license_rows({"MIT": 3, "unknown": 2, "NOASSERTION": 1})
        3
    """
    return sum(n for name, n in licenses.items() if _license_slug(name) in UNKNOWN_LICENSES)


def unknown_license_note(licenses: dict[str, int]) -> str:
    """A sentence for a card's text giving the share of rows without a known licence ("" when none).

    Example:
        >>> unknown_license_note({"MIT": 3, "unknown": 1})
        '**1 of 4 rows (25.0%) have no known licence**: the `license` in the metadata covers the other rows only; check these before redistributing them.'
        >>> unknown_license_note({"MIT": 3})
        ''
    """
    unknown, total = unknown_license_rows(licenses), sum(licenses.values())
    if not unknown:
        return ""
    return (
        f"**{unknown} of {total} rows ({unknown / total:.1%}) have no known licence**: the `license` in the "
        "metadata covers the other rows only; check these before redistributing them."
    )


def repository_url() -> str | None:
    """The project's repository URL from the installed package metadata, or ``None`` if it declares none."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("textbooks").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("repository", "source", "homepage") and url.strip():
            return url.strip()
    return None


def dataset_card_data(manifest: dict[str, Any], licenses: dict[str, int], sources: list[str]):
    """``huggingface_hub.DatasetCardData`` for a shard directory's manifest and the data's licences/sources."""
    from huggingface_hub import DatasetCardData

    from curate.shards import DATA_DIR, EXCLUDED_DIR

    configs = [
        {"config_name": "default", "data_files": [{"split": "train", "path": f"{DATA_DIR}/*.parquet"}]}
    ]
    if manifest.get("excluded_rows"):
        configs.append(
            {
                "config_name": "excluded",
                "data_files": [{"split": "train", "path": f"{EXCLUDED_DIR}/**/*.parquet"}],
            }
        )
    return DatasetCardData(
        **card_license(licenses),
        size_categories=[size_category(int(manifest.get("rows") or 0))],
        source_datasets=sorted(sources) or None,
        task_categories=["text-generation"],
        tags=["code", "textbooks", "phi-1"],
        configs=configs,
        textbooks={
            "stage": manifest.get("stage"),
            "recipe": manifest.get("recipe_name") or (manifest.get("recipe") or {}).get("name"),
            "recipe_hash": manifest.get("recipe_hash"),
            "schema_version": manifest.get("schema_version"),
            "toolkit_version": manifest.get("toolkit_version"),
            "license_unknown_rows": unknown_license_rows(licenses),
        },
    )


def validate_dataset_card(path: str | os.PathLike):
    """Load a dataset card and check its metadata offline the way the Hub does; return the card.

    Raises ``ValueError`` naming the offending key: a licence that is neither a Hub id nor ``other``
    with a well-formed ``license_name``, an unknown size category, or ``configs`` without data files.

    Example:
        >>> card = validate_dataset_card("textbooks-out/quickstart/quality/README.md")  # doctest: +SKIP
        >>> card.data.license  # doctest: +SKIP
        'other'
    """
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(Path(path), ignore_metadata_errors=False)
    data = card.data
    licenses = data.license if isinstance(data.license, list) else [data.license]
    for license_id in licenses:
        if license_id not in (*HUB_LICENSES.values(), "other", "unknown"):
            raise ValueError(f"license: {license_id!r} is not a Hub licence id (use 'other' + license_name)")
    if "other" in licenses and not _LICENSE_NAME.match(str(data.get("license_name") or "")):
        raise ValueError(f"license_name: {data.get('license_name')!r} (required with 'other', [a-z0-9.-])")
    allowed = {name for _, name in SIZE_CATEGORIES} | {"n>1T", "unknown"}
    for category in data.size_categories or []:
        if category not in allowed:
            raise ValueError(f"size_categories: {category!r} is not one of {sorted(allowed)}")
    for config in data.get("configs") or []:
        if not config.get("config_name") or not config.get("data_files"):
            raise ValueError(f"configs: {config!r} needs config_name and data_files")
    return card
