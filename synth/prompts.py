"""Diversity-constrained prompt generators for synthetic textbooks and exercises.

Every prompt is one point of a *constraint grid*, the product of a few dimensions (topic leaf,
audience, style, ...). Prompt ``i`` is computed from ``i`` alone by a seeded bijection of the grid
index (O(1) per prompt, no memory), which gives three guarantees:

- the same seed and taxonomies always give the same prompts (``prompt_at(i)`` == ``generate(...)[i]``);
- no constraint tuple repeats until the whole grid has been used (the map is a bijection on ``[0, G)``);
- stratified quotas: the dimensions named in ``strata`` (default: the topic leaf) are balanced. Within
  the first ``R`` prompts (``R`` = the size of the rest of the grid, e.g. 972,000 for the bundled
  textbook grid) every prefix of ``n`` prompts gives each stratum ``floor(n/S)`` or ``ceil(n/S)``
  prompts; after that the counts of any two strata differ by at most ``(R mod S) + 1``. The other
  dimensions are a pseudo-random sample without replacement (close to uniform, not exact), and the
  rest-of-grid tuple (e.g. the exercise function name) never repeats within the first ``R`` prompts.

How the bijection works: split the grid into strata (size ``S``) and the rest (size ``R``). For
``i = q*R + m``: ``rest = P_R(m)``, ``stratum = P2((P_S,round(m % S) + q) mod S)`` with ``round = m // S``,
where each ``P`` is a keyed Feistel permutation (cycle-walking to any domain size). Given
``(stratum, rest)`` one recovers ``m`` then ``q``, so the map is one-to-one. After ``G`` prompts the
grid is re-shuffled with a new key (epoch) and tuples start to repeat.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synth.taxonomy import load_taxonomy, named_items, topic_leaves

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)
_FEISTEL_ROUNDS = 4


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a cheap, well-mixing 64-bit hash (uint64 arithmetic wraps by design)."""
    x = (x ^ (x >> np.uint64(30))) * _M2
    x = (x ^ (x >> np.uint64(27))) * _M3
    return x ^ (x >> np.uint64(31))


def _compile_template(template: str):
    """Compile a ``str.format`` template into a function of a fields dict (an f-string: ~3x faster)."""
    pieces = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if literal:
            pieces.append(repr(literal))
        if name is not None:
            if spec or conversion or not name.isidentifier():
                return template.format_map  # anything fancy: fall back to str.format_map
            pieces.append(f'f"{{F[{name!r}]}}"')
    return eval("lambda F: " + (" ".join(pieces) or "''"))  # noqa: S307 - source built from the parse above


