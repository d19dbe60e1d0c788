"""Token shards in datatrove's format: tokenization as datatrove stages, read memory-mapped by every trainer.

Stage 1 (any number of tasks, any executor): a ``ParquetReader`` and :class:`OrderedDocumentTokenizer`
(datatrove's ``DocumentTokenizer`` with our tokenizer: EOS after each document, a literal
``<|endoftext|>`` in a document is text) write one ``.ds`` file per task, its documents sorted by a
seeded hash of (id, text). Stage 2 (one task): :class:`~train.shard_steps.OrderedTokenMerger` (datatrove's
``DocumentTokenizerMerger``) merges the task files by that hash. The hash order is a global shuffle
that does not depend on how the documents were split into tasks, so **the merged files are
byte-equal whatever the number of tasks** (a document's position depends on its own hash only).

Output directory (datatrove's layout, plus one JSON of ours written last)::

    OUT/000_tokens.ds            token ids, little-endian uint16 (uint32 when the vocabulary has more
                                 than 65,536 ids), every document followed by EOS, back to back
    OUT/000_tokens.ds.index      uint64 end offset (in tokens) of each document
    OUT/000_tokens.ds.metadata   "tokenizer|token size", token count (datatrove's)
    OUT/tokens.ds.metadata       the total (datatrove's merger writes it)
    OUT/textbooks_tokens.json    vocabulary, EOS, tokenizer hash, n_tokens, n_docs, xxh3, max id, files

Who reads it: our loop (:class:`ShardTokenFile`, memory-mapped, with the same window arithmetic and
exact resume as the flat format: windows are cut from the concatenated stream of the listed files);
transformers' ``Trainer`` through :class:`train.plugins.WindowDataset` over the same windows; and
nanotron, whose ``Nanoset`` datasets (``src/nanotron/data/nanoset.py``: one ``dataset_folder`` per
dataset) open every ``*.ds`` file of a folder with ``datatrove.utils.dataset.DatatroveFolderDataset``
(``token_size`` 2 for vocabularies up to 65,536), i.e. exactly this directory.

The flat format of :mod:`train.prepare` stays readable (:func:`open_tokens` takes either); one command
converts it: ``textbooks convert-tokens OLD NEW`` (:func:`convert_tokens`, document order kept).

Example:
    >>> from train.shards import tokenize_shards, open_tokens
    >>> tokenize_shards("out/curated", "out/tok", "out/ds-tokens", tasks=4)  # doctest: +SKIP
    >>> open_tokens("out/ds-tokens").n_tokens                                # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from train.prepare import MASK_NAME, TOKENS_NAME, TokenFile, TokenFileError

SHARD_HEADER = "textbooks_tokens.json"
SHARD_FORMAT = "datatrove-ds"


def tokenize_shards(
    shards: str | os.PathLike,
    tokenizer: str | os.PathLike,
    output_dir: str | os.PathLike,
    tasks: int = 1,
    workers: int = 1,
    seed: int = 0,
    max_tokens_per_file: int = int(100e9),
    make_executor: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Tokenize a shard directory into datatrove token shards (see the module docstring); the
    ``tokenize_shards`` recipe job.

    Args:
        shards: shard directory (``shards/data/*.parquet``, columns ``id`` and ``text``).
        tokenizer: our tokenizer directory (its ``tokenizer.json`` is what datatrove loads), or a
            ``tokenizer.json`` file.
        output_dir: the token directory to write.
        tasks: datatrove tasks of the tokenizing stage (the output does not depend on it).
        workers: tasks run at once by the default local executor.
        seed: the document order's seed.
        max_tokens_per_file: start a new merged ``.ds`` file after this many tokens.
        make_executor: ``fn(pipeline, tasks=, logging_dir=, depends=)`` -> a datatrove executor
            (e.g. a ``SlurmPipelineExecutor``); default ``LocalPipelineExecutor`` with ``workers``.

    Returns:
        the ``textbooks_tokens.json`` header.

    Example:
        >>> tokenize_shards("out/curated", "out/tok", "out/ds-tokens", tasks=8, workers=8)  # doctest: +SKIP
    """
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import ParquetReader

    from train.shard_steps import OrderedDocumentTokenizer, OrderedTokenMerger
    from train.tokenizer import load_tokenizer, shard_files, tokenizer_hash

    files = shard_files(shards)
    tok_file = Path(tokenizer) / "tokenizer.json" if Path(tokenizer).is_dir() else Path(tokenizer)
    tok = load_tokenizer(tok_file.parent)
    out = Path(output_dir)
    work = out / ".work"
    shutil.rmtree(work, ignore_errors=True)
    if make_executor is None:

        def make_executor(pipeline, tasks, logging_dir, depends=None):
            return LocalPipelineExecutor(pipeline, tasks=tasks, workers=min(workers, tasks),
                                         logging_dir=logging_dir, depends=depends)  # fmt: skip

    reader = ParquetReader(str(files[0].parent), glob_pattern="*.parquet", text_key="text", id_key="id")
    tokenize = make_executor([reader, OrderedDocumentTokenizer(str(work / "tasks"), str(tok_file), seed=seed)],
                             tasks=tasks, logging_dir=str(work / "logs" / "tokenize"))  # fmt: skip
    merge = make_executor(
        [OrderedTokenMerger(str(work / "tasks"), str(work / "merged"), max_tokens_per_file=max_tokens_per_file)],
        tasks=1, logging_dir=str(work / "logs" / "merge"), depends=tokenize,
    )  # fmt: skip
    merge.run()
    merged = sorted(p.name for p in (work / "merged").glob("*.ds"))
    (out / SHARD_HEADER).unlink(missing_ok=True)  # first: a kill below leaves an incomplete directory
    for old in out.glob("*.ds*"):
        old.unlink()
    for path in (work / "merged").iterdir():
        os.replace(path, out / path.name)
    header = shard_header(out, merged, len(tok), tok.eos_token_id)
    header.update(tokenizer=str(tok_file.parent.resolve()), tokenizer_hash=tokenizer_hash(tok), seed=seed,
                  shards={"dir": str(Path(shards).resolve()), "files": [f.name for f in files]})  # fmt: skip
    (out / SHARD_HEADER).write_text(json.dumps(header, indent=2))  # last: a directory with it is complete
    shutil.rmtree(work, ignore_errors=True)
    return header


