"""Evaluation: pass@k on HumanEval and MBPP (both prompt formats), similar/non-similar subsets from
decontam's ``split.json``, and LLM-graded evaluation. Code runs in :class:`curate.sandbox.Sandbox`.

    from train.evaluate import evaluate
    evaluate("humaneval", model="out/phi-tiny", n_samples=1, k=[1], output_dir="out/eval")
"""

from curate.lazy import lazy_exports

_EXPORTS = {
    "evaluate": "train.evaluate.evaluation",
    "pass_at_k": "train.evaluate.passk",
    "mean_pass_at_k": "train.evaluate.passk",
    "build_tasks": "train.evaluate.tasks",
    "EvalTask": "train.evaluate.tasks",
    "humaneval_job": "train.evaluate.tasks",
    "HFGenerator": "train.evaluate.generate",
    "EndpointGenerator": "train.evaluate.generate",
    "read_samples": "train.evaluate.generate",
    "grade_solutions": "train.evaluate.grader",
    "RUBRIC_PROMPT": "train.evaluate.grader",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
