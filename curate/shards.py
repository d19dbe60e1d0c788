"""Parquet shards on disk: the writer, the exclusion writer, the reader and the unreadable-input log.

Every stage writes one *shard directory*::

    OUT/
      data/000_00000.parquet ...        kept rows (SHARD_SCHEMA, zstd)
      excluded/<step>/000_00000.parquet dropped rows, with filter_reason / filter_step
      unreadable/00000.jsonl            inputs that could not be read at all (path, error)
      manifest.json                     counts, shards, checksums, recipe (curate.manifest)
      README.md                         Hugging Face dataset card (curate.manifest)
      .logs/                            datatrove completions and stats (resume markers)

File names depend only on the task rank and the rotation counter, so a rerun of a killed task
overwrites its partial files with identical ones.
"""

from __future__ import annotations

import json
import os

from datatrove.data import Document
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.readers.parquet import ParquetReader
from datatrove.pipeline.writers.parquet import ParquetWriter

from curate.schema import SHARD_SCHEMA, document_to_row, row_to_metadata, upgrade_table

DATA_DIR = "data"
EXCLUDED_DIR = "excluded"
UNREADABLE_DIR = "unreadable"
LOGS_DIR = ".logs"
DEFAULT_SHARD_BYTES = 256 * 2**20


def _shard_adapter(self, document: Document) -> dict:
    return document_to_row(document)


class ShardWriter(ParquetWriter):
    """Write documents as Parquet shards with the explicit :data:`~curate.schema.SHARD_SCHEMA` (zstd).

    Args:
        output_folder: the shard directory's ``data/`` folder (or any folder).
        max_shard_bytes: rotate to a new shard after about this many bytes (default 256 MB).
        batch_size: rows buffered per Parquet row group.

    Example:
        >>> from datatrove.executor import LocalPipelineExecutor
        >>> from curate import PythonSourceReader, ShardWriter
        >>> pipeline = [PythonSourceReader.preset("stdlib"), ShardWriter("out/data")]
        >>> LocalPipelineExecutor(pipeline, tasks=2, logging_dir="out/.logs").run()  # doctest: +SKIP
    """

    name = "📦 Shards"

    def __init__(
        self,
        output_folder: DataFolderLike,
        output_filename: str = "${rank}.parquet",
        max_shard_bytes: int = DEFAULT_SHARD_BYTES,
        batch_size: int = 1000,
    ):
        super().__init__(
            output_folder,
            output_filename=output_filename,
            compression="zstd",
            adapter=_shard_adapter,
            batch_size=batch_size,
            max_file_size=max_shard_bytes,
            schema=SHARD_SCHEMA,
            # not datatrove's default content-defined chunking: pyarrow (26) aborts the whole process
            # (column_writer.cc "Check failed", SIGABRT) when a write fails inside a CDC chunk, e.g. on
            # a full disk; a pool worker killed that way loses its task and the run waits forever.
            # Without CDC the same failure is an OSError the engine reports, naming the output.
            use_content_defined_chunking=False,
        )


class ExclusionWriter(ShardWriter):
    """Shard writer for dropped documents; stamps ``filter_step`` and a ``filter_reason``.

    The recipe engine gives every filter one of these (``OUT/excluded/<step>/``), so a dropped
    document is never silently lost.

    Example:
        >>> from curate import ExclusionWriter, PythonSyntaxFilter
        >>> f = PythonSyntaxFilter(exclusion_writer=ExclusionWriter("out/excluded/syntax", "python_syntax"))
    """

    name = "🗑️ Exclusions"

    def __init__(
        self, output_folder: DataFolderLike, step_name: str, max_shard_bytes: int = DEFAULT_SHARD_BYTES
    ):
        super().__init__(output_folder, max_shard_bytes=max_shard_bytes, batch_size=100)
        self.step_name = step_name

    def write(self, document: Document, rank: int = 0, **kwargs):
        document.metadata.setdefault("filter_step", self.step_name)
        document.metadata.setdefault("filter_reason", self.step_name)
        super().write(document, rank, **kwargs)


