"""One parser for Python code of any version: the running interpreter's ``ast`` first, then a
tree-sitter parse (newest grammar, error-tolerant) that tells Python 2 and newer-than-this-interpreter
code from broken code, and gives both a real ``ast`` tree.

How the tree is obtained when ``ast.parse`` fails (the choice, and why): tree-sitter-python accepts
almost everything (it reads Python 2 ``print``/``exec`` statements, ``except E, e``, backticks,
``<>``, ``0777`` and ``ur''`` as valid, and builds a tree around real errors), so its verdict alone
cannot say "valid". Instead its tree *locates* every construct this interpreter cannot parse, and
each is rewritten in place into the nearest construct it can (Python 2: ``print x`` -> ``print(x)``,
``except E, e`` -> ``except E as e``, ```x``` -> ``repr(x)``, ``<>`` -> ``!=``, ``0777`` -> ``0o777``,
``10L`` -> ``10``, ``ur''`` -> ``r''``, ``raise E, v`` -> ``raise E(v)``, ``exec s in d`` ->
``exec(s, d)``, tuple parameters -> one name, tabs expanded; newer Python: PEP 695 type parameters
dropped, ``type X = T`` -> ``X = T``, PEP 701 nested same-quote f-strings requoted, PEP 750
``t"..."`` -> ``f"..."``, PEP 758 ``except A, B:`` -> ``except (A, B):``). Every rewrite keeps line
numbers. The rewritten text must then pass ``ast.parse``: that is the verdict. A file is
``python2`` or ``newer_syntax`` only when the rewrites of that kind make it parse; anything else is
``syntax_error``. The result is a genuine ``ast.Module`` whose shape is the original's up to the
rewritten tokens (a ``print`` statement becomes the ``Call`` it is in Python 3; type parameters,
which do not change what code does, are gone, as decontam's shapes already drop annotations), so
features and AST match shapes are real rather than zero.

Dialects (:attr:`ParsedSource.dialect`): ``python3`` (the running ``ast`` accepts it), ``python2``,
``newer_syntax``, and the failures ``syntax_error``, ``too_deeply_nested``, ``too_complex``,
``invalid_source``.

Example:
    >>> parse_python('print "hello", name\\n').dialect
    'python2'
    >>> p = parse_python("class Stack[T]:\\n    def push(self, item: T) -> None: ...\\n")
    >>> p.dialect in ("newer_syntax", "python3"), type(p.tree).__name__
    (True, 'Module')
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

PYTHON3, PYTHON2, NEWER = "python3", "python2", "newer_syntax"
VALID_DIALECTS = (PYTHON3, PYTHON2, NEWER)
FAILURES = ("syntax_error", "too_deeply_nested", "too_complex", "invalid_source")
_PRINT_EXPRESSION = re.compile(rb"print[ \t]+[\[(\-+~]")
_OLD_OCTAL = re.compile(rb"0[0-9]+[lL]?")
_LONG_INT = re.compile(rb"(0[xXoObB])?[0-9a-fA-F_]+[lL]")
# exception classes are CamelCase; a lower-case name after the comma is Python 2's `except E, name`
_BINDING_NAME = re.compile(rb"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class ParsedSource:
    """What :func:`parse_python` found: the tree (None on failure), the dialect, the rewrites applied.

    ``source`` is the text ``tree`` was parsed from: the input itself for ``python3``, the rewritten
    text (same line numbers) for ``python2``/``newer_syntax``.
    """

    dialect: str
    tree: ast.Module | None = None
    source: str = ""
    rewrites: tuple[str, ...] = field(default_factory=tuple)
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def valid(self) -> bool:
        """The code is valid under some Python version (``tree`` may also hold a best-effort tree of
        broken code, for features and shapes)."""
        return self.dialect in VALID_DIALECTS


def _ast_parse(text: str) -> tuple[ast.Module | None, str | None, BaseException | None]:
    """``ast.parse`` that returns (tree, failure reason, exception) instead of raising."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarnings (invalid escapes in old code) are not errors
            return ast.parse(text), None, None
    except RecursionError as err:
        return None, "too_deeply_nested", err
    except MemoryError as err:  # the C parser's own stack overflowed on pathological input
        return None, "too_complex", err
    except SyntaxError as err:
        nested = "too many nested" in str(err) or "too complex" in str(err)
        return None, "too_deeply_nested" if nested else "syntax_error", err
    except ValueError as err:  # NUL bytes
        return None, "invalid_source", err