def shard_header(out: Path, files: list[str], vocab_size: int, eos_id: int) -> dict[str, Any]:
    """Counts, checksum and max id of the ``.ds`` files ``files`` of ``out`` (in that order)."""
    import xxhash

    from train.prepare import dtype_for_vocab

    dtype = dtype_for_vocab(vocab_size)
    digest, n_tokens, n_docs, max_id = xxhash.xxh3_64(), 0, 0, -1
    for name in files:
        tokens = (
            np.memmap(out / name, dtype=dtype.newbyteorder("<"), mode="r")
            if (out / name).stat().st_size
            else []
        )
        digest.update(np.asarray(tokens).tobytes())
        n_tokens += len(tokens)
        n_docs += (out / f"{name}.index").stat().st_size // 8
        max_id = max(max_id, int(np.max(tokens)) if len(tokens) else -1)
    if n_tokens == 0:
        raise TokenFileError(f"no tokens: every document under {out} is empty")
    has_loss = all((out / f"{name}.loss").is_file() for name in files)
    return {"format": SHARD_FORMAT, "format_version": 1, "dtype": dtype.name, "vocab_size": vocab_size,
            "eos_id": eos_id, "n_tokens": n_tokens, "n_docs": n_docs, "max_token_id": max_id,
            "xxh3_64": digest.hexdigest(), "files": files, "loss_mask": "ds.loss" if has_loss else None}  # fmt: skip


class ConcatenatedTokens:
    """Several memory-mapped token files read as one array (slices with step 1 and ``len`` only)."""

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, item: slice) -> np.ndarray:
        start, stop, _ = item.indices(len(self))
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        pieces = []
        while start < stop and first < len(self.parts):
            local = start - self.starts[first]
            take = min(stop, self.starts[first + 1]) - start
            pieces.append(np.asarray(self.parts[first][local : local + take]))
            start += take
            first += 1
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=self.parts[0].dtype)


