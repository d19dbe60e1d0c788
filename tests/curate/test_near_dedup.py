"""Near-dedup: vectorised MinHash equals datasketch, and LSH finds planted near-duplicates."""

from __future__ import annotations

import random
import sysconfig
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from datasketch import MinHash
from datatrove.data import Document

from curate.near_dedup import (
    TOKEN_RE,
    NearDedupFilter,
    datasketch_permutations,
    minhash_clusters,
    near_duplicate_pairs,
    shingle_hashes,
    shingle_strings,
    signature_from_hashes,
    token_spans,
)
from curate.shards import ExclusionWriter

THRESHOLD = 0.8
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _stdlib_texts(n: int) -> list[str]:
    texts = []
    for path in sorted(STDLIB.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if 2_000 < len(text) < 40_000:
            texts.append(text)
        if len(texts) == n:
            break
    return texts


def _edit(text: str, rng: random.Random, n_edits: int) -> str:
    """A copy with line-level edits: deleted, duplicated, renamed or inserted lines."""
    lines = text.splitlines()
    for _ in range(n_edits):
        k = rng.randrange(len(lines))
        op = rng.random()
        if op < 0.3:
            del lines[k]
        elif op < 0.6:
            lines.insert(k, f"    # edited {rng.randrange(10**6)}")
        else:
            lines[k] = lines[k].replace("self", "this").replace("return", "return  ") + " # changed"
    return "\n".join(lines)


def _exact_jaccard(a: str, b: str) -> float:
    sa, sb = set(shingle_strings(a)), set(shingle_strings(b))
    return len(sa & sb) / len(sa | sb)


def test_vectorised_tokens_equal_the_regex_tokens():
    texts = _stdlib_texts(20) + ["é_x = ñ(1)+2\n\tπ≈3.14  # ünïcode", "", "   \n", "a"]
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        starts, ends = token_spans(data)
        assert [data[a:b] for a, b in zip(starts, ends, strict=True)] == TOKEN_RE.findall(data)
    # equal shingles hash equally wherever they occur; different ones (almost always) differently
    a = shingle_hashes("x = f(a, b) + 1\ny = 2")
    b = shingle_hashes("y = 2\nx = f(a, b) + 1")
    assert set(a.tolist()) & set(b.tolist())


def test_signature_is_bit_identical_to_datasketch():
    a, b = datasketch_permutations(128, 1)
    for text in _stdlib_texts(3):
        hv = shingle_hashes(text)
        m = MinHash(num_perm=128, seed=1, hashfunc=lambda x: x)
        m.update_batch([int(h) for h in hv])
        assert np.array_equal(signature_from_hashes(hv, a, b), m.hashvalues)


def test_planted_near_duplicates_recall_and_precision_against_exact_jaccard():
    rng = random.Random(0)
    originals = _stdlib_texts(40)
    texts = list(originals)
    for text in originals[:25]:  # 1-3 edited copies each, with a spread of edit counts
        for _ in range(rng.randint(1, 3)):
            texts.append(_edit(text, rng, rng.choice([1, 2, 4, 8, 16, 30])))
    truth = {
        (i, j)
        for i, j in combinations(range(len(texts)), 2)
        if _exact_jaccard(texts[i], texts[j]) >= THRESHOLD
    }
    found = {(i, j) for i, j, _ in near_duplicate_pairs(texts, threshold=THRESHOLD, num_perm=128)}
    assert len(truth) >= 40, "the planted corpus must hold enough true pairs to measure"
    recall = len(truth & found) / len(truth)
    precision = len(truth & found) / max(1, len(found))
    assert recall >= 0.95, (recall, len(truth))
    assert precision >= 0.95, (precision, len(found))


def test_signature_verification_also_meets_the_targets():
    rng = random.Random(1)
    originals = _stdlib_texts(20)
    texts = list(originals) + [_edit(t, rng, rng.choice([1, 3, 6])) for t in originals]
    truth = {
        (i, j)
        for i, j in combinations(range(len(texts)), 2)
        if _exact_jaccard(texts[i], texts[j]) >= THRESHOLD
    }
    found = {(i, j) for i, j, _ in near_duplicate_pairs(texts, threshold=THRESHOLD, verify="signature")}
    assert len(truth & found) / len(truth) >= 0.95
    assert len(truth & found) / max(1, len(found)) >= 0.95


def test_clusters_keep_smallest_id_whatever_the_order():
    base = _stdlib_texts(1)[0]
    texts = [base, _edit(base, random.Random(2), 2), "print('unrelated')\n", ""]
    ids = ["m", "c", "z", "e"]
    clusters = minhash_clusters(texts, ids)
    assert clusters == {"m": "c", "c": "c", "z": "z", "e": "e"}
    assert minhash_clusters(texts[::-1], ids[::-1]) == clusters


def test_near_dedup_filter_drops_non_representatives_with_reason(tmp_path):
    rng = random.Random(3)
    originals = _stdlib_texts(6)
    docs = [Document(text=t, id=f"orig-{k}") for k, t in enumerate(originals)]
    docs += [Document(text=_edit(t, rng, 2), id=f"copy-{k}") for k, t in enumerate(originals[:3])]
    step = NearDedupFilter(
        threshold=THRESHOLD, exclusion_writer=ExclusionWriter(str(tmp_path / "ex"), "near_dedup")
    )
    kept = list(step.run(iter(docs)))
    # "copy-k" < "orig-k": the copy is the representative, the original is dropped
    assert sorted(d.id for d in kept) == ["copy-0", "copy-1", "copy-2", "orig-3", "orig-4", "orig-5"]
    assert all(d.metadata["cluster_id"] == d.id for d in kept)
    excluded = pq.read_table(next((tmp_path / "ex").glob("*.parquet"))).to_pylist()
    assert sorted(r["id"] for r in excluded) == ["orig-0", "orig-1", "orig-2"]
    assert {r["filter_reason"] for r in excluded} == {"near_duplicate"}
    assert {r["id"]: r["cluster_id"] for r in excluded} == {f"orig-{k}": f"copy-{k}" for k in range(3)}


def test_datatrove_minhash_stages_job_drops_planted_copies(tmp_path):
    from curate.near_dedup import near_dedup_datatrove
    from curate.shards import ShardWriter

    rng = random.Random(4)
    originals = _stdlib_texts(12)
    docs = [Document(text=t, id=f"o{k}") for k, t in enumerate(originals)]
    docs += [Document(text=_edit(t, rng, 1), id=f"c{k}") for k, t in enumerate(originals[:5])]
    with ShardWriter(str(tmp_path / "in" / "data")) as writer:
        for doc in docs:
            writer.write(doc)
    summary = near_dedup_datatrove(str(tmp_path / "in"), str(tmp_path / "out"), tasks=2, workers=1)
    assert summary["rows"] == 12 and summary["excluded_rows"] == 5
    assert summary["drop_reasons"] == {"near_duplicate": 5}
