"""Reading a label out of an LLM's answer: structured (JSON schema), soft (top logprobs) or free text.

The free-text reader is the fallback for endpoints without structured output. It reads claims, not
words: a mention in a question ("high?") claims nothing, a negated one ("not high") claims the
opposite label (binary) or nothing (a score), and when the claims disagree the last one wins only if
it is marked as the verdict ("so", "overall", "final", "answer:" ...). Anything else is
``ambiguous``, never a guess.
"""

from __future__ import annotations

import json
import math
import re

BINARY_LABELS = ("high", "low")
SCORE_LABELS = ("0", "1", "2", "3", "4", "5")
AMBIGUOUS, UNPARSEABLE = "ambiguous", "unparseable"

_NUMBER_WORDS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5"}
_NUM = r"(\d+(?:\.\d+)?|zero|one|two|three|four|five)"
_NEGATION = re.compile(r"\b(?:not|no|never|hardly|neither|nor|without|cannot)\b|n't\b")
_NOT_NEGATION = re.compile(r"\b(?:not only|not just|no doubt|without (?:a )?doubt|no question)\b")
_CLAUSE_BREAK = re.compile(
    r"[.?!;:,\n()\[\]—–]|\s-+\s|\b(?:but|rather|instead|however|though|although|yet|whereas)\b"
)
_SENTENCE_BREAK = re.compile(r"[.?!\n]")
_VERDICT_CUE = re.compile(
    r"\b(?:so|therefore|thus|hence|overall|in conclusion|in summary|final(?:ly)?|verdict|answer|label|"
    r"rating|rated?|actually|on reflection|i(?:'d| would) (?:say|go with|rate)|conclusion)\b"
)
_STRONG = re.compile(r"\b(?:answer|label|verdict|rating|rated|classification|final)\b[^.?!\n]{0,30}$")
_BINARY_MENTION = re.compile(r"\b(high|low)\b(?![-‐](?:level|end|pass)\b)")
_EXPLICIT_SCORE = re.compile(
    r"\b(?:educational\s+)?(?:score|rating|total|grade)\b\s*(?:is|of|:|=|-|would be|would be a|comes to|"
    r"i(?:'d| would) give(?: it)?)?\s*" + _NUM + r"(?:\s*(?:/|out of)\s*(\d+|five))?"
)
_OUT_OF = re.compile(_NUM + r"\s*(?:/|out of)\s*(\d+|five)\b")
_GIVE = re.compile(r"\b(?:give|gives|giving|award|awards|assign|assigns)\s+(?:it|this|the code|the snippet)?\s*(?:a\s+)?" + _NUM + r"\b")  # fmt: skip
_HEDGE_AFTER = re.compile(r"^\s*(?:-|–|or|to|and)\s*" + _NUM)


def _clean(text: str) -> str:
    text = text.lower().replace("’", "'").replace("“", '"').replace("”", '"')
    return re.sub(r"[*_`#>]+", "", text)


def _clause_prefix(text: str, start: int) -> str:
    head = text[:start]
    breaks = list(_CLAUSE_BREAK.finditer(head))
    return head[breaks[-1].end() :] if breaks else head


def _sentence_prefix(text: str, start: int) -> str:
    head = text[:start]
    breaks = list(_SENTENCE_BREAK.finditer(head))
    return head[breaks[-1].end() :] if breaks else head


def _is_question(text: str, end: int) -> bool:
    nxt = re.search(r"[.?!;:\n]", text[end:])
    return bool(nxt) and nxt.group() == "?"


def _negated(prefix: str) -> bool:
    words = prefix.split()[-4:]
    window = " ".join(words)
    return bool(_NEGATION.search(window)) and not _NOT_NEGATION.search(window)


def _decide(claims: list[tuple[str, bool]]) -> tuple[str | None, str | None]:
    """claims: (label, marked as the verdict) in order of appearance."""
    if not claims:
        return None, UNPARSEABLE
    labels = {label for label, _ in claims}
    if len(labels) == 1:
        label = labels.pop()
        return (None, AMBIGUOUS) if label == AMBIGUOUS else (label, None)
    last, marked = claims[-1]
    if marked and last != AMBIGUOUS:
        return last, None
    return None, AMBIGUOUS


