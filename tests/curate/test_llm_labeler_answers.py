"""Labels read from answers: adversarial phrasings give the right label or ``ambiguous``, never a wrong one;
structured (JSON schema) answers, soft labels from logprobs, finish_reason, and the whole labeler against
the test server's hostile fault mix."""

import hashlib
import math

import pytest
from datatrove.data import Document
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_helpers import stdlib_snippets
from openai_server import HOSTILE_FAULT_MIX, Answer, FaultPlan

from curate.llm.answers import read_label, soft_label
from curate.llm_labeler import REASK_TOKENS, LLMQualityLabeler

OTHER = {"high": "low", "low": "high"}
REASONS = [
    "The snippet defines a class with clear methods.",
    "Mostly boilerplate configuration; highly specific to the project.",
    "It uses lower-level socket calls without explanation.",
    "Names are clear and there is a docstring (score-worthy).",
    "",
]
# (template, expected): {L} is the intended label, {O} the other one
BINARY_CLEAR = [
    "{L}", "{L}.", "**{L}**", "`{L}`", '"{L}"', "Answer: {L}", "**Answer:** {L}", "The educational value is {L}.",
    "Not {O}.", "{O}? no: {L}", "{O}? No. {L}!", "It is not {O}, it is {L}.", "Verdict: {L}", "{R} So overall: {L}.",
    "I would not say {O}; {L}.", "Not {O} but {L}", "{L}, not {O}.", "{R}\nAnswer: {L}", "Is it {O}? No - {L}.",
    "It isn't {O}. It's {L}.", "{R} The answer is not {O}.", "Final answer: {L}", "Answer: {L}\n(not {O})",
    "{O}? Hardly. {L}.", "Educational value: {L}", "Label = {L}",
]  # fmt: skip
BINARY_AMBIGUOUS = [
    "{L} or {O}", "It is neither {L} nor {O}.", "Somewhere between {L} and {O}.", "{L}/{O}", "Could be {L} or {O}.",
    "Not {L}, not {O}.", "{L}. Or maybe {O}.",
]  # fmt: skip
WORDS = ["zero", "one", "two", "three", "four", "five"]
SCORE_CLEAR = [
    "Educational score: {N}", "{R}\nEducational score: {N}", "Educational score: {N}. With docstrings it could reach {M}.",
    "{N} out of 5 points: 1 for valid code, 1 for functions.", "{N}/5", "score: {N}", "I'd give it {N} out of 5.",
    "{N}", "{N}.", "Score: {N} (not {M})", "It is not {M}/5, more like {N}/5.", "**Educational score:** {N}",
    "Educational score: {W}", "{W} out of five", "Total: {N} points.", "{R} Educational score: {N}",
    "Could be {M}/5, but I'd say {N}/5.",
]  # fmt: skip
SCORE_AMBIGUOUS = ["Score: {N} or {M}", "Educational score: {N}-{M}", "Score: {N}/10", "Educational score: 7",
                   "Score: {N}.5", "{N}/5 or {M}/5"]  # fmt: skip


def casing(text: str, how: str) -> str:
    return {"lower": text.lower(), "upper": text.upper(), "title": text.title(), "same": text}[how]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(BINARY_CLEAR), st.sampled_from(["high", "low"]), st.sampled_from(REASONS),
       st.sampled_from(["lower", "upper", "title", "same"]), st.sampled_from(["", " ", "\n", "  \n"]))  # fmt: skip
def test_binary_phrasings_read_right(template, label, reason, case, pad):
    text = pad + casing(template.format(L=label, O=OTHER[label], R=reason), case) + pad
    assert read_label(text, "binary") == (label, None), text


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(BINARY_AMBIGUOUS),
    st.sampled_from(["high", "low"]),
    st.sampled_from(["lower", "same", "upper"]),
)
def test_binary_conflicts_are_ambiguous(template, label, case):
    text = casing(template.format(L=label, O=OTHER[label]), case)
    assert read_label(text, "binary") == (None, "ambiguous"), text


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SCORE_CLEAR), st.integers(0, 5), st.integers(0, 5), st.sampled_from(REASONS[:2]),
       st.sampled_from(["lower", "same"]))  # fmt: skip
def test_score_phrasings_read_right(template, n, m, reason, case):
    if m == n and "not" in template:
        m = (n + 1) % 6
    text = casing(template.format(N=n, M=m, W=WORDS[n], R=reason), case)
    assert read_label(text, "0-5") == (str(n), None), text


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SCORE_AMBIGUOUS), st.integers(0, 4))
def test_score_conflicts_are_ambiguous(template, n):
    text = template.format(N=n, M=n + 1)
    assert read_label(text, "0-5") == (None, "ambiguous"), text


@given(st.text(max_size=200))
def test_reader_never_crashes_and_never_invents(text):
    for scale, labels in (("binary", {"high", "low"}), ("0-5", set("012345"))):
        label, problem = read_label(text, scale)
        assert (label in labels and problem is None) or (
            label is None and problem in ("ambiguous", "unparseable")
        )


