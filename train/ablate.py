"""Equal-token ablations with proxy models (the paper's Figure 2.1): does my data make a better model?

The same preset is trained on each named shard set for the same token budget, with the same seeds,
tokenizer and schedule; each run's checkpoints are scored by the conditional loss of HumanEval and
MBPP solutions given their prompts (bits per character, :mod:`train.evaluate.condloss`), by the
validation loss on a held-out slice of the variant's own data, and optionally by pass@1. Every filter
ablation gets a **random-subset control**: ``random_controls: {filtered: unfiltered}`` adds the
variant ``random-filtered``, documents drawn at random from ``unfiltered`` until it has as many tokens
as ``filtered``, so "filtering helped" cannot be "fewer, shorter files helped".

Output directory (every piece is reused on a rerun, so a killed ablation resumes where it stopped)::

    OUT/config.json                    the ablation config
    OUT/tokenizer/                     one tokenizer for every variant (given, or trained on one variant)
    OUT/subsets/random-<v>/            the random-subset controls (shards + subset.json)
    OUT/tokens/<variant>/              token files (train.prepare)
    OUT/runs/<variant>/seed_<s>/       trainer output (train_config.json: the run's config),
                                       eval/step_<n>.json per evaluated checkpoint, run.json
    OUT/ablation.json, ablation.html   the table (mean, std, min, max over seeds), curves, comparisons
    OUT/plots/*.png                    metric vs training tokens per variant, seed range shaded

Example:
    >>> cfg = AblationConfig(output_dir="out/abl", variants={"all": "out/curated", "filtered": "out/quality"},
    ...                      random_controls={"filtered": "all"}, token_budget=1_000_000,
    ...                      train={"preset": "tiny", "seq_len": 128, "global_batch_size": 16})
    >>> [name for name in cfg.all_variants()]
    ['all', 'filtered', 'random-filtered']
    >>> cfg.max_steps()
    488
    >>> ablate(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

# TrainConfig fields the ablation sets per run; everything else comes from ``train``
PER_RUN_FIELDS = (
    "tokens",
    "tokenizer",
    "output_dir",
    "seed",
    "max_steps",
    "save_every",
    "keep_last",
    "eval_every",
    "trainer",
)


class AblationConfig(BaseModel):
    """Everything an ablation reads. ``train`` holds :class:`train.config.TrainConfig` fields shared by
    every run (preset, seq_len, batch, schedule, ...); the ablation sets the per-run ones."""

    model_config = ConfigDict(extra="forbid")

    variants: dict[str, str] = Field(description="name -> shard directory", min_length=1)
    random_controls: dict[str, str] = Field(
        default_factory=dict,
        description="filtered variant -> variant to draw its same-token random subset from",
    )
    output_dir: str
    token_budget: int = Field(gt=0, description="training tokens per run, equal for every run")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    train: dict[str, Any] = Field(default_factory=dict)
    trainer: str = Field("ours", description="trainer plug for every run: ours | hf | an entry point")
    tokenizer: str | None = Field(None, description="a tokenizer to use; default: train one")
    tokenizer_from: str | None = Field(None, description="variant to train the tokenizer on (default: first)")
    vocab_size: int = Field(4096, gt=255)
    eval_points: int = Field(4, ge=1, description="checkpoints evaluated per run (the last is the final)")
    benchmarks: list[str] = Field(default_factory=lambda: ["humaneval", "mbpp"])
    mbpp_path: str | None = None
    split_json: str | None = Field(None, description="decontam split.json: similar / non-similar losses")
    eval_batch_size: int = Field(16, gt=0)
    eval_max_len: int | None = Field(None, description="longest scored sequence (default: seq_len)")
    eval_limit: int | None = Field(None, gt=0, description="first N problems of each benchmark (quick runs)")
    pass_at_1_problems: int = Field(0, ge=0, description="HumanEval problems for greedy pass@1 (0: skip)")
    pass_at_1_max_new_tokens: int = Field(128, gt=0)
    subset_seed: int = 0
    workers: int = Field(2, ge=1, description="tokenizer processes for prepare_tokens")
    keep_checkpoints: bool = Field(False, description="keep the evaluated checkpoints (optimizer state too)")

    @model_validator(mode="after")
    def _check(self):
        from train.config import TrainConfig

        reserved = sorted(set(self.train) & set(PER_RUN_FIELDS))
        if reserved:
            raise ValueError(f"train: the ablation sets {reserved} itself; remove them")
        TrainConfig(tokens="-", output_dir="-", **self.train)  # names a bad training key now, not later
        for filtered, source in self.random_controls.items():
            for name in (filtered, source):
                if name not in self.variants:
                    raise ValueError(f"random_controls: {name!r} is not a variant ({sorted(self.variants)})")
        if self.tokenizer_from is not None and self.tokenizer_from not in self.variants:
            raise ValueError(f"tokenizer_from: {self.tokenizer_from!r} is not a variant")
        unknown = sorted(set(self.benchmarks) - {"humaneval", "mbpp"})
        if unknown:
            raise ValueError(f"benchmarks: unknown {unknown}; choose humaneval, mbpp")
        self.max_steps()
        return self

    def train_config(self, **per_run: Any):
        from train.config import TrainConfig

        return TrainConfig(**{**self.train, **per_run})

    def all_variants(self) -> list[str]:
        return list(self.variants) + [f"random-{v}" for v in self.random_controls]

    def max_steps(self) -> int:
        """Optimizer steps that spend the token budget (global batch x seq_len tokens each)."""
        base = self.train_config(tokens="-", output_dir="-")
        steps = self.token_budget // (base.global_batch_size * base.seq_len)
        if steps < 1:
            raise ValueError(
                f"token_budget {self.token_budget} is less than one step of "
                f"{base.global_batch_size} x {base.seq_len} tokens"
            )
        return steps


# ---------------------------------------------------------------- data: tokenizer, tokens, random subsets


def _write_json(path: Path, value: Any) -> None:
    """Write JSON through a temporary file and a rename: a kill leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    os.replace(tmp, path)


