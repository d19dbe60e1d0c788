"""Shards -> one flat token file: tokenize, append EOS after each document, pack.

Output directory layout::

    OUT/tokens.bin        every document's token ids followed by EOS, back to back (uint16, or
                          uint32 when the vocabulary has more than 65,535 ids), little-endian
    OUT/doc_offsets.npy   int64 array of n_docs + 1 offsets: document i is tokens[off[i]:off[i+1]]
                          (its EOS is the last token)
    OUT/loss_mask.bin     (only with ``solution_marker``) one uint8 per token: 1 where the token
                          counts in a solution-only fine-tuning loss
    OUT/header.json       format version, dtype, vocab size, EOS id, tokenizer and its hash,
                          n_tokens, n_docs, xxh3 checksum and max id of the token file, the shards

How it runs: the work is split into units of one Parquet row group. A pool of ``workers`` processes
tokenizes units; the parent writes their results strictly in unit order, with at most
``2 * workers`` units in flight, so memory is bounded by a few row groups and the output bytes are
the same whatever the number of workers. Files are written under ``OUT/.tmp`` and moved into place
at the end, so a killed run leaves no half-written token file behind and a rerun starts clean.

Example:
    >>> from train.prepare import prepare_tokens, TokenFile
    >>> prepare_tokens("textbooks-out/quickstart", "out/tokenizer", "out/tokens", workers=2)  # doctest: +SKIP
    >>> tf = TokenFile("out/tokens")                     # doctest: +SKIP
    >>> tf.tokens[:10], tf.n_docs                       # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from curate.extras import require_extra

FORMAT_VERSION = 1
TOKENS_NAME = "tokens.bin"
OFFSETS_NAME = "doc_offsets.npy"
MASK_NAME = "loss_mask.bin"
HEADER_NAME = "header.json"
# the end of the first triple-quoted string: the docstring of a phi-1 exercise
DOCSTRING_END = r"(\"\"\"|''')[\s\S]*?\1"


class TokenFileError(ValueError):
    """A token directory is missing, empty, truncated, corrupt or does not fit the model/tokenizer."""


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab <= 65,536), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


# ---------------------------------------------------------------- worker side


@dataclass
class _WorkerState:
    tokenizer: Any = None
    dtype: Any = None
    eos_id: int = 0
    marker: Any = None
    cache: dict = field(default_factory=dict)


_STATE = _WorkerState()


def _init_worker(
    tokenizer_json: str, eos_id: int, dtype: str, solution_marker: str | None, threads: bool
) -> None:
    # one process per core: Rust-side threads would only oversubscribe the cores
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads else "false"
    from tokenizers import Tokenizer

    # the Rust tokenizer alone (no transformers import): workers start in well under a second
    backend = Tokenizer.from_str(tokenizer_json)
    # a literal "<|endoftext|>" inside a document is text, not a document boundary
    backend.encode_special_tokens = True
    _STATE.tokenizer = backend
    _STATE.dtype = np.dtype(dtype)
    _STATE.eos_id = eos_id
    _STATE.marker = re.compile(solution_marker) if solution_marker else None


def _encode(texts: list[str]) -> list[list[int]]:
    backend = _STATE.tokenizer
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return [e.ids for e in encode(texts, add_special_tokens=False)]


def _tokenize_unit(unit: tuple[str, int]) -> dict[str, Any]:
    """Tokenize one row group -> flat tokens (+ mask) and per-document lengths."""
    import pyarrow.parquet as pq

    path, row_group = unit
    rows = pq.ParquetFile(path).read_row_group(row_group, columns=["text"]).column(0).to_pylist()
    texts = [t for t in rows if t]  # empty documents are counted in the header, not tokenized
    n_empty = len(rows) - len(texts)
    eos = _STATE.eos_id
    mask_parts: list[np.ndarray] | None = None
    n_unmarked = 0
    if _STATE.marker is None:
        docs = [ids + [eos] for ids in _encode(texts)]
    else:
        # prompt and solution are tokenized separately so the mask boundary is exact
        prompts, solutions = [], []
        for text in texts:
            match = _STATE.marker.search(text)
            end = match.end() if match else 0
            n_unmarked += match is None
            prompts.append(text[:end])
            solutions.append(text[end:])
        docs, mask_parts = [], []
        for p_ids, s_ids in zip(_encode(prompts), _encode(solutions), strict=True):
            docs.append(p_ids + s_ids + [eos])
            mask_parts.append(
                np.concatenate([np.zeros(len(p_ids), np.uint8), np.ones(len(s_ids) + 1, np.uint8)])
            )
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    flat = np.fromiter(chain.from_iterable(docs), dtype=np.int64, count=int(lengths.sum()))
    max_id = int(flat.max()) if flat.size else -1
    if max_id > np.iinfo(_STATE.dtype).max:
        raise OverflowError(f"token id {max_id} does not fit {_STATE.dtype}")
    return {
        "tokens": flat.astype(_STATE.dtype),
        "mask": np.concatenate(mask_parts) if mask_parts else None,
        "lengths": lengths,
        "n_empty": int(n_empty),
        "n_unmarked": n_unmarked,
        "max_id": max_id,
    }


# ---------------------------------------------------------------- parent side


def _units(files: list[Path]) -> list[tuple[str, int]]:
    import pyarrow.parquet as pq

    units = []
    for path in files:
        meta = pq.ParquetFile(path).metadata
        if "text" not in meta.schema.names:
            raise TokenFileError(f"{path} has no 'text' column")
        units.extend((str(path), rg) for rg in range(meta.num_row_groups))
    return units


def _shard_provenance(shards: Path, files: list[Path]) -> dict[str, Any]:
    """Which shards (and their sha256, from the manifest when there is one) made this token file."""
    from curate.manifest import file_sha256

    manifest_path = shards / "manifest.json"
    known: dict[str, str] = {}
    recipe = None
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        recipe = manifest.get("recipe", {}).get("name") if isinstance(manifest.get("recipe"), dict) else None
        for entry in manifest.get("shards", []) or []:
            if isinstance(entry, dict) and "path" in entry and "sha256" in entry:
                known[Path(entry["path"]).name] = entry["sha256"]
    root = shards.resolve()
    return {
        "dir": str(root),
        "manifest": str(manifest_path.resolve()) if manifest_path.is_file() else None,
        "manifest_recipe": recipe,
        "files": [{"path": f.name, "sha256": known.get(f.name) or file_sha256(f)} for f in files],
    }


def prepare_tokens(
    shards: str | os.PathLike,
    tokenizer: str | os.PathLike,
    output_dir: str | os.PathLike,
    workers: int = 2,
    solution_marker: str | None = None,
    max_in_flight: int | None = None,
) -> dict[str, Any]:
    """Tokenize a shard directory into a flat token file with EOS after each document.

    This is also the ``prepare_tokens`` recipe job.

    Args:
        shards: shard directory (``shards/data/*.parquet``, column ``text``).
        tokenizer: HF tokenizer directory or hub name (see :func:`train.tokenizer.load_tokenizer`).
        output_dir: the token directory to write (see the module docstring for its files).
        workers: tokenizer processes (the output does not depend on it).
        solution_marker: a regex; when given, ``loss_mask.bin`` marks the tokens after the end of its
            first match in each document (``"docstring"`` is a shortcut for :data:`DOCSTRING_END`:
            the solution of a phi-1 exercise follows its docstring). Documents without a match count
            whole; their number is in the header.
        max_in_flight: row groups being tokenized or waiting to be written (default ``2 * workers``).

    Returns:
        the header dict plus ``seconds`` and ``tokens_per_s``.

    Example:
        >>> prepare_tokens("out/exercises", "out/tok", "out/ft-tokens", solution_marker="docstring")  # doctest: +SKIP
    """
    require_extra("train", "prepare_tokens()")
    import multiprocessing as mp

    import xxhash

    from train.tokenizer import load_tokenizer, tokenizer_hash

    start = time.perf_counter()
    shards = Path(shards)
    files = _shard_files(shards)
    tok = load_tokenizer(tokenizer)
    vocab_size = len(tok)
    dtype = dtype_for_vocab(vocab_size)
    marker = DOCSTRING_END if solution_marker == "docstring" else solution_marker
    units = _units(files)

    out = Path(output_dir)
    tmp = out / ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    checksum = xxhash.xxh3_64()
    lengths: list[np.ndarray] = []
    totals = {"n_tokens": 0, "n_empty": 0, "n_unmarked": 0, "max_id": -1}
    workers = max(1, int(workers))
    in_flight = max_in_flight or 2 * workers
    init_args = (tok.backend_tokenizer.to_str(), tok.eos_token_id, dtype.str, marker, workers == 1)

    def consume(result: dict[str, Any], tokens_f, mask_f) -> None:
        data = result["tokens"].astype(dtype.newbyteorder("<"), copy=False).tobytes()
        tokens_f.write(data)
        checksum.update(data)
        if mask_f is not None:
            mask_f.write(result["mask"].tobytes())
        lengths.append(result["lengths"])
        totals["n_tokens"] += len(result["tokens"])
        totals["n_empty"] += result["n_empty"]
        totals["n_unmarked"] += result["n_unmarked"]
        totals["max_id"] = max(totals["max_id"], result["max_id"])

    with (
        open(tmp / TOKENS_NAME, "wb") as tokens_f,
        open(tmp / MASK_NAME, "wb") if marker else _null() as mask_f,
    ):
        if workers == 1:
            _init_worker(*init_args)
            for unit in units:
                consume(_tokenize_unit(unit), tokens_f, mask_f)
        else:
            # spawn: forking after tokenizers' threads started can deadlock; a dead worker raises
            # BrokenProcessPool here instead of hanging the run
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(
                workers, mp_context=ctx, initializer=_init_worker, initargs=init_args
            ) as pool:
                pending: deque = deque()
                next_unit = 0
                while pending or next_unit < len(units):
                    while next_unit < len(units) and len(pending) < in_flight:
                        pending.append(pool.submit(_tokenize_unit, units[next_unit]))
                        next_unit += 1
                    # results are written in unit order: the output does not depend on scheduling
                    consume(pending.popleft().result(), tokens_f, mask_f)

    doc_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = np.zeros(len(doc_lengths) + 1, dtype=np.int64)
    np.cumsum(doc_lengths, out=offsets[1:])
    np.save(tmp / OFFSETS_NAME, offsets)
    if totals["n_tokens"] == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TokenFileError(f"no tokens: every document in {shards} is empty")
    header = {
        "format_version": FORMAT_VERSION,
        "dtype": dtype.name,
        "vocab_size": vocab_size,
        "eos_id": tok.eos_token_id,
        "tokenizer": str(Path(tokenizer).resolve()) if Path(tokenizer).exists() else str(tokenizer),
        "tokenizer_hash": tokenizer_hash(tok),
        "n_tokens": totals["n_tokens"],
        "n_docs": int(len(doc_lengths)),
        "n_empty_skipped": totals["n_empty"],
        "max_token_id": totals["max_id"],
        "xxh3_64": checksum.hexdigest(),
        "loss_mask": MASK_NAME if marker else None,
        "solution_marker": marker,
        "n_docs_without_marker": totals["n_unmarked"] if marker else None,
        "shards": _shard_provenance(shards, files),
    }
    (tmp / HEADER_NAME).write_text(json.dumps(header, indent=2))
    if not marker:
        (tmp / MASK_NAME).unlink(missing_ok=True)
    # move into place: the header goes last, so a directory with a header is complete
    for name in (TOKENS_NAME, OFFSETS_NAME, MASK_NAME):
        (out / name).unlink(missing_ok=True)
        if (tmp / name).exists():
            os.replace(tmp / name, out / name)
    (out / HEADER_NAME).unlink(missing_ok=True)
    os.replace(tmp / HEADER_NAME, out / HEADER_NAME)
    tmp.rmdir()
    seconds = time.perf_counter() - start
    return {
        **header,
        "output_dir": str(out),
        "seconds": round(seconds, 3),
        "tokens_per_s": header["n_tokens"] / seconds,
    }


def _shard_files(shards: Path) -> list[Path]:
    from train.tokenizer import shard_files

    return shard_files(shards)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------- reading


class TokenFile:
    """A validated, memory-mapped token directory written by :func:`prepare_tokens`.

    Opening checks, before any training starts: the header exists and parses, the format version is
    known, the dtype is the one the vocabulary needs, ``tokens.bin`` is not empty and has exactly
    ``n_tokens`` ids (a truncated or padded file fails), the document offsets agree with it, and with
    ``verify=True`` (default) that the xxh3 checksum and the max id match (a flipped byte fails).
    Every failure raises :class:`TokenFileError` naming the file and what is wrong.

    Attributes:
        tokens: ``np.memmap`` of all ids; ``offsets``: document offsets; ``mask``: ``np.memmap`` of
        the loss mask or None; ``header``: the header dict.

    Example:
        >>> tf = TokenFile("out/tokens")                       # doctest: +SKIP
        >>> tf.check_compatible(vocab_size=51200, tokenizer_hash=None)  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, verify: bool = True):
        self.path = Path(path)
        header_path = self.path / HEADER_NAME
        if not self.path.is_dir():
            raise TokenFileError(f"token directory {self.path} does not exist (run prepare_tokens first)")
        if not header_path.is_file():
            raise TokenFileError(f"{header_path} is missing: {self.path} is not a complete token directory")
        try:
            self.header = json.loads(header_path.read_text())
            dtype = np.dtype(self.header["dtype"])
            n_tokens = int(self.header["n_tokens"])
            vocab_size = int(self.header["vocab_size"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenFileError(f"{header_path} is corrupt: {exc}") from exc
        if self.header.get("format_version") != FORMAT_VERSION:
            raise TokenFileError(
                f"{header_path}: unknown format_version {self.header.get('format_version')!r}"
            )
        if dtype != dtype_for_vocab(vocab_size):
            raise TokenFileError(
                f"{header_path}: dtype {dtype.name} does not match vocab_size {vocab_size} "
                f"(expected {dtype_for_vocab(vocab_size).name})"
            )
        tokens_path = self.path / TOKENS_NAME
        if not tokens_path.is_file():
            raise TokenFileError(f"{tokens_path} is missing")
        size = tokens_path.stat().st_size
        if size == 0 or n_tokens == 0:
            raise TokenFileError(f"{tokens_path} is empty")
        if size != n_tokens * dtype.itemsize:
            raise TokenFileError(
                f"{tokens_path} has {size} bytes but the header says {n_tokens} {dtype.name} tokens "
                f"({n_tokens * dtype.itemsize} bytes): the file is truncated or corrupt"
            )
        self.tokens = np.memmap(tokens_path, dtype=dtype.newbyteorder("<"), mode="r", shape=(n_tokens,))
        try:
            self.offsets = np.load(self.path / OFFSETS_NAME)
        except (OSError, ValueError) as exc:
            raise TokenFileError(f"{self.path / OFFSETS_NAME} is missing or corrupt: {exc}") from exc
        if (
            self.offsets.ndim != 1
            or len(self.offsets) != int(self.header.get("n_docs", -1)) + 1
            or self.offsets[0] != 0
            or self.offsets[-1] != n_tokens
        ):
            raise TokenFileError(f"{self.path / OFFSETS_NAME} does not match {tokens_path}")
        self.mask = None
        if self.header.get("loss_mask"):
            mask_path = self.path / MASK_NAME
            if not mask_path.is_file() or mask_path.stat().st_size != n_tokens:
                raise TokenFileError(f"{mask_path} is missing or does not have one byte per token")
            self.mask = np.memmap(mask_path, dtype=np.uint8, mode="r", shape=(n_tokens,))
        if verify:
            self._verify()

    def _verify(self, chunk: int = 2**24) -> None:
        import xxhash

        digest = xxhash.xxh3_64()
        max_id = -1
        for start in range(0, len(self.tokens), chunk):
            block = np.asarray(self.tokens[start : start + chunk])
            digest.update(block.tobytes())
            max_id = max(max_id, int(block.max()))
        if digest.hexdigest() != self.header.get("xxh3_64"):
            raise TokenFileError(f"{self.path / TOKENS_NAME} is corrupt: checksum does not match the header")
        if max_id != self.header.get("max_token_id") or max_id >= self.vocab_size:
            raise TokenFileError(f"{self.path / TOKENS_NAME}: max token id {max_id} is out of range")

    @property
    def vocab_size(self) -> int:
        return int(self.header["vocab_size"])

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def n_docs(self) -> int:
        return len(self.offsets) - 1

    def check_compatible(self, vocab_size: int | None = None, tokenizer_hash: str | None = None) -> None:
        """Raise :class:`TokenFileError` if a model with ``vocab_size`` embeddings or a tokenizer with
        ``tokenizer_hash`` does not fit this token file."""
        if vocab_size is not None and vocab_size < self.vocab_size:
            raise TokenFileError(
                f"vocabulary mismatch: the model has {vocab_size} embeddings but the token file "
                f"{self.path} was made with a {self.vocab_size}-token tokenizer (max id "
                f"{self.header['max_token_id']}); set model vocab_size >= {self.vocab_size}"
            )
        if tokenizer_hash is not None and tokenizer_hash != self.header.get("tokenizer_hash"):
            raise TokenFileError(
                f"tokenizer mismatch: {self.path} was made with tokenizer {self.header.get('tokenizer')} "
                f"(hash {str(self.header.get('tokenizer_hash'))[:12]}), not the one given "
                f"(hash {tokenizer_hash[:12]})"
            )
