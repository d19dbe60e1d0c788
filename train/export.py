"""Export a trained model as a standard Hugging Face model directory, with its tokenizer and a card.

The result is the plain ``PhiForCausalLM`` layout (``config.json`` with ``architectures:
["PhiForCausalLM"]``, ``model.safetensors``, ``generation_config.json``, the tokenizer files), so
``AutoModelForCausalLM.from_pretrained``/``AutoTokenizer.from_pretrained`` load it and vLLM serves it
(``vllm serve DIR``). ``README.md`` is a model card that names the data: the shard directory, every
shard file with its sha256, the token file's size and checksum, the tokenizer hash and the recipe.

Example:
    >>> from train.export import export_model
    >>> export_model("out/run", "out/model", recipe="tiny-cpu")  # doctest: +SKIP
    {'output_dir': 'out/model', 'sample': 'def ...', ...}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from curate.extras import require_extra
from train.trainer import CHECKPOINTS_DIR, FINAL_DIR, METRICS_NAME, make_readable


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _load_model(run: Path, checkpoint: str | None):
    """The model of a run: its ``final/`` dir, a named checkpoint, or ``run`` itself if it is a model dir."""
    from transformers import AutoModelForCausalLM, PhiConfig, PhiForCausalLM

    if checkpoint is not None:
        ckpt = Path(checkpoint) if Path(checkpoint).is_dir() else run / CHECKPOINTS_DIR / checkpoint
        weights = ckpt / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(
                f"{weights} not found (sharded FSDP/DeepSpeed checkpoints: export final/)"
            )
        from safetensors.torch import load_file

        model = PhiForCausalLM(PhiConfig.from_json_file(str(run / "model_config.json")))
        model.load_state_dict(load_file(str(weights)), strict=True)
        return model
    model_dir = run / FINAL_DIR if (run / FINAL_DIR / "config.json").is_file() else run
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"no trained model in {run} (expected {run / FINAL_DIR}/config.json)")
    return AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True)


def _add_legacy_rope_keys(config_path: Path) -> None:
    """Also write ``partial_rotary_factor``/``rope_theta`` at the top level, where transformers 4.x
    (and servers pinned to it, e.g. older vLLM) read them; transformers 5 reads ``rope_parameters``."""
    config = json.loads(config_path.read_text())
    rope = config.get("rope_parameters") or {}
    for key in ("partial_rotary_factor", "rope_theta"):
        if key in rope:
            config.setdefault(key, rope[key])
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


PRECISION_NAMES = {"no": "fp32", "bf16": "bf16 mixed precision", "fp16": "fp16 mixed precision"}


def precision_name(mixed_precision: str | None) -> str:
    """The training precision in words (``TrainConfig.mixed_precision`` says ``no`` for fp32).

    Example:
        >>> precision_name("no"), precision_name("bf16")
        ('fp32', 'bf16 mixed precision')
    """
    return PRECISION_NAMES.get(mixed_precision or "", str(mixed_precision))


def parameter_summary(model) -> str:
    """The parameter count as the trainer reports it (the matmul parameters, which MFU uses), and the
    total with the input embedding.

    Example:
        >>> from train.presets import build_model, phi_config
        >>> parameter_summary(build_model(phi_config("tiny", vocab_size=1024)))
        '0.17M parameters (0.23M with the input embedding)'
    """
    from train.presets import count_parameters

    trained = count_parameters(model)
    total = count_parameters(model, exclude_input_embedding=False)
    return f"{trained / 1e6:.2f}M parameters ({total / 1e6:.2f}M with the input embedding)"


def _model_card_data(train_cfg: dict, shards: dict, recipe: str | None):
    """``huggingface_hub.ModelCardData``: the licence of the training data (from its manifest), the base
    model, the recipe; ``datasets`` only when the data came from the Hub."""
    from huggingface_hub import ModelCardData

    from curate.cards import card_license

    manifest = _read_json(Path(shards["manifest"])) if shards.get("manifest") else {}
    init_from = train_cfg.get("init_from")
    return ModelCardData(
        **card_license(manifest.get("licenses") or {}),
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["code", "phi", "textbooks"],
        base_model=init_from if init_from and not Path(init_from).exists() else None,
        textbooks={"recipe": recipe, "recipe_hash": manifest.get("recipe_hash"), "shards": shards.get("dir")},
    )


def _model_card(
    run: Path, train_cfg: dict, data: dict, metrics: list[dict], recipe: str | None, model
) -> str:
    shards = data.get("shards", {})
    files = shards.get("files", [])
    last = next((m for m in reversed(metrics) if "loss" in m), {})
    val = next((m["val_loss"] for m in reversed(metrics) if "val_loss" in m), None)
    cfg = model.config
    title = recipe or Path(train_cfg.get("output_dir", run)).name
    lines = [
        f"---\n{_model_card_data(train_cfg, shards, recipe).to_yaml()}\n---",
        "",
        f"# {title}",
        "",
        f"A `PhiForCausalLM` code model ({parameter_summary(model)}: "
        f"{cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, {cfg.num_attention_heads} heads, "
        f"vocabulary {cfg.vocab_size}) trained with the `textbooks` toolkit"
        + (f", recipe `{recipe}`." if recipe else "."),
        "",
        "## Training data",
        "",
        f"- shard directory: `{shards.get('dir')}`"
        + (f" (manifest `{shards.get('manifest')}`)" if shards.get("manifest") else ""),
        f"- tokens: {data.get('n_tokens')} in {data.get('n_docs')} documents (xxh3 `{data.get('xxh3_64')}`)",
        f"- tokenizer: `{data.get('tokenizer')}` (sha256 `{data.get('tokenizer_hash')}`)",
        "",
        "| shard | sha256 |",
        "| --- | --- |",
        *[f"| `{f['path']}` | `{f['sha256']}` |" for f in files],
        "",
        "## Training",
        "",
        f"- recipe: `{recipe}`" if recipe else "- recipe: (not given)",
        f"- preset `{train_cfg.get('preset')}`"
        + (f", initialised from `{train_cfg['init_from']}`" if train_cfg.get("init_from") else ""),
        f"- {last.get('step')} steps of {train_cfg.get('global_batch_size')} x {train_cfg.get('seq_len')} tokens, "
        f"lr {train_cfg.get('lr')} ({train_cfg.get('decay')} decay, {train_cfg.get('warmup_steps')} warmup steps), "
        f"weight decay {train_cfg.get('weight_decay')}, {precision_name(train_cfg.get('mixed_precision'))}"
        + (", loss on solution tokens only" if train_cfg.get("solution_only_loss") else ""),
        f"- final train loss {last.get('loss')}" + (f", validation loss {val}" if val is not None else ""),
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "tok = AutoTokenizer.from_pretrained(PATH)",
        "model = AutoModelForCausalLM.from_pretrained(PATH)",
        'out = model.generate(**tok("def fibonacci(n):", return_tensors="pt"), max_new_tokens=64)',
        "```",
        "",
    ]
    return "\n".join(lines)


def export_model(
    run_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    tokenizer: str | None = None,
    recipe: str | None = None,
    checkpoint: str | None = None,
    dtype: str = "float32",
    verify: bool = True,
) -> dict[str, Any]:
    """Write model + tokenizer + model card to ``output_dir`` and check they load and generate.

    This is also the ``export`` recipe job.

    Args:
        run_dir: a training run directory (``output_dir`` of :func:`train.trainer.train`).
        output_dir: the HF model directory to write.
        tokenizer: tokenizer dir/hub name (default: the one the run was trained with).
        recipe: recipe name to record in the card.
        checkpoint: export ``checkpoints/step_XXXXXXXX`` (name or path) instead of ``final/``.
        dtype: ``float32``, ``bfloat16`` or ``float16`` weights.
        verify: reload with ``AutoModelForCausalLM``/``AutoTokenizer`` and greedily generate 16 tokens.
    """
    require_extra("train", "export_model()")
    import torch
    from huggingface_hub import ModelCard

    from train.tokenizer import load_tokenizer, save_tokenizer

    run = Path(run_dir)
    out = Path(output_dir)
    train_cfg = _read_json(run / "train_config.json")
    data = _read_json(run / "data.json")
    tokenizer = tokenizer or train_cfg.get("tokenizer") or data.get("tokenizer")
    if not tokenizer:
        raise ValueError(f"no tokenizer given and none recorded in {run}/train_config.json")
    tok = load_tokenizer(tokenizer)
    model = _load_model(run, checkpoint)
    if len(tok) > model.config.vocab_size:
        raise ValueError(
            f"tokenizer has {len(tok)} tokens but the model only {model.config.vocab_size} embeddings"
        )
    model = model.to(getattr(torch, dtype))
    model.config.eos_token_id = model.generation_config.eos_token_id = tok.eos_token_id
    model.config.bos_token_id = model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.pad_token_id = tok.eos_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    _add_legacy_rope_keys(out / "config.json")
    save_tokenizer(tok, out)
    metrics_path = run / METRICS_NAME
    metrics = (
        [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
        if metrics_path.is_file()
        else []
    )
    ModelCard(_model_card(run, train_cfg, data, metrics, recipe, model)).save(out / "README.md")
    make_readable(out)
    summary: dict[str, Any] = {"output_dir": str(out), "tokenizer": str(tokenizer), "recipe": recipe}
    if verify:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        loaded_tok = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
        loaded = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True).eval()
        inputs = loaded_tok("def ", return_tensors="pt")
        with torch.no_grad():
            generated = loaded.generate(
                **inputs, max_new_tokens=16, do_sample=False, pad_token_id=loaded_tok.eos_token_id
            )
        summary["sample"] = loaded_tok.decode(generated[0], skip_special_tokens=True)
        summary["architectures"] = loaded.config.architectures
    return summary