def ensure_tokenizer(cfg: AblationConfig, out: Path) -> str:
    """The shared tokenizer: the configured one, or a BPE trained once on ``tokenizer_from``."""
    from train.tokenizer import train_tokenizer

    if cfg.tokenizer:
        return cfg.tokenizer
    target = out / "tokenizer"
    if not (target / "tokenizer.json").is_file():
        source = cfg.variants[cfg.tokenizer_from or next(iter(cfg.variants))]
        tmp = out / "tokenizer.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        train_tokenizer(source, tmp, vocab_size=cfg.vocab_size)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return str(target)


def ensure_tokens(shards: str, tokenizer: str, target: Path, workers: int) -> dict[str, Any]:
    """Token file of a shard directory (reused when its header names the same shards)."""
    from train.prepare import HEADER_NAME, prepare_tokens

    header = target / HEADER_NAME
    if header.is_file():
        known = json.loads(header.read_text())
        if (known.get("shards") or {}).get("dir") == str(Path(shards).resolve()):
            return known
    return prepare_tokens(shards, tokenizer, target, workers=workers)


def _document_rows(shards: str) -> list[tuple[Path, int]]:
    """(file, row) of each tokenized document, in token-file order (prepare_tokens skips empty texts)."""
    import pyarrow.parquet as pq

    from train.tokenizer import shard_files

    rows = []
    for path in shard_files(shards):
        texts = pq.read_table(path, columns=["text"]).column(0).to_pylist()
        rows.extend((path, i) for i, text in enumerate(texts) if text)
    return rows


