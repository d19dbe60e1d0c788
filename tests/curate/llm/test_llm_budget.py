"""The budget is a cap on the cache's cumulative spend (measured by the server's own usage), and
extra_body parameters reach the server as the openai SDK sends them."""

import json
import random
import subprocess
import sys

from openai_server import FaultPlan

from curate.llm import LLMClient, LLMConfig, LLMRequest

PRICES = {"pricey": {"input": 1000.0, "output": 1000.0}}  # $0.001 per token: cents are visible
FAST = dict(backoff_base_s=0.002, backoff_max_s=0.02, timeout_s=5.0)
GUIDED = {"type": "object", "properties": {"label": {"enum": ["high", "low"]}}, "required": ["label"]}


def job(n=200, seed=0):
    """Requests of varied sizes (1-40 words, some multi-byte), like documents of a real shard."""
    rng = random.Random(seed)
    words = ["def", "return", "x", "for", "i", "in", "range(10):", "print(i)", "naïve", "日本語", "λ"]
    return [
        LLMRequest(messages=[{"role": "user", "content": f"{i} " + " ".join(rng.choices(words, k=rng.randint(1, 40)))}],
                   max_tokens=12)
        for i in range(n)
    ]  # fmt: skip


def answer(body):
    return "low " * (1 + len(body["messages"][0]["content"]) % 7)


def billed_usd(srv):
    usage = srv.billed_usage()
    return (usage["prompt_tokens"] + usage["completion_tokens"]) * 0.001


def client_for(srv, cache, budget, **kw):
    return LLMClient(LLMConfig(model="pricey", base_url=srv.base_url, cache_path=str(cache), budget_usd=budget,
                               prices=PRICES, max_concurrency=16, **FAST), **kw)  # fmt: skip


def full_cost(openai_server, tmp_path):
    srv = openai_server(responder=answer)
    client_for(srv, tmp_path / "full.sqlite", None).run(job())
    return billed_usd(srv)


def test_raised_budgets_never_spend_more_than_the_last(openai_server, tmp_path):
    cost = full_cost(openai_server, tmp_path)
    faults = FaultPlan(
        rate=0.2, seed=4, kinds=("429", "500", "503", "malformed", "empty"), retry_after_s=0.01
    )
    srv = openai_server(responder=answer, faults=faults)
    budgets = [0.2 * cost, 0.45 * cost, 0.7 * cost]
    for budget in budgets:
        client = client_for(srv, tmp_path / "c.sqlite", budget)
        results = client.run(job())
        over = [r for r in results if r.error == "budget_exhausted"]
        assert over and all(0 <= r.budget_left_usd < budget for r in over)
        # cumulative, not per process: the provider's bill so far is within this run's budget
        assert billed_usd(srv) <= budget + 1e-9
        assert abs(client.total_spent()["cost_usd"] - billed_usd(srv)) < 1e-9  # to the cent and below
        assert client.budget_summary()["spent_total_usd"] <= budget
    assert billed_usd(srv) >= 0.9 * budgets[-1]


def test_half_cost_budget_uses_at_least_90_percent(openai_server, tmp_path):
    cost = full_cost(openai_server, tmp_path)
    srv = openai_server(responder=answer)
    client = client_for(srv, tmp_path / "c.sqlite", cost / 2)
    results = client.run(job())
    spent = billed_usd(srv)
    assert 0.9 * cost / 2 <= spent <= cost / 2
    sent = [r for r in results if r.ok]
    skipped = [r for r in results if r.error == "budget_exhausted"]
    assert len(sent) + len(skipped) == len(results)
    # requests that fit kept going after a bigger one did not: some skipped ones come before sent ones
    first_skip = results.index(skipped[0])
    assert any(r.ok for r in results[first_skip:])


def test_spend_persists_across_processes(openai_server, tmp_path):
    srv = openai_server(responder=answer)
    cache = tmp_path / "c.sqlite"
    script = (
        "import sys, json\n"
        "from curate.llm import LLMClient, LLMRequest\n"
        "c = LLMClient(model='pricey', base_url=sys.argv[1], cache_path=sys.argv[2], budget_usd=float(sys.argv[3]),\n"
        "              prices={'pricey': {'input': 1000.0, 'output': 1000.0}})\n"
        "rs = c.run([LLMRequest(messages=[{'role': 'user', 'content': f'q{i} ' + 'w ' * i}], max_tokens=12)"
        " for i in range(40)])\n"
        "print(json.dumps(c.budget_summary()))\n"
    )
    summaries = []
    for budget in (0.1, 0.1, 0.25):
        out = subprocess.run([sys.executable, "-c", script, srv.base_url, str(cache), str(budget)],
                             capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
        summaries.append(json.loads(out.stdout.strip().splitlines()[-1]))
        assert billed_usd(srv) <= budget + 1e-9
    assert summaries[1]["spent_this_run_usd"] == 0.0  # the same budget again buys nothing more
    assert summaries[2]["spent_total_usd"] == round(billed_usd(srv), 9)


def test_extra_body_reaches_the_server(openai_server, tmp_path):
    srv = openai_server(responder=lambda b: "low")
    cfg = LLMConfig(model="m", base_url=srv.base_url, cache_path=str(tmp_path / "c.sqlite"),
                    extra_body={"top_k": 20, "repetition_penalty": 1.05, "guided_json": GUIDED,
                                "presence_penalty": 0.5})  # fmt: skip
    client = LLMClient(cfg, **FAST)
    request = LLMRequest(
        messages=[{"role": "user", "content": "rate"}], max_tokens=4, extra_body={"top_k": 5}
    )
    res = client.run([request, LLMRequest(messages=[{"role": "user", "content": "again"}], max_tokens=4)])
    assert all(r.ok for r in res) and res[0].attempts == 1
    first, second = srv.received
    assert first["top_k"] == 5 and second["top_k"] == 20  # a request's own value wins over the config's
    for body in (first, second):
        assert body["repetition_penalty"] == 1.05 and body["guided_json"] == GUIDED
        assert body["presence_penalty"] == 0.5 and "extra_body" not in body
    # the parameters are part of the cache key and of Batch API lines
    assert client.key_for(request) != LLMClient(model="m", cache_path=None).key_for(request)
    (path,) = LLMClient(cfg).write_batch_files([request], tmp_path / "batch", skip_cached=False)
    line = json.loads(path.read_text())
    assert line["body"]["top_k"] == 5 and line["body"]["guided_json"] == GUIDED


def test_named_tokenizer_tightens_the_worst_case_and_the_cap_holds(openai_server, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from curate.llm.pricing import worst_case_prompt_tokens

    corpus = [r.messages[0]["content"] for r in job(300, seed=1)]
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = (
        pre_tokenizers.Whitespace()
    )  # every whitespace word is >= 1 token: never under the server
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"]))
    PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    cost = full_cost(openai_server, tmp_path)
    srv = openai_server(responder=answer)
    client = client_for(srv, tmp_path / "c.sqlite", cost / 2, tokenizer=str(tmp_path / "tok"))
    request = job()[5]
    assert client._tokenizer() is not None
    assert worst_case_prompt_tokens(request, client._tokenizer()) < worst_case_prompt_tokens(request)
    client.run(job())
    assert 0.9 * cost / 2 <= billed_usd(srv) <= cost / 2
