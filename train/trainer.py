"""The trainer: one nanoGPT-style loop on Accelerate. Config, model, data, the loop, checkpointing.

Read top to bottom: :class:`TrainConfig` (every knob, pydantic, so a bad YAML key is named), the pure
functions the loop is made of (:func:`grad_accum_steps`, :func:`lr_at`, :func:`sample_indices`,
:class:`WindowSampler`, :func:`flops_per_token`), then :func:`train`.

Data position is arithmetic. The training region of the token file is cut into
``n = (n_tokens - 1) // seq_len`` fixed windows. Optimizer step ``s`` consumes global samples
``s*B .. (s+1)*B - 1`` (``B`` = global batch in sequences); sample ``k`` is window
``perm(seed, epoch)[k % n]`` of epoch ``k // n``. Rank ``r`` takes the ``r``-th slice of ``B / world``
samples and splits it into micro batches. So the step alone says which tokens come next: a resume
restores the step (with model, optimizer, grad scaler and RNG states from ``accelerator.save_state``)
and the data follows, and the global batch does not depend on the world size or micro batch.

The loss is the token mean over the whole global batch (``sum of token losses / number of target
tokens``, the count all-reduced before the backward), so it is the same for any world size, micro batch
or solution-only mask.

MFU (model FLOPs utilisation), PaLM appendix B::

    flops_per_token = 6 * N + 12 * L * d * T
    MFU = flops_per_token * tokens_per_second / (peak_flops_per_device * world_size)

with ``N`` the parameters that do matmuls (all but the input embedding table; the untied ``lm_head``
counts), ``L`` layers, ``d`` hidden size, ``T`` sequence length (the attention score and value matmuls).
``peak_flops`` is the device's dense bf16/fp16 peak (H100 SXM 989 TFLOP/s, A100 312); set it in the
config for other devices. It is not reported on CPU unless configured.

Run it:
    single process:  ``train(TrainConfig(...))`` or the recipe job ``train``;
    many GPUs/nodes: ``accelerate launch --config_file recipes/accelerate/ddp.yaml -m train.trainer run.yaml key=value ...``
    (``fsdp.yaml``, ``deepspeed_zero2.yaml``, ``deepspeed_zero3.yaml`` likewise).

Example:
    >>> from train.trainer import TrainConfig, train
    >>> cfg = TrainConfig(tokens="out/tokens", tokenizer="out/tok", output_dir="out/run", preset="tiny",
    ...                   seq_len=128, global_batch_size=8, micro_batch_size=4, max_steps=50, lr=3e-3,
    ...                   warmup_steps=5, mixed_precision="no")
    >>> summary = train(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

CHECKPOINTS_DIR = "checkpoints"
FINAL_DIR = "final"
METRICS_NAME = "metrics.jsonl"
STATE_NAME = "trainer_state.json"

# dense bf16/fp16 tensor-core peak, FLOP/s per device (vendor datasheets)
PEAK_FLOPS = {
    "H200": 989.4e12,
    "H100": 989.4e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "L4": 121e12,
}


class TrainConfig(BaseModel):
    """Everything the trainer reads. Defaults are the paper's phi-1 pretraining values.

    Example:
        >>> TrainConfig(tokens="out/tokens", output_dir="out/run").global_batch_size
        1024
    """

    model_config = ConfigDict(extra="forbid")

    # data
    tokens: str = Field(description="token directory written by prepare_tokens")
    tokenizer: str | None = Field(None, description="tokenizer dir/hub name; checked against the token file")
    seq_len: int = Field(2048, gt=0)
    val_tokens: int = Field(0, ge=0, description="tokens held out from the end of the file for validation")
    solution_only_loss: bool = Field(False, description="loss only where loss_mask.bin is 1 (fine-tuning)")
    verify_tokens: bool = Field(True, description="checksum the token file before training")
    # model
    preset: str = "phi-1"
    init_from: str | None = Field(None, description="HF model dir (or a run dir with final/) to start from")
    vocab_size: int | None = Field(None, description="embedding rows; default: the preset's")
    dropout: float | None = Field(None, ge=0, lt=1, description="override the preset's 0.1 dropouts")
    attn_implementation: str = "auto"
    compile: bool = False
    # optimisation
    global_batch_size: int = Field(1024, gt=0, description="sequences per optimizer step, all devices")
    micro_batch_size: int = Field(8, gt=0, description="sequences per forward pass per device")
    max_steps: int = Field(36_000, gt=0)
    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(0.0, ge=0)
    warmup_steps: int = Field(750, ge=0)
    decay: Literal["linear", "cosine", "constant"] = "linear"
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-7
    grad_clip: float | None = 1.0
    mixed_precision: Literal["bf16", "fp16", "no"] = "bf16"
    seed: int = 1234
    cpu: bool = Field(False, description="force CPU even when a GPU is present")
    # bookkeeping
    output_dir: str
    save_every: int = Field(1000, gt=0)
    keep_last: int = Field(3, gt=0)
    eval_every: int = Field(1000, gt=0)
    eval_windows: int = Field(64, ge=0, description="held-out windows per validation")
    log_every: int = Field(10, gt=0)
    resume: bool = Field(True, description="continue from the newest checkpoint in output_dir")
    peak_flops: float | None = Field(None, description="peak FLOP/s per device for MFU (auto on known GPUs)")
    tensorboard: bool = True

    @model_validator(mode="after")
    def _check(self):
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr {self.min_lr} > lr {self.lr}")
        return self


# ---------------------------------------------------------------- pure functions of the step


def grad_accum_steps(global_batch_size: int, micro_batch_size: int, world_size: int) -> int:
    """Micro batches per device per optimizer step, so that ``micro * world * accum == global``.

    Example:
        >>> grad_accum_steps(1024, 8, 8)
        16
    """
    per_step = micro_batch_size * world_size
    if global_batch_size % per_step:
        raise ValueError(
            f"global_batch_size {global_batch_size} is not divisible by micro_batch_size {micro_batch_size} "
            f"x world size {world_size} = {per_step}; change one of them"
        )
    return global_batch_size // per_step


def lr_at(
    step: int, *, lr: float, warmup_steps: int, max_steps: int, min_lr: float = 0.0, decay: str = "linear"
) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup to ``lr`` over
    ``warmup_steps``, then ``linear``/``cosine`` decay to ``min_lr`` at ``max_steps`` (or ``constant``).

    Example:
        >>> lr_at(0, lr=1e-3, warmup_steps=750, max_steps=36000)
        1.3333333333333333e-06
        >>> lr_at(749, lr=1e-3, warmup_steps=750, max_steps=36000)
        0.001
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if decay == "constant" or max_steps <= warmup_steps:
        return lr
    progress = min(1.0, (step - warmup_steps) / (max_steps - warmup_steps))
    if decay == "linear":
        return lr - progress * (lr - min_lr)
    if decay == "cosine":
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)
    raise ValueError(f"unknown decay {decay!r}")


def sample_indices(
    step: int, rank: int, micro_step: int, *, global_batch_size: int, world_size: int, micro_batch_size: int
) -> range:
    """Global sample indices of micro batch ``micro_step`` of ``rank`` at optimizer step ``step``.

    Over all ranks and micro steps these are exactly ``range(step * B, (step + 1) * B)``.

    Example:
        >>> list(sample_indices(3, 1, 0, global_batch_size=8, world_size=2, micro_batch_size=2))
        [28, 29]
    """
    per_rank = global_batch_size // world_size
    start = step * global_batch_size + rank * per_rank + micro_step * micro_batch_size
    return range(start, start + micro_batch_size)


class WindowSampler:
    """Sample index -> window index through a fresh permutation of the windows in every epoch.

    ``window(k) = permutation(seed, k // n)[k % n]``: no state besides (seed, n), so any step can be
    recomputed after a resume.
    """

    def __init__(self, n_windows: int, seed: int):
        if n_windows < 1:
            raise ValueError("no training windows")
        self.n_windows = n_windows
        self.seed = seed
        self._cache: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) >= 2:  # a batch spans at most two epochs
                self._cache.pop(min(self._cache))
            self._cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)
        return self._cache[epoch]

    def windows(self, samples: range) -> np.ndarray:
        return np.array(
            [self.permutation(k // self.n_windows)[k % self.n_windows] for k in samples], dtype=np.int64
        )


def flops_per_token(n_params: int, n_layers: int, hidden: int, seq_len: int) -> int:
    """Training FLOPs per token, ``6N + 12 L d T`` (see the module docstring)."""
    return 6 * n_params + 12 * n_layers * hidden * seq_len


def peak_flops(device, configured: float | None = None) -> float | None:
    """Peak FLOP/s of one device: the configured value, else a known GPU's bf16 peak, else None."""
    if configured:
        return configured
    if getattr(device, "type", "cpu") != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)


