"""Exact deduplication on a normalized-content hash."""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter


def normalize_code(text: str) -> str:
    """The normalization behind exact dedup: unified newlines, trailing whitespace stripped from every
    line, leading/trailing blank lines removed. Two files differing only in those are duplicates.

    Example:
        >>> normalize_code("x = 1  \\r\\n\\n") == normalize_code("x = 1")
        True
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def content_hash(text: str) -> int:
    """xxh3-128 digest (an int) of the normalized text."""
    import xxhash

    return xxhash.xxh3_128_intdigest(normalize_code(text).encode("utf-8", "surrogatepass"))


class ExactDedupFilter(BaseFilter):
    """Drop documents whose normalized content was already seen (reason ``exact_duplicate``; the dropped
    row's ``duplicate_of`` names the kept id). The first occurrence in the stream is kept.

    It sees its own task's documents: run it in a one-task stage (as ``quickstart`` does) for a global
    dedup; the input order is deterministic, so the kept copy is too. After ``PythonSourceReader`` it is
    the first copy in sorted path order, whatever the number of tasks that read the files.

    Example:
        >>> f = ExactDedupFilter()
        >>> f.filter(Document("x = 1\\n", "a")), f.filter(Document("x = 1   \\n\\n", "b"))
        (True, (False, 'exact_duplicate'))
    """

    name = "🫂 Exact dedup"

    def __init__(self, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self._seen: dict[int, str] = {}

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        digest = content_hash(doc.text)
        kept = self._seen.get(digest)
        if kept is not None:
            doc.metadata["duplicate_of"] = kept
            return False, "exact_duplicate"
        self._seen[digest] = doc.id
        return True
