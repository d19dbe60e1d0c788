"""The trainer: one nanoGPT-style loop on Accelerate. Config, model, data, the loop, checkpointing.

Read top to bottom: the pure functions the loop is made of (:func:`grad_accum_steps`, :func:`lr_at`,
:func:`sample_indices`, :class:`WindowSampler`, :func:`flops_per_token`, :func:`peak_flops`), the checks
made before step one, :func:`token_loss` (the one loss, used by training and validation), then the loop
itself: :func:`setup`, :func:`resume`, :func:`get_lr`, :func:`micro_batches`, :func:`train_step`,
:func:`estimate_loss`, :func:`save` and :func:`train`. The config object is
:class:`train.config.TrainConfig` (importable from here too).

Data position is arithmetic. The training region of the token file is cut into
``n = (n_tokens - 1) // seq_len`` fixed windows. Optimizer step ``s`` consumes global samples
``s*B .. (s+1)*B - 1`` (``B`` = global batch in sequences); sample ``k`` is window
``perm(seed, epoch)[k % n]`` of epoch ``k // n``. Rank ``r`` takes the ``r``-th slice of ``B / world``
samples and splits it into micro batches. So the step alone says which tokens come next: a resume
restores the step (with model, optimizer, grad scaler and RNG states from ``accelerator.save_state``)
and the data follows, and the global batch does not depend on the world size or micro batch.

The loss is the token mean over the whole global batch (``sum of token losses / number of target
tokens``), so it is the same for any world size, micro batch or solution-only mask: each micro batch's
loss sum is divided by the mean target count of a micro batch, and Accelerate's ``accumulate`` (mean
over micro batches) and DDP (mean over ranks) do the rest.

MFU (model FLOPs utilisation), PaLM appendix B::

    flops_per_token = 6 * N + 12 * L * d * T
    MFU = flops_per_token * tokens_per_second / (peak_flops_per_device * world_size)

with ``N`` the parameters that do matmuls (all but the input embedding table; the untied ``lm_head``
counts), ``L`` layers, ``d`` hidden size, ``T`` sequence length (the attention score and value matmuls).
``peak_flops`` is the device's dense peak for the precision trained in, looked up by the exact CUDA
device name in :data:`GPU_PEAK_TFLOPS` (H100 SXM bf16 989.4 TFLOP/s, A100 312); set it in the config
for other devices. It is not reported on CPU unless configured. Tokens/s is total tokens over total
step time (the first step, with its allocations and compilation, left out).

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

import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curate.extras import require_extra

CHECKPOINTS_DIR = "checkpoints"
FINAL_DIR = "final"
METRICS_NAME = "metrics.jsonl"
STATE_NAME = "trainer_state.json"

# Dense (no sparsity) peak TFLOP/s per device, from the vendor datasheets, keyed by the exact name
# torch.cuda.get_device_name() reports. "bf16" is the bf16/fp16 tensor-core peak, "tf32" the TF32
# tensor-core peak (fp32 matmuls with torch.backends.cuda.matmul.allow_tf32), "fp32" plain FP32.
# Exact names only: "NVIDIA L40" is not an L4, an H100 PCIe is not an SXM part. A MIG slice or an
# unlisted device gets no MFU; set TrainConfig.peak_flops for it.
GPU_PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "NVIDIA H100 80GB HBM3": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},  # H100 SXM5
    "NVIDIA H100 PCIe": {"bf16": 756.5, "tf32": 378.0, "fp32": 51.2},
    "NVIDIA H100 NVL": {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0},
    "NVIDIA H200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},  # H200 SXM
    "NVIDIA H200 NVL": {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0},
    "NVIDIA GH200 480GB": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "NVIDIA A100-SXM4-40GB": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "NVIDIA A100-SXM4-80GB": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "NVIDIA A100-PCIE-40GB": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "NVIDIA A100 80GB PCIe": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "NVIDIA L40S": {"bf16": 362.05, "tf32": 183.0, "fp32": 91.6},
    "NVIDIA L40": {"bf16": 181.05, "tf32": 90.5, "fp32": 90.5},
    "NVIDIA L4": {"bf16": 121.0, "tf32": 60.0, "fp32": 30.3},
    "NVIDIA A10": {"bf16": 125.0, "tf32": 62.5, "fp32": 31.2},
}


def __getattr__(name: str):
    # TrainConfig lives in train.config (pydantic); importing this module does not need pydantic
    if name == "TrainConfig":
        from train.config import TrainConfig

        return TrainConfig
    raise AttributeError(f"module 'train.trainer' has no attribute {name!r}")


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
        >>> round(lr_at(0, lr=1e-3, warmup_steps=750, max_steps=36000), 12)
        1.333333e-06
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
    """Training FLOPs per token, ``6N + 12 L d T`` (see the module docstring).

    Example:
        >>> flops_per_token(1_000_000, 2, 64, 128)
        6196608
    """
    return 6 * n_params + 12 * n_layers * hidden * seq_len


def matmul_precision(mixed_precision: str) -> str:
    """The precision matmuls run in: ``bf16`` (fp16 has the same peak) or, without mixed precision,
    ``tf32`` when PyTorch allows TF32 matmuls, else ``fp32``.

    Example:
        >>> matmul_precision("fp16")
        'bf16'
    """
    if mixed_precision in ("bf16", "fp16"):
        return "bf16"
    import torch

    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"


def device_peak_flops(device_name: str, precision: str = "bf16") -> float | None:
    """Dense peak FLOP/s of a GPU by its exact CUDA name, or None when the name is not in the table.

    Example:
        >>> device_peak_flops("NVIDIA H100 PCIe") / 1e12
        756.5
        >>> device_peak_flops("NVIDIA H100 80GB HBM3", "fp32") / 1e12
        66.9
        >>> device_peak_flops("NVIDIA L40") == device_peak_flops("NVIDIA L4")
        False
        >>> device_peak_flops("NVIDIA H100 80GB HBM3 MIG 1g.10gb") is None
        True
    """
    row = GPU_PEAK_TFLOPS.get(device_name.strip())
    return row[precision] * 1e12 if row else None


def peak_flops(device, configured: float | None = None, precision: str = "bf16") -> float | None:
    """Peak FLOP/s of one device: the configured value, else the table's for a known GPU, else None."""
    if configured:
        return configured
    if getattr(device, "type", "cpu") != "cuda":
        return None
    import torch

    return device_peak_flops(torch.cuda.get_device_name(device), precision)


