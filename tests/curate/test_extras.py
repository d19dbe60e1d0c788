"""Optional dependency groups: a missing extra is named with the pip command that installs it."""

import subprocess
import sys

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


CORE_CLASSIFIER_PROBE = """
import sys
import curate.classifier as classifier, curate.featurizers as featurizers
from curate.extras import MissingExtraError

assert "sklearn" not in sys.modules
# what needs no scikit-learn still works: configs validate, the structure features compute
config = classifier.TrainQualityClassifierConfig(input_dir="in", output_path="m.joblib", kind="logistic")
assert config.folds == 5 and classifier.label_to_target("high") == 1
assert featurizers.code_tokens("def binarySearch(x):")[:3] == ["def", "binarySearch", "binary"]
assert featurizers.structure_features("def f(x):\\n    return x\\n").ndim == 1
uses = {
    "QualityClassifier": lambda: classifier.QualityClassifier(kind="logistic"),
    "load": lambda: classifier.QualityClassifier.load("m.joblib"),
    "ClassifierFilter": lambda: classifier.ClassifierFilter("m.joblib").classifier,
    "train": lambda: classifier.train_quality_classifier("no_such_dir", "m.joblib"),
    "CodeStructureFeaturizer": lambda: featurizers.CodeStructureFeaturizer(),
    "make_featurizer": lambda: featurizers.make_featurizer("code_tokens"),
}
for use, call in uses.items():
    try:
        call()
        print(use, "no error")
    except MissingExtraError as error:
        print(use, error.extra, error.missing[0], "|", error)
"""


def test_classifier_modules_import_without_sklearn_and_name_the_extra_on_use(tmp_path):
    """scikit-learn is the [embed] extra: a core install imports the classifier modules (their configs
    validate at `textbooks validate`); creating or loading an estimator says which extra to install."""
    from core_install import core_install_env

    env = core_install_env(tmp_path / "blocker")
    result = subprocess.run(
        [sys.executable, "-c", CORE_CLASSIFIER_PROBE], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert set(lines) == {"QualityClassifier", "load", "ClassifierFilter", "train", "CodeStructureFeaturizer",
                          "make_featurizer"}  # fmt: skip
    for use, said in lines.items():
        assert said.startswith("embed sklearn |") and 'pip install "textbooks[embed]"' in said, (use, said)
    assert "QualityClassifier needs the 'embed' extra" in lines["QualityClassifier"]


def test_with_sklearn_the_classifier_and_featurizers_are_real_estimators():
    from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone

    from curate.classifier import QualityClassifier
    from curate.featurizers import CodeStructureFeaturizer, CodeTokenFeaturizer

    assert issubclass(QualityClassifier, ClassifierMixin) and issubclass(QualityClassifier, BaseEstimator)
    for cls in (CodeStructureFeaturizer, CodeTokenFeaturizer):
        assert issubclass(cls, TransformerMixin) and issubclass(cls, BaseEstimator)
    assert clone(QualityClassifier(kind="logistic", C=0.5)).get_params()["C"] == 0.5