@lru_cache(maxsize=1)
def _ts_parser():
    import tree_sitter
    import tree_sitter_python

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_python.language()))


def _nodes(root):
    """Every node of a tree-sitter tree, pre-order, without recursion (deep files cannot overflow)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


Edit = tuple[int, int, bytes]  # replace source bytes [start, end) with the bytes


def _print_edits(node, src: bytes) -> list[Edit]:
    keyword, rest = node.children[0], node.children[1:]
    edits: list[Edit] = [(keyword.start_byte, keyword.end_byte, b"print(")]
    tail = b")"
    if rest and rest[0].type == "chevron":  # print >>f, x  ->  print(x, file=f)
        target = src[rest[0].children[-1].start_byte : rest[0].end_byte]
        after = rest[1] if len(rest) > 1 and rest[1].type == "," else None
        edits.append((rest[0].start_byte, (after or rest[0]).end_byte, b""))
        more = len(rest) > (2 if after else 1)
        tail = (b", " if more and rest[-1].type != "," else b"") + b"file=" + target + b")"
    edits.append((node.end_byte, node.end_byte, tail))
    return edits


def _print_expression_edits(node, src: bytes) -> list[Edit]:
    """In a Python 2 file, ``print [x], y``, ``print (a, b)`` or ``print -x`` are print statements
    that tree-sitter reads as expressions (a subscript, a call, a subtraction of ``print``)."""
    if not _PRINT_EXPRESSION.match(src, node.start_byte, node.end_byte):
        return []
    return [(node.start_byte, node.start_byte + 5, b"print("), (node.end_byte, node.end_byte, b")")]


def _exec_edits(node) -> list[Edit]:
    keyword = node.children[0]
    edits: list[Edit] = [(keyword.start_byte, keyword.end_byte, b"exec(")]
    edits += [(c.start_byte, c.end_byte, b",") for c in node.children if c.type == "in"]
    return edits + [(node.end_byte, node.end_byte, b")")]


def _raise_edits(node) -> list[Edit]:
    """``raise E, v`` -> ``raise E(v)``; ``raise E, v, tb`` -> ``raise E(v).with_traceback(tb)``."""
    values = next((c for c in node.children if c.type == "expression_list"), None)
    if values is None:
        return []
    commas = [c for c in values.children if c.type == ","]
    if len(commas) not in (1, 2):
        return []
    edits: list[Edit] = [(commas[0].start_byte, commas[0].end_byte, b"(")]
    if len(commas) == 2:
        edits.append((commas[1].start_byte, commas[1].end_byte, b").with_traceback("))
    return edits + [(values.end_byte, values.end_byte, b")")]


def _except_edits(node, src: bytes, python2_elsewhere: bool) -> tuple[list[Edit], str | None]:
    """``except E, e:`` (Python 2 binding) or ``except A, B:`` (3.14, PEP 758: a tuple of classes)."""
    commas = [c for c in node.children if c.type == ","]
    if not commas:
        return [], None
    values = [c for c in node.children if c.is_named and c.type != "block"]
    name = src[values[-1].start_byte : values[-1].end_byte]
    if len(commas) == 1 and (python2_elsewhere or _BINDING_NAME.fullmatch(name)):
        return [(commas[0].start_byte, commas[0].end_byte, b" as")], PYTHON2
    return [
        (values[0].start_byte, values[0].start_byte, b"("),
        (values[-1].end_byte, values[-1].end_byte, b")"),
    ], NEWER


def _string_edits(node, src: bytes) -> tuple[list[Edit], str | None, str]:
    """Backticks (Python 2 ``repr``), ``ur''`` prefixes, t-strings, nested same-quote f-strings."""
    start, end = node.children[0], node.children[-1]
    opener = src[start.start_byte : start.end_byte]
    if opener == b"`":
        edits = [(start.start_byte, start.end_byte, b"repr("), (end.start_byte, end.end_byte, b")")]
        return edits, PYTHON2, "backtick_repr"
    prefix = opener.rstrip(b"'\"").lower()
    if b"u" in prefix and b"r" in prefix:
        i = opener.lower().index(b"u")
        return [(start.start_byte + i, start.start_byte + i + 1, b"")], PYTHON2, "ur_string_prefix"
    edits: list[Edit] = []
    construct = "template_string" if b"t" in prefix else "nested_fstring"
    if b"t" in prefix:  # a t-string's Template has the f-string's parts: the shape of a JoinedStr
        i = opener.lower().index(b"t")
        edits.append((start.start_byte + i, start.start_byte + i + 1, b"f"))
    if (b"f" in prefix or b"t" in prefix) and _reuses_quote(node, src, opener[len(prefix) :]):
        quote = opener[len(prefix) :]
        other = b"'''" if quote[:1] == b'"' else b'"""'
        if len(quote) == 1:  # requote the outer string so the inner one's quotes no longer close it
            edits += [(start.end_byte - 1, start.end_byte, other), (end.start_byte, end.end_byte, other)]
    return edits, (NEWER if edits else None), construct


