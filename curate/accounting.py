"""Input accounting for readers: every input ends kept, excluded (step + reason) or unreadable (path,
position, error), and a stage reads the file listing it snapshotted at its first run.

Readers mix in :class:`AccountedReader` and only say how one file becomes documents
(``read_documents``); the mixin rejects special and oversized files from ``stat`` before any read,
turns any error (``MemoryError`` and decoding errors included) into an unreadable record for that
file while keeping the documents read before it, and sends rows with no text to the exclusion
writer with a reason. The recipe engine sets ``unreadable_folder``, ``exclusion_writer`` and
``listing_file`` on the stage's reader.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike

from curate.shards import UnreadableLog

#: the step name rows excluded by a reader carry in ``filter_step`` (and ``OUT/excluded/read/``)
READ_STEP = "read"


class UnreadableInput(Exception):
    """An input rejected before (or instead of) reading it: a FIFO, a device, a file over the size cap."""


def check_regular_file(info: dict[str, Any], max_bytes: int | None) -> None:
    """Raise :class:`UnreadableInput` unless an fsspec ``info`` describes a regular file within ``max_bytes``.

    Example:
        >>> check_regular_file({"type": "file", "size": 10}, max_bytes=100)
        >>> check_regular_file({"type": "other", "size": 0}, max_bytes=100)
        Traceback (most recent call last):
        ...
        curate.accounting.UnreadableInput: not a regular file (a FIFO, socket or device): type 'other'
    """
    kind = info.get("type")
    if kind != "file":
        raise UnreadableInput(f"not a regular file (a FIFO, socket or device): type {kind!r}")
    size = info.get("size")
    if max_bytes is not None and size is not None and size > max_bytes:
        raise UnreadableInput(f"file too large: {size} bytes > max_file_bytes={max_bytes}")


def bounded_lines(stream, max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, line)`` from a binary stream, never holding more than ``max_line_bytes + 1``
    bytes of one line: a longer line is skipped to its end and given as ``None``.

    Example:
        >>> import io
        >>> list(bounded_lines(io.BytesIO(b'{"a": 1}\\n' + b"x" * 50 + b"\\n{}"), max_line_bytes=20))
        [(1, b'{"a": 1}\\n'), (2, None), (3, b'{}')]
    """
    number = 0
    while line := stream.readline(max_line_bytes + 1):
        number += 1
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            while (rest := stream.readline(max_line_bytes + 1)) and not rest.endswith(b"\n"):
                pass
            yield number, None
        else:
            yield number, line


def lossless_name(name: str) -> tuple[str, str | None]:
    """A file name as valid UTF-8 text, plus the hex of its exact bytes when it was not valid UTF-8.

    A name that is not valid UTF-8 (Python holds its bad bytes as surrogate escapes) is written with each
    undecodable byte as ``\\xNN``; the second value (``path_bytes_hex`` in metadata) restores it exactly.

    Example:
        >>> lossless_name("ok.py")
        ('ok.py', None)
        >>> lossless_name(b"caf\\xe9.py".decode("utf-8", "surrogateescape"))
        ('caf\\\\xe9.py', '636166e92e7079')
    """
    try:
        name.encode("utf-8")
        return name, None
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "backslashreplace"), raw.hex()


