"""Parse generations: textbooks into prose and code blocks, exercises into signature, docstring, solution, tests.

Parsing never raises on bad model output: a parse that fails carries a ``reason`` (one of
:data:`PARSE_REASONS`), which the validators record as the rejection reason.
"""

from __future__ import annotations

import ast
import copy
import re
from dataclasses import dataclass, field

#: reasons a generation can fail to parse
PARSE_REASONS = (
    "llm_error",  # the request itself failed (after retries) or the budget ran out
    "empty",  # no text at all
    "truncated",  # the model hit max_tokens, or a code fence was never closed
    "no_code",  # no code block where one was required
    "syntax_error",  # a Python code block does not parse
    "missing_function",  # the solution does not define the requested function
    "no_tests",  # the tests section is missing or asserts nothing
    "tests_syntax_error",  # the tests do not parse
)

#: finish_reason of an answer cut at max_tokens whose unfinished tail was removed (cut_to_complete_blocks)
CUT = "length_cut"
_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([\w+#.-]*)[^\n]*$", re.MULTILINE)
_PY_LANGS = {"", "python", "py", "python3", "pycon", "ipython"}
_SECTION = re.compile(
    r"^[ \t]*#{2,4}[ \t]*(signature|docstring|solution|tests?)\b[^\n]*$", re.IGNORECASE | re.MULTILINE
)


@dataclass
class Block:
    """A prose or code segment of a generation (in order)."""

    kind: str  # "prose" | "code"
    text: str
    lang: str = ""
    closed: bool = True  # False for a code fence the text ended inside

    @property
    def is_python(self) -> bool:
        return self.kind == "code" and self.lang.lower() in _PY_LANGS


def split_blocks(text: str) -> list[Block]:
    """Split markdown-ish text into prose and fenced code blocks, in order.

    Example:
        >>> [b.kind for b in split_blocks("Intro\\n```python\\nx = 1\\n```\\nMore")]
        ['prose', 'code', 'prose']
    """
    blocks: list[Block] = []
    pos = 0
    fences = list(_FENCE.finditer(text))
    k = 0
    while k < len(fences):
        opening = fences[k]
        prose = text[pos : opening.start()]
        if prose.strip():
            blocks.append(Block("prose", prose.strip("\n")))
        marker, lang = opening.group(1), opening.group(2)
        # the closing fence: the next fence line of the same kind with no language tag
        close = next(
            (
                j
                for j in range(k + 1, len(fences))
                if fences[j].group(1)[0] == marker[0] and not fences[j].group(2)
            ),
            None,
        )
        body_start = opening.end() + 1
        if close is None:
            blocks.append(Block("code", text[body_start:], lang, closed=False))
            return blocks
        blocks.append(Block("code", text[body_start : fences[close].start()].rstrip("\n"), lang))
        pos = fences[close].end() + 1
        k = close + 1
    tail = text[pos:]
    if tail.strip():
        blocks.append(Block("prose", tail.strip("\n")))
    return blocks


def syntax_error(code: str) -> str | None:
    """``None`` if ``code`` parses as Python, else a short description of the error."""
    try:
        ast.parse(code)
    except SyntaxError as e:
        return f"SyntaxError: {e.msg} (line {e.lineno})"
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, absurd nesting
        return f"{type(e).__name__}: {e}"
    return None


@dataclass
class ParsedTextbook:
    blocks: list[Block]
    reason: str | None = None  # None when the passage is usable
    detail: str = ""
    code_blocks: list[str] = field(default_factory=list)  # the Python code blocks, in order

    @property
    def n_prose(self) -> int:
        return sum(b.kind == "prose" for b in self.blocks)


def parse_textbook(
    text: str | None, finish_reason: str | None = None, require_code: bool = True
) -> ParsedTextbook:
    """Split a textbook passage into blocks and check every Python block parses.

    Example:
        >>> parse_textbook("Lists hold items.\\n```python\\nxs = [1, 2]\\n```").reason is None
        True
        >>> parse_textbook("Text\\n```python\\ndef f(:\\n```").reason
        'syntax_error'
    """
    if not text or not text.strip():
        return ParsedTextbook([], "empty")
    blocks = split_blocks(text)
    if finish_reason == "length" or any(not b.closed for b in blocks):
        return ParsedTextbook(blocks, "truncated", f"finish_reason={finish_reason}")
    code = []
    for b in blocks:
        if not b.is_python or not b.text.strip():
            continue
        source = session_source(b.text)
        err = syntax_error(source)
        if err and not b.lang:
            continue  # an untagged block that is not Python is program output or prose, not broken code
        if err:
            return ParsedTextbook(blocks, "syntax_error", f"code block {len(code)}: {err}", code)
        code.append(source)
    if require_code and not code:
        return ParsedTextbook(blocks, "no_code")
    return ParsedTextbook(blocks, None, "", code)


def session_source(code: str) -> str:
    """The source typed into an interactive session (lines after the ``>>>`` / ``...`` prompts), so a
    ``pycon`` block parses; code without prompts is returned unchanged (tested in tests/synth)."""
    lines = code.split("\n")
    if not any(line.lstrip().startswith(">>>") for line in lines):
        return code
    out = []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith(">>>") or stripped.startswith("..."):
            out.append(stripped[4:] if len(stripped) > 3 and stripped[3] == " " else stripped[3:])
    return "\n".join(out)


@dataclass
class ParsedExercise:
    function_name: str | None = None
    signature: str = ""
    docstring: str = ""
    solution: str = ""
    tests: str = ""
    reason: str | None = None  # None when all parts were found and parse
    detail: str = ""
    # how an answer off the asked-for format was read: "no_sections" (no ### headings), "tests_unheaded"
    # (the tests were another block), "inline_tests" (the checks followed the function in its own block)
    fallback: str | None = None


def _sections(text: str) -> dict[str, str]:
    marks = list(_SECTION.finditer(text))
    out: dict[str, str] = {}
    for k, m in enumerate(marks):
        name = m.group(1).lower().rstrip("s") if m.group(1).lower().startswith("test") else m.group(1).lower()
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        out.setdefault(name, text[m.end() : end])
    return out


def _first_code(section: str) -> str | None:
    for b in split_blocks(section):
        if b.kind == "code" and b.text.strip():
            return b.text
    return None


def _find_function(tree: ast.Module, name: str | None) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if name is None:
        return defs[0] if defs else None
    return next((d for d in defs if d.name == name), None)


def _signature(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    head = copy.copy(fn)  # shallow: only body and decorators are replaced
    head.body, head.decorator_list = [ast.Pass()], []
    return ast.unparse(head).rsplit("\n", 1)[0]


def _has_checks(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            return True
    return False


def _find_tests(sections: dict[str, str], code_blocks: list[str], solution: str) -> tuple[str, str | None]:
    """(solution, tests): the Tests section; without one, another block that checks something, or the
    checks at the end of the solution's own block (then cut from the solution)."""
    tests = _first_code(sections["test"]) if "test" in sections else None
    if tests is None:
        tests = next((c for c in code_blocks if c is not solution and _parses_with_checks(c)), None)
    if tests is None and "test" not in sections:
        return _split_inline_tests(solution)
    return solution, tests


def _parses_with_checks(code: str) -> bool:
    return syntax_error(code) is None and _has_checks(ast.parse(code))


def _split_inline_tests(solution: str) -> tuple[str, str]:
    """One block holding the function and its checks: (definitions, the top-level checks after them).

    >>> _split_inline_tests("def f():\\n    return 1\\n\\nassert f() == 1\\n")
    ('def f():\\n    return 1', 'assert f() == 1')
    """
    tree = ast.parse(solution)
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    for k, node in enumerate(tree.body):
        rest = tree.body[k:]
        is_test = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")
        if (is_test or not isinstance(node, definitions)) and _has_checks(
            ast.Module(body=rest, type_ignores=[])
        ):
            lines = solution.splitlines()
            return "\n".join(lines[: node.lineno - 1]).rstrip(), "\n".join(lines[node.lineno - 1 :]).strip()
    return solution, ""


def parse_exercise(
    text: str | None, function_name: str | None = None, finish_reason: str | None = None
) -> ParsedExercise:
    """Parse an exercise answer (``### Signature / Docstring / Solution / Tests`` sections, as the
    :class:`~synth.prompts.ExercisePromptGenerator` asks for; plain fenced blocks are accepted too).

    Example:
        >>> ans = '''### Solution
        ... ```python
        ... def add(a: int, b: int) -> int:
        ...     \"\"\"Add two numbers.\"\"\"
        ...     return a + b
        ... ```
        ... ### Tests
        ... ```python
        ... assert add(1, 2) == 3
        ... ```'''
        >>> ex = parse_exercise(ans, "add")
        >>> ex.reason, ex.signature, ex.docstring
        (None, 'def add(a: int, b: int) -> int:', 'Add two numbers.')
    """
    ex = ParsedExercise(function_name=function_name)
    if not text or not text.strip():
        ex.reason = "empty"
        return ex
    blocks = split_blocks(text)
    if finish_reason == "length" or any(not b.closed for b in blocks):
        ex.reason, ex.detail = "truncated", f"finish_reason={finish_reason}"
        return ex
    sections = _sections(text)
    code_blocks = [b.text for b in blocks if b.kind == "code" and b.text.strip()]
    solution = _first_code(sections["solution"]) if "solution" in sections else None
    if solution is None:  # no headed section: the first block defining a function
        solution = next((c for c in code_blocks if re.search(r"^\s*(async\s+)?def\s", c, re.M)), None)
        ex.fallback = "no_sections"
    if solution is None:
        ex.reason = "no_code"
        return ex
    ex.solution = solution
    err = syntax_error(solution)
    if err:
        ex.reason, ex.detail = "syntax_error", err
        return ex
    fn = _find_function(ast.parse(solution), function_name)
    if fn is None:
        ex.reason, ex.detail = "missing_function", f"no top-level def {function_name or ''}".strip()
        return ex
    ex.function_name = fn.name
    ex.signature = _signature(fn)
    ex.docstring = ast.get_docstring(fn) or (sections.get("docstring") or "").strip()
    ex.solution, tests = _find_tests(sections, code_blocks, solution)
    if "test" not in sections and tests:
        ex.fallback = ex.fallback or ("inline_tests" if ex.solution != solution else "tests_unheaded")
    if not tests or not tests.strip():
        ex.reason = "no_tests"
        return ex
    ex.tests = tests
    err = syntax_error(tests)
    if err:
        ex.reason, ex.detail = "tests_syntax_error", err
        return ex
    if not _has_checks(ast.parse(tests)):
        ex.reason, ex.detail = "no_tests", "no assert statement or test function"
    return ex


def cut_to_complete_blocks(text: str | None) -> str | None:
    """An answer cut at max_tokens without its unfinished tail: the text up to the end of its last closed
    code block (the prose and code before it are whole), or None when no code block was closed.

    >>> cut_to_complete_blocks("Lists.\\n```python\\nxs = [1]\\n```\\nNow we loop over th")
    'Lists.\\n```python\\nxs = [1]\\n```'
    >>> cut_to_complete_blocks("Lists.\\n```python\\nxs = [") is None
    True
    """
    if not text:
        return None
    fences, end, k = list(_FENCE.finditer(text)), None, 0
    while k < len(fences):  # pair fences as split_blocks does: a closing fence has no language tag
        marker = fences[k].group(1)[0]
        close = next((j for j in range(k + 1, len(fences))
                      if fences[j].group(1)[0] == marker and not fences[j].group(2)), None)  # fmt: skip
        if close is None:
            break
        end, k = fences[close].end(), close + 1
    return text[:end] if end is not None else None


def parse_outcome(kind: str, text: str | None, finish_reason: str | None = None,
                  function_name: str | None = None, llm_error: str | None = None) -> tuple[str, str | None]:
    """How one generation reads: ``("parsed", None)`` in the asked-for format, ``("fallback_parsed", how)``
    read another way (see :attr:`ParsedExercise.fallback`), or ``("failed", reason)`` (a PARSE_REASONS).

    >>> parse_outcome("exercises", "```python\\ndef f():\\n    return 1\\n\\nassert f() == 1\\n```")
    ('fallback_parsed', 'no_sections')
    >>> parse_outcome("textbooks", "Text\\n```python\\nx = (\\n```", "length")
    ('failed', 'truncated')
    """
    if llm_error:
        return "failed", "llm_error"
    if kind == "textbooks":
        reason, fallback = parse_textbook(text, finish_reason).reason, None
    else:
        ex = parse_exercise(text, function_name, finish_reason)
        reason, fallback = ex.reason, ex.fallback
    if reason is not None:
        return "failed", reason
    if finish_reason == CUT:
        fallback = "cut_at_max_tokens"
    return ("fallback_parsed", fallback) if fallback else ("parsed", None)


def stub_solution(solution: str, function_name: str) -> str:
    """The solution with ``function_name``'s body replaced by ``return None`` (docstring kept).

    Tests that still pass against the stub test nothing about the function, so the validator rejects
    them (``tests_pass_on_stub``).

    Example:
        >>> print(stub_solution("import math\\ndef f(x):\\n    '''Doc.'''\\n    return math.sqrt(x)", "f"))
        import math
        <BLANKLINE>
        def f(x):
            \"\"\"Doc.\"\"\"
            return None
    """
    tree = ast.parse(solution)
    fn = _find_function(tree, function_name)
    if fn is None:
        raise ValueError(f"no top-level function {function_name!r}")
    body: list[ast.stmt] = []
    if ast.get_docstring(fn, clean=False) is not None:
        body.append(fn.body[0])
    body.append(ast.Return(value=ast.Constant(value=None)))
    fn.body = body
    return ast.unparse(ast.fix_missing_locations(tree))


def imported_modules(code: str) -> list[str]:
    """Top-level module names a piece of code imports (``import a.b`` -> ``a``), for the library histogram.

    Example:
        >>> imported_modules("import os.path\\nfrom collections import Counter\\nimport numpy as np")
        ['collections', 'numpy', 'os']
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # fall back to a line scan so unparsable snippets still count
        names = re.findall(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", code, re.M)
        return sorted(set(names))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return sorted(names)
