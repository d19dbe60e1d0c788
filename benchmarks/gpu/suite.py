"""The GPU suite: one prepared run that measures the trainer and the evaluation backend on a GPU.

Sections, in priority order (a later one is skipped when the deadline comes):
``env``; for ``phi-1`` and ``phi-1-small`` at sequence 2048 in bf16, our loop and transformers'
``Trainer`` (same model, random-token data, global and micro batch, AdamW), eager; generation
throughput of the evaluation backend (``HFGenerator``, batched, left-padded) on a random-init
phi-1-small; a 2-process DDP run of our loop when the machine has 2 GPUs; then the same four training
runs under ``torch.compile``. Each reports tokens/s per device, MFU and peak memory.

Every section runs in its own process (``sections.py``) with its own time limit, so a crash, a hang
or an out-of-memory error costs one section, not the run (an OOM is retried once with half the micro
batch and twice the accumulation: same global batch). ``gpu_suite.json`` and ``gpu_suite.md`` are
rewritten after every section, in ``--out``, else ``$OUT``, else ``./gpu_suite_out``; each section's
log is in ``sections/``.

Usage:
    bash benchmarks/gpu/suite.sh                       # the GPU machine
    bash benchmarks/gpu/suite.sh --speed               # the technique table (phi-1): plain, chunked loss,
                                                       # largest micro batch, flash-attn, compiled best
    bash benchmarks/gpu/suite.sh --smoke               # the same code on CPU, tiny preset (CI)
    bash benchmarks/gpu/suite.sh --device cpu --preset tiny --compile   # also the compiled runs on CPU
Environment: ``SUITE_DEADLINE_S`` (default 420 s on a GPU, 600 s with ``--smoke``): no section starts
later and none runs past it; ``SUITE_PEAK_TFLOPS``: the device's dense peak when the trainer's
exact-name table does not know it.

This file uses the standard library only; the measurements import torch, transformers and accelerate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SECTIONS = HERE / "sections.py"

# per preset: sequence length, micro batch per device, accumulation, warm-up and timed steps
SIZES = {
    "phi-1": {"seq_len": 2048, "micro_batch": 8, "accum": 2, "warmup": 3, "steps": 20},
    "phi-1-small": {"seq_len": 2048, "micro_batch": 16, "accum": 2, "warmup": 3, "steps": 20},
    "tiny": {"seq_len": 64, "micro_batch": 2, "accum": 2, "warmup": 1, "steps": 3},
}
# --speed: one section per technique of issue 23, on our loop; "+automb" sections may grow the micro
# batch up to this many sequences per device (the probe picks the largest divisor that fits)
SPEED_PER_DEVICE = {"phi-1": 32, "phi-1-small": 64, "tiny": 4}
GENERATION = {  # the evaluation backend's workload on the generation preset
    "gpu": {"prompts": 64, "gen_batch": 32, "new_tokens": 128, "tokenizer_vocab": 8192},
    "cpu": {"prompts": 6, "gen_batch": 3, "new_tokens": 8, "tokenizer_vocab": 600},
}
BUDGET_S = {"env": 90, "eager": 120, "compile": 200, "generate": 120, "ddp": 150, "automb": 180}
MIN_START_S = 20  # a section with less time left than this is skipped, not started


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny preset, no compile (CI)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--preset", action="append", help="train these presets (default phi-1, phi-1-small)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also the torch.compile runs (default: yes, except with --smoke)")  # fmt: skip
    parser.add_argument("--ddp", action="store_true", help="run the 2-process section even without 2 GPUs")
    parser.add_argument("--speed", action="store_true",
                        help="the technique table instead: plain, chunked loss, largest micro batch, flash-attn, compile")  # fmt: skip
    parser.add_argument(
        "--compile-backend", default="inductor", help="torch.compile backend (eager: a quick CPU check)"
    )
    parser.add_argument("--precision", choices=["bf16", "fp16", "no"], default="bf16")
    parser.add_argument(
        "--only", action="append", help="run only these sections (exact names; env always runs)"
    )
    parser.add_argument("--out", default=None, help="results folder (default $OUT, else ./gpu_suite_out)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.device = "cpu"
        args.preset = args.preset or ["tiny"]
        args.compile = bool(args.compile)
    args.preset = args.preset or (["phi-1"] if args.speed else ["phi-1", "phi-1-small"])
    args.compile = True if args.compile is None else args.compile
    args.out = Path(args.out or os.environ.get("OUT") or "gpu_suite_out")
    default_deadline = 600 if args.smoke else 420
    args.deadline_s = float(os.environ.get("SUITE_DEADLINE_S") or default_deadline)
    return args


def training_section(preset: str, impl: str, compiled: bool, common: dict, nproc: int = 1) -> dict:
    """One training measurement: ``impl`` is ``ours`` or ``trainer``."""
    mode = "compile" if compiled else "eager"
    name = f"{preset}/{impl}/{mode}" + (f"/ddp{nproc}" if nproc > 1 else "")
    budget = BUDGET_S["ddp"] if nproc > 1 else BUDGET_S[mode]
    return {"name": name, "kind": "train", "impl": impl, "preset": preset, "compile": compiled,
            "nproc": nproc, "budget_s": budget, **SIZES[preset], **common}  # fmt: skip


def speed_sections(preset: str, common: dict) -> list[dict]:
    """One section per technique, each on top of the plain eager loop (sdpa attention, full logits):
    ``+chunked`` (chunked linear cross-entropy), ``+automb`` (largest micro batch that fits, probed),
    ``+flash`` (flash-attn 2, only where the package imports), then all of them ``torch.compile``d."""
    import importlib.util

    plain = {"attn": "sdpa", "loss": "plain", "auto_micro": False}
    big = SPEED_PER_DEVICE[preset]
    variants = [("eager", False, plain), ("eager+chunked", False, {**plain, "loss": "chunked"}),
                ("eager+chunked+automb", False, {**plain, "loss": "chunked", "auto_micro": True,
                                                 "micro_batch": big, "accum": 1})]  # fmt: skip
    if importlib.util.find_spec("flash_attn") is not None:
        variants.append(("eager+flash", False, {**plain, "attn": "flash_attention_2"}))
    best = {**variants[-1][2], "loss": "chunked", "auto_micro": True, "micro_batch": big, "accum": 1}
    variants.append(("compile+best", True, best))
    sections = []
    for label, compiled, extra in variants:
        section = training_section(preset, "ours", compiled, common)
        section.update(extra, name=f"{preset}/ours/{label}")
        if extra.get("auto_micro") and not compiled:
            section["budget_s"] = BUDGET_S["automb"]
        sections.append(section)
    sections.insert(1, training_section(preset, "trainer", False, common))
    return sections


def plan(args) -> list[dict]:
    """The sections in the order they run; the device is filled in once ``env`` has resolved it."""
    common = {
        "device": args.device,
        "precision": args.precision,
        "strict_imports": args.smoke,
        "compile_backend": args.compile_backend,
    }
    generation_preset = "phi-1-small" if not args.smoke else args.preset[-1]
    sections = [{"name": "env", "kind": "env", "budget_s": BUDGET_S["env"], **common}]
    if args.speed:
        sections += [s for p in args.preset for s in speed_sections(p, common)]
        return [s for s in sections if not args.only or s["name"] == "env" or s["name"] in args.only]
    sections += [
        training_section(p, impl, False, common) for p in args.preset for impl in ("ours", "trainer")
    ]
    sections.append({"name": "generate", "kind": "generate", "preset": generation_preset,
                     "budget_s": BUDGET_S["generate"], **common})  # fmt: skip
    sections.append(training_section(args.preset[-1], "ours", False, common, nproc=2))
    if args.compile:
        sections += [
            training_section(p, impl, True, common) for p in args.preset for impl in ("ours", "trainer")
        ]
    if args.only:
        unknown = set(args.only) - {s["name"] for s in sections}
        if unknown:
            raise SystemExit(
                f"unknown sections {sorted(unknown)}; choose from {[s['name'] for s in sections]}"
            )
        sections = [s for s in sections if s["name"] == "env" or s["name"] in args.only]
    return sections


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def launch(spec: dict, spec_path: Path, result_path: Path) -> list[str]:
    """The command of one section: one process, or ``nproc`` under torchrun."""
    script = [str(SECTIONS), str(spec_path), str(result_path)]
    if spec.get("nproc", 1) > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={spec['nproc']}", *script]  # fmt: skip
    return [sys.executable, *script]


def run_section(spec: dict, out: Path, deadline: float) -> dict:
    """Run one section in its own process group, cut at ``min(budget, deadline)``; never raises."""
    left = deadline - time.monotonic()
    if left < MIN_START_S:
        return {
            "name": spec["name"],
            "status": "skipped",
            "reason": f"deadline ({left:.0f} s left)",
            "spec": spec,
        }
    slug = spec["name"].replace("/", "_")
    folder = out / "sections"
    folder.mkdir(parents=True, exist_ok=True)
    spec_path, result_path, log_path = (folder / f"{slug}{ext}" for ext in (".spec.json", ".json", ".log"))
    spec_path.write_text(json.dumps(spec, indent=2))
    result_path.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if (
        spec.get("nproc", 1) == 1
    ):  # one process, one GPU: Trainer would otherwise wrap the model in DataParallel
        env["CUDA_VISIBLE_DEVICES"] = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0]
    timeout = min(spec["budget_s"], left)
    started = time.monotonic()
    timed_out = False
    with open(log_path, "w") as log:
        proc = subprocess.Popen(launch(spec, spec_path, result_path), stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=str(REPO), start_new_session=True)  # fmt: skip
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # the section's own process group (torchrun's workers too)
            code = proc.wait()
    record = {
        "name": spec["name"],
        "wall_s": round(time.monotonic() - started, 1),
        "exit_code": code,
        "spec": spec,
    }
    try:
        record["result"] = json.loads(result_path.read_text())
    except (OSError, ValueError):
        record["result"] = {}
    record["status"] = record["result"].get("status") or ("timeout" if timed_out else "error")
    if timed_out:
        record["status"] = "timeout"
        record["reason"] = f"cut at {timeout:.0f} s"
    if record["status"] != "ok":
        record["log_tail"] = tail(log_path)
    return record


def run_with_oom_retry(spec: dict, out: Path, deadline: float) -> dict:
    """An out-of-memory training section is retried once with half the micro batch, twice the accumulation."""
    record = run_section(spec, out, deadline)
    if record["status"] == "oom" and spec.get("kind") == "train" and spec["micro_batch"] > 1:
        smaller = {**spec, "micro_batch": spec["micro_batch"] // 2, "accum": spec["accum"] * 2}
        retry = run_section(smaller, out, deadline)
        retry["first_try"] = {k: record.get(k) for k in ("status", "wall_s", "result")}
        return retry
    return record


def resolve_device(sections: list[dict], env_record: dict) -> None:
    """``auto`` becomes ``cuda`` when the env section saw a GPU; sizes of the generation section follow."""
    result = env_record.get("result", {})
    if "cuda_devices" in result:
        gpus = int(result["cuda_devices"] or 0)
    else:  # the env section failed: do not fall back to hours of CPU work on a GPU machine
        gpus = int(Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None)
    for spec in sections:
        if spec["device"] == "auto":
            spec["device"] = "cuda" if gpus else "cpu"
        if spec["kind"] == "generate":
            spec.update(GENERATION["gpu" if spec["device"] == "cuda" else "cpu"])
        if spec["device"] == "cpu" and spec.get("precision") == "fp16":
            spec["precision"] = "bf16"  # no fp16 autocast on CPU


def comparisons(records: list[dict]) -> list[dict]:
    """Ours vs ``Trainer`` tokens/s for every (preset, compile) where both ran."""
    runs = {}
    for r in records:
        spec = r.get("spec", {})
        plain = "+" not in spec.get("name", "")  # the --speed variants are compared in techniques()
        if spec.get("kind") == "train" and spec.get("nproc", 1) == 1 and r["status"] == "ok" and plain:
            runs[(spec["preset"], spec["compile"], spec["impl"])] = r["result"]
    rows = []
    for (preset, compiled, impl), ours in runs.items():
        theirs = runs.get((preset, compiled, "trainer"))
        if impl == "ours" and theirs:
            rows.append({"preset": preset, "compile": compiled, "ours_tokens_per_s": ours["tokens_per_s_per_device"],
                         "trainer_tokens_per_s": theirs["tokens_per_s_per_device"],
                         "ratio": ours["tokens_per_s_per_device"] / theirs["tokens_per_s_per_device"]})  # fmt: skip
    return rows


def techniques(records: list[dict]) -> list[dict]:
    """Each ``--speed`` section's tokens/s against the plain eager loop of its preset and the eager
    ``Trainer`` (``ratio_vs_plain``, ``ratio_vs_trainer``)."""
    ok = {
        r["name"]: r["result"]
        for r in records
        if r["status"] == "ok" and r.get("spec", {}).get("kind") == "train"
    }
    rows = []
    for name, result in ok.items():
        preset, impl, label = name.split("/")[:3]
        if impl != "ours" or "+" not in label:
            continue
        plain, trainer = ok.get(f"{preset}/ours/eager"), ok.get(f"{preset}/trainer/eager")
        rate = result["tokens_per_s_per_device"]
        rows.append({"name": name, "mfu": result.get("mfu"), "micro_batch": result.get("micro_batch"),
                     "ratio_vs_plain": rate / plain["tokens_per_s_per_device"] if plain else None,
                     "ratio_vs_trainer": rate / trainer["tokens_per_s_per_device"] if trainer else None})  # fmt: skip
    return rows


def _fmt(value, spec: str = ",.0f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def markdown(report: dict) -> str:
    """The results as a Markdown section for benchmarks/RESULTS.md."""
    env = next((r.get("result", {}) for r in report["sections"] if r["name"] == "env"), {})
    lines = [
        f"### GPU suite: {env.get('device_name', '?')} ({report['suite']['started_utc']})",
        "",
        f"torch {env.get('torch')}, CUDA {env.get('cuda')}, transformers {env.get('transformers')}, "
        f"accelerate {env.get('accelerate')}; peak {_fmt(env.get('peak_tflops'), '.1f')} TFLOP/s "
        f"({report['suite']['precision']}); command `{report['suite']['command']}`",
        "",
        "| section | seq x micro x accum | tokens/s per device | MFU | peak mem GiB | wall s | status |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["sections"]:
        spec, res = r.get("spec", {}), r.get("result", {})
        if spec.get("kind") != "train":
            continue
        micro, accum = res.get("micro_batch", spec["micro_batch"]), res.get("accum", spec["accum"])
        shape = f"{spec['seq_len']} x {micro} x {accum}" + (
            f" x {spec['nproc']} proc" if spec.get("nproc", 1) > 1 else ""
        )
        status = r["status"] + (f" ({r['reason']})" if r.get("reason") else "")
        lines.append(
            f"| {r['name']} | {shape} | {_fmt(res.get('tokens_per_s_per_device'))} | "
            f"{_fmt(res.get('mfu'), '.1%')} | {_fmt(res.get('peak_mem_gib'), '.1f')} | {r.get('wall_s', '')} | {status} |"
        )
    lines.append("")
    for c in report["comparisons"]:
        mode = "torch.compile" if c["compile"] else "eager"
        lines.append(f"- {c['preset']} {mode}: ours / Trainer = {c['ratio']:.2f}x")
    for t in techniques(report["sections"]):
        lines.append(f"- {t['name']}: {_fmt(t['ratio_vs_plain'], '.2f')}x the plain eager loop, "
                     f"{_fmt(t['ratio_vs_trainer'], '.2f')}x the eager Trainer, MFU {_fmt(t['mfu'], '.1%')}, "
                     f"micro batch {t['micro_batch']}")  # fmt: skip
    gen = next((r for r in report["sections"] if r["name"] == "generate"), None)
    if gen and gen["status"] == "ok":
        g = gen["result"]
        lines.append(
            f"- generation (HFGenerator, random-init {gen['spec']['preset']}, {g['dtype']}, {g['prompts']} prompts, "
            f"batch {g['batch_size']}, {g['max_new_tokens']} new tokens): "
            f"{g['stops']['new_tokens_per_s']:,.0f} new tokens/s with the HumanEval stop strings, "
            f"{g['no_stops']['new_tokens_per_s']:,.0f} without; peak mem {_fmt(g.get('peak_mem_gib'), '.1f')} GiB"
        )
    elif gen:
        lines.append(f"- generation: {gen['status']} {gen.get('reason', '')}")
    return "\n".join(lines) + "\n"


def write_reports(out: Path, report: dict) -> None:
    """Rewrite ``gpu_suite.json`` and ``gpu_suite.md`` (atomically: a kill never leaves half a file)."""
    for name, text in (("gpu_suite.json", json.dumps(report, indent=2)), ("gpu_suite.md", markdown(report))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)


def main(argv: list[str] | None = None) -> int:
    """Run every section in order within the deadline; 0 when none failed (skipped ones do not fail)."""
    args = parse_args(argv)
    started = time.monotonic()
    deadline = started + args.deadline_s
    args.out.mkdir(parents=True, exist_ok=True)
    sections = plan(args)
    report = {
        "suite": {
            "started_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "bash benchmarks/gpu/suite.sh " + " ".join(argv if argv is not None else sys.argv[1:]),
            "deadline_s": args.deadline_s,
            "smoke": args.smoke,
            "precision": args.precision,
        },
        "sections": [],
        "comparisons": [],
    }
    gpus = 0
    for spec in sections:
        if spec.get("nproc", 1) > 1 and gpus < spec["nproc"] and not args.ddp:
            record = {"name": spec["name"], "status": "skipped", "reason": f"needs {spec['nproc']} GPUs, found {gpus}",
                      "spec": spec}  # fmt: skip
        else:
            record = run_with_oom_retry(spec, args.out, deadline)
        if spec["kind"] == "env":
            resolve_device(sections, record)
            gpus = int(record.get("result", {}).get("cuda_devices") or 0)
        report["sections"].append(record)
        report["comparisons"] = comparisons(report["sections"])
        report["suite"]["elapsed_s"] = round(time.monotonic() - started, 1)
        write_reports(args.out, report)
        print(f"[{report['suite']['elapsed_s']:>6.1f} s] {record['name']}: {record['status']} {record.get('reason', '')}",
              flush=True)  # fmt: skip
    print(markdown(report))
    print(f"results: {args.out / 'gpu_suite.json'}, {args.out / 'gpu_suite.md'}")
    failed = [r["name"] for r in report["sections"] if r["status"] not in ("ok", "skipped")]
    if failed:
        print(f"failed sections: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
