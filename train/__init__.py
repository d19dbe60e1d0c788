"""train: tokenizer, token packing, model presets, the Accelerate trainer and evaluation (pass@k).
Imports `curate` and `decontam` only.

Public names are imported lazily so importing the package stays fast.
"""

from curate.lazy import lazy_exports

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # train.evaluate.evaluate (the function) is reached through its subpackage of the same name
    "pass_at_k": "train.evaluate",
    "grade_solutions": "train.evaluate",
    "train_tokenizer": "train.tokenizer",
    "load_tokenizer": "train.tokenizer",
    "prepare_tokens": "train.prepare",
    "TokenFile": "train.prepare",
    "TokenFileError": "train.prepare",
    "tokenize_shards": "train.shards",
    "open_tokens": "train.shards",
    "convert_tokens": "train.shards",
    "phi_config": "train.presets",
    "PRESETS": "train.presets",
    "TrainConfig": "train.config",
    "train": "train.trainer",
    "export_model": "train.export",
    "AblationConfig": "train.ablate",
    "ablate": "train.ablate",
    "conditional_loss": "train.evaluate.condloss",
}

# short step name usable in recipes (`uses: NAME`) -> "module:Class"
STEPS: dict[str, str] = {}

# short job name usable in recipes (a stage that runs a function, not a pipeline) -> "module:function"
JOBS: dict[str, str] = {
    "evaluate": "train.evaluate.evaluation:evaluate",
    "llm_grade": "train.evaluate.grader:grade_solutions",
    "train_tokenizer": "train.tokenizer:train_tokenizer",
    "prepare_tokens": "train.prepare:prepare_tokens",
    "tokenize_shards": "train.shards:tokenize_shards",
    "convert_tokens": "train.shards:convert_tokens",
    "train": "train.trainer:train",
    "export_model": "train.export:export_model",
    "ablate": "train.ablate:ablate",
}

# a job whose function takes **kwargs -> the pydantic model its recipe `with:` is validated against
JOB_CONFIGS: dict[str, str] = {"train": "train.config:TrainConfig", "ablate": "train.ablate:AblationConfig"}

__all__ = sorted(_EXPORTS) + ["STEPS", "JOBS", "JOB_CONFIGS"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