def split_train_val(offsets: np.ndarray, val_tokens: int) -> int:
    """First token of the validation region: the last document boundary that leaves >= val_tokens."""
    n_tokens = int(offsets[-1])
    if val_tokens <= 0:
        return n_tokens
    i = int(np.searchsorted(offsets, n_tokens - val_tokens, side="right")) - 1
    return int(offsets[max(i, 0)])


class TokenWindows:
    """Fixed-length windows ``[start + w*T, start + w*T + T + 1)`` of a token region -> (inputs, targets).

    Targets are the inputs shifted by one; with a loss mask, targets whose mask is 0 become -100.
    """

    def __init__(self, tokens: np.ndarray, mask: np.ndarray | None, start: int, stop: int, seq_len: int):
        self.tokens, self.mask, self.start, self.seq_len = tokens, mask, start, seq_len
        self.n_windows = max(0, (stop - start - 1) // seq_len)

    def batch(self, windows: np.ndarray):
        import torch

        t = self.seq_len
        rows = [self.start + int(w) * t for w in windows]
        chunk = np.stack([np.asarray(self.tokens[r : r + t + 1], dtype=np.int64) for r in rows])
        x, y = chunk[:, :-1], chunk[:, 1:].copy()
        if self.mask is not None:
            keep = np.stack([np.asarray(self.mask[r + 1 : r + t + 1]) for r in rows]).astype(bool)
            y[~keep] = -100
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)


