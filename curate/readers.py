"""Readers: Python source trees, JSONL / Parquet / HF datasets (The Stack-style columns) and Stack Exchange dumps.

Every reader is a datatrove step built on datatrove's reader bases (fsspec file systems: local paths,
``file://``, ``s3://``, ``hf://``, ``memory://``; ``limit``/``skip``, progress, adapters), and only says how
one file becomes documents. Every input ends in exactly one place (:mod:`curate.accounting`): kept,
excluded with a step and reason (``OUT/excluded/read/``: rows with no text, questions with no
answer), or unreadable with its path, position and error (``OUT/unreadable/<rank>.jsonl``: special
files, files over the size cap, undecodable JSON lines, corrupt or truncated files). A file that can
be read but is not valid UTF-8 is read with replacement characters and marked ``utf8_errors`` so that
:class:`curate.filters.EncodingFilter` excludes it with a reason. A stage's file listing is
snapshotted at its first run (``OUT/.logs/listing.json``), so a rerun after a kill reads the same files.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import xxhash
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolder, DataFolderLike, get_datafolder
from datatrove.pipeline.readers.base import BaseDiskReader, BaseReader
from datatrove.pipeline.readers.huggingface import HuggingFaceDatasetReader
from datatrove.pipeline.readers.jsonl import JsonlReader
from datatrove.pipeline.readers.parquet import ParquetReader
from fsspec.implementations.local import LocalFileSystem

from curate.accounting import (
    AccountedReader,
    UnreadableInput,
    bounded_lines,
    check_regular_file,
    lossless_name,
)
from curate.schema import coerce_columns

#: files larger than this are rejected from ``stat`` (Python sources) and lines longer than this are
#: recorded without being held in memory (JSONL)
DEFAULT_MAX_FILE_BYTES = 64 * 2**20


def stable_id(*parts: str) -> str:
    """A stable 32-hex-digit id from its parts (xxh3-128): the same input always gives the same id.

    Example:
        >>> stable_id("stdlib", "json/__init__.py") == stable_id("stdlib", "json/__init__.py")
        True
        >>> len(stable_id("stdlib", "json/__init__.py"))
        32
    """
    return xxhash.xxh3_128_hexdigest("\x1f".join(parts).encode("utf-8", "surrogatepass"))


# --------------------------------------------------------------------------------------------------
# Python source trees


def _license_hint(root: Path) -> str | None:
    """A coarse SPDX-like hint from a LICENSE/COPYING file at ``root`` (None when there is none)."""
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING", "LICENCE"):
        path = root / name
        if path.is_file():
            try:
                head = path.read_text(errors="replace")[:4000].lower()
            except OSError:
                return None
            for needle, spdx in (
                ("apache license", "Apache-2.0"),
                ("mit license", "MIT"),
                ("permission is hereby granted, free of charge", "MIT"),
                ("bsd 3-clause", "BSD-3-Clause"),
                ("redistribution and use in source and binary forms", "BSD"),
                ("gnu lesser general public license", "LGPL"),
                ("gnu general public license", "GPL"),
                ("mozilla public license", "MPL-2.0"),
                ("python software foundation", "PSF-2.0"),
            ):
                if needle in head:
                    return spdx
            return "other"
    return None


def _site_packages_licenses() -> dict[str, str]:
    """Top-level import name -> licence declared by its installed distribution."""
    from importlib.metadata import distributions

    licenses: dict[str, str] = {}
    for dist in distributions():
        meta = dist.metadata
        license_name = meta.get("License-Expression") or ""
        if not license_name:
            classifiers = [c for c in (meta.get_all("Classifier") or []) if c.startswith("License ::")]
            license_name = (
                classifiers[0].rsplit("::", 1)[-1].strip() if classifiers else (meta.get("License") or "")
            )
        license_name = license_name.splitlines()[0][:64] if license_name else ""
        top_level = (dist.read_text("top_level.txt") or "").split()
        names = top_level or [(meta.get("Name") or "").replace("-", "_")]
        for name in names:
            if name and license_name:
                licenses.setdefault(name, license_name)
    return licenses


def stdlib_root() -> Path:
    """This interpreter's standard library directory."""
    return Path(sysconfig.get_paths()["stdlib"])


def site_packages_roots() -> list[Path]:
    """This interpreter's site-packages directories (purelib and platlib, deduplicated)."""
    paths = sysconfig.get_paths()
    roots = []
    for key in ("purelib", "platlib"):
        root = Path(paths[key])
        if root.is_dir() and root not in roots:
            roots.append(root)
    return roots


