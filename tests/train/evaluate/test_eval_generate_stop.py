"""The generation backend's stop-string check looks only at each row's last tokens: it must fire at
exactly the step a full decode of the completion would, on real code and on hostile text (multi-byte
characters split across byte-level tokens, stop strings made of several tokens, prompts ending in
half a stop string)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from train_testdata import make_token_dir, stdlib_files

from train.evaluate.generate import StopOnStrings
from train.evaluate.tasks import DOCSTRING_STOP, HUMANEVAL_STOP
from train.tokenizer import load_tokenizer

STOPS = [HUMANEVAL_STOP, DOCSTRING_STOP, ["[DONE]"], ["\n\n\n"], ["é中", "\t\t"]]
PIECES = [
    "\n",
    "def",
    " ",
    "class",
    "#",
    "if",
    "print",
    "    ",
    "\t",
    "é",
    "中",
    "😀",
    "[DONE",
    "]",
    "x",
    "\n\n",
]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return load_tokenizer(
        make_token_dir(tmp_path_factory.mktemp("stop"), n_files=6, vocab_size=600)["tokenizer"]
    )


def first_stop(ids: list[int], prompt_length: int, stop: list[str], check) -> int | None:
    """The first length (as generation grows the row one token at a time) at which ``check`` fires."""
    for end in range(prompt_length + 1, len(ids) + 1):
        if check(torch.tensor([ids[:end]]))[0]:
            return end
    return None


def full_decode(tok, stop, prompt_length):
    def check(input_ids):
        text = tok.decode(input_ids[0, prompt_length:], skip_special_tokens=True)
        return [any(s in text for s in stop)]

    return check


def assert_same_first_stop(tok, ids: list[int], prompt_length: int, stop: list[str]) -> None:
    windowed = StopOnStrings(tok, stop, prompt_length)
    assert first_stop(ids, prompt_length, stop, windowed) == first_stop(
        ids, prompt_length, stop, full_decode(tok, stop, prompt_length)
    )


@pytest.mark.parametrize("stop", STOPS)
def test_windowed_check_fires_where_a_full_decode_does_on_real_code(tok, stop):
    fired = 0
    for path in stdlib_files(4):
        ids = tok(path.read_text(encoding="utf-8")[:1500])["input_ids"]
        for prompt_length in (1, 40):
            windowed = StopOnStrings(tok, stop, prompt_length)
            got = first_stop(ids, prompt_length, stop, windowed)
            assert got == first_stop(ids, prompt_length, stop, full_decode(tok, stop, prompt_length))
            fired += got is not None
    if stop is HUMANEVAL_STOP:
        assert fired > 0  # real code does contain these stops: the comparison was not vacuous


@settings(max_examples=60, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(PIECES), min_size=1, max_size=60),
    prompt_pieces=st.integers(0, 10),
    stop=st.sampled_from(STOPS),
)
def test_windowed_check_on_hostile_text(tok, pieces, prompt_pieces, stop):
    prompt_ids = tok("".join(pieces[:prompt_pieces]))["input_ids"]
    ids = prompt_ids + tok("".join(pieces[prompt_pieces:]))["input_ids"]
    prompt_length = len(prompt_ids)
    assert_same_first_stop(tok, ids, prompt_length, stop)


def test_rows_are_checked_independently(tok):
    rows = [tok("x = 1\ndef f():")["input_ids"], tok("x = 1\ny = 2")["input_ids"]]
    width = max(map(len, rows))
    batch = torch.tensor([[tok.eos_token_id] * (width - len(r)) + r for r in rows])
    assert StopOnStrings(tok, HUMANEVAL_STOP, 0)(batch).tolist() == [True, False]