def random_token_subset(
    shards: str, tokens_dir: str | Path, target_tokens: int, output_dir: str | Path, seed: int = 0
) -> dict[str, Any]:
    """Documents of ``shards`` drawn in random order until they hold ``target_tokens`` tokens
    (counted in the token file ``tokens_dir`` made from ``shards``), written as a shard directory.

    Reused when ``output_dir/subset.json`` records the same request. Returns that record.
    """
    import pyarrow.parquet as pq

    from train.prepare import TokenFile

    out = Path(output_dir)
    request = {"source": str(Path(shards).resolve()), "target_tokens": int(target_tokens), "seed": seed}
    record_path = out / "subset.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if {k: record.get(k) for k in request} == request:
            return record
    lengths = np.diff(TokenFile(tokens_dir, verify=False).offsets)
    rows = _document_rows(shards)
    if len(rows) != len(lengths):
        raise ValueError(
            f"{tokens_dir} has {len(lengths)} documents but {shards} has {len(rows)} non-empty rows"
        )
    order = np.random.default_rng(seed).permutation(len(lengths))
    take = min(len(order), int(np.searchsorted(np.cumsum(lengths[order]), target_tokens)) + 1)
    chosen = np.sort(order[:take])
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    by_file: dict[Path, list[int]] = {}
    for i in chosen:
        path, row = rows[int(i)]
        by_file.setdefault(path, []).append(row)
    for n, (path, picked) in enumerate(by_file.items()):
        table = pq.read_table(path).take(picked)
        pq.write_table(table, tmp / "data" / f"{n:05d}.parquet", compression="zstd")
    record = {
        **request,
        "tokens": int(lengths[chosen].sum()),
        "documents": int(take),
        "of_documents": len(rows),
    }
    _write_json(tmp / "subset.json", record)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return record


def prepare_variants(cfg: AblationConfig, out: Path, tokenizer: str) -> dict[str, dict[str, Any]]:
    """Token files for every variant, random-subset controls included: name -> {shards, tokens, n_tokens}."""
    data: dict[str, dict[str, Any]] = {}
    for name, shards in cfg.variants.items():
        header = ensure_tokens(shards, tokenizer, out / "tokens" / name, cfg.workers)
        data[name] = {"shards": shards, "tokens": str(out / "tokens" / name), "n_tokens": header["n_tokens"]}
    for filtered, source in cfg.random_controls.items():
        name = f"random-{filtered}"
        subset = random_token_subset(
            cfg.variants[source], data[source]["tokens"], data[filtered]["n_tokens"],
            out / "subsets" / name, seed=cfg.subset_seed,
        )  # fmt: skip
        shards = str(out / "subsets" / name)
        header = ensure_tokens(shards, tokenizer, out / "tokens" / name, cfg.workers)
        data[name] = {"shards": shards, "tokens": str(out / "tokens" / name), "n_tokens": header["n_tokens"],
                      "subset": subset}  # fmt: skip
    return data


# ---------------------------------------------------------------- one run: train, then score its checkpoints