class ListingSnapshot:
    """The file listing of a stage, written once (atomically) and read back by every later attempt.

    Example:
        >>> snapshot = ListingSnapshot("/tmp/out/.logs/listing.json")
        >>> files = snapshot.load_or_create(lambda: ["a.py", "b.py"])  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = None if path is None else os.fspath(path)

    def load_or_create(self, list_files) -> list:
        if self.path is None:
            return list_files()
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.load(f)["files"]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # missing or damaged (a kill mid-write): list again
        files = list_files()
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"files": files}, f)  # ensure_ascii keeps surrogate-escaped names as \\udcXX
        os.replace(tmp, self.path)
        return files


class AccountedReader:
    """Mixin for readers: unreadable inputs are recorded, empty rows excluded with a reason, the
    listing is snapshotted. Subclasses implement ``read_documents(filepath)`` and ``list_inputs()``."""

    unreadable_folder: DataFolderLike | None = None
    exclusion_writer = None
    listing_file: str | None = None
    max_file_bytes: int | None = None
    _record = None
    _rank = 0

    @contextlib.contextmanager
    def accounting(self, rank: int):
        """Open the per-task unreadable log and the exclusion writer for one task."""
        self._rank = rank
        with contextlib.ExitStack() as stack:
            if self.unreadable_folder is not None:
                self._record = stack.enter_context(UnreadableLog(self.unreadable_folder).open(rank))
            if self.exclusion_writer is not None:
                stack.enter_context(self.exclusion_writer)
            yield

    def record_unreadable(self, path: str, error: BaseException | str, **details) -> None:
        """Count an unreadable input once and record it (path, position details, error)."""
        self.stat_update("unreadable")
        if self._record is not None:
            self._record(path, error, **details)
        else:
            from datatrove.utils.logging import logger

            logger.warning(f"unreadable input {path}: {error} {details or ''}")

    def exclude(self, document: Document, reason: str) -> None:
        """Send a row the reader cannot keep (no text) to the exclusion writer, with a reason."""
        self.stat_update("excluded", f"excluded_{reason}")
        document.metadata["filter_reason"] = reason
        document.metadata["filter_step"] = READ_STEP
        if self.exclusion_writer is not None:
            self.exclusion_writer.write(document, self._rank)
        else:
            from datatrove.utils.logging import logger

            logger.warning(f"excluded {document.id}: {reason}")

    def snapshot_listing(self) -> list:
        """This stage's listing: the snapshot file when there is one, else a fresh listing (saved when
        ``listing_file`` is set). A reader lists once: the tasks it runs (and, pickled, its workers) reuse it.
        An empty listing is legitimate (the run goes on, writing no rows) but never silent: it is logged
        as a warning, and the recipe engine records :meth:`empty_listing_note` in the stage's manifest."""
        if getattr(self, "_listing", None) is None:
            self._listing = ListingSnapshot(self.listing_file).load_or_create(self.list_inputs)
            if not self._listing:
                from datatrove.utils.logging import logger

                logger.warning(self.empty_listing_note()["message"])
        return self._listing

    def listed_from(self) -> list[str]:
        """Where :meth:`list_inputs` looks for files (named when it finds none)."""
        return [self.data_folder.path]

    def empty_listing_note(self) -> dict[str, str]:
        """The record of a listing that found no input files, for the log and the manifest's ``notes``."""
        pattern = getattr(self, "glob_pattern", None) or getattr(self, "include", None)
        pattern = ", ".join(pattern) if isinstance(pattern, (list, tuple)) else pattern
        return {
            "step": READ_STEP,
            "note": "empty_listing",
            "message": f"{getattr(self, 'name', type(self).__name__)}: no input files found in "
            f"{', '.join(map(str, self.listed_from()))}"
            + (f" matching {pattern}" if pattern else "")
            + "; the stage reads nothing",
        }

    def read_file(self, filepath) -> DocumentsPipeline:
        """datatrove's per-file hook: any failure is recorded for this file; documents before it are kept."""
        produced = 0
        try:
            for document in self.read_documents(filepath):
                produced += 1
                yield document
        except Exception as error:  # noqa: BLE001 - MemoryError, decoding, I/O: this file only, never fatal
            self.record_unreadable(self.display_path(filepath), error, documents_read=produced)

    def display_path(self, filepath) -> str:
        return self.data_folder.resolve_paths(filepath)

    def local_inputs(self) -> list[str]:
        """Local paths this reader reads (checked to exist when a recipe is validated)."""
        from fsspec.implementations.local import LocalFileSystem

        return [self.data_folder.path] if isinstance(self.data_folder.fs, LocalFileSystem) else []

    def check_file(self, filepath) -> None:
        """Reject FIFOs, sockets, devices and files over ``max_file_bytes`` from ``stat``, before opening."""
        check_regular_file(self.data_folder.info(filepath), self.max_file_bytes)

    #: one document per file (Python trees): datatrove's per-file "Reading input file" log line would
    #: cost as much as reading a small file, so it is silenced while this reader runs
    quiet_file_log = False

    def run_accounted(self, files: list, data: DocumentsPipeline, rank: int) -> DocumentsPipeline:
        """datatrove's ``read_files_shard`` (limit, skip, progress, stats) over this task's files."""
        if data:
            yield from data
        with self.accounting(rank), _quiet_reader_log(self.quiet_file_log):
            for document in self.read_files_shard(files):
                self.update_doc_stats(document)
                yield document


@contextlib.contextmanager
def _quiet_reader_log(quiet: bool):
    from datatrove.utils.logging import logger

    if not quiet:
        yield
        return
    logger.disable("datatrove.pipeline.readers.base")
    try:
        yield
    finally:
        logger.enable("datatrove.pipeline.readers.base")