def tokens_per_second(tokens: int, seconds: float) -> float | None:
    """Throughput as total tokens over total time (not a mean of per-step rates, which overweights
    fast steps).

    Example:
        >>> tokens_per_second(3000, 2.0)
        1500.0
    """
    return tokens / seconds if seconds > 0 else None


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


# ---------------------------------------------------------------- checks before step one


def model_context(cfg) -> int:
    """The context the model is built with: the explicit ``max_position_embeddings``, else the preset's."""
    from train.presets import PRESETS

    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown model preset {cfg.preset!r}; choose one of {sorted(PRESETS)}")
    return cfg.max_position_embeddings or PRESETS[cfg.preset]["max_position_embeddings"]


def check_seq_len(seq_len: int, context: int, where: str) -> None:
    """``seq_len`` must fit the model's context; a longer context is only built when asked for.

    Example:
        >>> check_seq_len(4096, 2048, "preset 'phi-1'")
        Traceback (most recent call last):
        ...
        ValueError: seq_len 4096 exceeds the context of preset 'phi-1' (max_position_embeddings 2048); lower seq_len, or set max_position_embeddings: 4096 to train a longer context
    """
    if seq_len > context:
        raise ValueError(
            f"seq_len {seq_len} exceeds the context of {where} (max_position_embeddings {context}); "
            f"lower seq_len, or set max_position_embeddings: {seq_len} to train a longer context"
        )