def run_training(
    cfg: AblationConfig, variant: dict[str, Any], tokenizer: str, run_dir: Path, seed: int
) -> dict:
    """Train one (variant, seed) for the budget; the trainer resumes a killed run from its checkpoint."""
    from train.trainer import FINAL_DIR, train

    steps = cfg.max_steps()
    every = -(-steps // cfg.eval_points)  # ceil: the last evaluated checkpoint is the final step
    run_config = cfg.train_config(
        tokens=variant["tokens"], tokenizer=tokenizer, output_dir=str(run_dir), seed=seed,
        max_steps=steps, save_every=every, eval_every=every, keep_last=cfg.eval_points + 1, trainer=cfg.trainer,
    )  # fmt: skip
    recorded = run_dir / "train_config.json"
    if recorded.is_file() and json.loads(recorded.read_text()) != json.loads(run_config.model_dump_json()):
        shutil.rmtree(run_dir)  # a changed budget or schedule: this run's checkpoints and scores are stale
    summary_path = run_dir / "train_summary.json"
    if summary_path.is_file() and (run_dir / FINAL_DIR / "config.json").is_file():
        return json.loads(summary_path.read_text())
    summary = train(run_config)
    from train.tokenizer import load_tokenizer, save_tokenizer

    # final/ loads as a whole model, its tokenizer config portable across transformers 4.x and 5.x
    save_tokenizer(load_tokenizer(tokenizer), run_dir / FINAL_DIR)
    _write_json(summary_path, summary)
    return summary


def load_checkpoint_model(run_dir: Path, checkpoint: Path):
    """The model of an ``accelerator.save_state`` checkpoint of a run (weights only)."""
    from safetensors.torch import load_file
    from transformers import PhiConfig, PhiForCausalLM

    model = PhiForCausalLM(PhiConfig.from_json_file(str(run_dir / "model_config.json")))
    model.load_state_dict(load_file(str(checkpoint / "model.safetensors")))
    return model.eval()


def evaluate_checkpoints(cfg: AblationConfig, run_dir: Path, tokenizer, items: dict) -> list[dict[str, Any]]:
    """Conditional loss of every kept checkpoint (cached in ``eval/step_N.json``), by step."""
    from train.evaluate.condloss import conditional_loss
    from train.plugins import get_trainer

    max_len = cfg.eval_max_len or cfg.train_config(tokens="-", output_dir="-").seq_len
    points = []
    for step, checkpoint in get_trainer(cfg.trainer).checkpoints(run_dir):  # each plug knows its layout
        cached = run_dir / "eval" / f"step_{step:08d}.json"
        if not cached.is_file():
            model = load_checkpoint_model(run_dir, checkpoint)
            losses = conditional_loss(
                model, tokenizer, benchmarks=cfg.benchmarks, batch_size=cfg.eval_batch_size,
                max_len=max_len, split_json=cfg.split_json, items=items,
            )  # fmt: skip
            _write_json(cached, {"step": step, **losses})
    for cached in sorted((run_dir / "eval").glob("step_*.json")):
        points.append(json.loads(cached.read_text()))
    return points


def pass_at_1(cfg: AblationConfig, run_dir: Path) -> float | None:
    """Greedy pass@1 of the final model on the first ``pass_at_1_problems`` HumanEval problems (sandboxed)."""
    if not cfg.pass_at_1_problems:
        return None
    cached = run_dir / "pass_at_1.json"
    if not cached.is_file():
        from train.evaluate import evaluate

        summary = evaluate(
            "humaneval", model=str(run_dir / "final"), limit=cfg.pass_at_1_problems,
            max_new_tokens=cfg.pass_at_1_max_new_tokens, output_dir=str(run_dir / "pass_at_1"), workers=1,
        )  # fmt: skip
        _write_json(cached, {"pass@1": summary["pass_at_k"]["pass@1"], "problems": summary["problems"]})
    return json.loads(cached.read_text())["pass@1"]


def val_curve(run_dir: Path) -> dict[int, float]:
    """Validation loss by step from the trainer's metrics."""
    curve = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "val_loss" in row:
            curve[int(row["step"])] = float(row["val_loss"])
    return curve


def _flatten(losses: dict[str, Any]) -> dict[str, float]:
    """``{"humaneval": {"bits_per_char": ..}}`` -> ``{"humaneval_bpc": .., "humaneval_bpt": ..}`` (+ subsets)."""
    flat = {}
    for bench, result in losses.items():
        if not isinstance(result, dict) or "bits_per_char" not in result:
            continue
        flat[f"{bench}_bpc"] = result["bits_per_char"]
        flat[f"{bench}_bpt"] = result["bits_per_token"]
        for tau, groups in (result.get("subsets") or {}).items():
            for group, summary in groups.items() if isinstance(groups, dict) else ():
                if isinstance(summary, dict) and summary.get("bits_per_char") is not None:
                    flat[f"{bench}_bpc_{group}@{tau}"] = summary["bits_per_char"]
    return flat


def _scoring(cfg: AblationConfig) -> dict[str, Any]:
    """The settings a run's scores depend on (beyond its training): a change re-scores it."""
    keys = ("benchmarks", "mbpp_path", "split_json", "eval_max_len", "eval_limit", "pass_at_1_problems")
    return {k: getattr(cfg, k) for k in keys} | {"pass_at_1_max_new_tokens": cfg.pass_at_1_max_new_tokens}


def run_one(
    cfg: AblationConfig, name: str, variant: dict, tokenizer: str, tok, items: dict, seed: int
) -> dict:
    """Train, score and record one (variant, seed) run; ``run.json`` holds the result."""
    run_dir = Path(cfg.output_dir) / "runs" / name / f"seed_{seed}"
    record_path = run_dir / "run.json"
    summary = run_training(cfg, variant, tokenizer, run_dir, seed)  # clears the run if its config changed
    if record_path.is_file():
        if json.loads(record_path.read_text()).get("scoring") == _scoring(cfg):
            return json.loads(record_path.read_text())
        # scored with other settings: re-score the kept checkpoints, or retrain when they were removed
        from train.trainer import CHECKPOINTS_DIR

        if not (run_dir / CHECKPOINTS_DIR).is_dir():
            shutil.rmtree(run_dir)
            summary = run_training(cfg, variant, tokenizer, run_dir, seed)
        shutil.rmtree(run_dir / "eval", ignore_errors=True)
        (run_dir / "pass_at_1.json").unlink(missing_ok=True)
    points = evaluate_checkpoints(cfg, run_dir, tok, items)
    vals = val_curve(run_dir)
    tokens_per_step = summary["tokens"] // max(1, summary["steps"])
    curve = [
        {"step": p["step"], "tokens": p["step"] * tokens_per_step, **_flatten(p),
         **({"val_loss": vals[p["step"]]} if p["step"] in vals else {})}
        for p in points
    ]  # fmt: skip
    final = dict(curve[-1]) if curve else {}
    final["pass@1"] = pass_at_1(cfg, run_dir)
    record = {
        "variant": name, "seed": seed, "steps": summary["steps"], "tokens": summary["tokens"],
        "variant_tokens": variant["n_tokens"], "epochs": summary["tokens"] / max(1, variant["n_tokens"]),
        "train_loss": summary["train_loss"], "final": final, "curve": curve,
        "train_config": str(run_dir / "train_config.json"), "tokens_per_s": summary["tokens_per_s"],
        "scoring": _scoring(cfg),
    }  # fmt: skip
    if not cfg.keep_checkpoints:
        from train.trainer import CHECKPOINTS_DIR

        shutil.rmtree(run_dir / CHECKPOINTS_DIR, ignore_errors=True)  # scored; final/ is the model
    _write_json(record_path, record)
    return record


def _available_benchmarks(cfg: AblationConfig) -> tuple[AblationConfig, list[str]]:
    """MBPP is local data: without ``mbpp_path`` or ``$TEXTBOOKS_MBPP_PATH`` it is skipped with a note."""
    if "mbpp" in cfg.benchmarks and not cfg.mbpp_path and not os.environ.get("TEXTBOOKS_MBPP_PATH"):
        kept = [b for b in cfg.benchmarks if b != "mbpp"]
        if kept:
            return cfg.model_copy(update={"benchmarks": kept}), [
                "mbpp skipped: no mbpp_path, $TEXTBOOKS_MBPP_PATH unset"
            ]
    return cfg, []


def ablate(config: AblationConfig | dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Run an ablation (also the ``ablate`` recipe job: pass :class:`AblationConfig` fields as keywords).

    Returns the ``ablation.json`` content: per-variant statistics over seeds, curves, comparisons
    (each filtered variant against its random control), and the paths of the HTML report and plots.
    """
    from train.ablate_report import summarize_runs, write_report
    from train.evaluate.condloss import benchmark_items
    from train.tokenizer import load_tokenizer

    if isinstance(config, AblationConfig):
        cfg = AblationConfig(**{**config.model_dump(), **overrides})  # model_copy would not validate
    else:
        cfg = AblationConfig(**{**(config or {}), **overrides})
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg, notes = _available_benchmarks(cfg)
    _write_json(out / "config.json", cfg.model_dump())  # the benchmarks actually scored
    items = {b: benchmark_items(b, mbpp_path=cfg.mbpp_path, limit=cfg.eval_limit) for b in cfg.benchmarks}
    tokenizer = ensure_tokenizer(cfg, out)
    tok = load_tokenizer(tokenizer)
    data = prepare_variants(cfg, out, tokenizer)
    runs = [
        run_one(cfg, name, data[name], tokenizer, tok, items, seed)
        for name in cfg.all_variants()
        for seed in cfg.seeds
    ]
    result = summarize_runs(cfg, data, runs)
    result["notes"] = notes
    result.update(write_report(result, out))
    _write_json(out / "ablation.json", result)
    return result


def ablate_from_file(config: str | os.PathLike, overrides: list[str] = ()) -> dict[str, Any]:
    """An ablation from a YAML/JSON file of :class:`AblationConfig` fields plus ``key=value`` overrides
    (``train.max_steps``-style dotted keys reach into ``train``; values parsed as YAML).

    Example:
        >>> ablate_from_file("ablate.yaml", ["token_budget=200000", "seeds=[0]"])  # doctest: +SKIP
    """
    import yaml

    values = yaml.safe_load(Path(config).read_text()) or {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        node = values
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return ablate(AblationConfig(**values))