def _shard_reader_adapter(self, data: dict, path: str, id_in_file: int | str) -> dict:
    return {
        "text": data.get("text") or "",
        "id": data.get("id") or f"{path}/{id_in_file}",
        "metadata": row_to_metadata(data),
    }


class ShardReader(ParquetReader):
    """Read a shard directory written by :class:`ShardWriter` back into Documents (metadata restored).

    ``data_folder`` may be the shard directory itself (its ``data/`` folder is used) or any folder of
    Parquet files with the shard schema.

    Example:
        >>> reader = ShardReader("textbooks-out/quickstart")
        >>> docs = list(reader.run())  # doctest: +SKIP
    """

    name = "📦 Shards"

    def __init__(self, data_folder: DataFolderLike, limit: int = -1, batch_size: int = 1000, **kwargs):
        if isinstance(data_folder, str) and os.path.isdir(os.path.join(data_folder, DATA_DIR)):
            data_folder = os.path.join(data_folder, DATA_DIR)
        kwargs.setdefault("glob_pattern", "*.parquet")
        super().__init__(
            data_folder, limit=limit, batch_size=batch_size, adapter=_shard_reader_adapter, **kwargs
        )


def read_shard_table(path: str | os.PathLike, columns: list[str] | None = None):
    """Every row of a shard directory (its ``data/``), a folder of shards or one shard file, as one
    pyarrow table in the current :data:`~curate.schema.SHARD_SCHEMA`; shards of an earlier schema
    version are upgraded on the way (:func:`~curate.schema.upgrade_table`).

    Example:
        >>> import pyarrow.compute as pc
        >>> table = read_shard_table("textbooks-out/quickstart/labeled")  # doctest: +SKIP
        >>> table.filter(pc.greater(table["label_score"], 0.5)).num_rows  # doctest: +SKIP
        253
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = os.fspath(path)
    if os.path.isdir(os.path.join(root, DATA_DIR)):
        root = os.path.join(root, DATA_DIR)
    files = (
        [root]
        if os.path.isfile(root)
        else sorted(
            os.path.join(folder, name)
            for folder, _, names in os.walk(root)
            for name in names
            if name.endswith(".parquet")
        )
    )
    tables = [upgrade_table(pq.read_table(f)) for f in files]
    table = pa.concat_tables(tables) if tables else SHARD_SCHEMA.empty_table()
    return table.select(columns) if columns else table


class UnreadableLog:
    """Append-only per-task log of inputs that could not be read (``OUT/unreadable/<rank>.jsonl``).

    Opened fresh (truncated) by each task run, so a rerun of a killed task rewrites it identically.

    Example:
        >>> log = UnreadableLog("/tmp/out/unreadable")
        >>> with log.open(rank=0) as record:
        ...     record("/src/broken.py", OSError("Too many levels of symbolic links"))
    """

    def __init__(self, folder: DataFolderLike):
        self.folder = get_datafolder(folder)

    def open(self, rank: int) -> _UnreadableRecorder:
        return _UnreadableRecorder(self.folder, rank)


class _UnreadableRecorder:
    def __init__(self, folder, rank: int):
        self._folder = folder
        self._name = f"{rank:05d}.jsonl"
        self._file = None

    def __call__(self, path: str, error: BaseException | str, **details) -> None:
        if self._file is None:
            self._file = self._folder.open(self._name, "wt")
        record = {
            "path": str(path),
            "error": error if isinstance(error, str) else f"{type(error).__name__}: {error}",
        }
        record.update(details)
        self._file.write(json.dumps(record, sort_keys=True) + "\n")

    def __enter__(self) -> _UnreadableRecorder:
        # remove a stale log left by a killed earlier attempt of this task
        if self._folder.isfile(self._name):
            self._folder.rm(self._name)
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()