def _reuses_quote(node, src: bytes, quote: bytes) -> bool:
    """An f-string whose replacement fields hold a string with its own quote character (PEP 701)."""
    for child in node.children:
        if child.type == "interpolation":
            for inner in _nodes(child):
                if inner.type == "string_start" and src[inner.start_byte : inner.end_byte].endswith(
                    quote[:1]
                ):
                    return True
    return False


def _number_edits(node, src: bytes) -> list[Edit]:
    text = src[node.start_byte : node.end_byte]
    if _OLD_OCTAL.fullmatch(text) and text.rstrip(b"lL") != b"0" * len(text.rstrip(b"lL")):
        digits = text.rstrip(b"lL").lstrip(b"0")
        return [(node.start_byte, node.end_byte, b"0o" + digits)]
    if _LONG_INT.fullmatch(text):
        return [(node.end_byte - 1, node.end_byte, b"")]
    return []


_STATEMENTS = {
    "print_statement": (lambda n, src: _print_edits(n, src), PYTHON2),
    "exec_statement": (lambda n, src: _exec_edits(n), PYTHON2),
    "raise_statement": (lambda n, src: _raise_edits(n), PYTHON2),
    "<>": (lambda n, src: [(n.start_byte, n.end_byte, b"!=")], PYTHON2),
    "integer": (lambda n, src: _number_edits(n, src), PYTHON2),
    "type_alias_statement": (lambda n, src: _type_alias_edits(n), NEWER),
}
_CONSTRUCTS = {"<>": "diamond_operator", "integer": "old_integer_literal", "raise_statement": "raise_comma",
               "type_alias_statement": "type_alias"}  # fmt: skip


def _node_edits(node, src: bytes, python2_elsewhere: bool) -> tuple[list[Edit], str | None, str]:
    """The rewrites one tree-sitter node calls for, their dialect, and the construct's name."""
    kind, parent = node.type, (node.parent.type if node.parent is not None else "")
    if kind in _STATEMENTS:
        make, dialect = _STATEMENTS[kind]
        return make(node, src), dialect, _CONSTRUCTS.get(kind, kind)
    if kind == "except_clause":
        return *_except_edits(node, src, python2_elsewhere), "except_comma"
    if kind == "string" and node.children:
        return _string_edits(node, src)
    if kind == "expression_statement" and python2_elsewhere:
        return _print_expression_edits(node, src), PYTHON2, "print_statement"
    if kind == "tuple_pattern" and parent in ("parameters", "lambda_parameters"):
        return (
            [(node.start_byte, node.end_byte, b"_tuple_param_%d" % node.start_byte)],
            PYTHON2,
            "tuple_parameter",
        )
    if kind == "type_parameter" and parent in ("class_definition", "function_definition"):
        return [(node.start_byte, node.end_byte, b"")], NEWER, "type_parameters"
    return [], None, ""


def _collect_edits(root, src: bytes) -> tuple[list[Edit], dict[str, str]]:
    """Every rewrite tree-sitter's tree calls for, and which dialect each construct belongs to."""
    nodes = list(_nodes(root))
    python2_elsewhere = any(n.type in ("print_statement", "exec_statement") for n in nodes)
    edits: list[Edit] = []
    found: dict[str, str] = {}
    for node in nodes:
        new, dialect, construct = _node_edits(node, src, python2_elsewhere)
        if new and dialect:
            edits.extend(new)
            found.setdefault(construct, dialect)
    return edits, found


def _type_alias_edits(node) -> list[Edit]:
    """``type X[T] = list[T]`` -> ``X = list[T]`` (PEP 695 alias as the assignment it replaces)."""
    keyword, left = node.children[0], node.child_by_field_name("left")
    if left is None:
        return []
    edits: list[Edit] = [(keyword.start_byte, left.start_byte, b"")]
    generic = left.children[0] if left.children and left.children[0].type == "generic_type" else None
    if generic is not None:
        edits += [(c.start_byte, c.end_byte, b"") for c in generic.children if c.type == "type_parameter"]
    return edits


