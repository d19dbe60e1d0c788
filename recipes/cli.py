"""The ``textbooks`` command line: ``run``, ``validate``, ``list``, ``report``, ``eval``, ``train`` and ``ablate``.

Examples::

    textbooks run quickstart                       # a bundled recipe, offline
    textbooks run recipes/my.yaml --set tasks=8    # a file, with a variable override
    textbooks validate recipes/my.yaml             # errors name the YAML key, nothing runs
    textbooks list                                 # bundled recipes, steps and jobs
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Build phi-1-style training data.")
report_app = typer.Typer(no_args_is_help=True, help="Write reports about a shard directory.")
app.add_typer(report_app, name="report")
console = Console(stderr=False)
err_console = Console(stderr=True)


@contextlib.contextmanager
def _quiet_worker_logs(log_path: Path):
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


@app.command()
def run(
    recipe: str = typer.Argument(..., help="A recipe file or the name of a bundled recipe."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a variable: KEY=VALUE (repeatable)."),
    fresh: bool = typer.Option(False, help="Discard earlier outputs instead of resuming."),
    only: list[str] | None = typer.Option(None, help="Run only these stages (repeatable)."),
    quiet: bool = typer.Option(True, help="Keep worker logs out of the console (they stay in .logs/)."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Spend nothing: estimate LLM costs, write Batch API request files, skip LLM calls.",
    ),
):
    """Run a recipe (a path or a bundled name such as `quickstart`); resumes a killed run."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from recipes.engine import run_recipe
    from recipes.schema import RecipeError, load_recipe

    try:
        loaded = load_recipe(recipe, set_ or [], check_inputs_exist=True)
    except RecipeError as error:
        err_console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    tasks: dict[str, int] = {}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:

        def on_stage(name: str, kind: str) -> None:
            stage = next(s for s in loaded.stages if s.name == name)
            total = getattr(getattr(stage, "executor", None), "tasks", 1)
            tasks[name] = progress.add_task(f"{name} ({kind})", total=total)

        def on_progress(name: str, done: int, total: int) -> None:
            progress.update(tasks[name], completed=done, total=total)

        log_path = Path(".textbooks-logs") / f"{loaded.name}.log"
        redirect = _quiet_worker_logs(log_path) if quiet else contextlib.nullcontext()
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
        except Exception as error:  # noqa: BLE001 - report the failure with where to look, then exit non-zero
            err_console.print(f"[red]run failed: {type(error).__name__}: {error}[/red]")
            if quiet:
                err_console.print(f"worker logs: {log_path}")
            raise typer.Exit(1) from None
        for task_id in tasks.values():
            progress.update(task_id, completed=progress.tasks[task_id].total)
    console.print(_summary_table(result))
    for stage in result.stages:
        if stage.summary:  # job results and dry-run estimates, in full
            console.print(f"[bold]{stage.name}[/bold]:")
            console.print_json(json.dumps(stage.summary, default=str))
    for stage in result.stages:
        if stage.output:
            console.print(f"[green]{stage.name}[/green] -> {stage.output}")


@app.command()
def validate(
    recipe: str = typer.Argument(..., help="A recipe file or bundled name."),
    set_: list[str] | None = typer.Option(None, "--set", help="KEY=VALUE overrides."),
):
    """Check a recipe without running anything; errors name the YAML key."""
    from recipes.schema import RecipeError, load_recipe

    try:
        loaded = load_recipe(recipe, set_ or [], check_inputs_exist=True)
    except RecipeError as error:
        err_console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    console.print(
        f"[green]ok[/green]: {loaded.name} ({len(loaded.stages)} stages: "
        f"{', '.join(s.name for s in loaded.stages)})"
    )


