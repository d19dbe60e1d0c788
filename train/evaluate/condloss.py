"""Conditional loss of benchmark solutions given their prompts: a metric that moves at proxy scale.

pass@1 of a small proxy model is 0 on HumanEval and MBPP, so it cannot tell two datasets apart. The
negative log-likelihood of the canonical solution given the prompt can: it falls smoothly as a model
learns to write code like the benchmark's. Each item is scored as ``[EOS] + prompt + solution``
(training documents follow an EOS, so that is the context a model knows), with the prompt and the
solution tokenized separately so the scored tokens are exactly the solution's; only solution tokens
count. Reported per benchmark:

* ``bits_per_char`` - total solution bits / total solution characters (tokenizer-independent: models
  with different tokenizers compare directly);
* ``bits_per_token`` - total solution bits / total solution tokens;
* with a decontam ``split.json``: the same on the similar and non-similar problems of each tau.

Items longer than ``max_len`` lose prompt tokens from the left; a solution that alone is too long is
cut and only the kept part (and its characters) is scored; ``truncated`` counts both.

Example:
    >>> from train.evaluate.condloss import benchmark_items
    >>> items = benchmark_items("humaneval", limit=2)
    >>> items[0].id, items[0].solution.lstrip()[:6]
    ('HumanEval/0', 'for id')
    >>> result = conditional_loss("out/model", benchmarks=["humaneval"])  # doctest: +SKIP
    >>> result["humaneval"]["bits_per_char"]                            # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LN2 = math.log(2.0)


@dataclass(frozen=True)
class LossItem:
    """One benchmark problem as (prompt, solution) text."""

    id: str
    benchmark: str
    prompt: str
    solution: str


def mbpp_prompt(text: str, first_test: str) -> str:
    """The MBPP task as a module docstring with its first test, the code to follow it.

    >>> mbpp_prompt("Add two numbers.", "assert add(1, 2) == 3")
    '\"\"\"Add two numbers.\\nassert add(1, 2) == 3\\n\"\"\"\\n'
    """
    return f'"""{text.strip()}\n{first_test.strip()}\n"""\n'


def benchmark_items(
    benchmark: str, mbpp_path: str | None = None, split: str = "test", limit: int | None = None
) -> list[LossItem]:
    """HumanEval (prompt -> canonical completion) or MBPP (task docstring -> reference program)."""
    from decontam.eval_sets import load_benchmark

    if benchmark == "humaneval":
        from train.evaluate.tasks import humaneval_tasks

        items = [
            LossItem(t.task_id, "humaneval", t.prompt, t.canonical)
            for t in humaneval_tasks(load_benchmark("humaneval"))
        ]
    elif benchmark == "mbpp":
        items = [
            LossItem(it.id, "mbpp", mbpp_prompt(it.prompt, (it.tests or "").split("\n")[0]), it.solution)
            for it in load_benchmark("mbpp", path=mbpp_path, split=split)
        ]
    else:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose 'humaneval' or 'mbpp'")
    items = [it for it in items if it.solution]
    return items[:limit] if limit else items


def encode_item(tokenizer, item: LossItem, max_len: int) -> tuple[list[int], int, int, bool]:
    """``(ids, n_context, n_solution_chars, truncated)``: ids[n_context:] are the scored solution tokens."""
    prompt_ids = tokenizer(item.prompt, add_special_tokens=False)["input_ids"]
    solution_ids = tokenizer(item.solution, add_special_tokens=False)["input_ids"]
    bos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    context = bos + prompt_ids
    chars = len(item.solution)
    truncated = False
    if len(solution_ids) + 1 > max_len:  # keep at least one context token to predict from
        solution_ids = solution_ids[: max_len - 1]
        chars = len(tokenizer.decode(solution_ids))
        truncated = True
    room = max_len - len(solution_ids)
    if len(context) > room:
        context = context[len(context) - room :]
        truncated = True
    return context + solution_ids, len(context), chars, truncated


def _scored_logits(model, input_ids, attention, scored):
    """Logits at the scored positions only: the output layer (vocabulary-wide) runs on those rows
    alone, which on CPU is most of a small model's cost. Models without a separable head run whole."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    body = getattr(model, "base_model", None)
    if head is None or body is None or body is model:
        return model(input_ids=input_ids, attention_mask=attention).logits[:, :-1][scored]
    hidden = body(input_ids=input_ids, attention_mask=attention).last_hidden_state
    return head(hidden[:, :-1][scored])


