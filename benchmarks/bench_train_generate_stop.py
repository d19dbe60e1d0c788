"""The evaluation backend's stop-string check per generation step: full decode of every row's
completion (baseline, the old check) vs ours (:class:`train.evaluate.generate.StopOnStrings`, the
last tokens only), on the GPU suite's generation workload (batch 32, 128 new tokens, a 300-token
prompt, the HumanEval stop strings) with a BPE tokenizer trained on stdlib code. The check runs on
the CPU between GPU steps, so its time adds directly to generation time.

    python benchmarks/bench_train_generate_stop.py            # ids within the tokenizer's vocabulary
    python benchmarks/bench_train_generate_stop.py 51200      # a 51,200-row model over a smaller tokenizer
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "train"))


def full_decode_check(tok, stop, prompt_length, input_ids):
    texts = tok.batch_decode(input_ids[:, prompt_length:], skip_special_tokens=True)
    return [any(s in t for s in stop) for t in texts]


def main(
    batch: int = 32, new_tokens: int = 128, prompt_length: int = 300, vocab_size: int | None = None
) -> None:
    import torch
    from train_testdata import make_token_dir

    from train.evaluate.generate import StopOnStrings
    from train.evaluate.tasks import HUMANEVAL_STOP
    from train.tokenizer import load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tok = load_tokenizer(make_token_dir(Path(tmp), n_files=20, vocab_size=8192)["tokenizer"])
    ids = torch.randint(
        0, len(tok), (batch, prompt_length + new_tokens), generator=torch.Generator().manual_seed(0)
    )
    baseline = functools.partial(full_decode_check, tok, HUMANEVAL_STOP, prompt_length)
    ours = StopOnStrings(tok, HUMANEVAL_STOP, prompt_length)
    timings = {}
    for name, check in (("full decode (baseline)", baseline), ("last tokens (ours)", ours)):
        start = time.perf_counter()
        for end in range(prompt_length + 1, prompt_length + new_tokens + 1):
            check(ids[:, :end])
        timings[name] = time.perf_counter() - start
    for name, seconds in timings.items():
        print(
            f"{name:<24} {seconds:7.3f} s for {new_tokens} steps x {batch} rows ({seconds / new_tokens * 1e3:.2f} ms/step)"
        )
    base, mine = timings.values()
    print(f"speed-up: {base / mine:.1f}x")


if __name__ == "__main__":
    main(vocab_size=int(sys.argv[1]) if len(sys.argv) > 1 else None)