@app.command("list")
def list_():
    """List bundled recipes, registered steps and jobs, one line of documentation each."""
    import yaml

    from recipes.registry import registry, resolve, summary_line
    from recipes.schema import bundled_recipes

    table = Table(title="recipes")
    table.add_column("name")
    table.add_column("description")
    for name, path in bundled_recipes().items():
        try:
            description = (yaml.safe_load(path.read_text()) or {}).get("description", "")
        except yaml.YAMLError:
            description = "(unreadable YAML)"
        table.add_row(name, description)
    console.print(table)
    for kind in ("steps", "jobs"):
        table = Table(title=kind)
        table.add_column("name")
        table.add_column("target")
        table.add_column("summary")
        for name, target in sorted(registry(kind).items()):
            try:
                line = summary_line(resolve(name, kind))
            except Exception as error:  # noqa: BLE001 - one broken entry must not hide the others
                line = f"(cannot import: {type(error).__name__})"
            table.add_row(name, target, line)
        console.print(table)


@report_app.command("diversity")
def report_diversity(
    input_dir: str = typer.Argument(
        ..., help="A shard directory (or any folder of Parquet files with `text`)."
    ),
    output_dir: str | None = typer.Option(None, help="Where the report goes (default INPUT_DIR/diversity)."),
    limit: int | None = typer.Option(None, help="First N rows only."),
    embed: bool = typer.Option(True, help="Vendi score on sentence embeddings (bundled offline model)."),
    near: bool = typer.Option(True, help="MinHash near-duplicate rate."),
):
    """Diversity report (HTML + JSON): duplicates, distinct-n, Vendi, grid coverage, names, imports."""
    from synth.diversity import write_diversity_report

    report = write_diversity_report(
        input_dir, output_dir or str(Path(input_dir) / "diversity"), limit=limit, embed=embed, near=near
    )
    keys = ("rows", "exact_duplicate_rate", "near_duplicate_rate", "compression_ratio", "report_html")
    console.print(json.dumps({k_: report.get(k_) for k_ in keys}, indent=2))


@report_app.command("decontam")
def report_decontam(
    input_dir: str = typer.Argument(
        ..., help="A decontam output dir (has decontam.json), or a shard dir to audit."
    ),
    output_dir: str | None = typer.Option(
        None, help="Report dir (default DIR/report), or audit dir (default DIR/decontam)."
    ),
    mbpp_path: str | None = typer.Option(None, help="MBPP jsonl (or $TEXTBOOKS_MBPP_PATH); audits only."),
    rule: str = typer.Option("either", help="ast | embedding | either | both; audits only."),
    embeddings: bool = typer.Option(True, help="Embedding measure (bundled offline model); audits only."),
):
    """Decontamination audit report (HTML + Markdown + JSON); audits a shard directory first if needed."""
    from decontam.report import decontam_audit, write_decontam_report

    if (Path(input_dir) / "decontam.json").is_file():
        report = write_decontam_report(input_dir, output_dir)
        console.print(json.dumps({k_: report[k_] for k_ in ("html", "markdown", "json")}, indent=2))
    else:
        summary = decontam_audit(
            input_dir,
            output_dir or str(Path(input_dir) / "decontam"),
            mbpp_path=mbpp_path,
            rule=rule,
            embeddings=embeddings,
        )
        console.print(json.dumps(summary, indent=2))


