"""LLM client throughput: ``LLMClient`` (sqlite cache + token/cost accounting on, cold cache) vs a bare
``AsyncOpenAI`` loop at the same concurrency, same N requests, against the local OpenAI-protocol test
server (no faults). Target: ours >= 0.9x the bare loop's requests/s at concurrency 64.

    python benchmarks/bench_curate_llm_client.py [--n 2000] [--concurrency 64] [--repeats 3] [--budget 1000]

``--budget``: ours also runs the hard budget cap (a worst-case reservation and its release in the
cache's spend ledger per request: two more sqlite transactions each).

The server runs in a child process (aiohttp), so it does not compete with the clients for the GIL;
both clients run in this process, alternately, and the best of ``--repeats`` runs of each is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = (
    "import sys, time; sys.path.insert(0, sys.argv[1])\n"
    "from openai_server import OpenAITestServer\n"
    "srv = OpenAITestServer(responder=lambda b: 'high').start()\n"
    "print(srv.port, flush=True)\n"
    "sys.stdin.read()\n"
)


def prompts(n: int, tag: str) -> list[str]:
    # distinct prompts per run so ours always starts from a cold cache (and the bare loop sends the same sizes)
    return [
        f"[{tag}] Rate the educational value of snippet {i}: def f{i}(x):\n    return x * {i}\n"
        for i in range(n)
    ]


async def bare_loop(base_url: str, texts: list[str], concurrency: int, model: str) -> int:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    sem = asyncio.Semaphore(concurrency)
    ok = 0

    async def one(text):
        nonlocal ok
        async with sem:
            r = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}],
                                                     temperature=0.0, max_tokens=8)  # fmt: skip
            ok += r.choices[0].message.content is not None

    await asyncio.gather(*(one(t) for t in texts))
    await client.close()
    return ok


def ours(
    base_url: str, texts: list[str], concurrency: int, model: str, cache: Path, budget: float | None
) -> int:
    from curate.llm import LLMClient, LLMConfig, LLMRequest

    client = LLMClient(LLMConfig(model=model, base_url=base_url, api_key_env="BENCH_KEY", cache_path=str(cache),
                                 max_concurrency=concurrency, budget_usd=budget))  # fmt: skip
    reqs = [
        LLMRequest(messages=[{"role": "user", "content": t}], temperature=0.0, max_tokens=8) for t in texts
    ]
    results = client.run(reqs)
    assert client.usage["prompt_tokens"] > 0 and len(client._cache) >= len(texts)
    return sum(r.ok for r in results)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--budget", type=float, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="gpt-4o-mini")
    args = ap.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(ROOT / "tests")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        base_url = f"http://127.0.0.1:{int(server.stdout.readline())}/v1"
        best = {"bare": 0.0, "ours": 0.0}
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(bare_loop(base_url, prompts(200, "warmup"), args.concurrency, args.model))
            for rep in range(args.repeats):
                texts = prompts(args.n, f"bare{rep}")
                t0 = time.perf_counter()
                ok = asyncio.run(bare_loop(base_url, texts, args.concurrency, args.model))
                rate = ok / (time.perf_counter() - t0)
                best["bare"] = max(best["bare"], rate)
                texts = prompts(args.n, f"ours{rep}")
                t0 = time.perf_counter()
                ok = ours(
                    base_url,
                    texts,
                    args.concurrency,
                    args.model,
                    Path(tmp) / f"cold{rep}.sqlite",
                    args.budget,
                )
                rate2 = ok / (time.perf_counter() - t0)
                best["ours"] = max(best["ours"], rate2)
                print(f"repeat {rep}: bare AsyncOpenAI {rate:8.1f} req/s   LLMClient {rate2:8.1f} req/s")
        print(f"N={args.n} concurrency={args.concurrency} budget={args.budget} (best of {args.repeats})")
        print(f"bare AsyncOpenAI loop : {best['bare']:8.1f} req/s")
        print(f"LLMClient (cache+acct): {best['ours']:8.1f} req/s")
        print(f"ratio ours/bare       : {best['ours'] / best['bare']:.2f}x (target >= 0.9x)")
    finally:
        server.stdin.close()
        server.wait(10)


if __name__ == "__main__":
    main()
