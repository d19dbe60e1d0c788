"""The conditional-loss metric against a hand computation with transformers, item by item."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from train_testdata import make_shards

from train.evaluate.condloss import (
    LossItem,
    benchmark_items,
    conditional_loss,
    encode_item,
    item_losses,
    split_summaries,
    summarize,
)
from train.tokenizer import load_tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    from train.presets import build_model, phi_config

    root = tmp_path_factory.mktemp("condloss")
    shards = make_shards(root / "shards", n_files=10)
    train_tokenizer(shards, root / "tok", vocab_size=512)
    tok = load_tokenizer(root / "tok")
    torch.manual_seed(0)
    model = build_model(phi_config("tiny", vocab_size=len(tok), eos_token_id=tok.eos_token_id), attn="eager")
    return model.eval(), tok


def hand_nats(model, tok, item, max_len=10_000):
    """-sum log p(solution token | everything before it), one unpadded sequence at a time."""
    import torch

    prompt = tok(item.prompt, add_special_tokens=False)["input_ids"]
    solution = tok(item.solution, add_special_tokens=False)["input_ids"]
    ids = ([tok.eos_token_id] + prompt + solution)[-max_len:]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
    first = len(ids) - len(solution)
    return -sum(float(logp[t - 1, ids[t]]) for t in range(first, len(ids))), len(solution)


def test_batched_losses_equal_a_hand_computation_on_humaneval_and_mbpp(tiny, monkeypatch, mbpp_path):
    model, tok = tiny
    items = benchmark_items("humaneval", limit=3)
    items += benchmark_items("mbpp", mbpp_path=str(mbpp_path), limit=3)
    items.append(LossItem("mine/1", "mine", "def add(a, b):\n", "    return a + b\n"))
    rows = item_losses(model, tok, items, batch_size=4, max_len=4096)  # lengths differ: padding is exercised
    for item, row in zip(items, rows, strict=True):
        nats, n_tokens = hand_nats(model, tok, item)
        assert row["id"] == item.id and not row["truncated"]
        assert row["tokens"] == n_tokens > 0
        assert row["nats"] == pytest.approx(nats, rel=1e-4)
        assert row["chars"] == len(item.solution)
    total = summarize(rows)
    hand_bits = sum(hand_nats(model, tok, it)[0] for it in items) / math.log(2)
    assert total["bits_per_char"] == pytest.approx(
        hand_bits / sum(len(it.solution) for it in items), rel=1e-4
    )
    assert total["bits_per_token"] == pytest.approx(hand_bits / total["tokens"], rel=1e-4)
    # an untrained model over a 512-token vocabulary pays about log2(512) = 9 bits per token
    assert 7.0 < total["bits_per_token"] < 11.0


def test_long_prompts_are_cut_from_the_left_and_scored_like_the_hand_computation(tiny):
    model, tok = tiny
    item = LossItem("long", "mine", "x = 1\n" * 200, "def f(a):\n    return a * 2\n")
    (row,) = item_losses(model, tok, [item], max_len=48)
    nats, n_tokens = hand_nats(model, tok, item, max_len=48)
    assert row["truncated"] and row["tokens"] == n_tokens
    assert row["nats"] == pytest.approx(nats, rel=1e-4)


def test_split_json_gives_similar_and_non_similar_results(tiny, tmp_path):
    import json

    model, tok = tiny
    items = {"humaneval": benchmark_items("humaneval", limit=4)}
    split = {"benchmarks": {"humaneval": {"taus": {"0.9": {
        "similar": ["HumanEval/0"], "non_similar": ["HumanEval/1", "HumanEval/2", "HumanEval/3", "HumanEval/99"]}}}}}  # fmt: skip
    (tmp_path / "split.json").write_text(json.dumps(split))
    result = conditional_loss(
        model,
        tok,
        benchmarks=["humaneval"],
        items=items,
        max_len=4096,
        split_json=str(tmp_path / "split.json"),
    )
    groups = result["humaneval"]["subsets"]["0.9"]
    assert groups["similar"]["n"] == 1 and groups["non_similar"]["n"] == 3  # HumanEval/99 is not scored
    rows = item_losses(model, tok, items["humaneval"], max_len=4096)
    assert groups["similar"]["bits_per_char"] == pytest.approx(summarize(rows[:1])["bits_per_char"])
    assert "error" in split_summaries(tmp_path / "split.json", "mbpp", rows)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=st.text(max_size=300), solution=st.text(min_size=1, max_size=300), max_len=st.integers(2, 80))
def test_encoding_keeps_the_solution_suffix_within_max_len(tiny, prompt, solution, max_len):
    _, tok = tiny
    ids, n_context, chars, truncated = encode_item(tok, LossItem("x", "x", prompt, solution), max_len)
    solution_ids = tok(solution, add_special_tokens=False)["input_ids"]
    assert len(ids) <= max_len and n_context >= 1
    scored = ids[n_context:]
    assert scored == solution_ids[: len(scored)]
    assert truncated == (
        len(solution_ids) + 1 + len(tok(prompt, add_special_tokens=False)["input_ids"]) > max_len
    )
    assert chars == (len(solution) if len(scored) == len(solution_ids) else len(tok.decode(scored)))
