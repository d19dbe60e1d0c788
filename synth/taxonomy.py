"""The bundled taxonomies (``synth/data/*.yaml``) and how to load your own.

A taxonomy is a plain YAML file, so users replace one by passing a path instead of a bundled name:

==================== =========================================================================
file                 content
==================== =========================================================================
topics.yaml          category -> topic -> [subtopic, ...]; each subtopic is one grid leaf
audiences.yaml       [audience, ...]
styles.yaml          [{name, instruction}, ...]
difficulties.yaml    [{name, instruction}, ...]
vocabulary.yaml      {themes: [...], words: [...]}
function_names.yaml  {verbs: [...], domains: [...], nouns: [...]}
==================== =========================================================================
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

DATA_DIR = Path(__file__).parent / "data"


def taxonomy_path(name_or_path: str | Path) -> Path:
    """Resolve a bundled taxonomy name (``"topics"``) or a user path to a file path.

    Example:
        >>> taxonomy_path("topics").name
        'topics.yaml'
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") and path.exists():
        return path
    bundled = DATA_DIR / f"{name_or_path}.yaml"
    if bundled.exists():
        return bundled
    raise FileNotFoundError(
        f"no taxonomy file {name_or_path!r} (bundled: {sorted(p.stem for p in DATA_DIR.glob('*.yaml'))})"
    )


@lru_cache(maxsize=64)
def _load(path: str, mtime: float) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)  # YAML is a superset of JSON, so .json files load too


def load_taxonomy(name_or_path: str | Path | list | dict) -> Any:
    """Load a taxonomy by bundled name or path; an already-loaded list/dict is returned as is.

    Example:
        >>> len(load_taxonomy("audiences")) > 5
        True
    """
    if isinstance(name_or_path, (list, dict)):
        return name_or_path
    path = taxonomy_path(name_or_path)
    return _load(str(path), path.stat().st_mtime)


def topic_leaves(topics: str | Path | dict = "topics") -> list[tuple[str, str, str]]:
    """All ``(category, topic, subtopic)`` leaves of a topic taxonomy, in file order.

    Example:
        >>> leaves = topic_leaves()
        >>> len(leaves) >= 300, leaves[0][0]
        (True, 'basics')
    """
    tree = load_taxonomy(topics)
    if not isinstance(tree, dict):
        raise ValueError("a topic taxonomy is a mapping: category -> topic -> [subtopic, ...]")
    leaves = []
    for category, topics_ in tree.items():
        for topic, subtopics in (topics_ or {}).items():
            for subtopic in subtopics or [topic]:
                leaves.append((str(category), str(topic), str(subtopic)))
    if not leaves:
        raise ValueError("the topic taxonomy has no leaves")
    return leaves


def named_items(items: str | Path | list) -> list[tuple[str, str]]:
    """``(name, instruction)`` pairs of a styles/difficulties taxonomy (plain strings are their own instruction)."""
    out = []
    for item in load_taxonomy(items):
        if isinstance(item, dict):
            out.append((str(item["name"]), str(item.get("instruction") or item["name"])))
        else:
            out.append((str(item), str(item)))
    if not out:
        raise ValueError(f"taxonomy {items!r} is empty")
    return out
