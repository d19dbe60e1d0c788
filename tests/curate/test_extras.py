"""Optional dependency groups: a missing extra is named with the pip command that installs it."""

import pytest

from curate import extras
from curate.extras import MissingExtraError, extra_for_module, require_extra


def test_every_module_of_every_extra_is_installed_in_the_full_environment():
    """The test environment installs [all,dev]; a typo in EXTRA_MODULES would make a step unusable."""
    for extra, modules in extras.EXTRA_MODULES.items():
        if extra == "ray":
            continue  # optional even in CI's environment
        assert extras.missing_modules(modules) == [], extra


def test_embedder_names_the_extra(monkeypatch):
    from curate.embed import SentenceEmbedder

    monkeypatch.setitem(extras.EXTRA_MODULES, "embed", ("no_such_module_for_the_test",))
    with pytest.raises(MissingExtraError, match=r'pip install "textbooks\[embed\]"') as info:
        SentenceEmbedder().transform(["def f(): pass"])
    assert isinstance(info.value, ImportError) and info.value.missing == ["no_such_module_for_the_test"]


def test_trainer_names_the_extra(monkeypatch):
    from train.trainer import train

    monkeypatch.setitem(extras.EXTRA_MODULES, "train", ("no_such_module_for_the_test",))
    with pytest.raises(MissingExtraError, match=r"train\(\) needs the 'train' extra"):
        train(tokens="nowhere", tokenizer="nowhere", output_dir="nowhere")


def test_module_to_extra_mapping():
    assert extra_for_module("curate.embed") == "embed" and extra_for_module("curate.llm.client") == "llm"
    assert (
        extra_for_module("train.evaluate.generate") == "eval" and extra_for_module("train.export") == "train"
    )
    assert extra_for_module("curate.llm_labeler") == "llm" and extra_for_module("curate.llmx") is None
    for core in ("curate.filters", "curate.shards", "decontam.ast_match", "recipes.engine", "synth.prompts"):
        assert extra_for_module(core) is None
    require_extra("llm", "x", modules=("json",))  # present: no error
