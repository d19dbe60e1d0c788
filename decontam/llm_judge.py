"""LLM-judge decontamination (the llm-decontaminator method, Yang et al. 2023, LMSYS).

For each benchmark item, its top-k training candidates (by AST match and by embedding distance) are
shown with the item to an LLM, which answers whether the candidate is the same problem, possibly
rephrased (renamed, reordered, restyled, translated). Surface measures shortlist; the model decides.

The judge talks through the shared :class:`curate.llm.LLMClient`, configured by the one
:class:`curate.llm.LLMConfig`; answers are cached by the client (``cache_path``, sqlite), so a rerun
pays for nothing twice, and every verdict is kept with its pair, the raw answer and whether it came
from the cache.

Example:
    >>> from decontam.eval_sets import BenchmarkItem
    >>> item = BenchmarkItem("humaneval", "HumanEval/0", "Check if two numbers are close.", "def f(): ...", "")
    >>> req = judge_request(item, "def g(xs, t): ...")
    >>> req.messages[0]["role"], "Answer True or False" in req.messages[-1]["content"]
    ('system', True)
    >>> parse_verdict("True."), parse_verdict("false"), parse_verdict("maybe")
    (True, False, None)
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from decontam.eval_sets import BenchmarkItem

# the llm-decontaminator prompt, adapted to code: the item is the benchmark problem + solution
SYSTEM_PROMPT = (
    "You are a careful reviewer of training data contamination. You compare a benchmark problem "
    "with a piece of training code and decide whether the training code is the same problem and "
    "solution, possibly rephrased: renamed identifiers, reordered statements, changed formatting, "
    "comments or docstrings, another programming style, or embedded in a larger file."
)
USER_TEMPLATE = (
    "Benchmark problem:\n{prompt}\n\nBenchmark solution:\n```python\n{solution}\n```\n\n"
    "Training code:\n```python\n{candidate}\n```\n\n"
    "Is the training code the benchmark problem and solution, possibly rephrased? "
    "Answer True or False, nothing else."
)
MAX_CHARS = 6000  # a candidate longer than this is cut (its matched unit is what is shown)


@dataclass
class JudgeVerdict:
    """One judged pair: ``same`` is True/False, or None when the answer was unclear or the call failed."""

    benchmark: str
    item_id: str
    doc_id: str
    unit: str | None
    same: bool | None
    answer: str | None
    cached: bool
    error: str | None = None
    parse: str = "failed"  # how the answer was read (see read_verdict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge_request(item: BenchmarkItem, candidate: str, max_tokens: int = 4):
    """The chat request asking whether ``candidate`` is ``item`` rephrased (temperature 0, a few tokens)."""
    from curate.llm import LLMRequest

    user = USER_TEMPLATE.format(
        prompt=item.prompt.strip()[:MAX_CHARS],
        solution=item.solution.strip()[:MAX_CHARS],
        candidate=candidate[:MAX_CHARS],
    )
    return LLMRequest(
        messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
        temperature=0.0,
        max_tokens=max_tokens,
    )


_VERDICT_WORDS = {"true": True, "yes": True, "false": False, "no": False}


_RESTATED = re.compile(r"\btraining code (?:is|does) (not |n't )?(?:the same as |contain )?(?:the |a )?"
                       r"(?:benchmark|same|rephras)")  # fmt: skip


def parse_verdict(answer: str | None) -> bool | None:
    """``True``/``False`` from the model's answer (first word, case-insensitive; yes/no accepted)."""
    return read_verdict(answer)[0]


def read_verdict(answer: str | None) -> tuple[bool | None, str]:
    """``(verdict, how)``: ``"first_word"`` as asked, ``"free_text"`` when a small model wrote prose (the
    one verdict word it used, quoted answers ``**True**`` included), ``"failed"`` when none or both.

    >>> read_verdict("False."), read_verdict("The answer is **True** because both sort a list.")
    ((False, 'first_word'), (True, 'free_text'))
    >>> read_verdict("It could be true or false.")
    (None, 'failed')
    >>> read_verdict("The training code is not the benchmark problem and solution. The benchmark is a")
    (False, 'free_text')
    """
    words = (answer or "").strip().strip("`*\"'").split()
    if not words:
        return None, "failed"
    first = _VERDICT_WORDS.get(words[0].strip(".,:;!*`\"'").lower())
    if first is not None:
        return first, "first_word"
    found = {_VERDICT_WORDS[w] for w in re.findall(r"\b(true|false)\b", answer.lower())}
    if len(found) == 1:
        return found.pop(), "free_text"
    # the question restated as the answer, as small models do: "The training code is (not) the benchmark..."
    restated = _RESTATED.search(answer.lower().split(".")[0])
    if restated:
        return restated.group(1) is None, "free_text"
    return None, "failed"