def _key(*parts) -> int:
    digest = hashlib.blake2b(json.dumps(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def feistel_permute(x: np.ndarray, n: int, key: int | np.ndarray) -> np.ndarray:
    """Apply a keyed pseudo-random permutation of ``[0, n)`` to every element of ``x`` (vectorised).

    A balanced Feistel network on the smallest even-bit power of two >= n, with cycle walking to
    stay inside ``[0, n)``; ``key`` may be a scalar or one key per element.

    Example:
        >>> p = feistel_permute(np.arange(10, dtype=np.uint64), 10, key=7)
        >>> sorted(p.tolist()) == list(range(10))
        True
    """
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        return _feistel(x, n, key)


def _feistel(x: np.ndarray, n: int, key) -> np.ndarray:
    if n <= 1:
        return np.zeros_like(x)
    bits = max(2, int(n - 1).bit_length())
    bits += bits % 2
    half = np.uint64(bits // 2)
    mask = np.uint64((1 << (bits // 2)) - 1)
    key = np.asarray(key, dtype=np.uint64)
    round_keys = [_mix(key + np.uint64(r + 1) * _M1) for r in range(_FEISTEL_ROUNDS)]

    def once(v: np.ndarray, rks: list[np.ndarray]) -> np.ndarray:
        left, right = v >> half, v & mask
        for rk in rks:
            left, right = right, left ^ (_mix(right ^ rk) & mask)
        return (left << half) | right

    y = once(x, round_keys)
    bad = y >= np.uint64(n)
    while bad.any():  # cycle walking: at most a few steps, the domain is < 4n
        rks = round_keys if key.ndim == 0 else [rk[bad] for rk in round_keys]
        y[bad] = once(y[bad], rks)
        bad = y >= np.uint64(n)
    return y


@dataclass(slots=True)
class Prompt:
    """One generated prompt: its grid index, stable id, messages and constraint tuple."""

    index: int
    id: str
    system: str
    text: str
    constraints: dict = field(default_factory=dict)

    @property
    def messages(self) -> list[dict]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.text}]

    @property
    def prompt_hash(self) -> str:
        """sha256 of the system and user messages: identical prompts share a hash."""
        return hashlib.sha256(f"{self.system}\x00{self.text}".encode()).hexdigest()


class _Dimension:
    """One grid dimension: per value, the constraint entries it sets and the template fields it fills."""

    __slots__ = ("name", "constraints", "fields")

    def __init__(self, name: str, constraints: list[dict], fields: list[dict]):
        if not constraints:
            raise ValueError(f"dimension {name!r} has no values")
        self.name, self.constraints, self.fields = name, constraints, fields

    def __len__(self) -> int:
        return len(self.constraints)


class ConstraintGridPromptGenerator:
    """Base class: seeded, stratified, repeat-free sampling over a constraint grid (see module doc).

    Subclasses define ``_dimensions()``, ``SYSTEM`` and ``TEMPLATE`` (``str.format_map`` fields).
    """

    SYSTEM = ""
    TEMPLATE = ""
    ID_PREFIX = "prompt"
    DEFAULT_STRATA: tuple[str, ...] = ("topic",)
    # optional hook filling constraint entries / template fields computed from several dimensions
    _derive = None

    def __init__(self, seed: int = 0, strata: tuple[str, ...] | list[str] | None = None):
        self.seed = int(seed)
        self.strata = tuple(self.DEFAULT_STRATA if strata is None else strata)

    # -- the grid ---------------------------------------------------------------------------------
    def _dimensions(self) -> list[_Dimension]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def dimensions(self) -> list[_Dimension]:
        # built lazily and cached so the generator pickles cheaply and loads taxonomies once
        dims = self.__dict__.get("_dims")
        if dims is None:
            dims = self._dimensions()
            names = [d.name for d in dims]
            unknown = set(self.strata) - set(names)
            if unknown:
                raise ValueError(f"strata {sorted(unknown)} are not grid dimensions {names}")
            self.__dict__["_dims"] = dims
            self.__dict__["_strata_dims"] = [d for d in dims if d.name in self.strata]
            self.__dict__["_rest_dims"] = [d for d in dims if d.name not in self.strata]
        return dims

    @property
    def dimension_sizes(self) -> dict[str, int]:
        return {d.name: len(d) for d in self.dimensions}

    @property
    def grid_size(self) -> int:
        return int(np.prod([len(d) for d in self.dimensions], dtype=object))

    @property
    def fingerprint(self) -> str:
        """Short hash of the grid's content: prompt ids change when the taxonomies change."""
        fp = self.__dict__.get("_fp")
        if fp is None:
            payload = [self.SYSTEM, self.TEMPLATE, self.strata] + [
                [d.name, d.constraints] for d in self.dimensions
            ]
            fp = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]
            self.__dict__["_fp"] = fp
        return fp

    def __getstate__(self):
        return {"seed": self.seed, "strata": self.strata, **self._params()}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def _params(self) -> dict:
        return {}

    def tuple_indices(self, start: int, n: int) -> np.ndarray:
        """Value index per dimension for prompts ``start .. start+n-1``: an ``(n, n_dims)`` int array.

        Example:
            >>> g = TextbookPromptGenerator(seed=1)
            >>> g.tuple_indices(0, 3).shape
            (3, 5)
        """
        dims = self.dimensions
        strata_dims, rest_dims = self.__dict__["_strata_dims"], self.__dict__["_rest_dims"]
        S = int(np.prod([len(d) for d in strata_dims], dtype=object))
        R = int(np.prod([len(d) for d in rest_dims], dtype=object))
        G = S * R
        if G >= 2**62:
            raise ValueError(f"constraint grid too large ({G}); use smaller taxonomies")
        i = np.arange(start, start + n, dtype=np.uint64)
        epoch = i // np.uint64(G)
        i = i % np.uint64(G)
        out = np.empty((n, len(dims)), dtype=np.int64)
        for e in np.unique(epoch).tolist():  # almost always a single epoch
            sel = epoch == np.uint64(e)
            ii = i[sel]
            q, m = ii // np.uint64(R), ii % np.uint64(R)
            rest = feistel_permute(m, R, _key(self.seed, e, "rest"))
            rnd, j = m // np.uint64(S), m % np.uint64(S)
            with np.errstate(over="ignore"):
                round_keys = _mix(np.uint64(_key(self.seed, e, "strata")) + rnd * _M1)
            shifted = (feistel_permute(j, S, round_keys) + q) % np.uint64(S)
            stratum = feistel_permute(shifted, S, _key(self.seed, e, "relabel"))
            cols = {}
            for part, group in ((stratum, strata_dims), (rest, rest_dims)):
                part = part.astype(np.int64)
                for d in group:
                    cols[d.name] = part % len(d)
                    part = part // len(d)
            out[sel] = np.stack([cols[d.name] for d in dims], axis=1)
        return out

    # -- prompts ----------------------------------------------------------------------------------
    def generate(self, n: int, start: int = 0) -> list[Prompt]:
        """Prompts ``start .. start+n-1`` (deterministic for a seed; O(1) work per prompt).

        Example:
            >>> prompts = TextbookPromptGenerator(seed=0).generate(2)
            >>> prompts[0].constraints["subtopic"] != "" and prompts[0].id.startswith("tb-")
            True
        """
        dims = self.dimensions
        cons = [d.constraints for d in dims]
        flds = [d.fields for d in dims]
        render, system = _compile_template(self.TEMPLATE), self.SYSTEM
        prefix = f"{self.ID_PREFIX}-{self.fingerprint}-{self.seed}-"
        out = []
        rng = range(len(dims))
        derive = self._derive
        for k, row in enumerate(self.tuple_indices(start, n).tolist()):
            constraints: dict = {}
            fields: dict = {}
            for d in rng:
                constraints.update(cons[d][row[d]])
                fields.update(flds[d][row[d]])
            if derive is not None:
                derive(constraints, fields)
            idx = start + k
            out.append(Prompt(idx, f"{prefix}{idx:09d}", system, render(fields), constraints))
        return out

    def prompt_at(self, index: int) -> Prompt:
        return self.generate(1, start=index)[0]

    def __iter__(self):
        start = 0
        while True:
            yield from self.generate(4096, start)
            start += 4096


class TextbookPromptGenerator(ConstraintGridPromptGenerator):
    """Prompts for textbook passages over topic leaf x audience x style x theme x word.

    Args:
        seed: sampling seed (same seed -> same prompts).
        topics, audiences, styles, vocabulary: bundled taxonomy names or paths to your own files.
        strata: dimensions given exact quotas (default ``("topic",)``, i.e. the topic leaf).

    Example:
        >>> gen = TextbookPromptGenerator(seed=0)
        >>> p = gen.prompt_at(0)
        >>> sorted(p.constraints)
        ['audience', 'category', 'style', 'subtopic', 'theme', 'topic', 'word']
    """

    ID_PREFIX = "tb"
    SYSTEM = (
        "You are an expert Python educator who writes clear, correct and self-contained textbook material "
        "for people learning to program."
    )
    TEMPLATE = (
        'Write one passage of a Python textbook about "{subtopic}" (topic: {topic}; area: {category}).\n'
        "Audience: {audience}.\n"
        "Style: {style_instruction}\n"
        'Set the examples in the context of {theme}, and use the word "{word}" naturally at least once.\n'
        "Requirements: every code example is complete, valid Python 3 in a ```python fenced block that runs "
        "on its own without input, files or network access; the passage has 300 to 800 words of prose "
        "interleaved with code; do not mention these instructions."
    )

    def __init__(
        self,
        seed: int = 0,
        topics: str | Path | dict = "topics",
        audiences: str | Path | list = "audiences",
        styles: str | Path | list = "styles",
        vocabulary: str | Path | dict = "vocabulary",
        strata: tuple[str, ...] | list[str] | None = None,
    ):
        super().__init__(seed=seed, strata=strata)
        self.topics, self.audiences, self.styles, self.vocabulary = topics, audiences, styles, vocabulary

    def _params(self) -> dict:
        return {
            "topics": self.topics,
            "audiences": self.audiences,
            "styles": self.styles,
            "vocabulary": self.vocabulary,
        }

    def _dimensions(self) -> list[_Dimension]:
        leaves = topic_leaves(self.topics)
        topic = _Dimension(
            "topic",
            [{"category": c, "topic": t, "subtopic": s} for c, t, s in leaves],
            [{"category": c, "topic": t, "subtopic": s} for c, t, s in leaves],
        )
        audiences = [str(a) for a in load_taxonomy(self.audiences)]
        audience = _Dimension(
            "audience", [{"audience": a} for a in audiences], [{"audience": a} for a in audiences]
        )
        styles = named_items(self.styles)
        style = _Dimension(
            "style",
            [{"style": n} for n, _ in styles],
            [{"style": n, "style_instruction": i} for n, i in styles],
        )
        vocab = load_taxonomy(self.vocabulary)
        themes = [str(t) for t in vocab["themes"]]
        words = [str(w) for w in vocab["words"]]
        theme = _Dimension("theme", [{"theme": t} for t in themes], [{"theme": t} for t in themes])
        word = _Dimension("word", [{"word": w} for w in words], [{"word": w} for w in words])
        return [topic, audience, style, theme, word]


class ExercisePromptGenerator(ConstraintGridPromptGenerator):
    """Prompts for exercises over topic leaf x difficulty x function name (verb x domain x noun).

    The function name ``<verb>_<domain>_<noun>`` is part of the constraint tuple; by default the strata
    are topic x difficulty, so function names never repeat until all verb x domain x noun names are used.
    The answer format (Signature / Docstring / Solution / Tests sections) is what
    :func:`synth.parse.parse_exercise` reads.

    Example:
        >>> p = ExercisePromptGenerator(seed=0).prompt_at(0)
        >>> p.constraints["function_name"].count("_") >= 2
        True
    """

    ID_PREFIX = "ex"
    DEFAULT_STRATA = ("topic", "difficulty")
    SYSTEM = (
        "You are an expert Python teacher who writes precise programming exercises with correct solutions "
        "and thorough tests."
    )
    TEMPLATE = (
        'Write a Python programming exercise about "{subtopic}" (topic: {topic}). The exercise is a single '
        "function named `{function_name}`, set in a {domain} scenario.\n"
        "{difficulty_instruction}\n"
        "Use only the Python standard library. Answer in exactly this format, with nothing before or after:\n\n"
        "### Signature\n```python\ndef {function_name}(...) -> ...:\n```\n"
        "### Docstring\n<what the function does, its arguments and return value, and a short example>\n"
        "### Solution\n```python\n<imports, then the complete function {function_name} with its signature and "
        "docstring>\n```\n"
        "### Tests\n```python\n<at least three assert statements that call {function_name} and check its "
        "results, including edge cases>\n```"
    )

    def __init__(
        self,
        seed: int = 0,
        topics: str | Path | dict = "topics",
        difficulties: str | Path | list = "difficulties",
        function_names: str | Path | dict = "function_names",
        strata: tuple[str, ...] | list[str] | None = None,
    ):
        super().__init__(seed=seed, strata=strata)
        self.topics, self.difficulties, self.function_names = topics, difficulties, function_names

    def _params(self) -> dict:
        return {
            "topics": self.topics,
            "difficulties": self.difficulties,
            "function_names": self.function_names,
        }

    def _dimensions(self) -> list[_Dimension]:
        leaves = topic_leaves(self.topics)
        topic = _Dimension(
            "topic",
            [{"category": c, "topic": t, "subtopic": s} for c, t, s in leaves],
            [{"category": c, "topic": t, "subtopic": s} for c, t, s in leaves],
        )
        levels = named_items(self.difficulties)
        difficulty = _Dimension(
            "difficulty",
            [{"difficulty": n} for n, _ in levels],
            [{"difficulty": n, "difficulty_instruction": i} for n, i in levels],
        )
        parts = load_taxonomy(self.function_names)
        verbs, domains, nouns = ([str(v) for v in parts[k]] for k in ("verbs", "domains", "nouns"))
        verb = _Dimension("verb", [{"verb": v} for v in verbs], [{"verb": v} for v in verbs])
        domain = _Dimension("domain", [{"domain": d} for d in domains], [{"domain": d} for d in domains])
        noun = _Dimension("noun", [{"noun": n} for n in nouns], [{"noun": n} for n in nouns])
        return [topic, difficulty, verb, domain, noun]

    @staticmethod
    def _derive(constraints: dict, fields: dict) -> None:
        name = f"{constraints['verb']}_{constraints['domain']}_{constraints['noun']}"
        constraints["function_name"] = fields["function_name"] = name