class ShardTokenFile(TokenFile):
    """A validated, memory-mapped datatrove token directory: the same attributes and checks as
    :class:`train.prepare.TokenFile` (``tokens``, ``offsets``, ``mask``, ``header``), so the trainer's
    windows, resume arithmetic and compatibility checks apply unchanged."""

    def __init__(self, path: str | os.PathLike, verify: bool = True):
        self.path = Path(path)
        header_path = self.path / SHARD_HEADER
        if not header_path.is_file():
            raise TokenFileError(f"{header_path} is missing: {self.path} is not a complete token directory")
        try:
            self.header = json.loads(header_path.read_text())
            dtype = np.dtype(self.header["dtype"]).newbyteorder("<")
            files = list(self.header["files"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenFileError(f"{header_path} is corrupt: {exc}") from exc
        parts, offsets, masks, base = [], [np.zeros(1, np.int64)], [], 0
        for name in files:
            path = self.path / name
            if not path.is_file() or path.stat().st_size % dtype.itemsize:
                raise TokenFileError(f"{path} is missing or truncated")
            n = path.stat().st_size // dtype.itemsize
            parts.append(np.memmap(path, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype))
            ends = np.fromfile(self.path / f"{name}.index", dtype="<u8").astype(np.int64)
            if len(ends) and (ends[-1] != n or np.any(np.diff(ends) <= 0)):
                raise TokenFileError(f"{path}.index does not match {path}")
            offsets.append(ends + base)
            base += n
            if self.header.get("loss_mask"):
                masks.append(np.memmap(f"{path}.loss", dtype=np.uint8, mode="r", shape=(n,)))
        if base == 0 or base != int(self.header.get("n_tokens", -1)):
            raise TokenFileError(
                f"{self.path}: {base} tokens on disk, the header says {self.header.get('n_tokens')}"
            )
        self.tokens = parts[0] if len(parts) == 1 else ConcatenatedTokens(parts)
        self.offsets = np.concatenate(offsets)
        self.mask = None
        if masks:
            self.mask = masks[0] if len(masks) == 1 else ConcatenatedTokens(masks)
        if verify:
            self._verify()


def open_tokens(path: str | os.PathLike, verify: bool = True) -> TokenFile:
    """The token directory at ``path`` in either format: datatrove shards or the flat file.

    Example:
        >>> open_tokens("out/ds-tokens").n_docs  # doctest: +SKIP
    """
    if (Path(path) / SHARD_HEADER).is_file():
        return ShardTokenFile(path, verify=verify)
    return TokenFile(path, verify=verify)


def convert_tokens(source: str | os.PathLike, output_dir: str | os.PathLike) -> dict[str, Any]:
    """Convert a flat token directory (:func:`train.prepare.prepare_tokens`) into datatrove shards:
    the same token bytes in the same document order (``textbooks convert-tokens``).

    Example:
        >>> convert_tokens("out/tokens", "out/ds-tokens")["n_tokens"]  # doctest: +SKIP
    """
    old = TokenFile(source)
    src, out = Path(source), Path(output_dir)
    tmp = out / ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    name = "000_tokens.ds"
    shutil.copyfile(src / TOKENS_NAME, tmp / name)
    old.offsets[1:].astype("<u8").tofile(tmp / f"{name}.index")
    if old.mask is not None:
        shutil.copyfile(src / MASK_NAME, tmp / f"{name}.loss")
    size = np.dtype(old.header["dtype"]).itemsize
    meta = f"{old.header.get('tokenizer')}|{size}\n{old.n_tokens}\n{old.n_tokens}T"
    (tmp / f"{name}.metadata").write_text(meta)
    header = shard_header(tmp, [name], old.vocab_size, old.header["eos_id"])
    keep = ("tokenizer", "tokenizer_hash", "shards", "solution_marker")
    header.update({k: old.header.get(k) for k in keep}, converted_from=str(src.resolve()))
    for path in tmp.iterdir():
        os.replace(path, out / path.name)
    (out / SHARD_HEADER).write_text(json.dumps(header, indent=2))
    tmp.rmdir()
    return header