def check_windows(n_windows: int, global_batch_size: int, seq_len: int) -> str | None:
    """A warning when one optimizer step needs more windows than the training data has: every step
    then repeats windows (several epochs per step), which is rarely what was meant.

    Example:
        >>> check_windows(100, 1024, 2048)[:45]
        'only 100 training windows of 2048 tokens but '
        >>> check_windows(5000, 1024, 2048) is None
        True
    """
    if n_windows >= global_batch_size:
        return None
    message = (
        f"only {n_windows} training windows of {seq_len} tokens but global_batch_size {global_batch_size}: "
        f"every step repeats windows ({global_batch_size / n_windows:.1f} epochs per step); "
        "lower global_batch_size or seq_len, or add data"
    )
    warnings.warn(message, stacklevel=2)
    return message


# ---------------------------------------------------------------- the loss, shared by training and validation


def token_loss(logits, targets):
    """``(sum of token cross-entropies, number of target tokens)``; targets of -100 do not count.

    Computed in float32 whatever the logits' dtype.

    Example:
        >>> import torch
        >>> total, count = token_loss(torch.zeros(1, 3, 4), torch.tensor([[1, -100, 2]]))
        >>> round(float(total / count), 4), int(count)
        (1.3863, 2)
    """
    import torch.nn.functional as F

    total = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return total, (targets != -100).sum()


# ---------------------------------------------------------------- model, optimizer, checkpoints


def build_model_config(cfg, eos_token_id: int | None):
    """The model's ``PhiConfig``: from ``init_from`` when fine-tuning, else from the preset; ``seq_len``
    must fit its context."""
    from transformers import AutoConfig

    from train.presets import phi_config

    if cfg.init_from:
        model_dir = _model_dir(cfg.init_from)
        model_config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        if cfg.dropout is not None:
            model_config.update(
                {"resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attention_dropout": cfg.dropout}
            )
        check_seq_len(cfg.seq_len, model_config.max_position_embeddings, f"the model in {model_dir}")
        return model_config
    context = model_context(cfg)
    check_seq_len(cfg.seq_len, context, f"preset {cfg.preset!r}")
    return phi_config(
        cfg.preset,
        vocab_size=cfg.vocab_size,
        max_position_embeddings=context,
        dropout=cfg.dropout,
        eos_token_id=eos_token_id,
    )


def _model_dir(path: str) -> str:
    """A run directory stands for its ``final/`` model."""
    return str(Path(path) / FINAL_DIR) if (Path(path) / FINAL_DIR / "config.json").is_file() else path


def make_optimizer(model, lr: float, weight_decay: float, betas=(0.9, 0.98), eps: float = 1e-7, device=None):
    """AdamW; weight decay on matrices only (not biases, LayerNorms); fused kernel on GPU."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = getattr(device, "type", None) == "cuda"
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, fused=fused)


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


@dataclass
class Run:
    """What :func:`setup` builds; the loop's functions take it instead of closing over locals."""

    cfg: Any
    accelerator: Any
    model: Any
    optimizer: Any
    train_data: TokenWindows
    val_data: TokenWindows
    sampler: WindowSampler
    accum: int
    n_params: int
    flops_per_token: int
    peak: float | None
    writer: Any = None

    @property
    def out(self) -> Path:
        return Path(self.cfg.output_dir)


def load_data(cfg):
    """Every check that needs no model, before anything expensive: token file integrity, tokenizer hash,
    vocabulary, loss mask, ``seq_len`` against the context, windows against the global batch.

    Returns ``(token file header, model config, training windows, validation windows)``.
    """
    from train.prepare import TokenFileError
    from train.shards import open_tokens
    from train.tokenizer import load_tokenizer, tokenizer_hash

    data = open_tokens(cfg.tokens, verify=cfg.verify_tokens)  # datatrove shards or the flat file
    tok_hash = tokenizer_hash(load_tokenizer(cfg.tokenizer)) if cfg.tokenizer else None
    model_config = build_model_config(cfg, eos_token_id=data.header.get("eos_id"))
    data.check_compatible(vocab_size=model_config.vocab_size, tokenizer_hash=tok_hash)
    if cfg.solution_only_loss and data.mask is None:
        raise TokenFileError(
            f"solution_only_loss needs a loss mask: prepare {cfg.tokens} with solution_marker"
        )
    mask = data.mask if cfg.solution_only_loss else None
    split = split_train_val(data.offsets, cfg.val_tokens)
    train_data = TokenWindows(data.tokens, mask, 0, split, cfg.seq_len)
    val_data = TokenWindows(data.tokens, mask, split, data.n_tokens, cfg.seq_len)
    if train_data.n_windows < 1:
        raise TokenFileError(
            f"{cfg.tokens}: {split} training tokens is less than one window of {cfg.seq_len + 1}"
        )
    check_windows(train_data.n_windows, cfg.global_batch_size, cfg.seq_len)
    return data.header, model_config, train_data, val_data


