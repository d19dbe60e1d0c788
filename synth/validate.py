"""Validate generations by parsing and execution: datatrove filters that keep only usable items.

An exercise is kept only if its solution parses and defines the requested function, its tests pass in
the sandbox, and the same tests FAIL when the function's body is replaced by ``return None`` (tests
that pass against a stub test nothing). Both checks go through the sandbox's default path: the tests
run in their own process and call the solution (or the stub) through plain-data proxies, with the
verdict mode chosen from the solution for both runs, so a stub cannot run in a weaker mode than its
solution. Every rejection carries one reason from
:data:`EXERCISE_REASONS` / :data:`TEXTBOOK_REASONS` in ``metadata["filter_reason"]`` (details in
``metadata["filter_detail"]``).
"""

from __future__ import annotations

import ast

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from synth.parse import PARSE_REASONS, parse_exercise, parse_textbook, stub_solution

EXERCISE_REASONS = PARSE_REASONS + (
    "tests_fail",  # an assertion failed against the model's own solution
    "tests_error",  # the solution or tests raised something else (NameError, ImportError, ...)
    "tests_timeout",  # ran past the time limit
    "tests_killed",  # killed for a resource limit (memory, output, file size)
    "tests_pass_on_stub",  # the tests pass even when the function does nothing
    "sandbox_error",  # the harness produced no verdict: recorded as such, never blamed on the code
    "budget_exhausted",  # never sent: the LLM budget did not cover it (a rerun with more budget will)
)
TEXTBOOK_REASONS = PARSE_REASONS + ("code_error", "code_timeout", "budget_exhausted")


def _llm_failure(doc: Document) -> str | None:
    err = doc.metadata.get("llm_error")
    return str(err) if err else None


def _llm_reason(error: str) -> str:
    # a prompt the budget did not cover is pending, not a failed request: its own reason
    return "budget_exhausted" if error == "budget_exhausted" else "llm_error"


def _status_reason(result) -> str:
    if result.error_type == "NoResult":  # the harness produced no verdict: say so, never blame the code
        return "sandbox_error"
    return {"failed": "tests_fail", "error": "tests_error", "killed": "tests_killed"}.get(
        result.status, "tests_timeout"
    )


def tests_program(tests: str) -> str:
    """The tests, plus calls to any top-level ``test*`` functions they define but might not call."""
    try:
        tree = ast.parse(tests)
    except SyntaxError:
        return tests
    names = [
        n.name
        for n in tree.body
        if isinstance(n, ast.FunctionDef)
        and n.name.startswith("test")
        and not n.args.args
        and not n.args.posonlyargs
    ]
    return tests + "".join(f"\n{name}()" for name in names) + ("\n" if names else "")


class _SandboxMixin:
    @property
    def sandbox(self):
        # created lazily so the step pickles for datatrove's executors
        if getattr(self, "_sandbox", None) is None:
            from curate.sandbox import Sandbox

            self._sandbox = Sandbox(timeout_s=self.timeout_s, memory_mb=self.memory_mb)
        return self._sandbox

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_sandbox"] = None
        return state


