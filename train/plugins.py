"""Trainers as plugs: one small contract, two implementations shipped, more by entry point.

The contract (:class:`TrainerPlug`): ``train(cfg)`` takes a :class:`train.config.TrainConfig` and
leaves in ``cfg.output_dir``

* ``train_config.json``, ``data.json``, ``model_config.json`` (:func:`train.trainer.write_run_files`);
* ``metrics.jsonl``: one JSON object per optimizer step with ``step``, ``loss`` (the token mean over the
  global batch), ``lr`` (the one applied in that step), ``tokens``, and ``val_loss`` at evaluations
  (``eval_every`` and the last step; :func:`train.trainer.estimate_loss` on the held-out windows);
* ``final/``: the trained model as a Hugging Face directory;
* checkpoints, which ``checkpoints(output_dir)`` lists as ``(step, directory with model.safetensors)``
  (the ablation scores them); a rerun resumes from the newest;

and returns the summary dict of :func:`train.trainer.train` (``steps``, ``tokens``, ``train_loss``,
``val_loss``, ``tokens_per_s``, ``final_model``, ...). Both plugs read the same token directory
(datatrove shards or the flat file) through the same windows and sample order
(:class:`train.trainer.WindowSampler`), so with the same seed, batch and schedule they train on the
same sequences in the same order.

Shipped: ``ours`` (:class:`OursTrainer`, the Accelerate loop of :mod:`train.trainer`) and ``hf``
(:class:`HFTrainer`, transformers' ``Trainer`` with our optimizer, schedule, loss and data order).
A third party adds one in its package metadata::

    [project.entry-points."textbooks.trainers"]
    mytrainer = "mypkg.trainer:MyTrainer"     # a class with train(cfg) and checkpoints(output_dir)

and selects it with ``trainer: mytrainer`` in a train config, an ablation or a recipe.

Example:
    >>> sorted(available_trainers())[:2]
    ['hf', 'ours']
    >>> get_trainer("ours").name
    'ours'
"""

from __future__ import annotations

import json
import time
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol

ENTRY_POINT_GROUP = "textbooks.trainers"
BUILTIN: dict[str, str] = {"ours": "train.plugins:OursTrainer", "hf": "train.plugins:HFTrainer"}


class TrainerPlug(Protocol):
    """What a trainer plug provides (see the module docstring for the files it writes)."""

    name: str

    def train(self, cfg) -> dict[str, Any]: ...

    def checkpoints(self, output_dir: str | Path) -> list[tuple[int, Path]]: ...


def available_trainers() -> dict[str, str]:
    """Trainer name -> ``module:attribute``: the shipped plugs and the ``textbooks.trainers`` entry
    points (names only; nothing is imported)."""
    from importlib.metadata import entry_points

    found = dict(BUILTIN)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return found


def get_trainer(name: str) -> TrainerPlug:
    """An instance of the trainer plug ``name``."""
    known = available_trainers()
    if name not in known:
        raise ValueError(f"unknown trainer {name!r}; choose one of {sorted(known)}")
    module, _, attribute = known[name].partition(":")
    plug = getattr(import_module(module), attribute)
    return plug() if isinstance(plug, type) else plug


class OursTrainer:
    """Our Accelerate loop (:func:`train.trainer.train`): checkpoints ``checkpoints/step_N/``."""

    name = "ours"

    def train(self, cfg) -> dict[str, Any]:
        from train.trainer import train

        return train(cfg.model_copy(update={"trainer": "ours"}))

    def checkpoints(self, output_dir: str | Path) -> list[tuple[int, Path]]:
        from train.trainer import CHECKPOINTS_DIR, STATE_NAME

        found = []
        for path in sorted((Path(output_dir) / CHECKPOINTS_DIR).glob("step_*")):
            if path.suffix != ".tmp" and (path / STATE_NAME).is_file():
                found.append((int(json.loads((path / STATE_NAME).read_text())["step"]), path))
        return found


