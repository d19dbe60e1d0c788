"""``LLMQualityLabeler``: phi-1's educational-value labels from any OpenAI-compatible model.

phi-1 asked GPT-4 to "determine its educational value for a student whose goal is to learn basic coding
concepts" for ~100k samples of The Stack and StackOverflow, then trained a classifier on those labels.
This step asks that question (configurable) of a deterministic sample of the documents flowing through
it, through ``curate.llm.LLMClient`` (cache, retries, rate limits, budget), and writes the answer into
the document's metadata. No document is ever dropped here: failures are recorded and flow on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from loguru import logger

from curate.llm.config import LLMConfig  # pydantic only: cheap, and recipes validate `llm:` against it

BINARY_QUESTION = """Here is a code snippet:

```
{text}
```

Determine its educational value for a student whose goal is to learn basic coding concepts."""

SCALE_QUESTION = """Below is a code snippet. Evaluate whether it has high educational value and could be
useful in teaching basic coding concepts to a student, using the additive 5-point scoring system below.
Points accumulate for each criterion met:

- Add 1 point if the code is valid and shows some programming concept, even if it is boilerplate or configuration.
- Add another point if it addresses practical concepts (functions, data structures, control flow), even without explanation.
- Add a third point if it is suitable for teaching: clear names, comments or docstrings, reasonably self-contained.
- Add a fourth point if it is self-contained and highly relevant to learning, like a good textbook example or exercise.
- Add a fifth point if it is outstanding for teaching basic coding concepts: clear, well explained, instructive step by step.