class ExerciseFilter(_SandboxMixin, BaseFilter):
    """Keep exercises whose solution passes its own tests and whose tests fail on a stub body.

    Reads the generation from ``doc.text`` and the requested name from ``metadata["constraints"]
    ["function_name"]`` (if any). A kept document's text becomes the solution (signature, docstring,
    body); ``tests``, ``signature``, ``docstring`` and ``entry_point`` go into its metadata.

    Args:
        timeout_s, memory_mb: sandbox limits per run.
        workers: concurrent sandbox runs.
        check_stub: also require the tests to fail on a ``return None`` stub (default True).
        batch_size: documents validated together (sandbox runs are batched across them).

    Example:
        >>> from datatrove.data import Document
        >>> f = ExerciseFilter(workers=1)
        >>> good = "```python\\ndef inc(x):\\n    return x + 1\\n```\\n```python\\nassert inc(1) == 2\\n```"
        >>> vacuous = "```python\\ndef inc(x):\\n    return x + 1\\n```\\n```python\\nassert True\\n```"
        >>> f.filter_batch([Document(good, "a"), Document(vacuous, "b")])
        [True, (False, 'tests_pass_on_stub')]
    """

    name = "🧪 Exercise validation"

    def __init__(
        self,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        workers: int = 2,
        check_stub: bool = True,
        batch_size: int = 64,
        exclusion_writer=None,
    ):
        super().__init__(exclusion_writer=exclusion_writer, batch_size=batch_size)
        self.timeout_s, self.memory_mb, self.workers, self.check_stub = (
            timeout_s,
            memory_mb,
            workers,
            check_stub,
        )

    def filter(self, doc: Document):
        return self.filter_batch([doc])[0]

    def filter_batch(self, batch: list[Document]) -> list:
        results: list = [None] * len(batch)
        parsed = {}
        for i, doc in enumerate(batch):
            llm_err = _llm_failure(doc)
            if llm_err:
                results[i] = self._reject(doc, _llm_reason(llm_err), llm_err)
                continue
            constraints = doc.metadata.get("constraints") or {}
            ex = parse_exercise(doc.text, constraints.get("function_name"), doc.metadata.get("finish_reason"))
            if ex.reason:
                results[i] = self._reject(doc, ex.reason, ex.detail)
            else:
                parsed[i] = ex
        # phase 1: the solution against its tests
        order = list(parsed)
        runs = self.sandbox.map(
            [(parsed[i].solution, tests_program(parsed[i].tests), parsed[i].solution) for i in order],
            workers=self.workers,
        )
        passing = []
        for i, res in zip(order, runs, strict=False):
            batch[i].metadata["test_status"] = res.status
            if res.status != "passed":
                detail = f"{res.error_type or res.status}: {res.output_tail[-300:]}".strip()
                results[i] = self._reject(batch[i], _status_reason(res), detail)
            else:
                passing.append(i)
        # phase 2: the same tests against a stub body (only for solutions that passed: less sandbox work)
        if self.check_stub and passing:
            jobs = [
                (
                    stub_solution(parsed[i].solution, parsed[i].function_name),
                    tests_program(parsed[i].tests),
                    parsed[i].solution,
                )
                for i in passing
            ]
            stubs = self.sandbox.map(jobs, workers=self.workers)
            for i, res in zip(passing, stubs, strict=False):
                batch[i].metadata["stub_status"] = res.status
                if res.passed:
                    results[i] = self._reject(
                        batch[i], "tests_pass_on_stub", "tests passed with a `return None` body"
                    )
        for i in passing:
            if results[i] is None:
                ex, meta = parsed[i], batch[i].metadata
                batch[i].text = ex.solution
                meta.update(
                    tests=ex.tests,
                    signature=ex.signature,
                    docstring=ex.docstring,
                    entry_point=ex.function_name,
                )
                self.stat_update("kept")
                results[i] = True
        return results

    def _reject(self, doc: Document, reason: str, detail: str = "") -> tuple[bool, str]:
        doc.metadata["filter_detail"] = detail[:500]
        return False, reason


class TextbookFilter(_SandboxMixin, BaseFilter):
    """Keep textbook passages that are complete, contain code, and whose Python blocks all parse.

    With ``execute=True`` the passage's Python blocks are also run, in order, as one program in the
    sandbox (blocks of a passage build on each other); a failing run gives ``code_error`` or
    ``code_timeout``. Off by default: styles such as "common mistakes" show failing code on purpose.

    Example:
        >>> from datatrove.data import Document
        >>> TextbookFilter().filter(Document("Sets.\\n```python\\ns = {1, 2}\\n```", "t"))
        True
    """

    name = "📖 Textbook validation"

    def __init__(
        self,
        require_code: bool = True,
        execute: bool = False,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        workers: int = 2,
        batch_size: int = 64,
        exclusion_writer=None,
    ):
        super().__init__(exclusion_writer=exclusion_writer, batch_size=batch_size)
        self.require_code, self.execute = require_code, execute
        self.timeout_s, self.memory_mb, self.workers = timeout_s, memory_mb, workers

    def filter(self, doc: Document):
        return self.filter_batch([doc])[0]

    def filter_batch(self, batch: list[Document]) -> list:
        results: list = [None] * len(batch)
        to_run = {}
        for i, doc in enumerate(batch):
            llm_err = _llm_failure(doc)
            if llm_err:
                doc.metadata["filter_detail"] = llm_err[:500]
                results[i] = (False, _llm_reason(llm_err))
                continue
            tb = parse_textbook(doc.text, doc.metadata.get("finish_reason"), require_code=self.require_code)
            doc.metadata["n_code_blocks"] = len(tb.code_blocks)
            doc.metadata["n_prose_blocks"] = tb.n_prose
            if tb.reason:
                doc.metadata["filter_detail"] = tb.detail[:500]
                results[i] = (False, tb.reason)
            elif self.execute and tb.code_blocks:
                to_run[i] = "\n\n".join(tb.code_blocks)
            else:
                results[i] = True
        if to_run:
            order = list(to_run)
            for i, res in zip(
                order, self.sandbox.map([(to_run[i], "") for i in order], workers=self.workers), strict=False
            ):
                batch[i].metadata["exec_status"] = res.status
                if res.status == "passed":
                    results[i] = True
                else:
                    batch[i].metadata["filter_detail"] = (
                        f"{res.error_type or res.status}: {res.output_tail[-300:]}"
                    )
                    results[i] = (
                        False,
                        "code_error" if res.status in ("failed", "error") else "code_timeout",
                    )
        return results