class WindowDataset:
    """Sample ``k`` of the global order -> ``{"input_ids", "targets"}`` (targets already shifted, -100
    where the loss mask is 0): the windows our loop reads, in its order, for transformers' ``Trainer``
    (read sequentially, so micro batch ``i`` of step ``s`` holds the samples ours gives it)."""

    def __init__(self, windows, sampler, n_samples: int):
        self.windows, self.sampler, self.n_samples = windows, sampler, n_samples

    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, k: int) -> dict:
        x, y = self.windows.batch(self.sampler.windows(range(k, k + 1)))
        return {"input_ids": x[0], "targets": y[0]}


class HFTrainer:
    """transformers' ``Trainer`` on the same data, order, model init, AdamW groups, schedule, clipping
    and token-mean loss as ours; checkpoints are Trainer's ``checkpoints/checkpoint-N/``."""

    name = "hf"

    def checkpoints(self, output_dir: str | Path) -> list[tuple[int, Path]]:
        from train.trainer import CHECKPOINTS_DIR

        found = []
        for path in (Path(output_dir) / CHECKPOINTS_DIR).glob("checkpoint-*"):
            if (path / "trainer_state.json").is_file() and (path / "model.safetensors").is_file():
                found.append((int(path.name.rsplit("-", 1)[1]), path))
        return sorted(found)

    def train(self, cfg) -> dict[str, Any]:
        from transformers import TrainingArguments, set_seed
        from transformers.trainer_utils import get_last_checkpoint

        from train.presets import count_parameters
        from train.trainer import (
            CHECKPOINTS_DIR,
            FINAL_DIR,
            METRICS_NAME,
            WindowSampler,
            _truncate_metrics,
            init_model,  # fmt: skip
            load_data,
            make_readable,
            write_run_files,
        )

        if cfg.auto_micro_batch:
            raise ValueError("auto_micro_batch is a feature of trainer 'ours'; set micro_batch_size for 'hf'")
        header, model_config, train_data, val_data = load_data(cfg)
        out = Path(cfg.output_dir)
        args = TrainingArguments(**self.arguments(cfg, out / CHECKPOINTS_DIR))
        world = args.world_size
        if args.process_index == 0:
            write_run_files(cfg, header, model_config)
        set_seed(cfg.seed)
        model = init_model(cfg, model_config)
        n_params = count_parameters(model)
        data = WindowDataset(train_data, WindowSampler(train_data.n_windows, cfg.seed),
                             cfg.max_steps * cfg.global_batch_size)  # fmt: skip
        last = (
            get_last_checkpoint(str(out / CHECKPOINTS_DIR))
            if cfg.resume and (out / CHECKPOINTS_DIR).is_dir()
            else None
        )
        metrics = out / METRICS_NAME
        if args.process_index == 0:
            if last:
                _truncate_metrics(metrics, int(Path(last).name.rsplit("-", 1)[1]))
            else:
                metrics.unlink(missing_ok=True)
        trainer = build_hf_trainer(cfg, model, args, data, val_data, metrics)
        output = trainer.train(resume_from_checkpoint=last)
        trainer.save_model(str(out / FINAL_DIR))
        if args.process_index == 0:
            make_readable(out / FINAL_DIR)
        recorder = trainer.recorder
        return {
            "output_dir": str(out), "final_model": str(out / FINAL_DIR), "steps": output.global_step,
            "tokens": output.global_step * cfg.global_batch_size * cfg.seq_len, "train_loss": recorder.last_loss,
            "val_loss": recorder.last_val, "tokens_per_s": recorder.throughput(), "mfu": None,
            "grad_accum_steps": args.gradient_accumulation_steps, "world_size": world,
            "resumed_from": last, "n_params": n_params, "train_time_s": sum(recorder.step_times),
        }  # fmt: skip

    @staticmethod
    def arguments(cfg, checkpoints: Path) -> dict[str, Any]:
        """``TrainingArguments`` fields: our batch, precision, clipping, seed, saving; no logging of its own
        (the step recorder writes ``metrics.jsonl``)."""
        from accelerate import PartialState

        from train.trainer import grad_accum_steps

        world = PartialState(cpu=cfg.cpu).num_processes
        return dict(
            output_dir=str(checkpoints), per_device_train_batch_size=cfg.micro_batch_size,
            gradient_accumulation_steps=grad_accum_steps(cfg.global_batch_size, cfg.micro_batch_size, world),
            max_steps=cfg.max_steps, learning_rate=cfg.lr, max_grad_norm=cfg.grad_clip or 0.0,
            bf16=cfg.mixed_precision == "bf16", fp16=cfg.mixed_precision == "fp16", use_cpu=cfg.cpu,
            torch_compile=cfg.compile, save_strategy="steps", save_steps=cfg.save_every,
            save_total_limit=cfg.keep_last, eval_strategy="no", logging_strategy="no",
            report_to="none", disable_tqdm=True, dataloader_num_workers=0, seed=cfg.seed, data_seed=cfg.seed,
            remove_unused_columns=False,
        )  # fmt: skip