@app.command("eval")
def eval_(
    benchmark: str = typer.Argument("humaneval", help="humaneval | mbpp"),
    model: str | None = typer.Option(None, help="A local HF model directory."),
    endpoint: str | None = typer.Option(None, help="An OpenAI-compatible base URL."),
    endpoint_model: str | None = typer.Option(None, help="Model name at the endpoint."),
    endpoint_kind: str = typer.Option("completion", help="completion | chat"),
    samples: str | None = typer.Option(None, help="A human-eval format samples JSONL to score."),
    canonical: bool = typer.Option(False, help="Score the benchmark's canonical solutions."),
    prompt_format: str | None = typer.Option(None, help="humaneval | mbpp-docstring | mbpp-3shot"),
    mbpp_path: str | None = typer.Option(None, help="MBPP jsonl (or $TEXTBOOKS_MBPP_PATH)."),
    n_samples: int = typer.Option(1, help="Samples per problem."),
    k: list[int] = typer.Option([1], help="pass@k to report (repeatable)."),
    temperature: float = typer.Option(0.0, help="0 = greedy."),
    split_json: str | None = typer.Option(None, help="decontam split.json: similar/non-similar pass@1."),
    limit: int | None = typer.Option(None, help="First N problems only."),
    workers: int = typer.Option(2, help="Concurrent sandboxed runs."),
    output_dir: str = typer.Option("textbooks-out/eval", help="Where samples/summary files go."),
):
    """Evaluate a model, an endpoint or a samples file on HumanEval/MBPP (pass@k, sandboxed)."""
    from train.evaluate import evaluate

    summary = evaluate(
        benchmark,
        prompt_format=prompt_format,
        model=model,
        endpoint=endpoint,
        endpoint_model=endpoint_model,
        endpoint_kind=endpoint_kind,
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
    console.print(Path(summary["files"]["markdown"]).read_text())
    console.print(json.dumps({k_: summary[k_] for k_ in ("pass_at_k", "status_counts", "files")}, indent=2))


@app.command("train")
def train_(
    config: str = typer.Argument(..., help="A YAML/JSON file of TrainConfig fields (see train.trainer)."),
    overrides: list[str] | None = typer.Argument(None, help="KEY=VALUE overrides, e.g. max_steps=100."),
):
    """Train a model from a config file (single process; use `accelerate launch -m train.trainer` for many)."""
    from train.trainer import train_from_file

    console.print_json(json.dumps(train_from_file(config, overrides or []), default=str))


@app.command("ablate")
def ablate_(
    config: str = typer.Argument(..., help="A YAML/JSON file of AblationConfig fields (see train.ablate)."),
    overrides: list[str] | None = typer.Argument(
        None, help="KEY=VALUE overrides, e.g. seeds=[0] train.lr=1e-3."
    ),
):
    """Train the same proxy model on several shard sets for equal tokens and compare (HTML + JSON + plots)."""
    from train.ablate import ablate_from_file

    result = ablate_from_file(config, overrides or [])
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


@app.command("train-classifier")
def train_classifier_(
    input_dir: list[str] = typer.Argument(..., help="Labeled shard directories (rows with quality_label)."),
    output: str = typer.Option(
        ..., "--output", "-o", help="Where the classifier goes (model.joblib + .json)."
    ),
    kind: str = typer.Option("random_forest", help="random_forest | lightgbm | logistic"),
    featurizer: str = typer.Option(
        "embedding", help="embedding | structure | code_tokens | several joined by '+'"
    ),
    target_precision: float | None = typer.Option(
        None, help="Threshold: lowest score with this CV precision."
    ),
    keep_rate: float | None = typer.Option(None, help="Threshold: keep about this share of documents."),
    folds: int = typer.Option(5, help="Stratified CV folds."),
    embed_model: str | None = typer.Option(None, help="Embedding model (default: bundled offline MiniLM)."),
    embed_kind: str = typer.Option("sentence", help="sentence | causal_lm"),
    embed_max_tokens: int | None = typer.Option(None, help="Chunk length (as the embed step used)."),
    embed_max_chunks: int | None = typer.Option(None, help="Chunks per document (as the embed step used)."),
):
    """Train the quality classifier on labeled shards; CV metrics go to the output and each manifest."""
    from curate.classifier import train_quality_classifier

    summary = train_quality_classifier(
        input_dir if len(input_dir) > 1 else input_dir[0],
        output,
        embedder={
            "model": embed_model,
            "kind": embed_kind,
            **({"max_tokens": embed_max_tokens} if embed_max_tokens else {}),
            **({"max_chunks": embed_max_chunks} if embed_max_chunks else {}),
        },
        kind=kind,
        featurizer=featurizer,
        target_precision=target_precision,
        keep_rate=keep_rate,
        folds=folds,
    )
    console.print_json(json.dumps(summary, default=str))


@app.command("eval-filter")
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
):
    """Evaluate a quality classifier: ROC-AUC, PR-AUC, keep rates, misranked files, HTML report."""
    from curate.filter_eval import evaluate_filter

    summary = evaluate_filter(model, positives, negatives, report_dir=report, show=show)
    table = Table(title=f"eval-filter {model}")
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
            console.print(f"  {row['score']:.4f}  {row['id']}")
    if summary.get("report"):
        console.print(f"report -> {summary['report']}")


if __name__ == "__main__":  # pragma: no cover
    app()