def init_model(cfg, model_config):
    """The model to train: ``init_from``'s weights, or a fresh preset model (seeded by the caller), with
    the chunked linear cross-entropy when ``cfg.loss == "chunked"`` (every trainer plug gets the same)."""
    model = _load_or_build_model(cfg, model_config)
    if cfg.loss == "chunked":
        from train.loss import use_chunked_loss

        use_chunked_loss(model, cfg.loss_chunk_tokens)
    return model


def _load_or_build_model(cfg, model_config):
    from train.presets import attn_implementation, build_model

    if not cfg.init_from:
        return build_model(model_config, attn=cfg.attn_implementation)
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        _model_dir(cfg.init_from),
        config=model_config,
        attn_implementation=attn_implementation(cfg.attn_implementation),
        local_files_only=True,
    )


def write_run_files(cfg, header: dict, model_config) -> None:
    """The run's config, its data's header and the model config, in ``output_dir`` (every trainer plug
    writes them: the ablation and export read ``model_config.json``)."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(cfg.model_dump_json(indent=2))
    (out / "data.json").write_text(json.dumps(header, indent=2))
    model_config.to_json_file(str(out / "model_config.json"))


def setup(cfg) -> Run:
    """Checks, devices, precision and accumulation, model and optimizer: everything before step one."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedType, set_seed

    from train.presets import count_parameters

    header, model_config, train_data, val_data = load_data(cfg)
    accum = grad_accum_steps(
        cfg.global_batch_size, cfg.micro_batch_size, PartialState(cpu=cfg.cpu).num_processes
    )
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        cpu=cfg.cpu,
        project_dir=str(cfg.output_dir),
        gradient_accumulation_steps=accum,
    )
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
        ds_config["train_micro_batch_size_per_gpu"] = cfg.micro_batch_size
        ds_config["gradient_accumulation_steps"] = accum
    if accelerator.is_main_process:
        write_run_files(cfg, header, model_config)

    set_seed(cfg.seed)
    model = init_model(cfg, model_config)
    n_params = count_parameters(model)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas, cfg.eps, accelerator.device)
    if cfg.auto_micro_batch:  # probed eagerly, before compiling: one compilation, not one per probed size
        model.to(accelerator.device)
        accum = fit_micro_batch(cfg, accelerator, model, optimizer, model_config.vocab_size)
    if cfg.compile:
        model.compile()  # in place: state-dict keys stay plain, checkpoints load compiled or not
    model, optimizer = accelerator.prepare(model, optimizer)
    return Run(
        cfg=cfg,
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        train_data=train_data,
        val_data=val_data,
        sampler=WindowSampler(train_data.n_windows, cfg.seed),
        accum=accum,
        n_params=n_params,
        flops_per_token=flops_per_token(
            n_params, model_config.num_hidden_layers, model_config.hidden_size, cfg.seq_len
        ),
        peak=peak_flops(accelerator.device, cfg.peak_flops, matmul_precision(cfg.mixed_precision)),
    )