def _apply(src: bytes, edits: list[Edit]) -> bytes:
    """Apply non-overlapping edits (an edit overlapping an earlier one is left out)."""
    out, pos = [], 0
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1] > e[0])):
        if start < pos:
            continue
        out += [src[pos:start], new]
        pos = end
    out.append(src[pos:])
    return b"".join(out)


def _expand_leading_tabs(text: str) -> str:
    """Python 2 read a tab as up to 8 columns; Python 3 refuses inconsistent tabs (TabError)."""
    return re.sub(r"(?m)^[ \t]+", lambda m: m.group(0).expandtabs(8), text)


def parse_python(text: str) -> ParsedSource:
    """Parse Python source of any version into an ``ast.Module`` (see the module docstring).

    Never raises: failures come back as a :class:`ParsedSource` with ``tree=None``, a failure
    dialect and ``error``.

    Example:
        >>> parse_python("x = 1\\n").dialect, parse_python("def f(:\\n").dialect
        ('python3', 'syntax_error')
        >>> p = parse_python("try:\\n    f()\\nexcept IOError, err:\\n    print err\\n")
        >>> p.dialect, p.rewrites
        ('python2', ('except_comma', 'print_statement'))
    """
    if text.startswith("\ufeff"):  # a UTF-8 byte-order mark that decoding left in place
        text = text[1:]
    tree, reason, err = _ast_parse(text)
    if tree is not None:
        return ParsedSource(PYTHON3, tree, text)
    error = f"{type(err).__name__}: {err}"[:300]
    if reason != "syntax_error":
        return ParsedSource(reason, error=error, exception=err)
    src = text.encode("utf-8", "surrogatepass")
    edits, found = _collect_edits(_ts_parser().parse(src).root_node, src)
    candidate = _apply(src, edits).decode("utf-8", "surrogatepass") if edits else text
    tree, _, err2 = _ast_parse(candidate)
    if tree is None and isinstance(err2 or err, TabError):
        candidate = _expand_leading_tabs(candidate)
        found.setdefault("inconsistent_tabs", PYTHON2)
        tree, _, _ = _ast_parse(candidate)
    if tree is not None and found:
        return ParsedSource(
            PYTHON2 if PYTHON2 in found.values() else NEWER, tree, candidate, tuple(sorted(found))
        )
    # broken code: the verdict stays syntax_error, but features and shapes get the tree of the rest
    tree, candidate, dropped = _without_failing_lines(candidate)
    rewrites = tuple(sorted(found)) + ((f"dropped_lines:{dropped}",) if tree is not None else ())
    return ParsedSource("syntax_error", tree, candidate if tree is not None else "", rewrites, error, err)


def _without_failing_lines(text: str, max_lines: int = 10) -> tuple[ast.Module | None, str, int]:
    """Replace the lines ``ast`` reports as failing (at most ``max_lines``) by ``pass`` (a block
    header by ``if True:``, so its block stays a block) until the rest parses."""
    lines = text.split("\n")
    for dropped in range(max_lines + 1):
        tree, reason, err = _ast_parse("\n".join(lines))
        if tree is not None:
            return tree, "\n".join(lines), dropped
        lineno = getattr(err, "lineno", None)
        if reason != "syntax_error" or not lineno or lineno > len(lines) or dropped == max_lines:
            break
        line = lines[lineno - 1]
        indent = line[: len(line) - len(line.lstrip())]
        replacement = indent + ("if True:" if line.rstrip().endswith(":") else "pass")
        if line == replacement:
            break
        lines[lineno - 1] = replacement
    return None, text, 0


def parse_valid(text: str) -> ast.Module:
    """The ``ast.Module`` of ``text`` if it is valid Python of any version (see :func:`parse_python`);
    else raises what ``ast.parse`` raised (``SyntaxError``, ``RecursionError``, ``MemoryError``,
    ``ValueError``), so it replaces ``ast.parse`` where a caller handles those.

    Example:
        >>> type(parse_valid("exec 'x = 1'\\n").body[0].value).__name__
        'Call'
    """
    parsed = parse_python(text)
    if parsed.valid:
        return parsed.tree
    raise parsed.exception


def python_dialect(text: str) -> str:
    """The dialect of ``text``: ``python3``, ``python2``, ``newer_syntax`` or a failure reason.

    Example:
        >>> python_dialect("type Pair[T] = tuple[T, T]\\n") in ("newer_syntax", "python3")
        True
    """
    return parse_python(text).dialect
