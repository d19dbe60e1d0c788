"""LLMConfig: one validated object for every LLM step; LLMClient takes it whole or as keywords."""

import pytest
from pydantic import ValidationError

from curate.llm import LLMClient, LLMConfig


def test_unknown_key_is_named():
    with pytest.raises(ValidationError) as err:
        LLMConfig.coerce({"model": "m", "extra_bdy": {"top_k": 20}})
    assert err.value.errors()[0]["loc"] == ("extra_bdy",)


def test_bad_values_are_rejected():
    for bad in (
        {"max_concurrency": 0},
        {"timeout_s": -1},
        {"budget_usd": -0.5},
        {"extra_body": {"x": object()}},
    ):
        with pytest.raises((ValidationError, TypeError)):
            LLMConfig.coerce(bad)


def test_client_takes_config_and_keyword_overrides(tmp_path):
    cfg = LLMConfig(model="m", rpm=60, timeout_s=7, cache_path=str(tmp_path / "c.sqlite"))
    client = LLMClient(cfg, max_concurrency=3)
    assert (client.model, client.rpm, client.timeout_s, client.max_concurrency) == ("m", 60, 7, 3)
    assert client.cache_path == tmp_path / "c.sqlite"
    assert LLMClient(model="m2", cache_path=tmp_path / "d.sqlite").config.cache_path == str(
        tmp_path / "d.sqlite"
    )


def test_with_defaults_keeps_what_the_user_set():
    cfg = LLMConfig.coerce({"max_tokens": 64})
    assert cfg.with_defaults(max_tokens=8, temperature=0.0).max_tokens == 64
    assert cfg.with_defaults(max_tokens=8, temperature=0.0).temperature == 0.0
    assert LLMConfig().with_defaults(cache_path="x.sqlite").cache_path == "x.sqlite"
