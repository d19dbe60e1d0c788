"""Deduplicate generations: exact, AST-normalised duplicate solutions, function-name collisions, MinHash.

Checks run in that order over documents in their (deterministic) prompt order; the first occurrence is
kept, every later one is marked with a reason from :data:`DEDUP_REASONS` and ``duplicate_of``.
"""

from __future__ import annotations

import ast
import hashlib

from datatrove.data import Document

from curate.dedup import content_hash

DEDUP_REASONS = ("exact_duplicate", "duplicate_solution", "function_name_collision", "near_duplicate")


class _Canonicalise(ast.NodeTransformer):
    """Rename the names the code binds (defs, arguments, assignment targets) to placeholders in order
    of first appearance and drop docstrings. Free names (builtins, imports) are kept: ``len(x)`` and
    ``sum(x)`` must stay different."""

    def __init__(self, tree: ast.AST):
        self.names: dict[str, str] = {}
        self.bound: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.bound.add(node.name)
            elif isinstance(node, ast.arg):
                self.bound.add(node.arg)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.bound.add(node.id)

    def _n(self, name: str) -> str:
        if name not in self.bound:
            return name
        return self.names.setdefault(name, f"v{len(self.names)}")

    def _strip_doc(self, node):
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(getattr(body[0], "value", None), ast.Constant)
        ):
            if isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        return node

    def visit_Module(self, node):
        self.generic_visit(node)
        return self._strip_doc(node)

    def visit_FunctionDef(self, node):
        node.name = self._n(node.name)
        self.generic_visit(node)
        return self._strip_doc(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        node.name = self._n(node.name)
        self.generic_visit(node)
        return self._strip_doc(node)

    def visit_Name(self, node):
        node.id = self._n(node.id)
        return node

    def visit_arg(self, node):
        node.arg = self._n(node.arg)
        node.annotation = None  # type hints do not change what a solution does
        return node


def ast_fingerprint(code: str) -> str | None:
    """Hash of the code's AST with identifiers renamed, docstrings, comments and annotations removed.

    Two solutions that differ only in names, formatting, comments or docstrings share a fingerprint;
    ``None`` for code that does not parse.

    Example:
        >>> a = "def add(a, b):\\n    '''Sum.'''\\n    return a + b  # plus"
        >>> b = "def plus(x: int, y: int) -> int:\\n    return x + y"
        >>> ast_fingerprint(a) == ast_fingerprint(b)
        True
        >>> ast_fingerprint("def f(x):\\n    return len(x)") == ast_fingerprint("def f(x):\\n    return sum(x)")
        False
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    tree = _Canonicalise(tree).visit(tree)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


def _function_name(doc: Document) -> str | None:
    meta = doc.metadata
    return meta.get("entry_point") or (meta.get("constraints") or {}).get("function_name")


class SynthDeduplicator:
    """Find duplicates among generated documents (whole-set, in memory: generations are small).

    Args:
        exact: exact duplicates of the normalised text.
        ast_solutions: duplicate solutions after AST normalisation (Python texts only).
        function_names: a function name already used by a kept exercise.
        near: MinHash near-duplicates via :func:`curate.near_dedup.minhash_clusters` (``"auto"``: when
            that module is installed; ``near_dedup_used`` says whether it ran).
        threshold, num_perm, shingle_size: MinHash parameters.

    Example:
        >>> docs = [Document("def f(x):\\n    return x * 2\\n", "a"), Document("def g(y):\\n    return y * 2", "b")]
        >>> SynthDeduplicator(near=False).find(docs)
        {'b': ('duplicate_solution', 'a')}
    """

    def __init__(
        self,
        exact: bool = True,
        ast_solutions: bool = True,
        function_names: bool = True,
        near: bool | str = "auto",
        threshold: float = 0.8,
        num_perm: int = 128,
        shingle_size: int = 5,
    ):
        self.exact, self.ast_solutions, self.function_names, self.near = (
            exact,
            ast_solutions,
            function_names,
            near,
        )
        self.threshold, self.num_perm, self.shingle_size = threshold, num_perm, shingle_size
        self.near_dedup_used = False

    def find(self, docs: list[Document]) -> dict[str, tuple[str, str]]:
        """``{duplicate id: (reason, id of the kept document)}`` for every document to drop."""
        dups: dict[str, tuple[str, str]] = {}
        seen_text: dict[int, str] = {}
        seen_ast: dict[str, str] = {}
        seen_name: dict[str, str] = {}
        for doc in docs:
            did = str(doc.id)
            if self.exact:
                h = content_hash(doc.text)
                if h in seen_text:
                    dups[did] = ("exact_duplicate", seen_text[h])
                    continue
                seen_text[h] = did
            if self.ast_solutions:
                fp = ast_fingerprint(doc.text)
                if fp is not None:
                    if fp in seen_ast:
                        dups[did] = ("duplicate_solution", seen_ast[fp])
                        continue
                    seen_ast[fp] = did
            if self.function_names:
                name = _function_name(doc)
                if name:
                    if name in seen_name:
                        dups[did] = ("function_name_collision", seen_name[name])
                        continue
                    seen_name[name] = did
        minhash_clusters = self._minhash() if self.near else None
        if minhash_clusters is not None:
            self.near_dedup_used = True
            rest = [d for d in docs if str(d.id) not in dups]
            if len(rest) > 1:
                clusters = minhash_clusters(
                    [d.text for d in rest],
                    [str(d.id) for d in rest],
                    threshold=self.threshold,
                    num_perm=self.num_perm,
                    shingle_size=self.shingle_size,
                )
                for d in rest:
                    rep = clusters.get(str(d.id), str(d.id))
                    if rep != str(d.id):
                        dups[str(d.id)] = ("near_duplicate", rep)
        return dups

    def _minhash(self):
        try:
            from curate.near_dedup import minhash_clusters
        except ImportError:
            if self.near == "auto":
                return None
            raise
        return minhash_clusters

    def split(self, docs: list[Document]) -> tuple[list[Document], list[Document]]:
        """``(kept, dropped)``; dropped documents get ``filter_reason`` and ``duplicate_of`` metadata."""
        dups = self.find(docs)
        kept, dropped = [], []
        for doc in docs:
            hit = dups.get(str(doc.id))
            if hit is None:
                kept.append(doc)
            else:
                doc.metadata["filter_reason"], doc.metadata["duplicate_of"] = hit
                dropped.append(doc)
        return kept, dropped
