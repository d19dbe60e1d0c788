"""Tokenizer training, token packing (determinism, layout, loss mask) and token-file validation."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from train_testdata import make_shards

from train.prepare import TokenFile, TokenFileError, prepare_tokens
from train.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    shards = make_shards(root / "shards", n_files=30)
    tok = train_tokenizer(shards, root / "tok", vocab_size=1024)
    tokens = prepare_tokens(shards, root / "tok", root / "tokens", workers=2)
    return {"root": root, "shards": shards, "tok": root / "tok", "tok_info": tok, "tokens": tokens}


def test_tokenizer_is_a_standard_hf_tokenizer_with_whitespace_runs(corpus):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(corpus["tok"]), local_files_only=True)
    assert len(tok) == 1024 == corpus["tok_info"]["vocab_size"]
    assert tok.eos_token == "<|endoftext|>"
    code = "class A:\n    def f(self):\n        return {'a':\t\t1}\n"
    ids = tok(code).input_ids
    assert tok.decode(ids) == code  # lossless byte-level round trip
    pieces = tok.convert_ids_to_tokens(ids)
    assert "        " in pieces and "    " in pieces and "\t\t" in pieces  # one token per indent run
    # training is deterministic
    again = train_tokenizer(corpus["shards"], corpus["root"] / "tok2", vocab_size=1024)
    assert again["tokenizer_hash"] == corpus["tok_info"]["tokenizer_hash"]


def test_prepare_layout_eos_and_offsets(corpus):
    from transformers import AutoTokenizer

    tf = TokenFile(corpus["tokens"]["output_dir"])
    tok = AutoTokenizer.from_pretrained(str(corpus["tok"]), local_files_only=True)
    texts = [
        t
        for f in sorted((corpus["shards"] / "data").glob("*.parquet"))
        for t in pq.read_table(f)["text"].to_pylist()
    ]
    assert tf.n_docs == len(texts) == 30
    assert tf.tokens.dtype == np.uint16 and tf.header["dtype"] == "uint16"
    assert tf.header["tokenizer_hash"] == corpus["tok_info"]["tokenizer_hash"]
    for i in (0, 7, 29):
        doc = np.asarray(tf.tokens[tf.offsets[i] : tf.offsets[i + 1]])
        assert doc[-1] == tok.eos_token_id
        assert tok.decode(doc[:-1].tolist()) == texts[i]
    assert (np.asarray(tf.tokens) == tok.eos_token_id).sum() == 30
    assert len(tf.header["shards"]["files"]) == 2


def test_prepare_is_deterministic_whatever_the_worker_count(corpus):
    one = prepare_tokens(
        corpus["shards"], corpus["tok"], corpus["root"] / "tokens1", workers=1, max_in_flight=1
    )
    two = corpus["tokens"]
    assert one["xxh3_64"] == two["xxh3_64"] and one["n_tokens"] == two["n_tokens"]
    a = (corpus["root"] / "tokens1" / "tokens.bin").read_bytes()
    b = (corpus["root"] / "tokens" / "tokens.bin").read_bytes()
    assert a == b
    assert np.array_equal(
        np.load(corpus["root"] / "tokens1" / "doc_offsets.npy"), TokenFile(two["output_dir"]).offsets
    )


def test_solution_mask_starts_after_the_docstring(corpus, tmp_path):
    from transformers import AutoTokenizer

    texts = [
        ("a", 'def add(a, b):\n    """Return a + b."""\n    return a + b\n'),
        ("b", "x = 1\n"),  # no docstring: counted whole, and reported
    ]
    shards = make_shards(tmp_path / "ex", texts=texts, n_shards=1)
    out = prepare_tokens(shards, corpus["tok"], tmp_path / "ft", workers=1, solution_marker="docstring")
    tf = TokenFile(out["output_dir"])
    tok = AutoTokenizer.from_pretrained(str(corpus["tok"]), local_files_only=True)
    first = slice(tf.offsets[0], tf.offsets[1])
    ids, mask = np.asarray(tf.tokens[first]), np.asarray(tf.mask[first])
    assert tok.decode(ids[mask == 1].tolist()) == "\n    return a + b\n<|endoftext|>"
    assert tok.decode(ids[mask == 0].tolist()) == 'def add(a, b):\n    """Return a + b."""'
    assert np.asarray(tf.mask[tf.offsets[1] : tf.offsets[2]]).all()
    assert tf.header["n_docs_without_marker"] == 1


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_corrupt_token_files_fail_clearly(corpus, tmp_path):
    src = corpus["tokens"]["output_dir"]

    d = _copy(src, tmp_path / "truncated")
    data = (d / "tokens.bin").read_bytes()
    (d / "tokens.bin").write_bytes(data[:-2])
    with pytest.raises(TokenFileError, match="truncated"):
        TokenFile(d)

    d = _copy(src, tmp_path / "empty")
    (d / "tokens.bin").write_bytes(b"")
    with pytest.raises(TokenFileError, match="empty"):
        TokenFile(d)

    d = _copy(src, tmp_path / "flipped")
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x01
    (d / "tokens.bin").write_bytes(bytes(flipped))
    with pytest.raises(TokenFileError, match="checksum"):
        TokenFile(d)

    d = _copy(src, tmp_path / "dtype")
    header = json.loads((d / "header.json").read_text())
    (d / "header.json").write_text(json.dumps({**header, "dtype": "uint32"}))
    with pytest.raises(TokenFileError, match="dtype uint32 does not match vocab_size"):
        TokenFile(d)

    d = _copy(src, tmp_path / "garbage")
    (d / "header.json").write_text("{not json")
    with pytest.raises(TokenFileError, match="corrupt"):
        TokenFile(d)

    d = _copy(src, tmp_path / "noheader")
    (d / "header.json").unlink()
    with pytest.raises(TokenFileError, match="missing"):
        TokenFile(d)


def test_empty_shards_give_a_clear_error(corpus, tmp_path):
    shards = make_shards(tmp_path / "blank", texts=[("a", ""), ("b", "")], n_shards=1)
    with pytest.raises(TokenFileError, match="no tokens"):
        prepare_tokens(shards, corpus["tok"], tmp_path / "out", workers=1)
    with pytest.raises(FileNotFoundError, match="no Parquet shards"):
        prepare_tokens(tmp_path / "nowhere", corpus["tok"], tmp_path / "out2", workers=1)