def batch_nats(model, rows: list[tuple[list[int], int]], pad_id: int, device) -> list[tuple[float, int]]:
    """Summed solution NLL (nats) and scored-token count for each ``(ids, n_context)`` row of one batch."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    targets = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, (ids, n_context) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        attention[r, : len(ids)] = 1
        targets[r, n_context : len(ids)] = torch.tensor(ids[n_context:])
    shifted = targets[:, 1:].to(device)
    scored = shifted != -100
    # right padding: real tokens keep positions 0..n-1; the output at t predicts token t + 1
    picked = _scored_logits(model, input_ids.to(device), attention.to(device), scored).float()
    nll = -torch.log_softmax(picked, dim=-1).gather(1, shifted[scored][:, None])[:, 0]
    rows_of = torch.arange(len(rows), device=device)[:, None].expand_as(shifted)[scored]
    sums = torch.zeros(len(rows), dtype=torch.float64, device=device).index_add_(0, rows_of, nll.double())
    sums = sums.cpu().tolist()
    counts = scored.sum(dim=1).cpu().tolist()
    return list(zip(sums, counts, strict=True))


def item_losses(
    model, tokenizer, items: Sequence[LossItem], batch_size: int = 16, max_len: int = 2048, device=None
) -> list[dict[str, Any]]:
    """Per item: ``id``, ``nats`` (summed over solution tokens), ``tokens``, ``chars``, ``truncated``.

    Items are batched by length (less padding); the results come back in the items' order.
    """
    import torch

    device = device or next(model.parameters()).device
    encoded = [encode_item(tokenizer, it, max_len) for it in items]
    order = sorted(range(len(items)), key=lambda i: len(encoded[i][0]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
    results: list[dict[str, Any] | None] = [None] * len(items)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            scored = batch_nats(model, [encoded[i][:2] for i in chunk], pad_id, device)
            for i, (nats, n_tokens) in zip(chunk, scored, strict=True):
                _, _, chars, truncated = encoded[i]
                results[i] = {
                    "id": items[i].id,
                    "nats": nats,
                    "tokens": n_tokens,
                    "chars": chars,
                    "truncated": truncated,
                }
    model.train(was_training)
    return results  # type: ignore[return-value]


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Micro-averaged bits per character and per token of per-item results.

    >>> summarize([{"nats": math.log(2) * 6, "tokens": 3, "chars": 12, "truncated": False}])
    {'n': 1, 'bits_per_char': 0.5, 'bits_per_token': 2.0, 'tokens': 3, 'chars': 12, 'truncated': 0}
    """
    nats = sum(r["nats"] for r in rows)
    tokens = sum(r["tokens"] for r in rows)
    chars = sum(r["chars"] for r in rows)
    return {
        "n": len(rows),
        "bits_per_char": nats / LN2 / chars if chars else None,
        "bits_per_token": nats / LN2 / tokens if tokens else None,
        "tokens": tokens,
        "chars": chars,
        "truncated": sum(bool(r["truncated"]) for r in rows),
    }


def split_summaries(split_json: str | Path, benchmark: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Bits per char/token on the similar and non-similar problems of each tau of a decontam ``split.json``."""
    data = json.loads(Path(split_json).read_text())
    section = (data.get("benchmarks") or {}).get(benchmark)
    if section is None:
        return {"error": f"{split_json} has no section for benchmark {benchmark!r}"}
    by_id = {r["id"]: r for r in rows}
    out: dict[str, Any] = {}
    for tau, groups in sorted((section.get("taus") or {}).items()):
        out[tau] = {
            group: summarize([by_id[i] for i in groups.get(group, []) if i in by_id])
            for group in ("similar", "non_similar")
        }
    return out


def load_model(model_dir: str | Path, tokenizer: str | Path | None = None, device: str | None = None):
    """``(model, tokenizer)`` from a local HF model directory (the tokenizer from it unless given)."""
    import torch
    from transformers import AutoModelForCausalLM

    from train.tokenizer import load_tokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True).to(device)
    return model.eval(), load_tokenizer(str(tokenizer or model_dir))


def conditional_loss(
    model,
    tokenizer=None,
    benchmarks: Sequence[str] = ("humaneval", "mbpp"),
    mbpp_path: str | None = None,
    batch_size: int = 16,
    max_len: int | None = None,
    split_json: str | None = None,
    limit: int | None = None,
    items: dict[str, list[LossItem]] | None = None,
) -> dict[str, Any]:
    """Bits per character and per token of each benchmark's solutions given their prompts.

    Args:
        model: a loaded causal LM or a local HF model directory.
        tokenizer: the model's tokenizer (default: loaded from the model directory).
        benchmarks: ``humaneval`` and/or ``mbpp`` (MBPP from ``mbpp_path`` or ``TEXTBOOKS_MBPP_PATH``).
        max_len: longest scored sequence (default: the model's ``max_position_embeddings``).
        split_json: a decontam ``split.json``: adds similar / non-similar results per tau.
        items: ready :class:`LossItem` lists per benchmark (skips loading; for repeated evaluation).

    Returns:
        ``{benchmark: {"n", "bits_per_char", "bits_per_token", "tokens", "chars", "truncated",
        "subsets"?: {tau: {"similar": {...}, "non_similar": {...}}}}}``.
    """
    if isinstance(model, (str, Path)):
        model, tokenizer = load_model(model, tokenizer)
    max_len = int(max_len or model.config.max_position_embeddings)
    out: dict[str, Any] = {}
    for name in benchmarks:
        if items is not None and name in items:  # given items are used as given, an empty list too
            bench_items = items[name]
        else:
            bench_items = benchmark_items(name, mbpp_path=mbpp_path, limit=limit)
        rows = item_losses(model, tokenizer, bench_items, batch_size=batch_size, max_len=max_len)
        out[name] = summarize(rows)
        if split_json:
            out[name]["subsets"] = split_summaries(split_json, name, rows)
    return out
