"""The quality stages from a recipe: label + embed -> train job -> classifier filter + near-dedup."""

from __future__ import annotations

import random

import pyarrow.dataset as ds
from test_classifier import BOILERPLATE_HELD_OUT, EDUCATIONAL_HELD_OUT, _training_docs

from curate.manifest import read_manifest
from curate.shards import ShardWriter
from recipes.engine import run_recipe


def test_quality_stages_run_from_a_recipe(tmp_path):
    docs = _training_docs()
    # a planted near-duplicate of an educational file: one must go as near_duplicate
    twin = docs[0].text.replace("return total / len(values)", "return total / max(1, len(values))")
    from datatrove.data import Document

    docs.append(Document(text=twin, id="edu-twin"))
    docs += [Document(text=t, id=f"held-edu-{k}") for k, t in enumerate(EDUCATIONAL_HELD_OUT)]
    docs += [Document(text=t, id=f"held-boiler-{k}") for k, t in enumerate(BOILERPLATE_HELD_OUT)]
    random.Random(0).shuffle(docs)
    with ShardWriter(str(tmp_path / "in" / "data")) as writer:
        for doc in docs:
            writer.write(doc)
    out = tmp_path / "out"
    recipe = {
        "name": "quality-test",
        "vars": {"out": str(out)},
        "stages": [
            {
                "name": "label",
                "input": {"path": str(tmp_path / "in")},
                "steps": [
                    {"uses": "heuristic_labeler"},
                    {"uses": "embed", "with": {"output_dir": "${out}/labeled"}},
                ],
                "output": "${out}/labeled",
            },
            {
                "name": "train",
                "job": "train_quality_classifier",
                "with": {"input_dir": "${out}/labeled", "output_path": "${out}/clf/model.joblib", "folds": 3},
            },
            {
                "name": "quality",
                "input": {"from": "label"},
                "steps": [
                    {
                        "uses": "classifier_filter",
                        "with": {"model_path": "${out}/clf/model.joblib", "embeddings_dir": "${out}/labeled"},
                    },
                    {"uses": "near_dedup", "with": {"threshold": 0.8}},
                ],
                "output": "${out}/quality",
            },
        ],
    }
    run_recipe(recipe)
    assert "quality_classifier" in read_manifest(out / "labeled")
    manifest = read_manifest(out / "quality")
    assert manifest["drop_reasons"].get("low_quality", 0) >= len(docs) // 2 - 2
    assert manifest["drop_reasons"].get("near_duplicate") == 1
    kept = ds.dataset(str(out / "quality" / "data"), format="parquet").to_table().to_pylist()
    kept_ids = {r["id"] for r in kept}
    assert all(r["quality_score"] is not None and r["cluster_id"] for r in kept)
    assert not any(i.startswith(("boiler", "held-boiler")) for i in kept_ids)
    assert {f"held-edu-{k}" for k in range(4)} <= kept_ids
    assert len({"edu-00", "edu-twin"} & kept_ids) == 1
