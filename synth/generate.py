"""Generate synthetic textbooks and exercises on the shared LLM client, then validate and deduplicate.

One call runs the whole synth stage into a shard directory::

    prompts (seeded grid) -> LLMClient (cache, resume, budget, Batch API) -> parse + validate
    (+ sandbox) -> dedup -> OUT/data/*.parquet, OUT/excluded/{validate,dedup}/, manifest.json

Resume: every answer is committed to the client's sqlite cache (``OUT/.cache/llm.sqlite`` by default)
the moment it arrives, so a run killed at any point (even ``kill -9``) and started again re-sends
nothing that completed; the post-generation stage is deterministic and rebuilt from the cache, so the
output equals an uninterrupted run's. A run stopped by its budget leaves the unanswered prompts
``pending`` (counted in the summary); raise the budget and run again to finish them.

Provenance per row: ``constraints`` (the constraint tuple), ``model``, ``prompt_hash`` columns; in
``extra``: ``system_fingerprint``, ``request_hash`` (the client's cache key), ``prompt_tokens``,
``completion_tokens``, ``finish_reason``, ``prompt_index``, ``seed``.
"""

from __future__ import annotations

import inspect
import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from datatrove.data import Document

from curate.llm.config import LLMConfig
from synth.prompts import ExercisePromptGenerator, Prompt, TextbookPromptGenerator

KINDS = {
    "textbooks": {"generator": TextbookPromptGenerator, "max_tokens": 1500, "source": "synth-textbooks"},
    "exercises": {"generator": ExercisePromptGenerator, "max_tokens": 900, "source": "synth-exercises"},
}


