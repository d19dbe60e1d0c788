"""Synthesis as datatrove stages: the prompt grid sharded by rank, one generation step per task with
its own cache, validation as a filter step, and a reduce job that deduplicates across tasks.

    SynthGenerator (prompts of this rank -> LLM, backend "client" or "inference_runner")
      -> ExerciseFilter / TextbookFilter (validation by execution; rejections -> excluded/)
      -> ShardWriter                        ... on any datatrove executor (local, Ray, Slurm)
    dedup_shards (job): every task's shards -> exact/AST/near dedup -> the final shard directory

Rank ``r`` of ``N`` generates prompts ``start + r*n//N .. start + (r+1)*n//N - 1`` of the seeded grid:
the same prompts, requests and ids whichever executor or backend runs the stage. Each task writes
its answers and spend to its own files under ``cache_dir`` (any fsspec path) and reads everyone's, so
a rerun - on any number of tasks, on any machine - pays nothing for an answered request. The budget
is cut into per-rank slices that need no lock (see :mod:`curate.llm.task_cache`). A prompt the budget
could not pay for leaves as an exclusion with reason ``budget_exhausted``; raising ``budget_usd``
changes the stage's fingerprint, so the recipe reruns it and pays only for what is still unanswered.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any, Literal

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from curate.llm.config import LLMConfig
from curate.llm.types import LLMResult
from synth.generate import KINDS, _document, build_requests, make_prompts

BACKENDS = ("client", "inference_runner")


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """The half-open range of prompt positions (0..n-1) rank ``rank`` generates.

    >>> [shard_bounds(10, r, 4) for r in range(4)]
    [(0, 2), (2, 5), (5, 7), (7, 10)]
    """
    return rank * n // world_size, (rank + 1) * n // world_size


class SynthGenerator(PipelineStep):
    """Generate this task's share of a synth stage: its slice of the prompt grid -> LLM -> documents.

    The first step of a pipeline (it reads no input). It yields one document per prompt, in prompt
    order: the generation, or - for a failed request - an empty text with ``metadata["llm_error"]``
    (``"budget_exhausted"`` for a prompt the budget did not cover), so the validation step records
    every prompt as kept or excluded with a reason.

    Args:
        kind: ``"textbooks"`` or ``"exercises"``.
        n, seed, start: prompts ``start .. start+n-1`` of the seeded grid (split over the tasks).
        cache_dir: folder (local path or fsspec URL such as ``s3://bucket/cache``) of the task caches.
        llm: the :class:`~curate.llm.LLMConfig`; ``budget_usd`` caps the total spend over every run.
        backend: ``"client"`` (our LLMClient: retries, rate limits, any endpoint) or
            ``"inference_runner"`` (datatrove's InferenceRunner: a vLLM/SGLang server per task, or
            ``server_type: endpoint`` for ``llm.base_url``).
        inference: extra :class:`datatrove.pipeline.inference.run_inference.InferenceConfig` fields for
            the inference_runner backend (``server_type``, ``tp``, ``model_kwargs``, ...).
        chunk_size: prompts sent together by the client backend.
        taxonomies: keyword args of the prompt generator.
        run_id: the id of this run of the stage; by default a new one per construction (the driver
            builds the pipeline once per run and every task unpickles the same id).

    Example:
        >>> step = SynthGenerator("exercises", n=8, cache_dir="/tmp/synth_cache", llm={"budget_usd": 1})
        >>> step.requests_of(step.prompts())[0].max_tokens
        900
    """

    name = "✍️ Synth generation"
    type = "📖 - READER"

    def __init__(
        self,
        kind: Literal["textbooks", "exercises"],
        n: int,
        cache_dir: str,
        seed: int = 0,
        start: int = 0,
        llm: LLMConfig | dict | None = None,
        backend: Literal["client", "inference_runner"] = "client",
        inference: dict[str, Any] | None = None,
        chunk_size: int = 256,
        taxonomies: dict | None = None,
        run_id: str | None = None,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, not {backend!r}")
        from curate.llm.task_cache import new_run_id

        self.kind, self.n, self.seed, self.start = kind, n, seed, start
        self.cache_dir, self.backend, self.inference = str(cache_dir), backend, dict(inference or {})
        self.chunk_size, self.taxonomies = chunk_size, taxonomies
        self.llm = LLMConfig.coerce(llm).with_defaults(
            temperature=0.8, max_tokens=KINDS[kind]["max_tokens"], seed=0
        )
        if self.llm.cache_path is not None:
            raise ValueError("llm.cache_path: a synth stage keeps its caches in cache_dir (one per task)")
        self.run_id = run_id or new_run_id()

    def prompts(self):
        return make_prompts(self.kind, self.n, seed=self.seed, start=self.start, taxonomies=self.taxonomies)

    def requests_of(self, prompts):
        cfg = self.llm
        return build_requests(prompts, temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=cfg.seed)

    def _unanswered(self):
        """-> (a key-only client, every request, the requests no cache under ``cache_dir`` answered)."""
        from curate.llm import LLMClient
        from curate.llm.task_cache import read_ledger

        requests = self.requests_of(self.prompts())
        probe = LLMClient(self.llm.model_copy(update={"budget_usd": None}))
        keys = [probe.key_for(r) for r in requests]
        answered = read_ledger(self.cache_dir, wanted=keys).locations
        return probe, requests, [r for r, k in zip(requests, keys, strict=True) if k not in answered]

    def estimate_cost(self, documents=None) -> dict:
        """Dry run: the cost estimate of every prompt no cache answered (sends nothing)."""
        probe, requests, todo = self._unanswered()
        return {**probe.estimate_cost(todo), "cached": len(requests) - len(todo), "prompts": len(requests)}

    def write_batch_files(self, documents, folder: str) -> list:
        """Dry run: the Batch API request files of the unanswered prompts."""
        probe, _, todo = self._unanswered()
        return probe.write_batch_files(todo, folder)

    def _allowance(self, probe, requests, keys, snapshot, rank: int, world_size: int) -> float | None:
        """This attempt's share of the budget: the rank's slice of what earlier runs left (every rank's
        unanswered requests funded in turns), less what its earlier attempts in this run were charged."""
        from curate.llm.task_cache import budget_slices

        if self.llm.budget_usd is None:
            return None
        costs = []
        for q in range(world_size):
            lo, hi = shard_bounds(len(requests), q, world_size)
            todo = [i for i in range(lo, hi) if not snapshot.answered_before(keys[i], self.run_id)]
            costs.append([probe.worst_case_usd(requests[i]) for i in todo])
        remaining = self.llm.budget_usd - snapshot.charged(exclude_run=self.run_id)
        share = budget_slices(remaining, costs)[rank]
        return max(0.0, share - snapshot.charged_to(self.run_id, rank))

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        from curate.llm import LLMClient
        from curate.llm.task_cache import TaskCache, read_ledger

        prompts = self.prompts()
        requests = self.requests_of(prompts)
        probe = LLMClient(self.llm.model_copy(update={"budget_usd": None}))
        keys = [probe.key_for(r) for r in requests]
        snapshot = read_ledger(self.cache_dir, wanted=keys)
        allowance = self._allowance(probe, requests, keys, snapshot, rank, world_size)
        lo, hi = shard_bounds(len(prompts), rank, world_size)
        cache = TaskCache(self.cache_dir, self.run_id, rank, snapshot=snapshot)
        self.stat_update("prompts", value=hi - lo)
        generate = self._client_results if self.backend == "client" else self._runner_results
        clean = False
        try:
            for prompt, result in generate(
                prompts[lo:hi], requests[lo:hi], keys[lo:hi], cache, allowance, rank
            ):
                self.stat_update(
                    "cached" if result.cached else ("sent" if result.ok else result.error or "failed")
                )
                with self.track_time():
                    yield _document(self.kind, prompt, result, self.seed)
            clean = True
        finally:
            # a clean end (or a consumer that stopped between chunks) has nothing in flight: the
            # attempt settles and its unspent claim goes back; an error mid-request keeps it charged
            cache.close(settle=clean or self._between_chunks)

    _between_chunks = True

    def _client_results(self, prompts, requests, keys, cache, allowance, rank):
        from curate.llm import LLMClient

        client = LLMClient(self.llm.model_copy(update={"budget_usd": allowance}), cache=cache)
        for b in range(0, len(prompts), self.chunk_size):
            self._between_chunks = False
            results = client.run(requests[b : b + self.chunk_size])
            self._between_chunks = True
            yield from zip(prompts[b : b + self.chunk_size], results, strict=True)

    def _runner_results(self, prompts, requests, keys, cache, allowance, rank):
        """The same requests through datatrove's InferenceRunner; answers and spend go to the same cache."""
        from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
        from datatrove.pipeline.writers import JsonlWriter

        ledger = RolloutLedger(self.llm, cache, requests, keys, allowance)
        config = InferenceConfig(**{**self._inference_config(), **self.inference})
        self._between_chunks = False
        with tempfile.TemporaryDirectory() as tmp:
            writer = JsonlWriter(tmp, output_filename="${rank}.jsonl", compression=None)
            runner = InferenceRunner(synth_rollout, config, writer, shared_context={"ledger": ledger})
            runner.run([Document(text="", id=p.id, metadata={"i": i}) for i, p in enumerate(prompts)], rank)
            rows = {}
            for path in Path(tmp).glob("*.jsonl"):
                for line in path.read_text(encoding="utf-8").splitlines():
                    doc = json.loads(line)
                    rows[doc["id"]] = (doc["metadata"].get("rollout_results") or [{}])[0]
        self._between_chunks = True
        for p, k in zip(prompts, keys, strict=True):
            yield p, ledger.result(k, rows.get(p.id) or {"error": "no rollout result"})

    def _inference_config(self) -> dict:
        import os

        url = self.llm.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        # datatrove appends /v1/... itself for plain-http local endpoints, and uses the openai SDK (which
        # wants the /v1 base) for every other URL
        local = url.startswith(("http://127.0.0.1", "http://localhost"))
        return {
            "server_type": "endpoint",
            "model_name_or_path": self.llm.model,
            "endpoint_url": url.rstrip("/").removesuffix("/v1") if local else url,
            "api_key": os.environ.get(self.llm.api_key_env),
            "max_concurrent_generations": self.llm.max_concurrency,
            "request_timeout": self.llm.timeout_s,
            "metric_interval": 3600,
        }


class RolloutLedger:
    """The cache and budget side of an InferenceRunner rollout: answer from the task caches when
    possible, else reserve the worst case, send, and record the answer and its cost."""

    def __init__(self, llm: LLMConfig, cache, requests, keys, allowance: float | None):
        from curate.llm import LLMClient

        self.client = LLMClient(llm.model_copy(update={"budget_usd": allowance}))  # keys and prices only
        self.cache, self.requests, self.keys, self.allowance = cache, requests, keys, allowance
        self.model = llm.model

    async def rollout(self, i: int, generate) -> dict:
        import asyncio

        key, req = self.keys[i], self.client._prepare(self.requests[i])
        row = self.cache.get_many([key]).get(key)
        if row is not None:
            return {**row, "cached": True}
        token, usd = uuid.uuid4().hex, self.client.worst_case_usd(req)
        while self.allowance is not None:
            ok, left, held = self.cache.reserve(token, usd, self.allowance)
            if ok:
                break
            if held <= 1e-12 or usd > left + held + 1e-12:
                return {"key": key, "error": "budget_exhausted"}
            await asyncio.sleep(0.05)  # requests in flight may still free enough
        payload = req.body(self.model)
        payload.pop("model")
        try:
            answer = await generate(payload)
        except Exception as e:  # noqa: BLE001 - recorded on the document, never lost
            self.cache.settle(token)
            return {"key": key, "error": self.client._redact(f"{type(e).__name__}: {e}")[:500]}
        return self._record(key, req, token, answer)

    def _record(self, key: str, req, token: str, answer) -> dict:
        from curate.llm.pricing import cost_usd

        usage = answer.usage or {}
        pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        usd = cost_usd(self.client._price(self.model), pt, ct)
        spend = {"key": key, "prompt_tokens": pt, "completion_tokens": ct, "cost_usd": usd,
                 "source": "inference_runner"}  # fmt: skip
        row = {"key": key, "model": self.model, "text": answer.text, "finish_reason": answer.finish_reason,
               "prompt_tokens": pt, "completion_tokens": ct, "cost_usd": usd, "system_fingerprint": None,
               "source": "inference_runner", "logprobs": None}  # fmt: skip
        self.cache.settle(token, spend, row)
        return {**row, "cached": False}

    def result(self, key: str, row: dict) -> LLMResult:
        if row.get("error") or row.get("text") is None:
            return LLMResult(key=key, ok=False, error=row.get("error") or "no answer", model=self.model)
        result = self.client._result_from_row({**row, "key": key}, cached=bool(row.get("cached")))
        return result


async def synth_rollout(document: Document, generate, ledger: RolloutLedger) -> dict:
    """InferenceRunner rollout of one synth prompt (``document.metadata["i"]`` indexes the task's requests)."""
    return await ledger.rollout(document.metadata["i"], generate)


def dedup_shards(input_dir: str, output_dir: str, near_threshold: float = 0.8) -> dict:
    """Reduce job: deduplicate every task's validated generations together and write the final shards.

    Documents are taken in prompt order (``prompt_index``), as the one-process job does, so the first
    occurrence is kept whichever task generated it; every duplicate goes to ``excluded/dedup`` with
    its reason. The summary adds the validation stage's exclusions, so ``prompts == kept +
    sum(rejected) + sum(duplicates)``.
    """
    import shutil

    from curate.manifest import write_manifest
    from curate.shards import EXCLUDED_DIR, ExclusionWriter, ShardReader, ShardWriter
    from synth.dedup import SynthDeduplicator

    out = Path(output_dir)
    for sub in ("data", EXCLUDED_DIR):
        shutil.rmtree(out / sub, ignore_errors=True)
    has_rows = any((Path(input_dir) / "data").glob("*.parquet"))  # every prompt may have been excluded
    docs = (
        sorted(ShardReader(str(input_dir)).run(), key=lambda d: d.metadata.get("prompt_index", 0))
        if has_rows
        else []
    )
    deduper = SynthDeduplicator(threshold=near_threshold)
    kept, dropped = deduper.split(docs) if docs else ([], [])
    duplicates: dict[str, int] = {}
    with ExclusionWriter(str(out / EXCLUDED_DIR / "dedup"), "dedup") as excl:
        for doc in dropped:
            reason = doc.metadata["filter_reason"]
            duplicates[reason] = duplicates.get(reason, 0) + 1
            excl.write(doc, 0)
    (out / "data").mkdir(parents=True, exist_ok=True)
    with ShardWriter(str(out / "data")) as writer:
        for doc in kept:
            writer.write(doc, 0)
    rejected = _excluded_counts(Path(input_dir) / EXCLUDED_DIR)
    summary = {"kept": len(kept), "rejected": rejected, "duplicates": dict(sorted(duplicates.items())),
               "prompts": len(kept) + sum(rejected.values()) + len(dropped)}  # fmt: skip
    write_manifest(out, stage="synth-dedup", inputs=[str(input_dir)], extra={"synth": summary})
    return summary


def _excluded_counts(folder: Path) -> dict[str, int]:
    """``{filter_reason: rows}`` over an ``excluded/`` folder of shard directories."""
    import pyarrow.dataset as ds

    counts: dict[str, int] = {}
    files = sorted(str(p) for p in folder.rglob("*.parquet")) if folder.is_dir() else []
    if not files:
        return counts
    table = ds.dataset(files, format="parquet").to_table(columns=["filter_reason"])
    for reason in table.column("filter_reason").to_pylist():
        counts[reason or "rejected"] = counts.get(reason or "rejected", 0) + 1
    return dict(sorted(counts.items()))