# ---------------------------------------------------------------- model, optimizer, checkpoints


def build_model_config(cfg: TrainConfig, eos_token_id: int | None):
    """The model's ``PhiConfig``: from ``init_from`` when fine-tuning, else from the preset."""
    from transformers import AutoConfig

    from train.presets import phi_config

    if cfg.init_from:
        model_config = AutoConfig.from_pretrained(_model_dir(cfg.init_from), local_files_only=True)
        if cfg.dropout is not None:
            model_config.update(
                {"resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attention_dropout": cfg.dropout}
            )
        if cfg.seq_len > model_config.max_position_embeddings:
            raise ValueError(f"seq_len {cfg.seq_len} > the model's max_position_embeddings")
        return model_config
    from train.presets import PRESETS

    max_pos = max(cfg.seq_len, PRESETS.get(cfg.preset, {}).get("max_position_embeddings", cfg.seq_len))
    return phi_config(
        cfg.preset,
        vocab_size=cfg.vocab_size,
        max_position_embeddings=max_pos,
        dropout=cfg.dropout,
        eos_token_id=eos_token_id,
    )


def _model_dir(path: str) -> str:
    """A run directory stands for its ``final/`` model."""
    return str(Path(path) / FINAL_DIR) if (Path(path) / FINAL_DIR / "config.json").is_file() else path


