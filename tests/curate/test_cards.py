"""Dataset cards: written through huggingface_hub's DatasetCard, metadata from the data, validated offline."""

import pytest
from datatrove.data import Document
from huggingface_hub import DatasetCard

from curate.cards import card_license, size_category, validate_dataset_card
from curate.manifest import write_manifest
from curate.shards import ExclusionWriter, ShardWriter


def _write(root, licenses, n=30, excluded=0):
    docs = [
        Document(f"x = {i}\n", f"d{i}", metadata={"source": "stdlib", "license": licenses[i % len(licenses)]})
        for i in range(n)
    ]
    list(ShardWriter(str(root / "data")).run(iter(docs), rank=0))
    if excluded:
        writer = ExclusionWriter(str(root / "excluded" / "python_syntax"), "python_syntax")
        with writer:
            for i in range(excluded):
                writer.write(Document("def (", f"bad{i}", metadata={"filter_reason": "syntax_error"}), rank=0)
    recipe = {"name": "quickstart", "stages": []}
    return write_manifest(root, stage="filter", recipe=recipe, extra={"recipe_name": "quickstart"})


def test_card_metadata_comes_from_the_data(tmp_path):
    manifest = _write(tmp_path, ["PSF-2.0"], excluded=2)
    card = validate_dataset_card(tmp_path / "README.md")
    data = card.data
    assert data.license == "other" and data.license_name == "psf-2.0"
    assert data.license_link == "https://docs.python.org/3/license.html"
    assert data.size_categories == ["n<1K"] and data.source_datasets == ["stdlib"]
    assert (
        data.textbooks["recipe"] == "quickstart" and data.textbooks["recipe_hash"] == manifest["recipe_hash"]
    )
    assert data.textbooks["schema_version"] == manifest["schema_version"]
    assert [c["config_name"] for c in data.configs] == ["default", "excluded"]
    assert manifest["licenses"] == {"PSF-2.0": 30}
    assert "https://github.com/)" not in card.text  # no bare link to github.com
    assert "| PSF-2.0 | 30 |" in card.text


def test_card_configs_parse_with_datasets_and_load(tmp_path):
    from datasets import load_dataset
    from datasets.utils.metadata import MetadataConfigs

    _write(tmp_path, ["MIT", "Apache-2.0"], n=12)
    card = validate_dataset_card(tmp_path / "README.md")
    assert card.data.license == ["apache-2.0", "mit"]
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    assert configs["default"]["data_files"] == [{"split": "train", "path": "data/*.parquet"}]
    dataset = load_dataset(str(tmp_path), split="train", cache_dir=str(tmp_path / ".hf"))
    assert dataset.num_rows == 12 and dataset.features["license"].dtype == "string"


@pytest.mark.parametrize(
    ("front_matter", "key"),
    [
        ("license: psf-2.0", "license"),
        ("license: other\nlicense_name: PSF 2.0", "license_name"),
        ("license: mit\nsize_categories: [lots]", "size_categories"),
        ("license: mit\nconfigs: [{config_name: default}]", "configs"),
    ],
)
def test_invalid_cards_are_rejected_naming_the_key(tmp_path, front_matter, key):
    path = tmp_path / "README.md"
    DatasetCard(f"---\n{front_matter}\n---\n\n# bad\n").save(path)
    with pytest.raises(ValueError, match=f"^{key}:"):
        validate_dataset_card(path)


def test_licence_mapping_edge_cases():
    assert card_license({"unknown": 4}) == {"license": "unknown"}
    assert card_license({"MIT OR Apache-2.0": 2}) == {"license": ["apache-2.0", "mit"]}
    assert card_license({"PSF-2.0": 1, "MIT": 1}) == {"license": "other", "license_name": "mixed"}
    assert card_license({"Weird Licence (v2)": 1}) == {"license": "other", "license_name": "weird-licence-v2"}
    assert [size_category(n) for n in (0, 9_999, 10_000, 10**9)] == [
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1B<n<10B",
    ]


def test_one_licence_with_some_unknown_rows_keeps_that_licence_and_states_the_unknown_share(tmp_path):
    """MIT plus rows without a licence is not "mixed": the card says mit, and how many rows are unknown."""
    _write(tmp_path, ["MIT", "MIT", None], n=30)  # every third row has no licence
    card = validate_dataset_card(tmp_path / "README.md")
    assert card.data.license == "mit" and card.data.get("license_name") is None
    assert card.data.textbooks["license_unknown_rows"] == 10
    assert "| MIT | 20 |" in card.text and "| unknown | 10 |" in card.text
    assert "**10 of 30 rows (33.3%) have no known licence**" in card.text
    assert card_license({"PSF-2.0": 5, "NOASSERTION": 1})["license_name"] == "psf-2.0"
    assert card_license({"MIT": 1, "Apache-2.0": 1, "unknown": 1}) == {"license": ["apache-2.0", "mit"]}
    assert card_license({"PSF-2.0": 1, "MIT": 1, "unknown": 1})["license_name"] == "mixed"


def test_a_card_without_unknown_rows_has_no_unknown_note(tmp_path):
    _write(tmp_path, ["MIT"], n=5)
    card = validate_dataset_card(tmp_path / "README.md")
    assert card.data.license == "mit" and card.data.textbooks["license_unknown_rows"] == 0
    assert "no known licence" not in card.text and "| MIT | 5 |\n\n## Columns" in card.text