def fit_micro_batch(cfg, accelerator, model, optimizer, vocab_size: int) -> int:
    """Set ``cfg.micro_batch_size`` to the largest divisor of the per-device batch, at most the
    configured one, that fits one real step (:func:`train.loss.largest_micro_batch`); returns the new
    accumulation. The data order does not depend on it (see the module docstring)."""
    from train.loss import largest_micro_batch, memory_probe

    world = accelerator.num_processes
    fits = memory_probe(model, optimizer, cfg.seq_len, vocab_size, accelerator.device, accelerator.autocast)
    local = largest_micro_batch(fits, cfg.global_batch_size // world, upper=cfg.micro_batch_size)
    # every rank must agree: the smallest rank's answer is the one that fits everywhere
    import torch

    found = (
        int(accelerator.reduce(torch.tensor(local, device=accelerator.device), "min")) if world > 1 else local
    )
    cfg.micro_batch_size = found
    accum = grad_accum_steps(cfg.global_batch_size, found, world)
    accelerator.gradient_accumulation_steps = accum
    accelerator.print(f"auto micro batch: {found} sequences x {accum} accumulation")
    if accelerator.is_main_process:
        (Path(cfg.output_dir) / "train_config.json").write_text(cfg.model_dump_json(indent=2))
    return accum


def resume(run: Run) -> tuple[int, str | None]:
    """Continue from the newest checkpoint (model, optimizer, grad scaler, RNG); the data position
    follows from the step. Returns ``(step, checkpoint path or None)``; opens the metrics log."""
    checkpoint = latest_checkpoint(run.out) if run.cfg.resume else None
    step = 0
    if checkpoint is not None:
        run.accelerator.load_state(str(checkpoint))
        step = json.loads((checkpoint / STATE_NAME).read_text())["step"]
        run.accelerator.print(f"resumed from {checkpoint} at step {step}")
    if run.accelerator.is_main_process:
        metrics_path = run.out / METRICS_NAME
        if checkpoint is not None:
            _truncate_metrics(metrics_path, step)
        else:
            metrics_path.unlink(missing_ok=True)
        if run.cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            run.writer = SummaryWriter(
                str(run.out / "tensorboard"), purge_step=step if checkpoint is not None else None
            )
    return step, str(checkpoint) if checkpoint is not None else None


def get_lr(step: int, cfg) -> float:
    """The configured schedule's learning rate at optimizer step ``step`` (see :func:`lr_at`)."""
    return lr_at(
        step,
        lr=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        max_steps=cfg.max_steps,
        min_lr=cfg.min_lr,
        decay=cfg.decay,
    )


def micro_batches(run: Run, step: int) -> list:
    """This rank's ``(inputs, targets)`` micro batches of optimizer step ``step`` (CPU tensors)."""
    cfg, world = run.cfg, run.accelerator.num_processes
    return [
        run.train_data.batch(
            run.sampler.windows(
                sample_indices(
                    step,
                    run.accelerator.process_index,
                    m,
                    global_batch_size=cfg.global_batch_size,
                    world_size=world,
                    micro_batch_size=cfg.micro_batch_size,
                )
            )
        )
        for m in range(run.accum)
    ]


def train_step(model, optimizer, accelerator, batches: list, grad_clip: float | None = None):
    """One optimizer step over this rank's micro batches; returns ``(global token-mean loss, grad norm)``.

    The accelerator must have ``gradient_accumulation_steps == len(batches)``. Each micro batch's loss
    sum is divided by the mean target count of one micro batch over the global batch; Accelerate's
    ``accumulate`` averages the micro batches (and skips DDP's all-reduce until the last) and DDP
    averages the ranks, so the gradient is exactly that of the global token mean.
    """
    import torch

    from train.loss import forward_loss

    device = accelerator.device
    local_targets = torch.tensor(sum(int((y != -100).sum()) for _, y in batches), device=device)
    n_targets = accelerator.reduce(local_targets, "sum").clamp(min=1)
    per_micro_batch = n_targets / (len(batches) * accelerator.num_processes)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    for x, y in batches:
        with accelerator.accumulate(model):
            total, _ = forward_loss(model, x.to(device), y.to(device))
            accelerator.backward(total / per_micro_batch)
        loss_sum += total.detach()
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), grad_clip) if grad_clip else None
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(accelerator.reduce(loss_sum, "sum") / n_targets), grad_norm