def make_optimizer(model, cfg: TrainConfig, device):
    """AdamW; weight decay on matrices only (not biases, LayerNorms); fused kernel on GPU."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused)


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint (``checkpoints/step_XXXXXXXX`` with a trainer state)."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    done = sorted(p for p in root.glob("step_*") if p.suffix != ".tmp" and (p / STATE_NAME).is_file())
    return done[-1] if done else None


def save_checkpoint(accelerator, output_dir: Path, step: int, keep_last: int, extra: dict[str, Any]) -> Path:
    """``accelerator.save_state`` into a temporary dir, then rename: a kill mid-save leaves no half
    checkpoint that a resume could pick up. Keeps the newest ``keep_last``."""
    root = output_dir / CHECKPOINTS_DIR
    final = root / f"step_{step:08d}"
    tmp = root / f"step_{step:08d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_NAME).write_text(json.dumps({"step": step, **extra}, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        complete = sorted(p for p in root.glob("step_*") if p.suffix != ".tmp")
        for old in complete[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _truncate_metrics(path: Path, step: int) -> None:
    """After a resume from ``step``, drop the killed run's records of later steps."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # the line a kill cut in half
    path.write_text("".join(line + "\n" for line in kept))


# ---------------------------------------------------------------- the loop


def train(config: TrainConfig | dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Train (or fine-tune) a ``PhiForCausalLM`` and return a summary dict.

    Also the ``train`` recipe job (``fn(**with)``): pass the :class:`TrainConfig` fields as keyword
    arguments. Everything that can be checked before training (token file integrity, tokenizer hash,
    vocabulary sizes, batch divisibility, sequence length) is checked before the first step.

    Returns:
        ``{"output_dir", "final_model", "steps", "tokens", "train_loss", "val_loss", "tokens_per_s",
        "mfu", "grad_accum_steps", "world_size", "resumed_from", "n_params"}``.
    """
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedType, set_seed

    from train.prepare import TokenFile, TokenFileError
    from train.presets import attn_implementation, count_parameters
    from train.tokenizer import load_tokenizer, tokenizer_hash

    if isinstance(config, TrainConfig):
        cfg = config.model_copy(update=overrides)
    else:
        cfg = TrainConfig(**{**(config or {}), **overrides})
    out = Path(cfg.output_dir)

    # -- checks before anything expensive
    data = TokenFile(cfg.tokens, verify=cfg.verify_tokens)
    tok_hash = tokenizer_hash(load_tokenizer(cfg.tokenizer)) if cfg.tokenizer else None
    model_config = build_model_config(cfg, eos_token_id=data.header.get("eos_id"))
    data.check_compatible(vocab_size=model_config.vocab_size, tokenizer_hash=tok_hash)
    if cfg.solution_only_loss and data.mask is None:
        raise TokenFileError(
            f"solution_only_loss needs a loss mask: prepare {cfg.tokens} with solution_marker"
        )
    split = split_train_val(data.offsets, cfg.val_tokens)
    train_data = TokenWindows(
        data.tokens, data.mask if cfg.solution_only_loss else None, 0, split, cfg.seq_len
    )
    val_data = TokenWindows(
        data.tokens, data.mask if cfg.solution_only_loss else None, split, data.n_tokens, cfg.seq_len
    )
    if train_data.n_windows < 1:
        raise TokenFileError(
            f"{cfg.tokens}: {split} training tokens is less than one window of {cfg.seq_len + 1}"
        )

    # -- devices, precision, accumulation
    world = PartialState(cpu=cfg.cpu).num_processes
    accum = grad_accum_steps(cfg.global_batch_size, cfg.micro_batch_size, world)
    # accelerator.backward divides the loss by accum (DeepSpeed: its engine does, and steps at the
    # accumulation boundary itself); the loop never uses accumulate(), so sync_gradients stays True
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        cpu=cfg.cpu,
        project_dir=str(out),
        gradient_accumulation_steps=accum,
    )
    rank = accelerator.process_index
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
        ds_config["train_micro_batch_size_per_gpu"] = cfg.micro_batch_size
        ds_config["gradient_accumulation_steps"] = accum
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(cfg.model_dump_json(indent=2))
        (out / "data.json").write_text(json.dumps(data.header, indent=2))
        model_config.to_json_file(str(out / "model_config.json"))

    # -- model and optimizer
    set_seed(cfg.seed)
    from transformers import AutoModelForCausalLM, PhiForCausalLM

    attn = attn_implementation(cfg.attn_implementation)
    if cfg.init_from:
        model = AutoModelForCausalLM.from_pretrained(
            _model_dir(cfg.init_from), config=model_config, attn_implementation=attn, local_files_only=True
        )
    else:
        model_config._attn_implementation = attn
        model = PhiForCausalLM(model_config)
    n_params = count_parameters(model)
    fpt = flops_per_token(n_params, model_config.num_hidden_layers, model_config.hidden_size, cfg.seq_len)
    optimizer = make_optimizer(model, cfg, accelerator.device)
    if cfg.compile:
        model.compile()  # in place: state-dict keys stay plain, checkpoints load compiled or not
    model, optimizer = accelerator.prepare(model, optimizer)
    vocab = model_config.vocab_size
    peak = peak_flops(accelerator.device, cfg.peak_flops)

    # -- resume: model, optimizer, scaler, RNG from the checkpoint; the data position from the step
    step, resumed_from = 0, None
    checkpoint = latest_checkpoint(out) if cfg.resume else None
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        step = json.loads((checkpoint / STATE_NAME).read_text())["step"]
        resumed_from = str(checkpoint)
        accelerator.print(f"resumed from {checkpoint} at step {step}")
    metrics_path = out / METRICS_NAME
    writer = None
    if accelerator.is_main_process:
        if resumed_from:
            _truncate_metrics(metrics_path, step)
        else:
            metrics_path.unlink(missing_ok=True)
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tensorboard"), purge_step=step if resumed_from else None)

    def record(values: dict[str, Any]) -> None:
        if not accelerator.is_main_process:
            return
        with open(metrics_path, "a") as f:
            f.write(json.dumps(values) + "\n")
        if writer is not None:
            for key, value in values.items():
                if key != "step" and isinstance(value, (int, float)):
                    writer.add_scalar(key, value, values["step"])

    @torch.no_grad()
    def evaluate() -> float | None:
        """Mean token loss on the first ``eval_windows`` held-out windows (split across ranks)."""
        n = min(cfg.eval_windows, val_data.n_windows)
        if n == 0:
            return None
        model.eval()
        total = torch.zeros(2, device=accelerator.device, dtype=torch.float64)
        mine = np.arange(rank, n, world)
        for i in range(0, len(mine), cfg.micro_batch_size):
            x, y = val_data.batch(mine[i : i + cfg.micro_batch_size])
            x, y = x.to(accelerator.device), y.to(accelerator.device)
            logits = model(input_ids=x).logits
            total[0] += F.cross_entropy(
                logits.float().view(-1, vocab), y.view(-1), ignore_index=-100, reduction="sum"
            )
            total[1] += (y != -100).sum()
        total = accelerator.reduce(total, "sum")
        model.train()
        return float(total[0] / total[1].clamp(min=1))

    sampler = WindowSampler(train_data.n_windows, cfg.seed)
    no_sync = accelerator.distributed_type not in (DistributedType.NO, DistributedType.DEEPSPEED)
    tokens_per_step = cfg.global_batch_size * cfg.seq_len
    train_loss = val_loss = mfu = None
    rates: list[float] = []
    model.train()
    accelerator.print(
        f"training {n_params / 1e6:.1f}M params | {world} device(s) x {cfg.micro_batch_size} seqs x {accum} "
        f"accumulation = {cfg.global_batch_size} seqs x {cfg.seq_len} tokens per step | "
        f"{train_data.n_windows} windows | steps {step} -> {cfg.max_steps}"
    )
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        lr = lr_at(
            step,
            lr=cfg.lr,
            warmup_steps=cfg.warmup_steps,
            max_steps=cfg.max_steps,
            min_lr=cfg.min_lr,
            decay=cfg.decay,
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        batches = [
            train_data.batch(
                sampler.windows(
                    sample_indices(
                        step,
                        rank,
                        m,
                        global_batch_size=cfg.global_batch_size,
                        world_size=world,
                        micro_batch_size=cfg.micro_batch_size,
                    )
                )
            )
            for m in range(accum)
        ]
        # token mean over the global batch: every rank needs the global target count first
        n_targets = accelerator.reduce(
            torch.tensor(sum(int((y != -100).sum()) for _, y in batches), device=accelerator.device), "sum"
        ).clamp(min=1)
        loss_sum = torch.zeros((), device=accelerator.device, dtype=torch.float64)
        for m, (x, y) in enumerate(batches):
            x = x.to(accelerator.device, non_blocking=True)
            y = y.to(accelerator.device, non_blocking=True)
            sync = contextlib.nullcontext() if (m == accum - 1 or not no_sync) else accelerator.no_sync(model)
            with sync:
                logits = model(input_ids=x).logits
                loss = F.cross_entropy(
                    logits.float().view(-1, vocab), y.view(-1), ignore_index=-100, reduction="sum"
                )
                # backward divides by accum and DDP averages over ranks: undo both, divide by the count
                accelerator.backward(loss * (accum * world) / n_targets)
            loss_sum += loss.detach()
        grad_norm = None
        if cfg.grad_clip:
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train_loss = float(accelerator.reduce(loss_sum, "sum") / n_targets)
        step += 1

        dt = time.perf_counter() - t0
        tokens_per_s = tokens_per_step / dt
        rates.append(tokens_per_s)
        mfu = fpt * tokens_per_s / (peak * world) if peak else None
        values = {
            "step": step,
            "loss": train_loss,
            "lr": lr,
            "tokens": step * tokens_per_step,
            "tokens_per_s": tokens_per_s,
        }
        if grad_norm is not None:
            values["grad_norm"] = float(grad_norm)
        if mfu is not None:
            values["mfu"] = mfu
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            val_loss = evaluate()
            if val_loss is not None:
                values["val_loss"] = val_loss
        record(values)
        if step % cfg.log_every == 0 or step == cfg.max_steps or step == 1:
            accelerator.print(
                f"step {step}/{cfg.max_steps} | loss {train_loss:.4f} | lr {lr:.3e} | {tokens_per_s:,.0f} tok/s"
                + (f" | mfu {mfu:.1%}" if mfu is not None else "")
                + (f" | val {values['val_loss']:.4f}" if "val_loss" in values else "")
            )
        if step % cfg.save_every == 0 or step == cfg.max_steps:
            save_checkpoint(accelerator, out, step, cfg.keep_last, {"tokens": step * tokens_per_step})

    # -- the final model, as a standard HF directory (train.export adds the tokenizer and the card)
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.save_pretrained(str(out / FINAL_DIR), state_dict=state_dict, safe_serialization=True)
    if writer is not None:
        writer.close()
    accelerator.wait_for_everyone()
    steady = rates[1:] or rates  # the first step includes warm-up (allocations, compilation)
    mean_rate = float(np.mean(steady)) if steady else None
    return {
        "output_dir": str(out),
        "final_model": str(out / FINAL_DIR),
        "steps": step,
        "tokens": step * tokens_per_step,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "tokens_per_s": mean_rate,
        "mfu": (fpt * mean_rate / (peak * world)) if (peak and mean_rate) else None,
        "grad_accum_steps": accum,
        "world_size": world,
        "resumed_from": resumed_from,
        "n_params": n_params,
    }


def load_config_file(path: str | os.PathLike, overrides: list[str] = ()) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML/JSON file of its fields plus ``key=value`` overrides
    (values parsed as YAML, so ``max_steps=10`` is an int)."""
    import yaml

    values = yaml.safe_load(Path(path).read_text()) or {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        values[key] = yaml.safe_load(value)
    return TrainConfig(**values)


def train_from_file(config: str | os.PathLike, overrides: list[str] = ()) -> dict[str, Any]:
    """Train from a YAML/JSON config file plus ``key=value`` overrides (the ``textbooks train`` command).

    Example:
        >>> train_from_file("run.yaml", ["max_steps=100", "output_dir=out/run"])  # doctest: +SKIP
    """
    return train(load_config_file(config, list(overrides)))


def main(argv: list[str] | None = None) -> None:
    """``python -m train.trainer CONFIG.yaml [key=value ...]`` (also under ``accelerate launch``)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(main.__doc__)
        raise SystemExit(0 if args else 2)
    summary = train_from_file(args[0], args[1:])
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
