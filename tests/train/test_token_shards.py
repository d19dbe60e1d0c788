"""datatrove token shards: written on 4 tasks = written on 1 (byte for byte), the same documents as the
flat format, read by datatrove's own dataset (what nanotron uses), the flat format converted exactly,
damaged directories rejected."""

import filecmp
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from train_testdata import make_shards

from train.prepare import TokenFile, TokenFileError, prepare_tokens
from train.shards import ConcatenatedTokens, convert_tokens, open_tokens, tokenize_shards
from train.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    shards = make_shards(root / "shards", n_files=24, n_shards=6)  # 6 files: 4 tasks get 1-2 each
    train_tokenizer(shards, root / "tok", vocab_size=1024)
    prepare_tokens(shards, root / "tok", root / "flat", workers=1)
    one = tokenize_shards(shards, root / "tok", root / "ds1", tasks=1)
    return {"root": root, "shards": shards, "tok": root / "tok", "one": one}


def _documents(tf) -> list[bytes]:
    return [
        np.asarray(tf.tokens[a:b]).tobytes() for a, b in zip(tf.offsets[:-1], tf.offsets[1:], strict=True)
    ]


def test_four_tasks_write_the_same_bytes_as_one(corpus):
    root = corpus["root"]
    four = tokenize_shards(corpus["shards"], corpus["tok"], root / "ds4", tasks=4, workers=2)
    # byte-equal, not just the same token sequence: the merge order is each document's seeded hash,
    # which does not depend on which task tokenized it
    assert four["files"] == corpus["one"]["files"] == ["000_tokens.ds"]
    for name in ("000_tokens.ds", "000_tokens.ds.index"):
        assert filecmp.cmp(root / "ds1" / name, root / "ds4" / name, shallow=False)
    assert four["xxh3_64"] == corpus["one"]["xxh3_64"]
    # another seed is another order of the same documents
    other = tokenize_shards(corpus["shards"], corpus["tok"], root / "ds_seed1", tasks=2, seed=1)
    assert other["xxh3_64"] != four["xxh3_64"]
    assert sorted(_documents(open_tokens(root / "ds_seed1"))) == sorted(_documents(open_tokens(root / "ds4")))


def test_shards_hold_the_flat_formats_documents_and_datatrove_reads_them(corpus):
    from datatrove.utils.dataset import DatatroveFolderDataset

    flat, ds = TokenFile(corpus["root"] / "flat"), open_tokens(corpus["root"] / "ds1")
    assert ds.n_docs == flat.n_docs == 24 and ds.n_tokens == flat.n_tokens
    assert sorted(_documents(ds)) == sorted(_documents(flat))  # same ids, EOS after each document
    assert all(doc[-2:] == np.uint16(ds.header["eos_id"]).tobytes() for doc in _documents(ds))
    # datatrove's reader, opened as nanotron's Nanoset opens a dataset folder (its *.ds files, not
    # recursive), sees the same stream
    reader = DatatroveFolderDataset(str(corpus["root"] / "ds1"), 64, "*.ds", recursive=False, token_size=2)
    for i in (0, 5):
        window = reader[i]["input_ids"].numpy()
        assert np.array_equal(window, np.asarray(ds.tokens[i * 65 : i * 65 + 65], dtype=np.int64))


def test_convert_tokens_keeps_bytes_order_and_mask(corpus, tmp_path):
    text = 'def add(a, b):\n    """Return a + b."""\n    return a + b\n'
    shards = make_shards(tmp_path / "ex", texts=[("a", text), ("b", text.replace("add", "sub"))], n_shards=1)
    prepare_tokens(shards, corpus["tok"], tmp_path / "flat", workers=1, solution_marker="docstring")
    flat = TokenFile(tmp_path / "flat")
    header = convert_tokens(tmp_path / "flat", tmp_path / "ds")
    ds = open_tokens(tmp_path / "ds")
    assert header["n_tokens"] == flat.n_tokens and header["tokenizer_hash"] == flat.header["tokenizer_hash"]
    assert np.array_equal(np.asarray(ds.tokens), np.asarray(flat.tokens))
    assert np.array_equal(ds.offsets, flat.offsets)
    assert np.array_equal(np.asarray(ds.mask), np.asarray(flat.mask)) and ds.mask.sum() < len(ds.mask)
    assert isinstance(open_tokens(tmp_path / "flat"), TokenFile)  # the flat format stays readable


def test_damaged_shards_fail_clearly(corpus, tmp_path):
    import shutil

    shutil.copytree(corpus["root"] / "ds1", tmp_path / "cut")
    data = (tmp_path / "cut" / "000_tokens.ds").read_bytes()
    (tmp_path / "cut" / "000_tokens.ds").write_bytes(data[:-2])
    with pytest.raises(TokenFileError, match="index does not match|tokens on disk"):
        open_tokens(tmp_path / "cut")
    shutil.copytree(corpus["root"] / "ds1", tmp_path / "flip")
    (tmp_path / "flip" / "000_tokens.ds").write_bytes(data[:10] + bytes([data[10] ^ 1]) + data[11:])
    with pytest.raises(TokenFileError, match="checksum"):
        open_tokens(tmp_path / "flip")
    header = json.loads((tmp_path / "flip" / "textbooks_tokens.json").read_text())
    assert header["format"] == "datatrove-ds"
    (tmp_path / "flip" / "textbooks_tokens.json").write_text("{not json")
    with pytest.raises(TokenFileError, match="corrupt"):
        open_tokens(tmp_path / "flip")


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 9), min_size=1, max_size=5),
    bounds=st.tuples(st.integers(-3, 50), st.integers(-3, 50)),
)
def test_concatenated_tokens_slice_like_one_array(lengths, bounds):
    parts = [np.arange(sum(lengths[:i]), sum(lengths[: i + 1]), dtype=np.uint16) for i in range(len(lengths))]
    joined = np.concatenate(parts)
    view = ConcatenatedTokens(parts)
    assert len(view) == len(joined)
    assert np.array_equal(view[bounds[0] : bounds[1]], joined[bounds[0] : bounds[1]])
