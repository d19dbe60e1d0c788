"""LLM-graded evaluation (phi-1, Section 4): a grader model scores each solution 0-10 against a rubric,
for problems that have no unit tests; scores are aggregated per model like the paper's Table 2.
The grader's model and the exact rubric prompt (and its sha256) are recorded with every result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from curate.llm.config import LLMConfig

import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path

RUBRIC_PROMPT = """You are grading a student's solution to a programming exercise, as a strict teacher would.

Exercise:
{problem}

Student solution:
```python
{solution}
```

Grade the solution from 0 to 10 on correctness above all (does it do what the exercise asks, on all
inputs, including edge cases?), then on the quality of the reasoning it shows (a sound algorithm,
appropriate data structures) and on clarity. 10 means correct and clean; 0 means unrelated or
empty. Partial credit for a solution with minor errors. Do not reward length.

Reply with a short justification, then a final line of the form "SCORE: <integer 0-10>"."""

_SCORE = re.compile(r"SCORE:\s*(10|\d)(?:\s*/\s*10)?\b", re.I)
# what a model that ignored the format wrote instead: "8/10", "a score of 7", "I would give it a 6"
_LOOSE_SCORE = re.compile(r"\b(10|\d)\s*(?:/|out of)\s*10\b|\b(?:score|grade|rating)\s+(?:of|is|would be)\s+(10|\d)\b|"
                          r"\bgive (?:it|this)(?: a)? (10|\d)\b", re.I)  # fmt: skip


def parse_score(text: str | None) -> int | None:
    """The last ``SCORE: n`` in a grader reply (0-10), or None.

    >>> parse_score("Correct and clear.\\nSCORE: 9")
    9
    >>> parse_score("no score here") is None
    True
    """
    return read_score(text)[0]


def read_score(text: str | None) -> tuple[int | None, str]:
    """``(score, how)``: ``"score_line"`` as asked, ``"free_text"`` from a score written another way (the
    last one), ``"failed"`` when there is none.

    >>> read_score("SCORE: 7"), read_score("Mostly right. I would give it a 6 out of 10."), read_score("ok")
    ((7, 'score_line'), (6, 'free_text'), (None, 'failed'))
    """
    if not text:
        return None, "failed"
    found = _SCORE.findall(text)
    if found:
        return int(found[-1]), "score_line"
    loose = [next(g for g in m.groups() if g) for m in _LOOSE_SCORE.finditer(text)]
    return (int(loose[-1]), "free_text") if loose else (None, "failed")


def grade_solutions(
    solutions: list[dict] | str,
    llm: LLMConfig | None = None,
    output_dir: str | None = None,
    rubric: str = RUBRIC_PROMPT,
    client=None,
) -> dict:
    """Grade solutions with an LLM and aggregate per model.

    ``solutions``: dicts (or a JSONL path) with ``model``, ``task_id``, ``problem``, ``solution``.
    ``llm``: the grader's :class:`curate.llm.LLMConfig` (or its keys); defaults here: max_tokens 400,
    temperature 0.
    Returns ``{"grader": {...}, "per_model": {model: {"n", "graded", "failed", "mean_score"}}, "rows": [...]}``;
    with ``output_dir``, writes ``grades.jsonl``, ``grades_summary.json`` and ``grades.md``.

    Example:
        >>> grade_solutions([{"model": "phi-1", "task_id": "t1", "problem": "Add two numbers.",
        ...                   "solution": "def add(a, b):\\n    return a + b"}], llm={"model": "gpt-4o"})  # doctest: +SKIP
    """
    from curate.llm import LLMClient, LLMConfig, LLMRequest

    config = LLMConfig.coerce(llm).with_defaults(max_tokens=400, temperature=0.0)
    grader_model, base_url = config.model, config.base_url
    if isinstance(solutions, (str, Path)):
        with open(solutions, encoding="utf-8") as f:
            solutions = [json.loads(line) for line in f if line.strip()]
    client = client or LLMClient(config)
    rubric_sha = hashlib.sha256(rubric.encode()).hexdigest()
    reqs = [
        LLMRequest(
            messages=[
                {"role": "user", "content": rubric.format(problem=s["problem"], solution=s["solution"])}
            ],
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            seed=config.seed,
            metadata={"task_id": s.get("task_id"), "model": s.get("model")},
        )
        for s in solutions
    ]
    results = client.run(reqs)
    rows = []
    per_model: dict[str, list] = defaultdict(list)
    hows: list[str] = []
    for s, res in zip(solutions, results, strict=True):
        score, how = read_score(res.text) if res.ok else (None, "failed")
        hows.append(how)
        error = None if res.ok and score is not None else (res.error or "no SCORE line in the grader reply")
        row = {
            "model": s.get("model", "unknown"),
            "task_id": s.get("task_id"),
            "score": score,
            "error": error,
            "grader_reply": res.text,
            "grader_model": res.model or grader_model,
        }
        rows.append(row)
        per_model[row["model"]].append(score)
    summary = {
        "grader": {
            "model": grader_model,
            "base_url": base_url,
            "rubric_sha256": rubric_sha,
            "rubric": rubric,
        },
        "answers": {"requests": len(hows), "parsed": hows.count("score_line"),
                    "fallback_parsed": hows.count("free_text"), "failed": hows.count("failed"),
                    "server_fallbacks": {k: client.usage.get(k, 0) for k in ("extra_body_refused",)}},  # fmt: skip
        "per_model": {
            m: {
                "n": len(scores),
                "graded": sum(x is not None for x in scores),
                "failed": sum(x is None for x in scores),
                "mean_score": (
                    sum(x for x in scores if x is not None) / max(1, sum(x is not None for x in scores))
                    if any(x is not None for x in scores)
                    else None
                ),
            }
            for m, scores in sorted(per_model.items())
        },
    }
    if output_dir:
        _write_grades(Path(output_dir), rows, summary)
    return {**summary, "rows": rows}


def _write_grades(out: Path, rows: list[dict], summary: dict) -> None:
    """``grades.jsonl`` (one row per solution), ``grades_summary.json`` and ``grades.md`` (per model)."""
    grader_model, rubric_sha = summary["grader"]["model"], summary["grader"]["rubric_sha256"]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "grades.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    (out / "grades_summary.json").write_text(json.dumps(summary, indent=2))
    md = [
        f"Grader: {grader_model} (rubric sha256 {rubric_sha[:12]})",
        "",
        "| model | graded | mean score (0-10) |",
        "| --- | --- | --- |",
    ]
    for m, v in summary["per_model"].items():
        ms = "-" if v["mean_score"] is None else f"{v['mean_score']:.2f}"
        md.append(f"| {m} | {v['graded']}/{v['n']} | {ms} |")
    (out / "grades.md").write_text("\n".join(md) + "\n")