def build_hf_trainer(cfg, model, args, data: WindowDataset, val_data, metrics_path: Path):
    """A ``Trainer`` subclass reading ``data`` in order with our token-mean loss, our AdamW and LR
    schedule, and a callback writing ``metrics.jsonl`` like our loop (``trainer.recorder``)."""
    from torch.optim.lr_scheduler import LambdaLR
    from torch.utils.data import SequentialSampler
    from transformers import Trainer

    from train.loss import forward_loss
    from train.trainer import get_lr, make_optimizer

    class WindowTrainer(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)  # the order is WindowSampler's already

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            targets = inputs.pop("targets")
            total, count = forward_loss(model, inputs["input_ids"], targets)
            if model.training:
                self.recorder.add(total.detach(), count)
            # the micro batch's token mean; Trainer averages the micro batches (equal target counts
            # without a loss mask: then exactly our global token mean)
            loss = total / count.clamp(min=1)
            return (loss, None) if return_outputs else loss

    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas, cfg.eps, args.device)
    schedule = LambdaLR(optimizer, lambda step: get_lr(step, cfg) / cfg.lr)  # lr_at(step), step 0 included
    trainer = WindowTrainer(model=model, args=args, train_dataset=data, optimizers=(optimizer, schedule))
    trainer.recorder = make_step_recorder(cfg, trainer, val_data, metrics_path)
    trainer.add_callback(trainer.recorder)
    return trainer


def make_step_recorder(cfg, trainer, val_data, metrics_path: Path):
    """A ``TrainerCallback`` writing our ``metrics.jsonl`` from inside transformers' ``Trainer``: per
    step the global token-mean loss, the LR applied, tokens, time; ``val_loss`` by
    :func:`train.trainer.estimate_loss` at ``eval_every`` and the last step; it also makes Trainer save
    a checkpoint at the last step (as ours does)."""
    import torch
    from transformers import TrainerCallback

    from train.trainer import estimate_loss, get_lr, tokens_per_second

    tokens_per_step = cfg.global_batch_size * cfg.seq_len

    class StepRecorder(TrainerCallback):
        def __init__(self):
            self.sums = torch.zeros(2, dtype=torch.float64)
            self.step_times: list[float] = []
            self.last_loss = self.last_val = None
            self.started = 0.0

        def add(self, total, count) -> None:
            self.sums += torch.stack([total.double().cpu(), count.double().cpu()])

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step, accelerator = state.global_step, trainer.accelerator
            self.step_times.append(time.perf_counter() - self.started)
            sums = accelerator.reduce(self.sums.to(accelerator.device), "sum").cpu()
            self.sums.zero_()
            self.last_loss = float(sums[0] / sums[1].clamp(min=1))
            values = {"step": step, "loss": self.last_loss, "lr": get_lr(step - 1, cfg),
                      "tokens": step * tokens_per_step, "tokens_per_s": tokens_per_step / self.step_times[-1],
                      "step_time_s": self.step_times[-1]}  # fmt: skip
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                with accelerator.autocast():
                    val = estimate_loss(
                        kwargs["model"], accelerator, val_data, cfg.eval_windows, cfg.micro_batch_size
                    )
                if val is not None:
                    values["val_loss"] = self.last_val = val
            control.should_save = control.should_save or step == cfg.max_steps
            if state.is_world_process_zero:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(values) + "\n")
            return control

        def throughput(self) -> float | None:
            timed = self.step_times[1:] or self.step_times
            return tokens_per_second(len(timed) * tokens_per_step, sum(timed)) if timed else None

    return StepRecorder()