def estimate_loss(model, accelerator, val_data: TokenWindows, n_windows: int, micro_batch_size: int):
    """Mean token loss on the first ``n_windows`` held-out windows (split across ranks); None if none."""
    import torch

    from train.loss import forward_loss

    n = min(n_windows, val_data.n_windows)
    if n == 0:
        return None
    model.eval()
    total = torch.zeros(2, device=accelerator.device, dtype=torch.float64)
    mine = np.arange(accelerator.process_index, n, accelerator.num_processes)
    with torch.no_grad():
        for i in range(0, len(mine), micro_batch_size):
            x, y = val_data.batch(mine[i : i + micro_batch_size])
            loss_sum, count = forward_loss(model, x.to(accelerator.device), y.to(accelerator.device))
            total += torch.stack([loss_sum.double(), count.double()])
    total = accelerator.reduce(total, "sum")
    model.train()
    return float(total[0] / total[1].clamp(min=1))


def record(run: Run, values: dict[str, Any]) -> None:
    """Append one step's metrics to ``metrics.jsonl`` (and TensorBoard); print every ``log_every``."""
    cfg, step = run.cfg, values["step"]
    if step % cfg.log_every == 0 or step == cfg.max_steps or step == 1:
        run.accelerator.print(
            f"step {step}/{cfg.max_steps} | loss {values['loss']:.4f} | lr {values['lr']:.3e} | "
            f"{values['tokens_per_s']:,.0f} tok/s"
            + (f" | mfu {values['mfu']:.1%}" if "mfu" in values else "")
            + (f" | val {values['val_loss']:.4f}" if "val_loss" in values else "")
        )
    if not run.accelerator.is_main_process:
        return
    with open(run.out / METRICS_NAME, "a") as f:
        f.write(json.dumps(values) + "\n")
    if run.writer is not None:
        for key, value in values.items():
            if key != "step" and isinstance(value, (int, float)):
                run.writer.add_scalar(key, value, step)


def save(run: Run, step: int) -> Path:
    """A checkpoint of ``step`` that :func:`resume` continues from (see :func:`save_checkpoint`)."""
    tokens = step * run.cfg.global_batch_size * run.cfg.seq_len
    return save_checkpoint(run.accelerator, run.out, step, run.cfg.keep_last, {"tokens": tokens})


def make_readable(model_dir: str | os.PathLike) -> None:
    """Give a model directory's files mode 0644: ``save_pretrained`` writes ``model.safetensors`` as
    0600, which another user (a vLLM container, a shared cache, a colleague) cannot load."""
    for path in Path(model_dir).iterdir():
        if path.is_file() and not path.is_symlink():
            path.chmod(0o644)


def save_final(run: Run) -> None:
    """The final model as a standard HF directory (train.export adds the tokenizer and the card)."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(run.model)
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(run.model)
        unwrapped.save_pretrained(str(run.out / FINAL_DIR), state_dict=state_dict, safe_serialization=True)
        make_readable(run.out / FINAL_DIR)
    if run.writer is not None:
        run.writer.close()
    accelerator.wait_for_everyone()


def model_flops_utilisation(run: Run, tokens_per_s: float | None) -> float | None:
    """MFU of a throughput on this run's devices, None without a known peak."""
    if not (run.peak and tokens_per_s):
        return None
    return run.flops_per_token * tokens_per_s / (run.peak * run.accelerator.num_processes)


def as_config(config=None, overrides: dict[str, Any] | None = None):
    """A validated :class:`train.config.TrainConfig` from a config or a dict, with ``overrides``."""
    from train.config import TrainConfig

    values = config.model_dump() if isinstance(config, TrainConfig) else dict(config or {})
    return TrainConfig(**{**values, **(overrides or {})})