class PythonSourceReader(AccountedReader, BaseDiskReader):
    """Read ``.py`` files from directory trees or git checkouts (local paths or fsspec URLs such as
    ``file://``, ``s3://``, ``hf://``), one document per file.

    Ids are stable (hash of repo + relative path). Metadata: ``source``, ``repo`` (the tree's name, or
    the top-level package for site-packages), ``path`` (relative), ``size_bytes``, ``license`` (hint).
    Files are listed in sorted order (the listing is snapshotted at a stage's first run) and split across
    tasks in contiguous blocks, so that the tasks' shards, read back in name order, hold the files in the
    same order whatever the number of tasks (and a one-task exact dedup keeps the same copy of each
    duplicate). ``limit``/``skip``/progress are datatrove's.

    Every listed file ends as a document or an unreadable record: FIFOs, sockets, devices (a symlink to
    ``/dev/zero``) and files over ``max_file_bytes`` are rejected from ``stat`` before any read, and a
    read never takes more than ``max_file_bytes``. A UTF-8 BOM is stripped; a file that is not valid
    UTF-8 is read with replacement characters and marked ``utf8_errors`` (the ``encoding`` filter
    excludes it with a reason); a name that is not valid UTF-8 is stored as text with ``\\xNN`` escapes
    plus its exact bytes in ``path_bytes_hex``.

    Args:
        paths: directories (or single files), local or fsspec URLs.
        include: glob patterns (on the relative path) a file must match; default ``["*.py"]``.
        exclude: glob patterns that remove a file, e.g. ``["*/tests/*"]``.
        source: value of the ``source`` column (default: ``"files"`` or the preset name).
        repo: repository name (default: the directory name; per top-level package for site-packages).
        use_git: list files with ``git ls-files`` when a local path is a git checkout.
        limit, skip: datatrove's, per task.
        max_file_bytes: larger files are unreadable (default 64 MiB).

    Example:
        >>> reader = PythonSourceReader.preset("stdlib", exclude=["test/*"])
        >>> docs = list(reader.run(rank=0, world_size=1))  # doctest: +SKIP
        >>> docs[0].metadata["source"], docs[0].metadata["license"]  # doctest: +SKIP
        ('stdlib', 'PSF-2.0')
    """

    name = "🐍 Python sources"
    quiet_file_log = True

    def __init__(
        self,
        paths: list[str] | str | None = None,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        source: str = "files",
        repo: str | None = None,
        use_git: bool = True,
        limit: int = -1,
        skip: int = 0,
        preset: Literal["stdlib", "site-packages"] | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        unreadable_folder: DataFolderLike | None = None,
    ):
        if preset == "stdlib":
            paths = [str(stdlib_root())]
            exclude = list(exclude or []) + ["site-packages/*", "dist-packages/*"]
            source, repo = "stdlib", repo or f"cpython-{sys.version_info.major}.{sys.version_info.minor}"
        elif preset == "site-packages":
            paths = [str(p) for p in site_packages_roots()]
            source = "site-packages"
        elif preset is not None:
            raise ValueError(f"unknown preset {preset!r}: use 'stdlib' or 'site-packages'")
        if not paths:
            raise ValueError("PythonSourceReader needs `paths` or a `preset`")
        self.paths = [paths] if isinstance(paths, str) else [str(p) for p in paths]
        super().__init__(self.paths[0], limit=limit, skip=skip)
        self.include = list(include or ["*.py"])
        self.exclude = list(exclude or [])
        self.source = source
        self.repo = repo
        self.use_git = use_git
        self.preset = preset
        self.max_file_bytes = max_file_bytes
        self.unreadable_folder = unreadable_folder

    @classmethod
    def preset(cls, name: str, **kwargs) -> PythonSourceReader:
        """``stdlib`` (this interpreter's standard library) or ``site-packages`` (its installed packages)."""
        return cls(preset=name, **kwargs)

    # -- listing ---------------------------------------------------------------------------------

    def _matches(self, rel: str) -> bool:
        include, exclude = _glob_regex(tuple(self.include)), _glob_regex(tuple(self.exclude))
        name = rel.rsplit("/", 1)[-1]
        included = bool(include.match(rel) or include.match(name))
        return included and not exclude.match(rel)

    def _git_files(self, root: str) -> list[str] | None:
        if not (self.use_git and os.path.exists(os.path.join(root, ".git"))):
            return None
        try:
            out = subprocess.run(
                ["git", "-C", root, "ls-files", "-z"], capture_output=True, check=True, timeout=300
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        return sorted(p for p in out.decode("utf-8", "surrogateescape").split("\0") if p)

    def _walk(self, root: str) -> Iterator[str]:
        # symlinked directories are not followed: a symlink loop can then never hang the listing
        # an exclude pattern "dir/*" prunes the whole directory instead of listing and rejecting its files
        pruned = [p[:-2] for p in self.exclude if p.endswith("/*")]
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            rel_dir = os.path.relpath(dirpath, root)
            prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            dirnames[:] = sorted(
                d for d in dirnames if not any(fnmatch.fnmatch(prefix + d, p) for p in pruned)
            )
            for name in sorted(filenames):
                yield prefix + name

    def _list_root(self, folder: DataFolder) -> list[str]:
        if isinstance(folder.fs, LocalFileSystem):
            root = folder.path
            if not os.path.isdir(root):  # a single file (or a FIFO, or nothing): read, or recorded
                return [""]
            listed = self._git_files(root)
            return list(listed if listed is not None else self._walk(root))
        if folder.fs.isfile(""):
            return [""]
        return folder.list_files(recursive=True)

    def list_inputs(self) -> list[list]:
        """All matching files as sorted ``[root index, relative path]`` pairs (the same in every task)."""
        files = []
        for index, folder in enumerate(self._folders):
            for rel in self._list_root(folder):
                if rel == "" or self._matches(rel):
                    files.append([index, rel])
        return sorted(files)

    def list_files(self) -> list[tuple[str, str, str]]:
        """All matching files as sorted ``(root, relative path, repo)`` triples."""
        return [(self.paths[index], rel, self._repo_for(index, rel)) for index, rel in self.list_inputs()]

    @property
    def _folders(self) -> list[DataFolder]:
        if getattr(self, "_folder_cache", None) is None:
            self._folder_cache = [get_datafolder(_local_path(p)) for p in self.paths]
        return self._folder_cache

    def _repo_for(self, index: int, rel: str) -> str:
        if self.preset == "site-packages":
            return rel.split("/", 1)[0].removesuffix(".py")
        if self.repo:
            return self.repo
        path = self._folders[index].path.rstrip("/")
        name = path.rsplit("/", 1)[-1]
        return path.rsplit("/", 2)[-2] if rel == "" and "/" in path else name

    def local_inputs(self) -> list[str]:
        return [f.path for f in self._folders if isinstance(f.fs, LocalFileSystem)]

    def listed_from(self) -> list[str]:
        return [f.path for f in self._folders]

    # -- reading ---------------------------------------------------------------------------------

    def display_path(self, filepath) -> str:
        index, rel = filepath
        folder = self._folders[index]
        return folder.resolve_paths(rel) if rel else folder.path

    def _read_bytes(self, index: int, rel: str) -> bytes:
        """The file's bytes, rejecting special and oversized files from ``stat`` first."""
        folder = self._folders[index]
        if isinstance(folder.fs, LocalFileSystem):
            return read_local_file(
                os.path.join(folder.path, rel) if rel else folder.path, self.max_file_bytes
            )
        check_regular_file(folder.info(rel), self.max_file_bytes)
        with folder.open(rel, "rb") as f:
            raw = f.read(self.max_file_bytes + 1)
        if len(raw) > self.max_file_bytes:
            raise UnreadableInput(f"file too large: over max_file_bytes={self.max_file_bytes}")
        return raw

    def read_documents(self, filepath) -> DocumentsPipeline:
        index, rel = filepath
        raw = self._read_bytes(index, rel)
        with self.track_time():
            yield self.make_document(raw, index, rel)

    def make_document(self, raw: bytes, index: int, rel: str) -> Document:
        """One file's bytes as a document (BOM stripped, undecodable bytes replaced and counted)."""
        try:
            text, utf8_errors = raw.decode("utf-8"), 0
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            utf8_errors = text.count("\ufffd") or 1
        text = text.removeprefix("\ufeff")
        repo = self._repo_for(index, rel)
        shown_rel = rel or self._folders[index].path.rstrip("/").rsplit("/", 1)[-1]
        path, path_bytes = lossless_name(shown_rel)
        metadata: dict[str, Any] = {"source": self.source, "repo": lossless_name(repo)[0], "path": path}
        metadata["size_bytes"] = len(raw)
        license_hint = self._license_for(index, repo)
        if license_hint:
            metadata["license"] = license_hint
        if utf8_errors:
            metadata["utf8_errors"] = utf8_errors
        if path_bytes:
            metadata["path_bytes_hex"] = path_bytes
        return Document(text=text, id=stable_id(self.source, repo, shown_rel), metadata=metadata)

    def _license_for(self, index: int, repo: str) -> str | None:
        if self.preset == "stdlib":
            return "PSF-2.0"
        cache = self.__dict__.setdefault("_license_cache", {})
        if self.preset == "site-packages":
            if "site-packages" not in cache:
                cache["site-packages"] = _site_packages_licenses()
            return cache["site-packages"].get(repo)
        if index not in cache:
            folder = self._folders[index]
            local = isinstance(folder.fs, LocalFileSystem) and os.path.isdir(folder.path)
            cache[index] = _license_hint(Path(folder.path)) if local else None
        return cache[index]

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        listed = self.snapshot_listing()
        block = listed[len(listed) * rank // world_size : len(listed) * (rank + 1) // world_size]
        self._log_limit_scope(rank, world_size)
        yield from self.run_accounted(block, data, rank)


@functools.cache
def _glob_regex(patterns: tuple[str, ...]) -> re.Pattern:
    """One compiled regex matching any of the glob ``patterns`` (as ``fnmatch`` does; none: nothing)."""
    return re.compile("|".join(fnmatch.translate(p) for p in patterns) or r"(?!)")


def _local_path(path: str) -> str:
    """``file:///x`` and ``~/x`` as local paths; any other URL unchanged."""
    if path.startswith("file://"):
        return path.removeprefix("file://") or "/"
    return os.path.expanduser(path) if "://" not in path else path


def read_local_file(path: str, max_bytes: int) -> bytes:
    """Read a local regular file of at most ``max_bytes``; never blocks on a FIFO or reads a device.

    Opened non-blocking and checked with ``fstat`` on the open descriptor, so a file swapped for a FIFO
    or a device between listing and reading is still rejected before any read.

    Example:
        >>> read_local_file("/dev/zero", 1024)
        Traceback (most recent call last):
        ...
        curate.accounting.UnreadableInput: not a regular file (a FIFO, socket or device): type 'character device'
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableInput(
                f"not a regular file (a FIFO, socket or device): type {_file_type(info.st_mode)!r}"
            )
        if info.st_size > max_bytes:
            raise UnreadableInput(f"file too large: {info.st_size} bytes > max_file_bytes={max_bytes}")
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise UnreadableInput(f"file too large: grew over max_file_bytes={max_bytes} while read")
    return raw


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "directory"),
    ):
        if test(mode):
            return name
    return "other"


# --------------------------------------------------------------------------------------------------
# JSONL / Parquet / HF datasets, with The Stack-style adapters

#: column mappings for well-known code datasets: dataset column -> our field
ADAPTERS: dict[str, dict[str, str]] = {
    # bigcode/the-stack, the-stack-dedup, starcoderdata
    "the-stack": {
        "content": "text",
        "hexsha": "id",
        "max_stars_repo_name": "repo",
        "max_stars_repo_path": "path",
        "max_stars_repo_licenses": "license",
        "size": "size_bytes",
    },
    # bigcode/the-stack-v2 (with contents joined in)
    "the-stack-v2": {
        "content": "text",
        "blob_id": "id",
        "repo_name": "repo",
        "path": "path",
        "detected_licenses": "license",
        "length_bytes": "size_bytes",
    },
    # our own shards / generic {"id", "text"} rows
    "default": {"text": "text", "id": "id"},
}


def make_adapter(columns: str | dict[str, str] = "default", source: str = "dataset"):
    """Build a datatrove adapter mapping a dataset's columns to ours (see :data:`ADAPTERS`).

    Unmapped columns are kept in metadata (and so in the ``extra`` column). A row without an id gets a
    stable one from its file path and row index; list-valued licences are joined with ``" OR "``; known
    columns are coerced to the shard schema's types, a value that does not fit being kept under
    ``invalid_columns`` (:func:`curate.schema.coerce_columns`). A row whose text column is missing, null
    or not a string gets empty text and ``text_problem`` (the reader then excludes it with that reason).

    Example:
        >>> adapter = make_adapter("the-stack", source="the-stack")
        >>> adapter(None, {"content": "x = 1", "hexsha": "ab", "max_stars_repo_licenses": ["MIT"]}, "f", 0)["id"]
        'ab'
        >>> adapter(None, {"hexsha": "ab"}, "f", 0)["metadata"]["text_problem"]
        'missing_text_column'
    """
    mapping = ADAPTERS[columns] if isinstance(columns, str) else dict(columns)
    text_column = next((k for k, v in mapping.items() if v == "text"), "text")

    def adapter(self, data: dict, path: str, id_in_file: int | str) -> dict:
        metadata: dict[str, Any] = {"source": source}
        out: dict[str, Any] = {"id": None}
        for key, value in data.items():
            target = mapping.get(key)
            if target in ("text", "id"):
                out[target] = value
            elif target is not None:
                metadata[target] = value
            elif key == "metadata" and isinstance(value, dict):
                for inner, inner_value in value.items():
                    metadata.setdefault(inner, inner_value)
            else:
                metadata[key] = value
        if isinstance(metadata.get("license"), (list, tuple)):
            metadata["license"] = " OR ".join(map(str, metadata["license"])) or None
        coerce_columns(metadata)
        text, problem = _row_text(out, text_column)
        if problem:
            metadata["text_problem"] = problem
        row_id = out["id"] if out["id"] not in (None, "") else stable_id(source, str(path), str(id_in_file))
        return {"text": text, "id": str(row_id), "metadata": metadata}

    return adapter


def _row_text(out: dict[str, Any], text_column: str) -> tuple[str, str | None]:
    """The row's text and, when it has none, why (the exclusion reason)."""
    if "text" not in out:
        return "", "missing_text_column"
    value = out["text"]
    if value is None or value == "":
        return "", "empty_text"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace"), None
    if not isinstance(value, str):
        return "", f"text_not_a_string ({type(value).__name__} in {text_column!r})"
    return value, None


class TableReader(AccountedReader):
    """Rows to documents for JSONL / Parquet / HF: a row with no text is excluded with a reason."""

    def get_document_from_dict(self, data: dict, source_file: str, id_in_file: int | str):
        parsed = self.adapter(data, source_file, id_in_file)
        document = Document(text=parsed["text"], id=parsed["id"], metadata=parsed["metadata"])
        if self.default_metadata:
            document.metadata = self.default_metadata | document.metadata
        if getattr(self, "add_file_path", False):
            document.metadata.setdefault("file_path", self.data_folder.resolve_paths(source_file))
        problem = document.metadata.pop("text_problem", None)
        if problem:
            document.metadata["row"] = id_in_file
            self.exclude(document, problem.split(" ", 1)[0])
            return None
        return document


class JsonlSourceReader(TableReader, JsonlReader):
    """JSONL(.gz/.zst) files (local or fsspec URLs) through datatrove's reader, with The Stack-style adapters.

    Each line is decoded on its own, in binary: a line that is not valid UTF-8 or not a JSON object is
    recorded as unreadable (``path:line``) and the rest of the file is still read; a line longer than
    ``max_line_bytes`` is recorded without being held in memory; a truncated compressed file keeps the
    documents before the damage and is recorded; a row with no text is excluded with a reason.

    Example:
        >>> reader = JsonlSourceReader("data/stack", columns="the-stack", glob_pattern="*.jsonl.gz")
    """

    name = "🐿 Jsonl sources"

    def __init__(
        self,
        data_folder: DataFolderLike,
        columns: str | dict[str, str] = "default",
        source: str = "jsonl",
        glob_pattern: str | None = None,
        compression: Literal["infer", "gzip", "zstd"] | None = "infer",
        limit: int = -1,
        skip: int = 0,
        recursive: bool = True,
        max_line_bytes: int = DEFAULT_MAX_FILE_BYTES,
        unreadable_folder: DataFolderLike | None = None,
    ):
        super().__init__(
            data_folder,
            compression=compression,
            limit=limit,
            skip=skip,
            adapter=make_adapter(columns, source),
            recursive=recursive,
            glob_pattern=glob_pattern,
        )
        self.max_line_bytes = max_line_bytes
        self.unreadable_folder = unreadable_folder

    def list_inputs(self) -> list[str]:
        return self.data_folder.list_files(recursive=self.recursive, glob_pattern=self.glob_pattern)

    def read_documents(self, filepath: str) -> DocumentsPipeline:
        import orjson

        self.check_file(filepath)
        with self.data_folder.open(filepath, "rb", compression=self.compression) as f:
            shown = self.display_path(filepath)
            for line_number, line in bounded_lines(f, self.max_line_bytes):
                where = f"{shown}:{line_number}"  # an f-string; the fsspec path resolution is done once
                if line is None:
                    self.record_unreadable(where, f"line longer than max_line_bytes={self.max_line_bytes}")
                    continue
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)  # rejects invalid UTF-8 in this line only
                    if not isinstance(row, dict):
                        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
                except ValueError as error:  # orjson.JSONDecodeError is a ValueError
                    self.record_unreadable(where, error)
                    continue
                document = self.get_document_from_dict(row, filepath, line_number - 1)
                if document is not None:
                    yield document

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        listed = self.snapshot_listing()
        self._log_limit_scope(rank, world_size)
        yield from self.run_accounted(listed[rank::world_size], data, rank)


class ParquetSourceReader(TableReader, ParquetReader):
    """Parquet files (e.g. The Stack's Python shards, local or fsspec URLs) through datatrove's reader.

    Files may have different schemas (each is read on its own); a corrupt file is recorded with the
    number of rows read before the damage; a row with no text (or the wrong columns) is excluded with a
    reason; known columns of the wrong type are coerced or recorded per row.

    Example:
        >>> reader = ParquetSourceReader("the-stack/data/python", columns="the-stack")
    """

    name = "📒 Parquet sources"

    def __init__(
        self,
        data_folder: DataFolderLike,
        columns: str | dict[str, str] = "default",
        source: str = "parquet",
        glob_pattern: str | None = "**/*.parquet",
        limit: int = -1,
        skip: int = 0,
        batch_size: int = 1000,
        recursive: bool = True,
        unreadable_folder: DataFolderLike | None = None,
    ):
        super().__init__(
            data_folder,
            limit=limit,
            skip=skip,
            batch_size=batch_size,
            adapter=make_adapter(columns, source),
            recursive=recursive,
            glob_pattern=glob_pattern,
        )
        self.unreadable_folder = unreadable_folder

    list_inputs = JsonlSourceReader.list_inputs
    run = JsonlSourceReader.run

    def read_documents(self, filepath: str) -> DocumentsPipeline:
        import pyarrow.parquet as pq

        self.check_file(filepath)
        with self.data_folder.open(filepath, "rb") as f, pq.ParquetFile(f) as parquet_file:
            row_index = 0
            for batch in parquet_file.iter_batches(batch_size=self.batch_size):
                for row in batch.to_pylist():
                    document = self.get_document_from_dict(row, filepath, row_index)
                    row_index += 1
                    if document is not None:
                        yield document


class HFDatasetSourceReader(TableReader, HuggingFaceDatasetReader):
    """A Hugging Face dataset (hub name, or a builder such as ``"parquet"`` with ``data_files``).

    Only downloads when the user names a hub dataset. A dataset that fails to load or fails midway (for
    example files with different schemas) is recorded as unreadable with the number of rows read before
    the failure; a row with no text is excluded with a reason.

    Example:
        >>> reader = HFDatasetSourceReader("bigcode/the-stack-smol", {"data_dir": "data/python", "split": "train"},
        ...                                columns="the-stack", streaming=True)
    """

    name = "🤗 HF dataset sources"

    def __init__(
        self,
        dataset: str,
        dataset_options: dict | None = None,
        columns: str | dict[str, str] = "default",
        source: str = "hf",
        streaming: bool = False,
        limit: int = -1,
        skip: int = 0,
        batch_size: int = 1000,
        unreadable_folder: DataFolderLike | None = None,
    ):
        super().__init__(
            dataset,
            dataset_options=dataset_options,
            streaming=streaming,
            limit=limit,
            skip=skip,
            batch_size=batch_size,
            adapter=make_adapter(columns, source),
        )
        self.unreadable_folder = unreadable_folder

    def local_inputs(self) -> list[str]:
        """No local paths to check: the dataset is a name (or a builder with ``data_files``)."""
        return []

    def list_inputs(self) -> list[str]:
        """The listing a rerun reuses: the one dataset (datatrove shards its rows across tasks)."""
        return [self.dataset]

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        produced = 0
        with self.accounting(rank):
            try:
                for document in HuggingFaceDatasetReader.run(self, data, rank, world_size):
                    produced += 1
                    yield document
            except Exception as error:  # noqa: BLE001 - a dataset that cannot be read is recorded
                cause = (
                    f" (caused by {type(error.__cause__).__name__}: {error.__cause__})"
                    if error.__cause__
                    else ""
                )
                self.record_unreadable(
                    self.dataset, f"{type(error).__name__}: {error}{cause}", documents_read=produced
                )


# --------------------------------------------------------------------------------------------------
# Stack Exchange dumps


def html_to_markdown(html: str) -> str:
    """Convert a post body to markdown, keeping ``<pre><code>`` blocks as fenced code blocks.

    Example:
        >>> print(html_to_markdown("<p>Use <code>len</code>:</p><pre><code>len([1, 2])\\n</code></pre>"))
        Use `len`:
        <BLANKLINE>
        ```
        len([1, 2])
        ```
    """
    import html as html_lib
    import re

    import html2text

    blocks: list[str] = []

    def stash(match: re.Match) -> str:
        code = re.sub(r"<[^>]+>", "", match.group(1))
        blocks.append(html_lib.unescape(code).rstrip("\n"))
        return f"<p>CODEBLOCK{len(blocks) - 1}END</p>"

    html = re.sub(r"<pre[^>]*>\s*<code[^>]*>(.*?)</code>\s*</pre>", stash, html, flags=re.S | re.I)
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.unicode_snob = True
    text = converter.handle(html).strip()
    for index, code in enumerate(blocks):
        text = text.replace(f"CODEBLOCK{index}END", f"```\n{code}\n```")
    return text


def _int(value: Any, default: int | None = None) -> int | None:
    """An attribute as a 64-bit integer (what sqlite stores), else ``default``."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if -(2**63) <= number < 2**63 else default


class StackExchangeReader(AccountedReader, BaseReader):
    """Stream a Stack Exchange dump's ``Posts.xml`` in constant memory: questions joined with their
    accepted answer (else the top-scored one), HTML converted to markdown with code blocks kept.

    Three streaming passes: (1) choose an answer id per matching question (only integers are kept);
    (2) spill the chosen questions' and answers' bodies into a temporary sqlite file; (3) emit the
    joined pairs in question-id order. Memory does not grow with post bodies, only with the number
    of matching questions (a few integers each). Task ``rank`` emits questions with
    ``id % world_size == rank``. ``path`` may be an fsspec URL.

    A dump that is damaged (truncated mid-element, a bare ``&``) keeps every complete post before the
    damage and records the rest as unreadable with its line and column; a row with a bad ``Id`` is
    recorded; a question with no answer (``require_answer``) is excluded with the reason ``no_answer``.

    Args:
        path: the ``Posts.xml`` file.
        tags: keep questions carrying any of these tags (default ``["python"]``; ``[]`` keeps all).
        require_answer: drop questions with no answer.
        site: value for ``repo`` (e.g. ``stackoverflow.com``).

    Example:
        >>> docs = list(StackExchangeReader("Posts.xml", tags=["python"]).run())  # doctest: +SKIP
    """

    name = "🗨 Stack Exchange"

    def __init__(
        self,
        path: str,
        tags: list[str] | None = None,
        require_answer: bool = True,
        site: str = "stackexchange",
        limit: int = -1,
        unreadable_folder: DataFolderLike | None = None,
    ):
        super().__init__(limit=limit)
        self.path = path
        self.tags = ["python"] if tags is None else list(tags)
        self.require_answer = require_answer
        self.site = site
        self.unreadable_folder = unreadable_folder

    def local_inputs(self) -> list[str]:
        return [self.path] if "://" not in self.path else []

    def list_inputs(self) -> list[str]:
        return [self.path]

    def _check_dump(self) -> None:
        """A FIFO or a device named ``Posts.xml`` is rejected before it is opened (it could block forever)."""
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(self.path)
        check_regular_file(fs.info(path), max_bytes=None)

    @staticmethod
    def _tags(raw: str) -> list[str]:
        raw = raw or ""
        if raw.startswith("|"):  # newer dumps: |python|list|
            return [t for t in raw.split("|") if t]
        return [t.strip("<>") for t in raw.split("><") if t.strip("<>")]

    def _rows(self, record_damage: bool = False) -> Iterator[dict[str, str]]:
        """Every complete ``<row>``; at a parse error the rows before it stand and the rest is recorded."""
        import xml.etree.ElementTree as ET

        import fsspec

        with fsspec.open(self.path, "rb") as f:
            parser = ET.iterparse(f, events=("end",))
            try:
                for _event, element in parser:
                    if element.tag == "row":
                        yield dict(element.attrib)
                    element.clear()  # constant memory: drop each parsed row
            except ET.ParseError as error:
                if record_damage:
                    line, column = error.position
                    self.record_unreadable(
                        f"{self.path}:{line}:{column}",
                        f"damaged XML, the rest of the file is unread: {error}",
                    )

    def _choose_answers(self, record: bool = True) -> dict[int, int | None]:
        wanted = set(self.tags)
        accepted_by_question: dict[int, int | None] = {}
        best_answer: dict[int, tuple[int, int]] = {}  # qid -> (answer id, score)
        for row in self._rows(record_damage=record):
            post_type, post_id = row.get("PostTypeId"), _int(row.get("Id"))
            if post_id is None:
                if record:
                    self.record_unreadable(f"{self.path}:Id={row.get('Id')!r}", "row without an integer Id")
            elif post_type == "1":
                if wanted and not wanted.intersection(self._tags(row.get("Tags", ""))):
                    continue
                accepted_by_question[post_id] = _int(row.get("AcceptedAnswerId"))
            elif post_type == "2" and _int(row.get("ParentId")) is not None:
                parent, score = _int(row["ParentId"]), _int(row.get("Score"), 0)
                best = best_answer.get(parent)
                if best is None or score > best[1] or (score == best[1] and post_id < best[0]):
                    best_answer[parent] = (post_id, score)
        return {
            qid: accepted if accepted is not None else best_answer.get(qid, (None, None))[0]
            for qid, accepted in accepted_by_question.items()
        }

    def _spill(self, db, mine: dict[int, int | None]) -> None:
        """Pass 2: store the chosen questions' and answers' bodies in the sqlite file."""
        wanted_answers = {a: q for q, a in mine.items() if a is not None}
        db.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, title TEXT, body TEXT, tags TEXT, score INT)")
        db.execute("CREATE TABLE a (qid INTEGER PRIMARY KEY, id INT, body TEXT, score INT)")
        for row in self._rows():
            post_id, score = _int(row.get("Id")), _int(row.get("Score"), 0)
            if row.get("PostTypeId") == "1" and post_id in mine:
                values = (post_id, row.get("Title", ""), row.get("Body", ""), row.get("Tags", ""), score)
                db.execute("INSERT OR REPLACE INTO q VALUES (?,?,?,?,?)", values)
            elif row.get("PostTypeId") == "2" and post_id in wanted_answers:
                values = (wanted_answers[post_id], post_id, row.get("Body", ""), score)
                db.execute("INSERT OR REPLACE INTO a VALUES (?,?,?,?)", values)
        db.commit()

    def _pair_document(self, qid, title, q_body, tags, q_score, a_id, a_body, a_score) -> Document:
        text = f"# {title}\n\n{html_to_markdown(q_body)}"
        if a_body is not None:
            text += f"\n\n## Answer\n\n{html_to_markdown(a_body)}"
        metadata = {
            "source": "stackexchange",
            "repo": self.site,
            "path": f"questions/{qid}",
            "tags": self._tags(tags),
            "question_score": q_score,
            "answer_id": a_id,
            "answer_score": a_score,
            "size_bytes": len(text.encode()),
        }
        return Document(text=text, id=stable_id(self.site, str(qid)), metadata=metadata)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import sqlite3
        import tempfile

        if data:
            yield from data
        with self.accounting(rank):
            try:
                self._check_dump()
                chosen = self._choose_answers(record=rank == 0)  # damage is recorded once, by task 0
            except Exception as error:  # noqa: BLE001 - an unreadable dump is recorded, not fatal
                if rank == 0:
                    self.record_unreadable(self.path, error)
                return
            mine = {q: a for q, a in chosen.items() if q % world_size == rank}
            with tempfile.TemporaryDirectory() as tmp:
                db = sqlite3.connect(os.path.join(tmp, "posts.sqlite"))
                self._spill(db, mine)
                query = (
                    "SELECT q.id, q.title, q.body, q.tags, q.score, a.id, a.body, a.score"
                    " FROM q LEFT JOIN a ON a.qid = q.id ORDER BY q.id"
                )
                count = 0
                for pair in db.execute(query):
                    if self.limit != -1 and count >= self.limit:
                        break
                    document = self._pair_document(*pair)
                    if pair[5] is None and self.require_answer:
                        self.exclude(document, "no_answer")
                        continue
                    count += 1
                    self.stat_update("documents")
                    yield document
                db.close()
