"""Readers: Python source trees, JSONL / Parquet / HF datasets (The Stack-style columns) and Stack Exchange dumps.

Every reader is a datatrove step. None of them crashes on a bad input or drops it silently: an input
that cannot be read at all (a symlink loop, a truncated ``.jsonl.gz``, a corrupt Parquet file, a bad
JSON line) is recorded in ``OUT/unreadable/<rank>.jsonl`` (the recipe engine sets
``unreadable_folder``), and a file that can be read but is not valid UTF-8 is read with replacement
characters and marked ``utf8_errors`` so that :class:`curate.filters.EncodingFilter` excludes it with a
reason.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xxhash
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike
from datatrove.pipeline.readers.base import BaseReader
from datatrove.pipeline.readers.huggingface import HuggingFaceDatasetReader
from datatrove.pipeline.readers.jsonl import JsonlReader
from datatrove.pipeline.readers.parquet import ParquetReader

from curate.shards import UnreadableLog


def stable_id(*parts: str) -> str:
    """A stable 32-hex-digit id from its parts (xxh3-128): the same input always gives the same id.

    Example:
        >>> stable_id("stdlib", "json/__init__.py")
        '...'  # doctest: +SKIP
    """
    return xxhash.xxh3_128_hexdigest("\x1f".join(parts).encode("utf-8", "surrogatepass"))


class _RecordsUnreadable:
    """Mixin: a per-task recorder of unreadable inputs, opened in ``run``."""

    unreadable_folder: DataFolderLike | None = None
    _record = None

    @contextlib.contextmanager
    def _unreadable_recorder(self, rank: int):
        if self.unreadable_folder is None:
            self._record = self._log_only
            yield self._record
            return
        with UnreadableLog(self.unreadable_folder).open(rank) as record:
            self._record = record
            yield record

    def _log_only(self, path: str, error: BaseException | str, **details) -> None:
        from datatrove.utils.logging import logger

        self.stat_update("unreadable")
        logger.warning(f"unreadable input {path}: {error}")

    def record_unreadable(self, path: str, error: BaseException | str, **details) -> None:
        self.stat_update("unreadable")
        (self._record or self._log_only)(path, error, **details)


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


class PythonSourceReader(BaseReader, _RecordsUnreadable):
    """Read ``.py`` files from directory trees or git checkouts, one document per file.

    Ids are stable (hash of repo + relative path). Metadata: ``source``, ``repo`` (the tree's name, or
    the top-level package for site-packages), ``path`` (relative), ``size_bytes``, ``license`` (hint).
    Files are listed in sorted order and split across tasks in contiguous blocks, so that the tasks'
    shards, read back in name order, hold the files in the same order whatever the number of tasks
    (and a one-task exact dedup downstream keeps the same copy of each duplicate).

    Args:
        paths: directories (or single files) to read.
        include: glob patterns (on the relative path) a file must match; default ``["*.py"]``.
        exclude: glob patterns that remove a file, e.g. ``["*/tests/*"]``.
        source: value of the ``source`` column (default: ``"files"`` or the preset name).
        repo: repository name (default: the directory name; per top-level package for site-packages).
        use_git: list files with ``git ls-files`` when a path is a git checkout (respects .gitignore).
        limit: at most this many documents per task (-1: all).

    Example:
        >>> reader = PythonSourceReader.preset("stdlib", exclude=["test/*"])
        >>> docs = list(reader.run(rank=0, world_size=1))  # doctest: +SKIP
        >>> docs[0].metadata["source"], docs[0].metadata["license"]  # doctest: +SKIP
        ('stdlib', 'PSF-2.0')
    """

    name = "🐍 Python sources"

    def __init__(
        self,
        paths: list[str] | str | None = None,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        source: str = "files",
        repo: str | None = None,
        use_git: bool = True,
        limit: int = -1,
        preset: str | None = None,
        unreadable_folder: DataFolderLike | None = None,
    ):
        super().__init__(limit=limit)
        if preset is not None:
            if preset == "stdlib":
                paths = [str(stdlib_root())]
                exclude = list(exclude or []) + ["site-packages/*", "dist-packages/*"]
                source, repo = "stdlib", repo or f"cpython-{sys.version_info.major}.{sys.version_info.minor}"
            elif preset == "site-packages":
                paths = [str(p) for p in site_packages_roots()]
                source = "site-packages"
            else:
                raise ValueError(f"unknown preset {preset!r}: use 'stdlib' or 'site-packages'")
        if not paths:
            raise ValueError("PythonSourceReader needs `paths` or a `preset`")
        self.paths = [paths] if isinstance(paths, str) else list(paths)
        self.include = list(include or ["*.py"])
        self.exclude = list(exclude or [])
        self.source = source
        self.repo = repo
        self.use_git = use_git
        self.preset = preset
        self.unreadable_folder = unreadable_folder

    @classmethod
    def preset(cls, name: str, **kwargs) -> PythonSourceReader:
        """``stdlib`` (this interpreter's standard library) or ``site-packages`` (its installed packages)."""
        return cls(preset=name, **kwargs)

    # -- listing ---------------------------------------------------------------------------------

    def _matches(self, rel: str) -> bool:
        name = rel.rsplit("/", 1)[-1]
        included = any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in self.include)
        return included and not any(fnmatch.fnmatch(rel, p) for p in self.exclude)

    def _git_files(self, root: Path) -> list[str] | None:
        if not (self.use_git and (root / ".git").exists()):
            return None
        try:
            out = subprocess.run(
                ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True, timeout=300
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        return sorted(p for p in out.decode("utf-8", "surrogateescape").split("\0") if p)

    def _walk(self, root: Path) -> Iterator[str]:
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
                yield name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")

    def list_files(self) -> list[tuple[str, str, str]]:
        """All matching files as sorted ``(root, relative path, repo)`` triples (the same in every task)."""
        files = []
        for path in self.paths:
            root = Path(path).expanduser()
            if root.is_file() or root.is_symlink() and not root.is_dir():
                files.append((str(root.parent), root.name, self.repo or root.parent.name))
                continue
            listed = self._git_files(root)
            rels = listed if listed is not None else self._walk(root)
            for rel in rels:
                if self._matches(rel):
                    files.append((str(root), rel, self._repo_for(root, rel)))
        return sorted(files)

    def _repo_for(self, root: Path, rel: str) -> str:
        if self.preset == "site-packages":
            return rel.split("/", 1)[0].removesuffix(".py")
        return self.repo or root.name

    # -- reading ---------------------------------------------------------------------------------

    def read_document(self, root: str, rel: str, repo: str, license_hint: str | None) -> Document:
        """Read one file (raises OSError when it cannot be read at all)."""
        full = os.path.join(root, rel)
        raw = Path(full).read_bytes()
        try:
            text = raw.decode("utf-8")
            utf8_errors = 0
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            utf8_errors = text.count("\ufffd") or 1
        metadata: dict[str, Any] = {
            "source": self.source,
            "repo": repo,
            "path": rel,
            "size_bytes": len(raw),
        }
        if license_hint:
            metadata["license"] = license_hint
        if utf8_errors:
            metadata["utf8_errors"] = utf8_errors
        return Document(text=text, id=stable_id(self.source, repo, rel), metadata=metadata)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        listed = self.list_files()
        files = listed[len(listed) * rank // world_size : len(listed) * (rank + 1) // world_size]
        licenses = _site_packages_licenses() if self.preset == "site-packages" else {}
        root_licenses: dict[str, str | None] = {}
        count = 0
        with self._unreadable_recorder(rank):
            for root, rel, repo in files:
                if self.limit != -1 and count >= self.limit:
                    break
                self.stat_update("input_files")
                if self.preset == "stdlib":
                    license_hint = "PSF-2.0"
                elif self.preset == "site-packages":
                    license_hint = licenses.get(repo)
                else:
                    if root not in root_licenses:
                        root_licenses[root] = _license_hint(Path(root))
                    license_hint = root_licenses[root]
                try:
                    with self.track_time():
                        document = self.read_document(root, rel, repo, license_hint)
                except (OSError, ValueError) as error:  # symlink loops, permissions, vanished files
                    self.record_unreadable(os.path.join(root, rel), error)
                    continue
                self.stat_update("documents")
                self.update_doc_stats(document)
                count += 1
                yield document


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
    stable one from its file path and row index; list-valued licences are joined with ``" OR "``.

    Example:
        >>> adapter = make_adapter("the-stack", source="the-stack")
        >>> adapter(None, {"content": "x = 1", "hexsha": "ab", "max_stars_repo_licenses": ["MIT"]}, "f", 0)["id"]
        'ab'
    """
    mapping = ADAPTERS[columns] if isinstance(columns, str) else dict(columns)

    def adapter(self, data: dict, path: str, id_in_file: int | str) -> dict:
        metadata: dict[str, Any] = {"source": source}
        out: dict[str, Any] = {"text": "", "id": None}
        for key, value in data.items():
            target = mapping.get(key)
            if target in ("text", "id"):
                out[target] = value
            elif target is not None:
                metadata[target] = value
            elif key != "metadata":
                metadata[key] = value
        if isinstance(metadata.get("license"), (list, tuple)):
            metadata["license"] = " OR ".join(map(str, metadata["license"])) or None
        if out["id"] is None:
            out["id"] = stable_id(source, str(path), str(id_in_file))
        out["id"] = str(out["id"])
        out["text"] = (
            out["text"] if isinstance(out["text"], str) else ("" if out["text"] is None else str(out["text"]))
        )
        return {"text": out["text"], "id": out["id"], "metadata": metadata}

    return adapter


class _SafeDiskReader(_RecordsUnreadable):
    """Mixin for datatrove disk readers: a file that fails midway is recorded, never fatal."""

    def read_files_shard(self, shard: list[str]) -> DocumentsPipeline:
        for filepath in shard:
            self.stat_update("input_files")
            produced = 0
            try:
                for document in self.read_file(filepath):
                    produced += 1
                    yield document
            except Exception as error:  # noqa: BLE001 - any broken file is recorded and the run goes on
                self.record_unreadable(
                    self.data_folder.resolve_paths(filepath), error, documents_read=produced
                )
            self.stat_update("documents", value=produced, unit="input_file")

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self._unreadable_recorder(rank):
            yield from super().run(data, rank, world_size)


class JsonlSourceReader(_SafeDiskReader, JsonlReader):
    """JSONL(.gz/.zst) files through datatrove's reader, with The Stack-style column adapters.

    A line that is not valid JSON is recorded as unreadable (``path:line``) instead of being skipped
    silently; a truncated compressed file keeps the documents before the damage and is recorded.

    Example:
        >>> reader = JsonlSourceReader("data/stack", columns="the-stack", glob_pattern="*.jsonl.gz")
    """

    name = "🐿 Jsonl sources"

    def __init__(
        self,
        data_folder: DataFolderLike,
        columns: str | dict[str, str] = "default",
        source: str = "jsonl",
        unreadable_folder: DataFolderLike | None = None,
        **kwargs,
    ):
        super().__init__(data_folder, adapter=make_adapter(columns, source), **kwargs)
        self.unreadable_folder = unreadable_folder

    def read_file(self, filepath: str):
        import orjson

        with self.data_folder.open(filepath, "r", compression=self.compression) as f:
            for line_number, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
                except (orjson.JSONDecodeError, ValueError) as error:
                    self.record_unreadable(
                        f"{self.data_folder.resolve_paths(filepath)}:{line_number + 1}", error
                    )
                    continue
                document = self.get_document_from_dict(row, filepath, line_number)
                if document is None:
                    self.record_unreadable(
                        f"{self.data_folder.resolve_paths(filepath)}:{line_number + 1}", "row has no text"
                    )
                    continue
                yield document


class ParquetSourceReader(_SafeDiskReader, ParquetReader):
    """Parquet files (e.g. The Stack's Python shards) through datatrove's reader; a corrupt file is recorded.

    Example:
        >>> reader = ParquetSourceReader("the-stack/data/python", columns="the-stack")
    """

    name = "📒 Parquet sources"

    def __init__(
        self,
        data_folder: DataFolderLike,
        columns: str | dict[str, str] = "default",
        source: str = "parquet",
        unreadable_folder: DataFolderLike | None = None,
        **kwargs,
    ):
        kwargs.setdefault("glob_pattern", "**/*.parquet")
        super().__init__(data_folder, adapter=make_adapter(columns, source), **kwargs)
        self.unreadable_folder = unreadable_folder


class HFDatasetSourceReader(HuggingFaceDatasetReader):
    """A Hugging Face dataset (hub name, or a builder such as ``"parquet"`` with ``data_files``).

    Only downloads when the user names a hub dataset.

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
        **kwargs,
    ):
        super().__init__(
            dataset, dataset_options=dataset_options, adapter=make_adapter(columns, source), **kwargs
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


class StackExchangeReader(BaseReader, _RecordsUnreadable):
    """Stream a Stack Exchange dump's ``Posts.xml`` in constant memory: questions joined with their
    accepted answer (else the top-scored one), HTML converted to markdown with code blocks kept.

    Three streaming passes: (1) choose an answer id per matching question (only integers are kept);
    (2) spill the chosen questions' and answers' bodies into a temporary sqlite file; (3) emit the
    joined pairs in question-id order. Memory does not grow with post bodies, only with the number
    of matching questions (a few integers each). Task ``rank`` emits questions with
    ``id % world_size == rank``.

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

    @staticmethod
    def _tags(raw: str) -> list[str]:
        raw = raw or ""
        if raw.startswith("|"):  # newer dumps: |python|list|
            return [t for t in raw.split("|") if t]
        return [t.strip("<>") for t in raw.split("><") if t.strip("<>")]

    def _rows(self) -> Iterator[dict[str, str]]:
        import xml.etree.ElementTree as ET

        for _event, element in ET.iterparse(self.path, events=("end",)):
            if element.tag == "row":
                yield dict(element.attrib)
            element.clear()  # constant memory: drop each parsed row

    def _choose_answers(self) -> dict[int, int | None]:
        wanted = set(self.tags)
        accepted_by_question: dict[int, int | None] = {}
        best_answer: dict[int, tuple[int, int]] = {}  # qid -> (answer id, score)
        for row in self._rows():
            post_type = row.get("PostTypeId")
            if post_type == "1":
                if wanted and not wanted.intersection(self._tags(row.get("Tags", ""))):
                    continue
                accepted = int(row["AcceptedAnswerId"]) if row.get("AcceptedAnswerId") else None
                accepted_by_question[int(row["Id"])] = accepted
            elif post_type == "2" and row.get("ParentId"):
                parent, score, answer_id = int(row["ParentId"]), int(row.get("Score", 0)), int(row["Id"])
                best = best_answer.get(parent)
                if best is None or score > best[1] or (score == best[1] and answer_id < best[0]):
                    best_answer[parent] = (answer_id, score)
        return {
            qid: accepted if accepted is not None else best_answer.get(qid, (None, None))[0]
            for qid, accepted in accepted_by_question.items()
        }

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import sqlite3
        import tempfile

        if data:
            yield from data
        with self._unreadable_recorder(rank):
            try:
                chosen = self._choose_answers()
            except Exception as error:  # noqa: BLE001 - a broken dump is recorded, not fatal
                self.record_unreadable(self.path, error)
                return
            mine = {q: a for q, a in chosen.items() if q % world_size == rank}
            wanted_answers = {a: q for q, a in mine.items() if a is not None}
            with tempfile.TemporaryDirectory() as tmp:
                db = sqlite3.connect(os.path.join(tmp, "posts.sqlite"))
                db.execute(
                    "CREATE TABLE q (id INTEGER PRIMARY KEY, title TEXT, body TEXT, tags TEXT, score INT)"
                )
                db.execute("CREATE TABLE a (qid INTEGER PRIMARY KEY, id INT, body TEXT, score INT)")
                for row in self._rows():
                    post_id = int(row.get("Id", -1))
                    if row.get("PostTypeId") == "1" and post_id in mine:
                        db.execute(
                            "INSERT INTO q VALUES (?,?,?,?,?)",
                            (
                                post_id,
                                row.get("Title", ""),
                                row.get("Body", ""),
                                row.get("Tags", ""),
                                int(row.get("Score", 0)),
                            ),
                        )
                    elif row.get("PostTypeId") == "2" and post_id in wanted_answers:
                        db.execute(
                            "INSERT INTO a VALUES (?,?,?,?)",
                            (wanted_answers[post_id], post_id, row.get("Body", ""), int(row.get("Score", 0))),
                        )
                db.commit()
                query = "SELECT q.id, q.title, q.body, q.tags, q.score, a.id, a.body, a.score FROM q LEFT JOIN a ON a.qid = q.id ORDER BY q.id"
                count = 0
                for qid, title, q_body, tags, q_score, a_id, a_body, a_score in db.execute(query):
                    if self.limit != -1 and count >= self.limit:
                        break
                    if a_id is None and self.require_answer:
                        self.stat_update("no_answer")
                        continue
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
                    count += 1
                    self.stat_update("documents")
                    yield Document(text=text, id=stable_id(self.site, str(qid)), metadata=metadata)
                db.close()