def step_metrics(run: Run, step: int, lr: float, loss: float, grad_norm, seconds: float) -> dict[str, Any]:
    """One optimizer step's record: loss, LR, tokens so far, this step's time, tokens/s and MFU."""
    tokens_per_step = run.cfg.global_batch_size * run.cfg.seq_len
    values = {"step": step, "loss": loss, "lr": lr, "tokens": step * tokens_per_step}
    values.update(tokens_per_s=tokens_per_step / seconds, step_time_s=seconds)
    if grad_norm is not None:
        values["grad_norm"] = float(grad_norm)
    if run.peak:
        values["mfu"] = model_flops_utilisation(run, values["tokens_per_s"])
    return values


def run_throughput(run: Run, step_times: list[float]) -> float | None:
    """This process's tokens/s: total tokens over total time of its steps, the first (allocations,
    compilation) left out unless it is the only one."""
    timed = step_times[1:] or step_times
    tokens_per_step = run.cfg.global_batch_size * run.cfg.seq_len
    return tokens_per_second(len(timed) * tokens_per_step, sum(timed)) if timed else None


def train(config=None, **overrides: Any) -> dict[str, Any]:
    """Train (or fine-tune) a ``PhiForCausalLM`` and return a summary dict: our loop, or the plug named
    by ``trainer`` (:mod:`train.plugins`).

    ``config`` is a :class:`train.config.TrainConfig` or a dict of its fields; ``overrides`` replace
    fields. Also the ``train`` recipe job (``fn(**with)``). Everything that can be checked before
    training (token file, tokenizer hash, vocabulary sizes, batch divisibility, ``seq_len`` against the
    context, windows against the global batch) is checked before the first step.

    Returns:
        ``{"output_dir", "final_model", "steps", "tokens", "train_loss", "val_loss", "tokens_per_s",
        "mfu", "grad_accum_steps", "world_size", "resumed_from", "n_params", "train_time_s"}``.
    """
    require_extra("train", "train()")
    cfg = as_config(config, overrides)
    if cfg.trainer != "ours":  # another plug (transformers' Trainer, a third party's): same contract
        from train.plugins import get_trainer

        return get_trainer(cfg.trainer).train(cfg)
    run = setup(cfg)
    step, resumed_from = resume(run)
    train_loss = val_loss = None
    step_times: list[float] = []
    run.accelerator.print(
        f"training {run.n_params / 1e6:.1f}M params | {run.accelerator.num_processes} device(s) x "
        f"{cfg.micro_batch_size} seqs x {run.accum} accumulation = {cfg.global_batch_size} seqs x {cfg.seq_len} "
        f"tokens per step | {run.train_data.n_windows} windows | steps {step} -> {cfg.max_steps}"
    )
    run.model.train()
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        lr = get_lr(step, cfg)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        batches = micro_batches(run, step)
        train_loss, grad_norm = train_step(run.model, run.optimizer, run.accelerator, batches, cfg.grad_clip)
        step += 1
        step_times.append(time.perf_counter() - t0)  # train_step returned a float: the device is done
        values = step_metrics(run, step, lr, train_loss, grad_norm, step_times[-1])
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            val_loss = estimate_loss(
                run.model, run.accelerator, run.val_data, cfg.eval_windows, cfg.micro_batch_size
            )
            if val_loss is not None:
                values["val_loss"] = val_loss
        record(run, values)
        if step % cfg.save_every == 0 or step == cfg.max_steps:
            save(run, step)
    save_final(run)
    rate = run_throughput(run, step_times)
    return {
        "output_dir": str(run.out),
        "final_model": str(run.out / FINAL_DIR),
        "steps": step,
        "tokens": step * cfg.global_batch_size * cfg.seq_len,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "tokens_per_s": rate,
        "mfu": model_flops_utilisation(run, rate),
        "grad_accum_steps": run.accum,
        "world_size": run.accelerator.num_processes,
        "resumed_from": resumed_from,
        "n_params": run.n_params,
        "train_time_s": sum(step_times),
    }


def load_config_file(path: str | os.PathLike, overrides: list[str] = ()):
    """A :class:`TrainConfig` from a YAML/JSON file of its fields plus ``key=value`` overrides
    (values parsed as YAML, so ``max_steps=10`` is an int)."""
    import yaml

    from train.config import TrainConfig

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