def test_structured_and_soft():
    assert read_label('{"label": "high"}') == ("high", None)
    assert read_label('```json\n{"justification": "clear", "score": 2}\n```', "0-5") == ("2", None)
    assert read_label('{"label": "medium"}') == (None, "ambiguous")
    # a JSON answer cut short is no verdict, whatever its justification says
    assert read_label('{"justification": "It could earn 4/5 but the score is', "0-5") == (None, "unparseable")
    lp = [{"token": "{\"", "logprob": 0.0, "top_logprobs": []},
          {"token": "3", "logprob": math.log(0.5), "top_logprobs": [
              {"token": "3", "logprob": math.log(0.5)}, {"token": "4", "logprob": math.log(0.3)},
              {"token": "x", "logprob": math.log(0.2)}]}]  # fmt: skip
    assert soft_label(lp, "3", "0-5") == pytest.approx((3 * 0.5 + 4 * 0.3) / 0.8)
    assert soft_label(lp, "5", "0-5") is None and soft_label(None, "high") is None


# ---------------------------------------------------------------------------------------- end to end
def truth_of(content: str) -> tuple[str, str]:
    """The hidden (label, phrasing) the 'model' answers for a prompt: deterministic per document."""
    h = int(hashlib.sha256(content.encode()).hexdigest()[:12], 16)
    label = "high" if h % 2 else "low"
    pool = BINARY_CLEAR + BINARY_AMBIGUOUS
    return label, pool[(h // 2) % len(pool)].format(L=label, O=OTHER[label], R=REASONS[h % len(REASONS)])


def adversarial_responder(body):
    content = body["messages"][-1]["content"]
    label, text = truth_of(content)
    if "response_format" in body and int(hashlib.sha256(content.encode()).hexdigest()[:4], 16) % 3 == 0:
        p = 0.8
        alts = [(label, math.log(p)), (OTHER[label], math.log(1 - p))]
        tokens = [('{"label": "', [('{"label": "', 0.0)]), (label, alts), ('"}', [('"}', 0.0)])]
        return Answer('{"label": "' + label + '"}', logprobs=tokens)
    return text


def test_labeler_under_hostile_faults_makes_no_wrong_label(openai_server, tmp_path):
    """Must show: the fault mix (429 + Retry-After, 500/503, hangs past the timeout, malformed JSON, empty
    choices) plus adversarial phrasings: 0 wrong labels, ambiguous ones recorded as such."""
    faults = FaultPlan(rate=0.3, seed=11, kinds=HOSTILE_FAULT_MIX, retry_after_s=0.01, hang_s=4.0)
    srv = openai_server(responder=adversarial_responder, faults=faults)
    llm = {"model": "m", "base_url": srv.base_url, "cache_path": str(tmp_path / "c.sqlite"), "timeout_s": 1.0,
           "max_concurrency": 32, "max_retries": 8, "backoff_base_s": 0.002, "backoff_max_s": 0.02,
           "extra_body": {"top_k": 20}}  # fmt: skip
    lab = LLMQualityLabeler(llm)
    docs = stdlib_snippets(300)
    out = {d.id: d.metadata for d in lab.run(iter([Document(d.text, d.id, dict(d.metadata)) for d in docs]))}
    assert set(srv.fault_counts) == set(HOSTILE_FAULT_MIX)
    assert all(b["top_k"] == 20 for b in srv.received)
    wrong, ambiguous, soft = [], 0, 0
    for d in docs:
        md = out[d.id]
        label, text = truth_of(lab.request_for(d).messages[-1]["content"])
        assert md.get("label_error") in (None, "ambiguous"), md  # every fault was retried to an answer
        if md.get("label_error") == "ambiguous":
            ambiguous += 1
            assert any(t.format(L=label, O=OTHER[label]) == text for t in BINARY_AMBIGUOUS), text
        elif md["quality_label"] != label:
            wrong.append((text, md["quality_label"]))
        soft += "quality_label_soft" in md
        assert md["label_finish_reason"] == "stop" or "label_error" in md
    assert wrong == []
    assert ambiguous > 0 and soft > 0
    for d in docs:  # the JSON answers came with logprobs: P(high) is 0.8 when high, 0.2 when low
        content = lab.request_for(d).messages[-1]["content"]
        if int(hashlib.sha256(content.encode()).hexdigest()[:4], 16) % 3 == 0:
            assert out[d.id]["quality_label_soft"] == pytest.approx(
                0.8 if truth_of(content)[0] == "high" else 0.2
            )


def test_schema_refusal_falls_back_to_one_word_and_truncation_is_recorded(openai_server, tmp_path):
    srv = openai_server(responder=lambda b: "Low, because " + "it is boilerplate " * 20, json_schema=False,
                        truncate_at_max_tokens=True)  # fmt: skip
    lab = LLMQualityLabeler({"model": "m", "base_url": srv.base_url, "cache_path": None})
    docs = stdlib_snippets(6)
    out = [d.metadata for d in lab.run(iter(docs))]
    assert all(md["quality_label"] == "low" and md["label_finish_reason"] == "length" for md in out)
    assert lab.answer_format == "word" and "response_format" not in srv.received[-1]
    srv2 = openai_server(
        responder=lambda b: "The educational value of this snippet is" + " rather" * 200, truncate_at_max_tokens=True
    )
    lab2 = LLMQualityLabeler(
        {"model": "m", "base_url": srv2.base_url, "cache_path": None, "structured_output": "off"}
    )
    out2 = [d.metadata for d in lab2.run(iter(stdlib_snippets(3)))]
    assert all(md["label_error"] == "truncated" and md["label_finish_reason"] == "length" for md in out2)
    # each cut answer was asked again once, for one word with more room, before it was recorded as cut
    assert lab2.stats.stats["fallback_truncated_reasked"].total == 3 and lab2.stats.stats["failed"].total == 3
    assert [b["max_tokens"] for b in srv2.received[-3:]] == [REASK_TOKENS] * 3