def read_binary(text: str) -> tuple[str | None, str | None]:
    """(label, None) or (None, "ambiguous" | "unparseable") for a high/low answer.

    >>> read_binary("Not high."), read_binary("high? no: low"), read_binary("It could be high or low.")
    (('low', None), ('low', None), (None, 'ambiguous'))
    """
    t = _clean(text)
    claims = []
    for m in _BINARY_MENTION.finditer(t):
        if _is_question(t, m.end()):
            continue
        label = m.group(1)
        if _negated(_clause_prefix(t, m.start())):
            label = "low" if label == "high" else "high"
        sentence = _sentence_prefix(t, m.start())
        marked = bool(_STRONG.search(sentence) or _VERDICT_CUE.search(sentence))
        claims.append((label, marked))
    return _decide(claims)


def _score_value(number: str, denominator: str | None) -> str:
    number = _NUMBER_WORDS.get(number, number)
    if denominator is not None and _NUMBER_WORDS.get(denominator, denominator) != "5":
        return AMBIGUOUS  # "4/10" is not on this scale
    return number if number in SCORE_LABELS else AMBIGUOUS


def _score_claims(t: str, pattern: re.Pattern, with_denominator: bool) -> list[tuple[int, str, bool]]:
    claims = []
    for m in pattern.finditer(t):
        if _is_question(t, m.end()) or _negated(_clause_prefix(t, m.start(1))):
            continue
        value = _score_value(m.group(1), m.group(2) if with_denominator else None)
        if _HEDGE_AFTER.match(t[m.end() :]):
            value = AMBIGUOUS  # "3-4", "3 or 4"
        sentence = _sentence_prefix(t, m.start())
        claims.append((m.start(), value, bool(_VERDICT_CUE.search(sentence))))
    return claims


def read_score(text: str) -> tuple[str | None, str | None]:
    """(score "0".."5", None) or (None, "ambiguous" | "unparseable") for a 0-5 answer.

    >>> read_score("Educational score: 3. With docstrings it could reach 4.")
    ('3', None)
    >>> read_score("4 out of 5 points: 1 for valid code, 1 for functions"), read_score("Score: 3 or 4")
    (('4', None), (None, 'ambiguous'))
    """
    t = _clean(text)
    explicit = _score_claims(t, _EXPLICIT_SCORE, True)
    if explicit:  # "score: N" is the verdict the prompt asked for; the last one stands
        value = explicit[-1][1]
        return (None, AMBIGUOUS) if value == AMBIGUOUS else (value, None)
    claims = sorted(_score_claims(t, _OUT_OF, True) + _score_claims(t, _GIVE, False))
    if not claims:
        alone = re.fullmatch(r"\W*" + _NUM + r"\W*", t.strip())
        if not alone:
            return None, UNPARSEABLE
        value = _score_value(alone.group(1), None)
        return (None, AMBIGUOUS) if value == AMBIGUOUS else (value, None)
    return _decide([(value, marked) for _, value, marked in claims])


def read_label(text: str | None, scale: str = "binary") -> tuple[str | None, str | None]:
    """The label of a structured (JSON) or free-text answer: ``(label, None)`` or ``(None, reason)``.

    >>> read_label('{"label": "low"}'), read_label('{"justification": "ok", "score": 4}', "0-5")
    (('low', None), ('4', None))
    >>> read_label("Educational score: 7", "0-5")
    (None, 'ambiguous')
    """
    label, problem, _ = read_label_how(text, scale)
    return label, problem