```
{text}
```"""

# (scale, answer format) -> the closing instruction and the completion cap
ANSWER_FORMS = {
    ("binary", "json"): ('Answer in JSON: {"label": "high"} or {"label": "low"}.', 16),
    ("binary", "word"): ('Answer with exactly one word, "high" or "low", and nothing else.', 4),
    ("0-5", "json"): ('Answer in JSON: {"justification": "<up to 100 words>", "score": <points>}.', 320),
    ("0-5", "word"): ("Answer with the total points only: one digit from 0 to 5, and nothing else.", 4),
}
BINARY_PROMPT = BINARY_QUESTION + "\n" + ANSWER_FORMS[("binary", "word")][0]
SCALE_PROMPT = SCALE_QUESTION + "\n\n" + ANSWER_FORMS[("0-5", "word")][0]
SCALES = ("binary", "0-5")
TOP_LOGPROBS = 10
REASK_TOKENS = 64  # the one-word re-ask of an answer cut before its label: room for a sentence around it


def parse_label(text: str | None, scale: str = "binary") -> str | None:
    """The label in a model's answer, or None when it cannot be told (see ``curate.llm.answers``).

    >>> parse_label("High."), parse_label("**Answer:** low"), parse_label("Not high."), parse_label("maybe")
    ('high', 'low', 'low', None)
    >>> parse_label("Clear helper functions.\\nEducational score: 4", "0-5"), parse_label("3/5", "0-5")
    ('4', '3')
    """
    from curate.llm.answers import read_label

    return read_label(text, scale)[0]


from curate.labelers import in_sample  # noqa: E402 - one sampling rule: both labelers label the same ids


class LLMQualityLabeler(PipelineStep):
    """Label a sample of documents with an LLM's rating of their educational value.

    Sets metadata ``quality_label`` ("high"/"low", or "0".."5" with ``scale="0-5"``), ``quality_label_soft``
    (P(high), or the expected score, from the top logprobs when the endpoint returns them),
    ``label_finish_reason``, ``label_source`` (the model) and ``prompt_hash``. An answer that names no
    label gets ``label_error="unparseable"`` (``"truncated"`` when cut by max_tokens), one that names
    conflicting labels ``"ambiguous"`` (never a guess), both with ``label_raw``; a failed request gets
    its reason, and ``budget_exhausted`` comes with ``label_budget_left_usd``. Nothing is dropped.

    The answer is asked for as JSON under a strict schema (``response_format``) unless
    ``llm.structured_output="off"``; with ``"auto"`` an endpoint that rejects the schema (HTTP 400) is
    asked again for a single word.

    Example (recipe)::

        - uses: llm_quality_labeler
          with: {llm: {model: gpt-4o-mini, base_url: "${endpoint}", cache_path: "${out}/llm_cache.sqlite",
                       budget_usd: 200, extra_body: {top_k: 20}}, max_documents: 100000}

    >>> labeler = LLMQualityLabeler({"model": "gpt-4o-mini", "cache_path": "out/llm_cache.sqlite"}, sample_rate=0.01)
    >>> labeler.llm.max_tokens, labeler.request_for(Document("x = 1", "d")).response_format["type"]
    (16, 'json_schema')

    Args:
        llm: the :class:`curate.llm.LLMConfig` (or its keys as a dict). ``budget_usd`` caps the
            cumulative spend of its cache over every task and run (without a cache: per task, split).
        scale: "binary" (the paper) or "0-5" (FineWeb-Edu style).
        prompt: template with ``{text}``; default: the paper's question plus the answer instruction.
        system_prompt: optional system message.
        sample_rate: fraction of documents labeled, chosen by id hash (deterministic).
        max_documents: cap on labeled documents over all tasks (each task: ceil(max/world_size)).
        max_chars: documents are cut to this many characters in the prompt (cost control).
        mode: "online" (concurrent requests) or "batch" (OpenAI Batch API; same cache, same labels).
        batch_size: documents per client call (online default 256; batch mode default: the whole shard).
        overwrite: relabel documents that already have a ``quality_label``.
    """

    name = "🏷 LLM quality labeler"
    type = "🏷 - LABEL"

    def __init__(
        self,
        llm: LLMConfig | None = None,
        scale: str = "binary",
        prompt: str | None = None,
        system_prompt: str | None = None,
        sample_rate: float = 1.0,
        max_documents: int | None = None,
        max_chars: int = 6000,
        mode: str = "online",
        batch_size: int | None = None,
        poll_interval_s: float = 30.0,
        overwrite: bool = False,
    ):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")
        if mode not in ("online", "batch"):
            raise ValueError(f"mode must be 'online' or 'batch', not {mode!r}")
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in [0, 1], not {sample_rate}")
        config = LLMConfig.coerce(llm)
        self.scale = scale
        self.answer_format = "word" if config.structured_output == "off" else "json"
        self.llm = config.with_defaults(
            cache_path="out/llm_cache.sqlite",
            temperature=0.0,
            max_tokens=ANSWER_FORMS[(scale, self.answer_format)][1],
        )
        self.custom_prompt = prompt
        if prompt is not None and "{text}" not in prompt:
            raise ValueError("prompt must contain the placeholder {text}")
        self.system_prompt = system_prompt
        self.sample_rate = sample_rate
        self.max_documents = max_documents
        self.max_chars = max_chars
        self.mode = mode
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.overwrite = overwrite
        self._client = None

    @property
    def prompt(self) -> str:
        if self.custom_prompt is not None:
            return self.custom_prompt
        question = BINARY_QUESTION if self.scale == "binary" else SCALE_QUESTION
        return question + "\n\n" + ANSWER_FORMS[(self.scale, self.answer_format)][0]

    @property
    def prompt_hash(self) -> str:
        blob = f"{self.scale}\n{self.answer_format}\n{self.system_prompt or ''}\n{self.prompt}"
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def make_client(self, world_size: int = 1):
        """The ``LLMClient`` this step uses. With a cache the budget caps the cache's cumulative spend
        (shared by every task); without one each of ``world_size`` tasks gets an equal share."""
        from curate.llm import LLMClient

        config = self.llm
        if config.cache_path is None and config.budget_usd is not None:
            config = config.model_copy(update={"budget_usd": config.budget_usd / max(1, world_size)})
        return LLMClient(config)

    def request_for(self, doc: Document):
        """The LLMRequest that labels ``doc`` (its id travels in metadata, outside the cache key)."""
        from curate.llm import LLMRequest
        from curate.llm.answers import label_response_format

        messages = [{"role": "user", "content": self.prompt.replace("{text}", doc.text[: self.max_chars])}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        cfg = self.llm
        if self.answer_format == "json":
            max_tokens, response_format = cfg.max_tokens, label_response_format(self.scale)
        else:  # asked again for a word after a schema refusal: a word's cap, not the JSON one
            max_tokens, response_format = min(cfg.max_tokens, ANSWER_FORMS[(self.scale, "word")][1] * 4), None
        return LLMRequest(messages=messages, temperature=cfg.temperature, max_tokens=max_tokens, seed=cfg.seed,
                          top_p=cfg.top_p, response_format=response_format,
                          top_logprobs=TOP_LOGPROBS if cfg.logprobs else None, metadata={"id": doc.id})  # fmt: skip

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
        for name in ("extra_body_refused", "logprobs_missing"):
            if self._client.usage.get(name):
                self.stat_update(f"fallback_{name}", value=self._client.usage[name])
        u, b = self._client.usage, self._client.budget_summary()
        logger.info(
            f"LLMQualityLabeler rank {rank}: {u['requests']} labels requested, {u['cached']} cached, "
            f"{u['failed']} failed, {u['budget_exhausted']} over budget, {u['retries']} retries, "
            f"${b['spent_this_run_usd']:.4f} this run, ${b['spent_total_usd']:.4f} in total on this cache"
        )

    def _ask(self, docs: list[Document]) -> list:
        requests = [self.request_for(d) for d in docs]
        if self.mode == "batch":
            return self._client.run_batch(requests, poll_interval_s=self.poll_interval_s)
        return self._client.run(requests)

    def _label(self, docs: list[Document]) -> None:
        with self.track_time(unit="batch"):
            results = self._ask(docs)
            refused = [i for i, r in enumerate(results) if _schema_refused(r)]
            if refused and self.answer_format == "json" and self.llm.structured_output == "auto":
                logger.warning("LLMQualityLabeler: the endpoint rejects response_format; asking for one word")
                self.stat_update("fallback_schema_refused", value=len(refused))
                self.answer_format = "word"
                self.llm = self.llm.model_copy(update={"logprobs": False})
                for i, res in zip(refused, self._ask([docs[i] for i in refused]), strict=True):
                    results[i] = res
            asked_json = [self.answer_format == "json"] * len(docs)
            self._reask_truncated(docs, results, asked_json)
        for doc, res, json_asked in zip(docs, results, asked_json, strict=True):
            self._record(doc, res, json_asked)

    def _reask_truncated(self, docs: list[Document], results: list, asked_json: list[bool]) -> None:
        """Answers cut at max_tokens before naming a label (a server that ignored the schema writes prose)
        are asked again once, for one word, with ``REASK_TOKENS`` to spare."""
        from curate.llm.answers import read_label

        cut = [i for i, r in enumerate(results)
               if r.ok and r.finish_reason == "length" and read_label(r.text, self.scale)[0] is None]  # fmt: skip
        if not cut:
            return
        self.stat_update("fallback_truncated_reasked", value=len(cut))
        fmt, self.answer_format = self.answer_format, "word"
        try:
            requests = [dataclasses.replace(self.request_for(docs[i]), max_tokens=REASK_TOKENS) for i in cut]
            again = self._client.run(requests)
        finally:
            self.answer_format = fmt
        for i, res in zip(cut, again, strict=True):
            results[i], asked_json[i] = res, False

    def _record(self, doc: Document, res, json_asked: bool = True) -> None:
        from curate.llm.answers import read_label_how, soft_label

        md = doc.metadata
        md["label_source"] = self.llm.model
        md["prompt_hash"] = self.prompt_hash
        for stale in ("label_error", "label_raw", "quality_label_soft", "label_budget_left_usd", "label_parse"):
            md.pop(stale, None)
        self.stat_update("requests")
        if not res.ok:
            md["label_error"] = res.error or "unknown error"
            if res.error == "budget_exhausted":
                md["label_budget_left_usd"] = res.budget_left_usd
            self.stat_update("budget_exhausted" if res.error == "budget_exhausted" else "request_failed")
            self.stat_update("failed")
            return
        md["label_finish_reason"] = res.finish_reason
        label, problem, how = read_label_how(res.text, self.scale)
        if label is None:
            md["label_error"] = (
                "truncated" if problem == "unparseable" and res.finish_reason == "length" else problem
            )
            md["label_raw"] = (res.text or "")[:2000]
            self.stat_update(md["label_error"])
            self.stat_update("failed")
            return
        # parsed: the answer is what was asked for; fallback_parsed: read out of what the server sent instead
        md["label_parse"] = how
        self.stat_update("parsed" if how == "json" or not json_asked else "fallback_parsed")
        if json_asked and how != "json":
            self.stat_update("fallback_schema_ignored")
        md["quality_label"] = label
        soft = soft_label(res.logprobs, label, self.scale)
        if soft is not None:
            md["quality_label_soft"] = round(soft, 6)
        elif self.llm.logprobs and not res.cached:
            self.stat_update("fallback_hard_label")  # no logprobs from the server: the hard label stands
        self.stat_update("labeled")
        self.stat_update(f"label_{label}")
        if res.cached:
            self.stat_update("label_cached")


def _schema_refused(result) -> bool:
    """A 400 naming response_format: the endpoint has no structured output (older vLLM, some proxies)."""
    error = (result.error or "").lower()
    return not result.ok and "400" in error and "response_format" in error