def make_prompts(
    kind: str, n: int, seed: int = 0, start: int = 0, taxonomies: dict | None = None
) -> list[Prompt]:
    """The ``n`` prompts of a run (``taxonomies`` are generator keyword args, e.g. ``{"topics": "my.yaml"}``).

    Example:
        >>> len(make_prompts("exercises", 3, seed=1))
        3
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
    return KINDS[kind]["generator"](seed=seed, **(taxonomies or {})).generate(n, start)


def build_requests(
    prompts: list[Prompt], temperature: float = 0.8, max_tokens: int = 1024, seed: int | None = 0
):
    """One chat request per prompt (``metadata`` carries the prompt id; it is not part of the cache key)."""
    from curate.llm import LLMRequest

    return [
        LLMRequest(
            messages=p.messages,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            metadata={"prompt_id": p.id},
        )
        for p in prompts
    ]


def write_dry_run(prompts: list[Prompt], requests: list, client, output_dir: str | Path) -> dict:
    """Write ``prompts.jsonl``, the Batch API request files (``batch/``) and ``cost_estimate.json``; send nothing.

    Example:
        >>> from curate.llm import LLMClient
        >>> ps = make_prompts("exercises", 2)
        >>> write_dry_run(ps, build_requests(ps), LLMClient(cache_path=None), "/tmp/synth_dry")["prompts"]
        2
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "prompts.jsonl", "w", encoding="utf-8") as f:
        for p, r in zip(prompts, requests, strict=True):
            row = {
                "id": p.id,
                "index": p.index,
                "prompt_hash": p.prompt_hash,
                "request_hash": client.key_for(r),
                "constraints": p.constraints,
                "messages": p.messages,
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    batch_files = client.write_batch_files(requests, out / "batch")
    estimate = client.estimate_cost(requests)
    summary = {
        "dry_run": True,
        "prompts": len(prompts),
        "prompts_file": str(out / "prompts.jsonl"),
        "batch_files": [str(p) for p in batch_files],
        "cost_estimate": estimate,
    }
    (out / "cost_estimate.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _document(kind: str, prompt: Prompt, result, seed: int, keep_cut: bool = False) -> Document:
    usage = result.usage or {}
    meta: dict[str, Any] = {
        "source": KINDS[kind]["source"],
        "model": result.model,
        "prompt_hash": prompt.prompt_hash,
        "constraints": dict(prompt.constraints),
        "system_fingerprint": result.system_fingerprint,
        "request_hash": result.key,
        "prompt_tokens": int(usage.get("prompt_tokens") or 0),
        "completion_tokens": int(usage.get("completion_tokens") or 0),
        "finish_reason": result.finish_reason,
        "prompt_index": prompt.index,
        "seed": seed,
    }
    if not result.ok:
        meta["llm_error"] = result.error or "request failed"
    text = result.text or ""
    if keep_cut and result.finish_reason == "length":  # cut at max_tokens: keep the blocks it finished
        from synth.parse import CUT, cut_to_complete_blocks

        kept = cut_to_complete_blocks(text)
        if kept is not None:
            text, meta["finish_reason"], meta["cut_chars"] = kept, CUT, len(result.text) - len(kept)
    return Document(text=text, id=prompt.id, metadata=meta)


def _validator(kind: str, execute: bool, workers: int, timeout_s: float, memory_mb: int):
    from synth.validate import ExerciseFilter, TextbookFilter

    if kind == "exercises":
        return ExerciseFilter(timeout_s=timeout_s, memory_mb=memory_mb, workers=workers)
    return TextbookFilter(execute=execute, timeout_s=timeout_s, memory_mb=memory_mb, workers=workers)


def postprocess(
    kind: str,
    docs: list[Document],
    output_dir: str | Path,
    validate: bool = True,
    dedup: bool = True,
    execute: bool = False,
    workers: int = 2,
    sandbox_timeout_s: float = 10.0,
    memory_mb: int = 1024,
    near_threshold: float = 0.8,
    batch_size: int = 256,
) -> dict:
    """Validate and deduplicate generated documents and write the shard directory (data + exclusions).

    Returns ``{"kept", "rejected": {reason: n}, "duplicates": {reason: n}}``. Deterministic: the same
    documents always give the same shards.
    """
    from curate.shards import ExclusionWriter, ShardWriter
    from synth.dedup import SynthDeduplicator

    out = Path(output_dir)
    for sub in ("data", "excluded"):  # a rerun rewrites the whole result, so stale shards must go
        shutil.rmtree(out / sub, ignore_errors=True)
    rejected: Counter = Counter()
    valid: list[Document] = []
    with ExclusionWriter(str(out / "excluded" / "validate"), "validate") as excl:
        validator = _validator(kind, execute, workers, sandbox_timeout_s, memory_mb) if validate else None
        for b in range(0, len(docs), batch_size):
            batch = docs[b : b + batch_size]
            if validator is not None:
                verdicts = validator.filter_batch(batch)
            else:  # unvalidated, but a failed request is still no generation
                verdicts = [(False, "llm_error") if d.metadata.get("llm_error") else True for d in batch]
            for doc, verdict in zip(batch, verdicts, strict=True):
                if verdict is True:
                    valid.append(doc)
                else:
                    reason = verdict[1] if isinstance(verdict, tuple) else "rejected"
                    doc.metadata["filter_reason"] = reason
                    rejected[reason] += 1
                    excl.write(doc, 0)
    duplicates: Counter = Counter()
    kept, near_used = valid, False
    if dedup and valid:
        deduper = SynthDeduplicator(threshold=near_threshold)
        kept, dropped = deduper.split(valid)
        near_used = deduper.near_dedup_used
        with ExclusionWriter(str(out / "excluded" / "dedup"), "dedup") as excl:
            for doc in dropped:
                duplicates[doc.metadata["filter_reason"]] += 1
                excl.write(doc, 0)
    (out / "data").mkdir(parents=True, exist_ok=True)
    with ShardWriter(str(out / "data")) as writer:
        for doc in kept:
            writer.write(doc, 0)
    return {
        "kept": len(kept),
        "rejected": dict(sorted(rejected.items())),
        "duplicates": dict(sorted(duplicates.items())),
        "near_dedup": near_used,
    }


def _llm_config(llm, kind: str, out: Path, dry_run: bool) -> LLMConfig:
    """The run's LLMConfig: a real run always has a cache (its resume point and spend ledger)."""
    config = LLMConfig.coerce(llm)
    if config.cache_path is None:
        config = config.model_copy(
            update={"cache_path": None if dry_run else str(out / ".cache" / "llm.sqlite")}
        )
    return config.with_defaults(temperature=0.8, max_tokens=KINDS[kind]["max_tokens"], seed=0)


def answer_counts(kind: str, docs: list[Document], client=None) -> dict:
    """The parse outcomes of a run's answers for its manifest: ``requests`` = ``parsed`` +
    ``fallback_parsed`` + ``failed``, the reasons of each, and the client's server fallbacks.

    Example:
        >>> doc = Document("### Solution\\n```python\\ndef f():\\n    return 1\\n```", "d", {})
        >>> answer_counts("exercises", [doc])["failed_reasons"]
        {'no_tests': 1}
    """
    from synth.parse import parse_outcome

    counts: Counter = Counter()
    reasons: dict[str, Counter] = {"fallback_parsed": Counter(), "failed": Counter()}
    for doc in docs:
        md = doc.metadata
        outcome, why = parse_outcome(kind, doc.text, md.get("finish_reason"),
                                     (md.get("constraints") or {}).get("function_name"), md.get("llm_error"))  # fmt: skip
        counts[outcome] += 1
        if why:
            reasons[outcome][why] += 1
    usage = getattr(client, "usage", {}) or {}
    return {
        "requests": len(docs),
        **{k: counts[k] for k in ("parsed", "fallback_parsed", "failed")},
        "fallback_reasons": dict(sorted(reasons["fallback_parsed"].items())),
        "failed_reasons": dict(sorted(reasons["failed"].items())),
        "server_fallbacks": {k: usage.get(k, 0) for k in ("extra_body_refused", "logprobs_missing")},
    }


def _generate_documents(kind, prompts, requests, client, chunk_size, batch_api, poll_interval_s, seed,
                        keep_cut=False):
    """Send the requests chunk by chunk; -> (documents, prompts left pending by the budget, LLM counts).
    Every chunk is tried: a request that does not fit the budget does not stop smaller ones."""
    docs: list[Document] = []
    pending = 0
    llm: Counter = Counter()
    for b in range(0, len(prompts), chunk_size):
        chunk_p, chunk_r = prompts[b : b + chunk_size], requests[b : b + chunk_size]
        results = (
            client.run_batch(chunk_r, poll_interval_s=poll_interval_s) if batch_api else client.run(chunk_r)
        )
        for p, r in zip(chunk_p, results, strict=True):
            if r.error == "budget_exhausted":
                pending += 1  # not an answer: left for a rerun with more budget
                continue
            llm["cached" if r.cached else "sent"] += 1
            llm["prompt_tokens"] += int((r.usage or {}).get("prompt_tokens") or 0)
            llm["completion_tokens"] += int((r.usage or {}).get("completion_tokens") or 0)
            docs.append(_document(kind, p, r, seed, keep_cut))
    return docs, pending, llm


def generate_synth(
    kind: str,
    output_dir: str | Path,
    n: int,
    seed: int = 0,
    start: int = 0,
    llm: LLMConfig | None = None,
    batch_api: bool = False,
    poll_interval_s: float = 30.0,
    dry_run: bool = False,
    chunk_size: int = 512,
    validate: bool = True,
    dedup: bool = True,
    execute: bool = False,
    workers: int = 2,
    sandbox_timeout_s: float = 10.0,
    near_threshold: float = 0.8,
    taxonomies: dict | None = None,
    keep_cut: bool = False,
) -> dict:
    """Run a synth stage: ``n`` prompts -> LLM -> validate -> dedup -> shards in ``output_dir``.

    Args:
        kind: ``"textbooks"`` or ``"exercises"``.
        n, seed, start: prompts ``start .. start+n-1`` of the seeded grid.
        llm: the :class:`curate.llm.LLMConfig` (or its keys): endpoint, limits, budget (a cap on the
            cache's cumulative spend), ``extra_body`` (vLLM's ``top_k``...). Defaults here: temperature
            0.8, the kind's max_tokens, request seed 0, cache ``output_dir/.cache/llm.sqlite``.
        batch_api: use the OpenAI Batch API instead of online requests.
        dry_run: write prompts, Batch API files and a cost estimate only (see :func:`write_dry_run`).
        execute: textbooks only: also run each passage's code in the sandbox.
        taxonomies: keyword args for the prompt generator (your own taxonomy files).
        keep_cut: an answer cut at max_tokens keeps the code blocks it finished (finish_reason
            ``length_cut``, counted ``fallback_parsed: cut_at_max_tokens``) instead of being ``truncated``:
            for small local models and short budgets.

    Returns a summary whose counts add up: ``prompts == kept + sum(rejected) + sum(duplicates) + pending``.

    Example:
        >>> generate_synth("exercises", "out/ex", n=4, dry_run=True)["prompts"]  # doctest: +SKIP
        4
    """
    t0 = time.time()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = _llm_config(llm, kind, out, dry_run)
    prompts = make_prompts(kind, n, seed=seed, start=start, taxonomies=taxonomies)
    requests = build_requests(
        prompts, temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed
    )
    from curate.llm import LLMClient

    client = LLMClient(config)
    if dry_run:
        return {"kind": kind, **write_dry_run(prompts, requests, client, out)}

    if batch_api:  # one submission for everything: a batch takes hours, chunks would run one after another
        chunk_size = max(1, len(prompts))
    docs, pending, llm = _generate_documents(kind, prompts, requests, client, chunk_size, batch_api,
                                             poll_interval_s, seed, keep_cut)  # fmt: skip
    post = postprocess(
        kind,
        docs,
        out,
        validate=validate,
        dedup=dedup,
        execute=execute,
        workers=workers,
        sandbox_timeout_s=sandbox_timeout_s,
        near_threshold=near_threshold,
    )
    summary = {
        "kind": kind,
        "output_dir": str(out),
        "prompts": len(prompts),
        "generated": len(docs),
        "pending": pending,
        **post,
        "answers": answer_counts(kind, docs, client),
        "llm": {
            **dict(llm),
            "cost_usd": round(client.usage.get("cost_usd", 0.0), 6),
            "model": config.model,
            **client.budget_summary(),
        },
        "seed": seed,
        "start": start,
    }
    from curate.manifest import write_manifest

    write_manifest(
        out, stage=f"synth-{kind}", wall_time_s=round(time.time() - t0, 3), extra={"synth": summary}
    )
    return summary


def generate_textbooks(output_dir: str, n: int, **kwargs) -> dict:
    """Recipe job ``synth_textbooks``: :func:`generate_synth` with ``kind="textbooks"``."""
    return generate_synth("textbooks", output_dir, n, **kwargs)


def generate_exercises(output_dir: str, n: int, **kwargs) -> dict:
    """Recipe job ``synth_exercises``: :func:`generate_synth` with ``kind="exercises"``."""
    return generate_synth("exercises", output_dir, n, **kwargs)


def dry_run(kind: str, output_dir: str, n: int, **kwargs) -> dict:
    """CLI hook for ``--dry-run``: prompts, Batch API request file and cost estimate, nothing sent."""
    return generate_synth(kind, output_dir, n, **{**kwargs, "dry_run": True})


def _share_signature(wrapper, drop: tuple[str, ...]) -> None:
    # the recipe validator reads signatures: give the job wrappers generate_synth's exact parameters
    sig = inspect.signature(generate_synth)
    wrapper.__signature__ = sig.replace(parameters=[p for n, p in sig.parameters.items() if n not in drop])
    wrapper.__annotations__ = {k: v for k, v in generate_synth.__annotations__.items() if k not in drop}


_share_signature(generate_textbooks, ("kind",))
_share_signature(generate_exercises, ("kind",))
_share_signature(dry_run, ("dry_run",))