def judge_answer_counts(verdicts: list[dict[str, Any]]) -> dict[str, int]:
    """``requests`` = ``parsed`` + ``fallback_parsed`` + ``failed`` over judged pairs (for the summary).

    >>> judge_answer_counts([{"parse": "first_word"}, {"parse": "free_text"}, {"parse": "failed"}])
    {'requests': 3, 'parsed': 1, 'fallback_parsed': 1, 'failed': 1}
    """
    hows = [v.get("parse") for v in verdicts]
    return {"requests": len(hows), "parsed": hows.count("first_word"),
            "fallback_parsed": hows.count("free_text"), "failed": hows.count("failed")}  # fmt: skip


def judge_pairs(
    pairs: list[tuple[BenchmarkItem, str, str, str | None]],
    llm: Any = None,
) -> list[JudgeVerdict]:
    """Judge ``(item, doc_id, candidate_text, unit_name)`` pairs with the LLM described by ``llm``
    (an :class:`curate.llm.LLMConfig` or its keys; default cache ``decontam_llm_cache.sqlite``).

    Failed calls come back ``same=None`` with the error; nothing is dropped.
    """
    from curate.llm import LLMClient, LLMConfig

    config = LLMConfig.coerce(llm)
    if config.cache_path is None:
        config = LLMConfig.coerce(config, cache_path="decontam_llm_cache.sqlite")
    client = LLMClient(config)
    results = client.run([judge_request(item, text, config.max_tokens or 4) for item, _, text, _ in pairs])
    verdicts = []
    for (item, doc_id, _, unit), res in zip(pairs, results, strict=True):
        same, how = read_verdict(res.text) if res.ok else (None, "failed")
        verdicts.append(JudgeVerdict(benchmark=item.benchmark, item_id=item.id, doc_id=doc_id, unit=unit,
                                     same=same, answer=res.text, cached=res.cached, error=res.error, parse=how))  # fmt: skip
    return verdicts


def candidate_pairs(table, bench, texts: dict[str, str], k: int = 3) -> list[tuple]:
    """Top-``k`` AST units and top-``k`` embedding documents of every item of one benchmark's scores
    (:class:`decontam.prune.BenchmarkScores`), as ``(item, doc_id, text, unit)`` pairs for
    :func:`judge_pairs`. An AST candidate is shown as its unit's lines; an embedding one as the document."""
    import numpy as np

    pairs, seen = [], set()
    unit_doc = np.asarray(table.unit_doc, dtype=np.int64)
    order = np.argsort(-bench.unit_score, kind="stable")
    per_item: dict[int, list[int]] = {}
    for u in order[bench.unit_score[order] > 0]:
        units = per_item.setdefault(int(bench.unit_item[u]), [])
        if len(units) < k:
            units.append(int(u))
    for j, item in enumerate(bench.items):
        for u in per_item.get(j, []):
            doc_id = table.doc_ids[unit_doc[u]]
            lines = texts.get(doc_id, "").splitlines()
            snippet = "\n".join(lines[table.unit_lineno[u] - 1 : table.unit_end[u]])
            if (j, doc_id) not in seen:
                seen.add((j, doc_id))
                pairs.append((item, doc_id, snippet, table.unit_name[u]))
        if bench.emb_item_doc is not None:
            for d in bench.emb_item_doc[j, :k]:
                doc_id = table.doc_ids[int(d)] if d >= 0 else None
                if doc_id is not None and (j, doc_id) not in seen:
                    seen.add((j, doc_id))
                    pairs.append((item, doc_id, texts.get(doc_id, ""), None))
    return pairs


def judge_scores(table, scores: dict, input_dir, llm: Any = None, k: int = 3) -> list[dict[str, Any]]:
    """Judge every benchmark's candidates and set ``llm_doc_hit``/``llm_item_hit`` masks on each
    :class:`decontam.prune.BenchmarkScores`; returns every verdict (for ``llm_verdicts.jsonl``)."""
    import numpy as np

    from decontam.prune import iter_id_text

    texts: dict[str, str] = {}
    for ids, batch in iter_id_text(input_dir):
        texts.update(zip(ids, batch, strict=True))
    row_of = {doc_id: r for r, doc_id in enumerate(table.doc_ids)}
    verdicts = []
    for bench in scores.values():
        pairs = candidate_pairs(table, bench, texts, k)
        judged = judge_pairs(pairs, llm) if pairs else []
        item_row = {item.id: j for j, item in enumerate(bench.items)}
        bench.llm_doc_hit = np.zeros(len(table.doc_ids), dtype=bool)
        bench.llm_item_hit = np.zeros(len(bench.items), dtype=bool)
        for v in judged:
            if v.same:
                bench.llm_doc_hit[row_of[v.doc_id]] = True
                bench.llm_item_hit[item_row[v.item_id]] = True
        verdicts += [v.to_dict() for v in judged]
    return verdicts
