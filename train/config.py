"""The trainer's one config object: :class:`TrainConfig` (pydantic, so a bad YAML key is named).

It lives apart from the loop (:mod:`train.trainer`) so that the loop's functions import with torch,
transformers and accelerate alone (the GPU benchmark suite runs them on machines without pydantic).

Example:
    >>> cfg = TrainConfig(tokens="out/tokens", output_dir="out/run", preset="tiny", seq_len=128)
    >>> cfg.global_batch_size, cfg.max_position_embeddings is None
    (1024, True)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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
    seq_len: int = Field(2048, gt=0, description="tokens per window; at most the model's context")
    val_tokens: int = Field(0, ge=0, description="tokens held out from the end of the file for validation")
    solution_only_loss: bool = Field(False, description="loss only where loss_mask.bin is 1 (fine-tuning)")
    verify_tokens: bool = Field(True, description="checksum the token file before training")
    # model
    preset: str = "phi-1"
    init_from: str | None = Field(None, description="HF model dir (or a run dir with final/) to start from")
    vocab_size: int | None = Field(None, description="embedding rows; default: the preset's")
    max_position_embeddings: int | None = Field(
        None, gt=0, description="the model's context; default: the preset's (set it to train longer windows)"
    )
    dropout: float | None = Field(None, ge=0, lt=1, description="override the preset's 0.1 dropouts")
    attn_implementation: str = Field(
        "auto",
        description="auto (flash_attention_2 when flash-attn is installed on a GPU, else sdpa), sdpa, eager, ...",
    )
    compile: bool = Field(False, description="torch.compile the model")
    loss: Literal["plain", "chunked"] = Field(
        "plain", description="chunked: linear cross-entropy by chunks of tokens, never the full logits"
    )
    loss_chunk_tokens: int = Field(4096, gt=0, description="tokens per chunk of the chunked loss")
    auto_micro_batch: bool = Field(
        False,
        description="use the largest micro batch <= micro_batch_size that fits (probed before step one)",
    )
    # the training loop: ours (Accelerate), hf (transformers' Trainer) or a plug-in's name
    trainer: str = Field("ours", description="trainer plug: ours | hf | an entry point of textbooks.trainers")
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
        if self.init_from and self.max_position_embeddings is not None:
            raise ValueError("max_position_embeddings comes from init_from's model; do not set both")
        return self

    @field_validator("trainer")
    @classmethod
    def _known_trainer(cls, trainer: str) -> str:
        from train.plugins import available_trainers  # names only: no plug-in is imported here

        if trainer not in available_trainers():
            raise ValueError(f"unknown trainer {trainer!r}; choose one of {sorted(available_trainers())}")
        return trainer

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, preset: str) -> str:
        from train.presets import PRESETS  # (light) so that `textbooks validate` catches `preset: phi-2`

        if preset not in PRESETS:
            raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
        return preset
