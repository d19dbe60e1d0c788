"""The exported model directory: tokenizer files that transformers 4.4x-4.5x and 5.x both load (no
token_type_ids, so ``generate(**tok(...))`` works), a model card that names the recipe, the trainer's
parameter count and a readable precision, and files other users can read."""

import json
import os
import stat
import subprocess
import venv
from pathlib import Path

import pytest
from train_testdata import make_token_dir

from train.export import export_model
from train.presets import count_parameters
from train.trainer import train

TF4_VERSION = "4.46.3"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = make_token_dir(root, n_files=10, vocab_size=600)
    summary = train(
        tokens=data["tokens"], tokenizer=data["tokenizer"], output_dir=str(root / "run"), preset="tiny",
        vocab_size=600, seq_len=64, global_batch_size=4, micro_batch_size=4, max_steps=2, warmup_steps=1,
        mixed_precision="no", cpu=True, tensorboard=False,
    )  # fmt: skip
    export_model(root / "run", root / "model", recipe="my-recipe")
    return {"dir": root / "model", "summary": summary, "run": root / "run"}


def test_tokenizer_config_loads_with_transformers_4_and_5(exported):
    config = json.loads((exported["dir"] / "tokenizer_config.json").read_text())
    # transformers 5 writes "TokenizersBackend", a class 4.x does not have
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["model_input_names"] == ["input_ids", "attention_mask"]
    assert not {"backend", "is_local", "local_files_only"} & set(config)
    assert config["eos_token"] == "<|endoftext|>"
    tokenizer_json = json.loads((exported["dir"] / "tokenizer.json").read_text())
    assert tokenizer_json["model"]["type"] == "BPE" and tokenizer_json["pre_tokenizer"]["type"] == "ByteLevel"
    model_config = json.loads((exported["dir"] / "config.json").read_text())
    # transformers 4.x reads the rotary settings at the top level
    assert model_config["partial_rotary_factor"] == 0.5 and model_config["architectures"] == [
        "PhiForCausalLM"
    ]


def test_generate_with_the_tokenizers_own_output(exported):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(exported["dir"]), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(exported["dir"]), local_files_only=True).eval()
    tok.padding_side, tok.pad_token = "left", tok.eos_token
    enc = tok(["def add(a, b):\n", "import os\n\n\nclass A:\n    pass\n"], return_tensors="pt", padding=True)
    assert set(enc) == {"input_ids", "attention_mask"}
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tok.eos_token_id)
    assert out.shape[0] == 2 and out.shape[1] > enc["input_ids"].shape[1]
    ids = tok("def f(x):\n    return x")["input_ids"]
    assert tok.decode(ids) == "def f(x):\n    return x"


def test_model_card_names_the_recipe_the_trainers_count_and_precision(exported):
    from transformers import AutoModelForCausalLM

    card = (exported["dir"] / "README.md").read_text()
    title = next(line for line in card.splitlines() if line.startswith("# "))
    assert title == "# my-recipe"  # not the run directory's name
    model = AutoModelForCausalLM.from_pretrained(str(exported["dir"]), local_files_only=True)
    n_params = exported["summary"]["n_params"]
    assert count_parameters(model) == n_params
    assert f"{n_params / 1e6:.2f}M parameters" in card
    assert "weight decay 0.1, fp32" in card and ", no" not in card


def test_exported_and_final_weights_are_readable_by_others(exported):
    for path in (exported["dir"] / "model.safetensors", exported["run"] / "final" / "model.safetensors"):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o644, (path, oct(mode))


def _transformers4_python(cache: Path) -> Path | None:
    """A small venv with transformers 4.x and no torch (tokenizers and configs need none)."""
    python = cache / "bin" / "python"
    if python.is_file():
        return python
    venv.create(cache, with_pip=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"transformers=={TF4_VERSION}"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    return python if done.returncode == 0 else None


TF4_CHECK = """
import json, sys
from transformers import AutoConfig, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1], local_files_only=True)
cfg = AutoConfig.from_pretrained(sys.argv[1], local_files_only=True)
enc = tok("def f(x):\\n    return x")
print(json.dumps({"class": type(tok).__name__, "keys": sorted(enc.keys()), "ids": enc["input_ids"],
                  "eos": tok.eos_token, "model_type": cfg.model_type, "rotary": cfg.partial_rotary_factor}))
"""


@pytest.mark.slow
def test_the_export_loads_in_a_transformers_4_environment(exported):
    from transformers import AutoTokenizer

    cache = Path(
        os.environ.get("TEXTBOOKS_TF4_VENV", Path.home() / ".cache" / "textbooks" / f"tf{TF4_VERSION}")
    )
    python = _transformers4_python(cache)
    if python is None:
        pytest.skip(f"transformers=={TF4_VERSION} could not be installed (no package index?)")
    done = subprocess.run(
        [str(python), "-c", TF4_CHECK, str(exported["dir"])], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    tok5 = AutoTokenizer.from_pretrained(str(exported["dir"]), local_files_only=True)
    assert got["class"] == "PreTrainedTokenizerFast" and got["keys"] == ["attention_mask", "input_ids"]
    assert got["ids"] == tok5("def f(x):\n    return x")["input_ids"] and got["eos"] == "<|endoftext|>"
    assert got["model_type"] == "phi" and got["rotary"] == 0.5
