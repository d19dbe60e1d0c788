"""The datatrove steps of :func:`train.shards.tokenize_shards`: a tokenizer whose task files are sorted by
a seeded document hash and a merger that merges them by it (task-count-independent output).

Example:
    >>> document_key("a", "x = 1", 0) == document_key("a", "x = 1", 0)
    True
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from datatrove.pipeline.tokens.merger import DocumentTokenizerMerger
from datatrove.pipeline.tokens.tokenizer import DocumentTokenizer, get_output_filename
from datatrove.utils.tokenization import PipelineStepWithTokenizer

from train.prepare import TokenFileError

KEYS_SUFFIX = ".keys"


def document_key(doc_id: str, text: str, seed: int) -> int:
    """The merge position of a document: a seeded 64-bit hash of its id and text.

    Example:
        >>> document_key("a", "x = 1", 0) == document_key("a", "x = 1", 0) != document_key("a", "x = 1", 1)
        True
    """
    import xxhash

    return xxhash.xxh3_64_intdigest(f"{doc_id}\x00{text}".encode("utf-8", "surrogatepass"), seed=seed)


class OrderedDocumentTokenizer(DocumentTokenizer):
    """datatrove's ``DocumentTokenizer`` whose task file is sorted by :func:`document_key` (not by a
    task-local random permutation), with a ``.keys`` file next to it for :class:`OrderedTokenMerger`.

    Example:
        >>> step = OrderedDocumentTokenizer("out/.work/tasks", "out/tok/tokenizer.json", seed=0)  # doctest: +SKIP
    """

    name = "✍️ Ordered tokenizer"

    def __init__(self, output_folder, tokenizer_name_or_path: str, seed: int = 0, eos_token: str = "<|endoftext|>",
                 save_filename: str = "tokens"):  # fmt: skip
        super().__init__(output_folder, tokenizer_name_or_path, save_filename=save_filename, eos_token=eos_token,
                         shuffle_documents=False, save_final_metadata=True)  # fmt: skip
        self.order_seed = seed
        self._keys: list[int] = []

    @cached_property
    def tokenizer(self):
        tok = PipelineStepWithTokenizer.tokenizer.func(self)
        # as train.prepare: a literal "<|endoftext|>" inside a document is text, not a boundary
        tok.encode_special_tokens = True
        return tok

    def write_unshuffled(self, data, filename: str):
        def keyed(docs):
            for doc in docs:
                self._keys.append(document_key(str(doc.id), doc.text, self.order_seed))
                yield doc

        self._keys = []
        return super().write_unshuffled(keyed(data), filename)

    def run(self, data, rank: int = 0, world_size: int = 1):
        unsorted = self.write_unshuffled(data, get_output_filename(self.save_filename, rank, "unsorted"))
        keys = np.array(self._keys, dtype=np.uint64)
        order = np.argsort(keys, kind="stable")
        ordered = unsorted.copy(
            self.save_filename, order, self.output_folder, rank=rank, sub_filename="ordered"
        )
        unsorted.cleanup()
        with self.output_folder.open(ordered.filename + KEYS_SUFFIX, "wb") as f:
            f.write(keys[order].astype("<u8").tobytes())
        self.stat_update("documents", value=len(keys))
        return iter(())


class OrderedTokenMerger(DocumentTokenizerMerger):
    """datatrove's ``DocumentTokenizerMerger`` taking documents from the task files in global
    :func:`document_key` order, so the merged files do not depend on the number of tasks."""

    name = "🗃 Ordered merger"

    def __init__(self, input_folder, output_folder, save_filename: str = "tokens",
                 max_tokens_per_file: int = int(100e9)):  # fmt: skip
        super().__init__(input_folder, output_folder, save_filename, max_tokens_per_file=max_tokens_per_file,
                         shuffle=False, progress=False)  # fmt: skip

    def get_ordering(self, all_doc_ends):
        files = self.input_folder.list_files(glob_pattern="*.ds")
        keys = []
        for name, ends in zip(files, all_doc_ends, strict=True):
            with self.input_folder.open(name + KEYS_SUFFIX, "rb") as f:
                keys.append(np.frombuffer(f.read(), dtype="<u8"))
            if len(keys[-1]) != len(ends):
                raise TokenFileError(f"{name}: {len(ends)} documents but {len(keys[-1])} keys")
        file_ids = np.concatenate([np.full(len(k), i, dtype=np.int64) for i, k in enumerate(keys)] or [[]])
        # each task file is sorted by key, so the global key order consumes every file front to back
        order = np.lexsort((file_ids, np.concatenate(keys or [np.zeros(0, "<u8")])))
        return file_ids[order].astype(int)
