"""``LLMQualityLabeler``: phi-1's educational-value labels from any OpenAI-compatible model.

phi-1 asked GPT-4 to "determine its educational value for a student whose goal is to learn basic coding
concepts" for ~100k samples of The Stack and StackOverflow, then trained a classifier on those labels.
This step asks that question (configurable) of a deterministic sample of the documents flowing through
it, through ``curate.llm.LLMClient`` (cache, retries, rate limits, budget), and writes the answer into
the document's metadata. No document is ever dropped here: failures are recorded and flow on.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from loguru import logger

BINARY_PROMPT = """Here is a code snippet:

```
{text}
```

Determine its educational value for a student whose goal is to learn basic coding concepts.
Answer with exactly one word: "high" or "low"."""

SCALE_PROMPT = """Below is a code snippet. Evaluate whether it has high educational value and could be
useful in teaching basic coding concepts to a student, using the additive 5-point scoring system below.
Points accumulate for each criterion met:

- Add 1 point if the code is valid and shows some programming concept, even if it is boilerplate or configuration.
- Add another point if it addresses practical concepts (functions, data structures, control flow), even without explanation.
- Add a third point if it is suitable for teaching: clear names, comments or docstrings, reasonably self-contained.
- Add a fourth point if it is self-contained and highly relevant to learning, like a good textbook example or exercise.
- Add a fifth point if it is outstanding for teaching basic coding concepts: clear, well explained, instructive step by step.

```
{text}
```

