"""Tokenizers: load any Hugging Face tokenizer, or train the offline default on the shards.

The phi-1 paper used codegen-350M-mono's tokenizer (a GPT-2 byte-level BPE plus tokens for runs of
spaces and tabs, so indented code costs one token per indent, not one per space). Where that tokenizer
cannot be downloaded, :func:`train_tokenizer` builds the same *kind* of tokenizer from the curated
shards with `tokenizers`: byte-level BPE, whitespace-run tokens, ``<|endoftext|>`` as BOS/EOS/UNK, saved
by :func:`save_tokenizer` so ``AutoTokenizer.from_pretrained(dir)`` loads it with transformers 4.4x-4.5x
and 5.x alike.

Example:
    >>> from train.tokenizer import train_tokenizer, load_tokenizer
    >>> train_tokenizer("textbooks-out/quickstart", "out/tokenizer", vocab_size=4096)  # doctest: +SKIP
    >>> tok = load_tokenizer("out/tokenizer")  # doctest: +SKIP
    >>> tok("def f():\\n    return 1").input_ids  # doctest: +SKIP

``load_tokenizer`` also takes a hub name, e.g. ``Salesforce/codegen-350M-mono``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from curate.extras import require_extra

EOS_TOKEN = "<|endoftext|>"
# codegen-350M-mono adds runs of 2..31 spaces and 2..9 tabs as whole tokens
SPACE_RUNS = range(2, 32)
TAB_RUNS = range(2, 10)


def whitespace_run_tokens() -> list[str]:
    """The codegen-style whitespace-run tokens, longest first (runs of spaces, then tabs)."""
    return [" " * n for n in reversed(SPACE_RUNS)] + ["\t" * n for n in reversed(TAB_RUNS)]


def shard_files(shard_dir: str | os.PathLike) -> list[Path]:
    """The Parquet files of a shard directory (``DIR/data/*.parquet``, or ``DIR/*.parquet``), sorted.

    Raises ``FileNotFoundError`` naming the directory when there is none, so a typo in a recipe
    fails before any work starts.
    """
    root = Path(shard_dir)
    folder = root / "data" if (root / "data").is_dir() else root
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet shards in {folder} (expected {root}/data/*.parquet)")
    return files


def iter_texts(
    shard_dir: str | os.PathLike, max_docs: int | None = None, batch_size: int = 1024
) -> Iterator[str]:
    """Stream the ``text`` column of a shard directory in file order (constant memory)."""
    import pyarrow.parquet as pq

    seen = 0
    for path in shard_files(shard_dir):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=["text"]):
            for text in batch.column(0).to_pylist():
                if not text:
                    continue
                yield text
                seen += 1
                if max_docs is not None and seen >= max_docs:
                    return


def train_tokenizer(
    shards: str | os.PathLike,
    output_dir: str | os.PathLike,
    vocab_size: int = 50_000,
    min_frequency: int = 2,
    max_docs: int | None = None,
    whitespace_runs: bool = True,
    model_max_length: int = 2048,
) -> dict[str, Any]:
    """Train a byte-level BPE tokenizer on the ``text`` column of a shard directory and save it.

    ``vocab_size`` is the size of the whole vocabulary (BPE merges + byte alphabet + the whitespace
    runs + ``<|endoftext|>``). Training is deterministic for the same shards and parameters.
    This is also the ``train_tokenizer`` recipe job.

    Args:
        shards: shard directory (``shards/data/*.parquet``).
        output_dir: where the HF tokenizer files go (``tokenizer.json``, ``tokenizer_config.json``...).
        vocab_size: total vocabulary size (default 50k, like codegen's 50,295).
        min_frequency: a pair must occur this often to be merged.
        max_docs: train on at most this many documents (None: all).
        whitespace_runs: add codegen-style tokens for runs of spaces (2-31) and tabs (2-9).
        model_max_length: recorded in the tokenizer config.

    Returns:
        ``{"output_dir", "vocab_size", "tokenizer_hash", "docs"}``.

    Example:
        >>> train_tokenizer("textbooks-out/quickstart", "out/tok", vocab_size=4096)  # doctest: +SKIP
        {'output_dir': 'out/tok', 'vocab_size': 4096, ...}
    """
    require_extra("train", "train_tokenizer()")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    added = whitespace_run_tokens() if whitespace_runs else []
    n_bpe = vocab_size - len(added)
    if n_bpe < 256 + 1:
        raise ValueError(f"vocab_size={vocab_size} is too small: need at least {256 + 1 + len(added)}")

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=n_bpe,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    counter = {"docs": 0}

    def texts() -> Iterator[str]:
        for text in iter_texts(shards, max_docs=max_docs):
            counter["docs"] += 1
            yield text

    tokenizer.train_from_iterator(texts(), trainer=trainer)
    if counter["docs"] == 0:
        raise ValueError(f"no non-empty documents in {shards}: cannot train a tokenizer")
    # whitespace runs are matched before the BPE model sees the text (longest match first)
    tokenizer.add_tokens(added)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    out = save_tokenizer(fast, output_dir)
    loaded = load_tokenizer(out)
    return {
        "output_dir": str(out),
        "vocab_size": len(loaded),
        "tokenizer_hash": tokenizer_hash(loaded),
        "docs": counter["docs"],
    }


# tokenizer_config.json as transformers 4.4x-4.5x and 5.x all read it: transformers 5 writes the class
# "TokenizersBackend", which 4.x does not know; 4.x's PreTrainedTokenizerFast returns token_type_ids
# unless told otherwise, and a causal LM's generate(**tok(...)) rejects them.
PORTABLE_TOKENIZER_CLASS = "PreTrainedTokenizerFast"
CAUSAL_LM_INPUT_NAMES = ["input_ids", "attention_mask"]
# loader arguments transformers 5 leaks into a re-saved tokenizer_config.json
LOADER_KEYS = ("backend", "is_local", "local_files_only")


def save_tokenizer(tok, output_dir: str | os.PathLike) -> Path:
    """``tok.save_pretrained(output_dir)`` with a ``tokenizer_config.json`` that loads with
    transformers 4.4x-4.5x and 5.x as a ``PreTrainedTokenizerFast`` whose inputs are ``input_ids``
    and ``attention_mask`` (a tokenizer with its own class, e.g. a hub one, keeps it).

    Example:
        >>> save_tokenizer(load_tokenizer("out/tok"), "out/model")  # doctest: +SKIP
        PosixPath('out/model')
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(out))
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text())
    if config.get("tokenizer_class") in (None, "TokenizersBackend"):
        config["tokenizer_class"] = PORTABLE_TOKENIZER_CLASS
    for key in LOADER_KEYS:
        config.pop(key, None)
    config["model_input_names"] = CAUSAL_LM_INPUT_NAMES
    path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return out


def load_tokenizer(name_or_path: str | os.PathLike):
    """Load a fast HF tokenizer from a local directory, or from the hub when given a hub name.

    A local directory never touches the network; only a name that is not a local path is looked up
    on the hub (the user named it). The tokenizer must define an EOS token: documents are separated
    by it when tokens are packed.
    """
    require_extra("train", "load_tokenizer()")
    from transformers import AutoTokenizer

    local = Path(name_or_path).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ValueError(f"tokenizer path {local} is not a directory")
        tok = AutoTokenizer.from_pretrained(str(local), local_files_only=True)
    else:
        tok = AutoTokenizer.from_pretrained(str(name_or_path))
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"tokenizer {name_or_path} has no fast (Rust) implementation; one is required")
    if tok.eos_token_id is None:
        raise ValueError(f"tokenizer {name_or_path} has no EOS token; set one (e.g. {EOS_TOKEN!r})")
    return tok


def tokenizer_hash(tok) -> str:
    """sha256 of the tokenizer's full definition (model, merges, added tokens, normalizers).

    Stored in the token file header, so a token file is never trained with a different tokenizer.
    """
    definition = json.loads(tok.backend_tokenizer.to_str())
    blob = json.dumps(definition, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()