def read_label_how(text: str | None, scale: str = "binary") -> tuple[str | None, str | None, str]:
    """:func:`read_label` and how the answer was read: ``"json"`` (the answer is the JSON asked for),
    ``"json_in_text"`` (a JSON object inside prose or a code fence: a server that ignored the schema)
    or ``"free_text"`` (the claims of the prose; see the module's docstring).

    >>> read_label_how('Sure! Here it is:\\n```json\\n{"label": "high"}\\n```\\nHope it helps.')
    ('high', None, 'json_in_text')
    >>> read_label_how("The code is clear, so its value is high.")
    ('high', None, 'free_text')
    """
    if not text or not text.strip():
        return None, UNPARSEABLE, "free_text"
    whole = _from_json(text, scale)
    if whole is not None and (whole[1] != UNPARSEABLE or not _json_objects(text)):
        return (*whole, "json")  # the JSON asked for, or a cut one: no verdict to find elsewhere
    for candidate in _json_objects(text):
        found = _from_json(candidate, scale)
        if found is not None and found[0] is not None:
            return (*found, "json_in_text")
    label, problem = read_binary(text) if scale == "binary" else read_score(text)
    return label, problem, "free_text"


_JSON_OBJECT = re.compile(r"\{[^{}]*\}")  # a flat object: the label schemas have no nesting


def _json_objects(text: str) -> list[str]:
    """The flat ``{...}`` objects written anywhere in ``text`` (fenced or not), in order."""
    return [m.group() for m in _JSON_OBJECT.finditer(text)]


def _from_json(text: str, scale: str) -> tuple[str | None, str | None] | None:
    stripped = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    if not stripped.startswith("{"):
        return None
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError:  # cut by max_tokens, say: its justification is no verdict
        return None, UNPARSEABLE
    if not isinstance(obj, dict):
        return None
    value = obj.get("label" if scale == "binary" else "score")
    if value is None:
        return None
    value = str(value).strip().lower()
    allowed = BINARY_LABELS if scale == "binary" else SCORE_LABELS
    return (value, None) if value in allowed else (None, AMBIGUOUS)


def soft_label(logprobs: list[dict] | None, label: str, scale: str = "binary") -> float | None:
    """P(high) (binary) or the expected 0-5 score from the top logprobs at the label's token, or None.

    The label's token is the last answer token that reads as ``label``; its alternatives are summed per
    label and renormalised over the labels (other alternatives carry no vote).

    >>> lp = [{"token": "high", "logprob": math.log(0.7),
    ...        "top_logprobs": [{"token": "high", "logprob": math.log(0.7)}, {"token": " low", "logprob": math.log(0.2)}]}]
    >>> round(soft_label(lp, "high"), 4)
    0.7778
    """
    if not logprobs:
        return None
    labels = BINARY_LABELS if scale == "binary" else SCORE_LABELS
    position = None
    for i, item in enumerate(logprobs):
        if _token_label(item.get("token", ""), labels) == label:
            position = i
    if position is None:
        return None
    mass = dict.fromkeys(labels, 0.0)
    for alt in logprobs[position].get("top_logprobs") or []:
        which = _token_label(alt.get("token", ""), labels)
        if which is not None and alt.get("logprob") is not None:
            mass[which] += math.exp(alt["logprob"])
    total = sum(mass.values())
    if total <= 0:
        return None
    if scale == "binary":
        return mass["high"] / total
    return sum(int(k) * v for k, v in mass.items()) / total


def _token_label(token: str, labels: tuple[str, ...]) -> str | None:
    word = token.strip().strip("\"'*`.:,").lower()
    return word if word in labels else None


def label_response_format(scale: str) -> dict:
    """The ``response_format`` (strict JSON schema) that asks for exactly a label.

    >>> label_response_format("binary")["json_schema"]["schema"]["properties"]["label"]["enum"]
    ['high', 'low']
    """
    if scale == "binary":
        properties = {"label": {"type": "string", "enum": list(BINARY_LABELS)}}
    else:  # the justification first: the score is conditioned on it, as in FineWeb-Edu's prompt
        properties = {
            "justification": {"type": "string"},
            "score": {"type": "integer", "enum": list(range(6))},
        }
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "quality_label", "strict": True, "schema": schema}}