After a brief justification (up to 100 words), end with the line: "Educational score: <points>"."""

SCALES = ("binary", "0-5")
_BIN_EXPLICIT = re.compile(
    r"(?:answer|label|rating|value|verdict|educational value)\s*(?:is|:|=|-)?\s*[\"'*`]*\s*(high|low)\b"
)
_BIN_ANY = re.compile(r"\b(high|low)\b")
_BIN_FIRST = re.compile(r"^\W*(high|low)\b")
_SCORE_EXPLICIT = re.compile(
    r"(?:educational score|score|rating|points?)\s*(?:is|:|=|-)?\s*[*`\"']*\s*([0-5])\b(?!\.\d)"
)
_SCORE_OF_5 = re.compile(r"\b([0-5])\s*(?:/|out of)\s*5\b")
_SCORE_ALONE = re.compile(r"^\W*([0-5])\W*$")


def parse_label(text: str | None, scale: str = "binary") -> str | None:
    """The label in a model's answer, or None when it cannot be told.

    >>> parse_label("High."), parse_label("**Answer:** low"), parse_label("maybe")
    ('high', 'low', None)
    >>> parse_label("Clear helper functions.\\nEducational score: 4", "0-5"), parse_label("3/5", "0-5")
    ('4', '3')
    """
    if not text:
        return None
    t = text.strip().lower()
    if scale == "binary":
        explicit = _BIN_EXPLICIT.findall(t)
        if explicit:
            return explicit[-1]
        first = _BIN_FIRST.match(t)
        if first:
            return first.group(1)
        found = set(_BIN_ANY.findall(t))
        return found.pop() if len(found) == 1 else None
    for pattern in (_SCORE_EXPLICIT, _SCORE_OF_5):
        hits = pattern.findall(t)
        if hits:
            return hits[-1]  # the final verdict comes last, after the justification
    alone = _SCORE_ALONE.match(t)
    return alone.group(1) if alone else None


def in_sample(doc_id: str, sample_rate: float) -> bool:
    """Deterministic sampling by id hash: the same ids are chosen on every run and by every task."""
    if sample_rate >= 1.0:
        return True
    h = int.from_bytes(hashlib.sha256(str(doc_id).encode()).digest()[:8], "big")
    return h / 2**64 < sample_rate


class LLMQualityLabeler(PipelineStep):
    """Label a sample of documents with an LLM's rating of their educational value.

    Sets metadata ``quality_label`` ("high"/"low", or "0".."5" with ``scale="0-5"``), ``label_source``
    (the model), ``prompt_hash``; unparseable answers get ``label_error="unparseable"`` and
    ``label_raw`` (the raw text); failed requests get ``label_error`` (the reason). Documents outside
    the sample pass through untouched. Nothing is dropped.

    Example (recipe)::

        - uses: llm_quality_labeler
          with: {model: gpt-4o-mini, base_url: "${endpoint}", cache_path: "${out}/llm_cache.sqlite",
                 max_documents: 100000, budget_usd: 200}

    >>> labeler = LLMQualityLabeler(model="gpt-4o-mini", cache_path="out/llm_cache.sqlite", sample_rate=0.01)

    Args:
        model, base_url, api_key_env, cache_path, max_concurrency, rpm, tpm, max_retries, timeout_s,
            prices: passed to ``LLMClient`` (the key is read from ``api_key_env`` in the environment).
        budget_usd: total budget; each of ``world_size`` tasks gets an equal share (a hard cap).
        scale: "binary" (the paper) or "0-5" (FineWeb-Edu style).
        prompt: template with ``{text}``; default: the paper's question for the chosen scale.
        system_prompt: optional system message.
        sample_rate: fraction of documents labeled, chosen by id hash (deterministic).
        max_documents: cap on labeled documents over all tasks (each task: ceil(max/world_size)).
        max_chars: documents are cut to this many characters in the prompt (cost control).
        max_tokens: completion cap (default 8 for binary, 256 for 0-5).
        mode: "online" (concurrent requests) or "batch" (OpenAI Batch API; same cache, same labels).
        batch_size: documents per client call (online default 256; batch mode default: the whole shard).
        overwrite: relabel documents that already have a ``quality_label``.
    """

    name = "🏷 LLM quality labeler"
    type = "🏷 - LABEL"

    def __init__(
        self,
        model: str = "gpt-4o-mini",
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        cache_path: str | None = "out/llm_cache.sqlite",
        scale: str = "binary",
        prompt: str | None = None,
        system_prompt: str | None = None,
        sample_rate: float = 1.0,
        max_documents: int | None = None,
        max_chars: int = 6000,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        seed: int | None = None,
        mode: str = "online",
        batch_size: int | None = None,
        max_concurrency: int = 16,
        rpm: float | None = None,
        tpm: float | None = None,
        max_retries: int = 6,
        timeout_s: float = 60.0,
        budget_usd: float | None = None,
        prices: dict | None = None,
        poll_interval_s: float = 30.0,
        overwrite: bool = False,
        client_kwargs: dict | None = None,
    ):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")
        if mode not in ("online", "batch"):
            raise ValueError(f"mode must be 'online' or 'batch', not {mode!r}")
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in [0, 1], not {sample_rate}")
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.cache_path = cache_path
        self.scale = scale
        self.prompt = prompt or (BINARY_PROMPT if scale == "binary" else SCALE_PROMPT)
        if "{text}" not in self.prompt:
            raise ValueError("prompt must contain the placeholder {text}")
        self.system_prompt = system_prompt
        self.sample_rate = sample_rate
        self.max_documents = max_documents
        self.max_chars = max_chars
        self.max_tokens = max_tokens or (8 if scale == "binary" else 256)
        self.temperature = temperature
        self.seed = seed
        self.mode = mode
        self.batch_size = batch_size
        self.client_kwargs = dict(
            model=model, base_url=base_url, api_key_env=api_key_env, cache_path=cache_path,
            max_concurrency=max_concurrency, rpm=rpm, tpm=tpm, max_retries=max_retries, timeout_s=timeout_s,
            prices=prices, **(client_kwargs or {}),
        )  # fmt: skip
        self.budget_usd = budget_usd
        self.poll_interval_s = poll_interval_s
        self.overwrite = overwrite
        self.prompt_hash = hashlib.sha256(
            f"{self.scale}\n{self.system_prompt or ''}\n{self.prompt}".encode()
        ).hexdigest()[:16]
        self._client = None

    def make_client(self, world_size: int = 1):
        """The ``LLMClient`` this step uses (budget split over ``world_size`` tasks)."""
        from curate.llm import LLMClient

        budget = None if self.budget_usd is None else self.budget_usd / max(1, world_size)
        return LLMClient(budget_usd=budget, **self.client_kwargs)

    def request_for(self, doc: Document):
        """The LLMRequest that labels ``doc`` (its id travels in metadata, outside the cache key)."""
        from curate.llm import LLMRequest

        messages = [{"role": "user", "content": self.prompt.replace("{text}", doc.text[: self.max_chars])}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return LLMRequest(messages=messages, temperature=self.temperature, max_tokens=self.max_tokens,
                          seed=self.seed, metadata={"id": doc.id})  # fmt: skip

    def select(self, docs: Iterable[Document], world_size: int = 1) -> list[Document]:
        """The documents of ``docs`` this step would label (sample + cap), in order; for dry runs too."""
        quota = None if self.max_documents is None else math.ceil(self.max_documents / max(1, world_size))
        chosen = []
        for doc in docs:
            if quota is not None and len(chosen) >= quota:
                break
            if self._wanted(doc):
                chosen.append(doc)
        return chosen

    def _wanted(self, doc: Document) -> bool:
        return (self.overwrite or doc.metadata.get("quality_label") is None) and in_sample(
            doc.id, self.sample_rate
        )

    def estimate_cost(self, docs: Iterable[Document], world_size: int = 1) -> dict:
        """Dry run: the cost upper bound of labeling ``docs`` (cached answers excluded); sends nothing."""
        return self.make_client().estimate_cost([self.request_for(d) for d in self.select(docs, world_size)])

    def write_batch_files(self, docs: Iterable[Document], out_dir: str, world_size: int = 1) -> list:
        """Offline: write OpenAI Batch API request files for ``docs`` (custom_id = cache key)."""
        return self.make_client().write_batch_files(
            [self.request_for(d) for d in self.select(docs, world_size)], out_dir
        )

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if self._client is None:
            self._client = self.make_client(world_size)
        quota = None if self.max_documents is None else math.ceil(self.max_documents / max(1, world_size))
        size = self.batch_size or (256 if self.mode == "online" else 10**9)
        buffer: list[Document] = []
        to_label: list[Document] = []
        n_selected = 0
        for doc in data:
            self.stat_update("documents")
            buffer.append(doc)
            if (quota is None or n_selected < quota) and self._wanted(doc):
                n_selected += 1
                to_label.append(doc)
            if len(to_label) >= size:
                self._label(to_label)
                yield from buffer
                buffer, to_label = [], []
        if to_label:
            self._label(to_label)
        yield from buffer
        u = self._client.usage
        logger.info(
            f"LLMQualityLabeler rank {rank}: {u['requests']} labels requested, {u['cached']} cached, "
            f"{u['failed']} failed, {u['budget_exhausted']} over budget, {u['retries']} retries, ${u['cost_usd']:.4f}"
        )

    def _label(self, docs: list[Document]) -> None:
        requests = [self.request_for(d) for d in docs]
        with self.track_time(unit="batch"):
            if self.mode == "batch":
                results = self._client.run_batch(requests, poll_interval_s=self.poll_interval_s)
            else:
                results = self._client.run(requests)
        for doc, res in zip(docs, results, strict=True):
            md = doc.metadata
            md["label_source"] = self.model
            md["prompt_hash"] = self.prompt_hash
            if not res.ok:
                md["label_error"] = res.error or "unknown error"
                self.stat_update("budget_exhausted" if res.error == "budget_exhausted" else "request_failed")
                continue
            label = parse_label(res.text, self.scale)
            if label is None:
                md["label_error"] = "unparseable"
                md["label_raw"] = (res.text or "")[:2000]
                self.stat_update("unparseable")
                continue
            md["quality_label"] = label
            md.pop("label_error", None)
            md.pop("label_raw", None)
            self.stat_update("labeled")
            self.stat_update(f"label_{label}")
            if res.cached:
                self.stat_update("label_cached")
