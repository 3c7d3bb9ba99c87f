"""`evalboard push langfuse` and `evalboard export-judge`: a judge and what evalboard learned, back
to the vendor and out to other tools.

Registered in cli/main.py by merging this module's `cli` into the main app. The judge export
is `export-judge` because `evalboard export` is the project backup.

Exit codes: 0 done, 1 the push failed (an object was rejected, Langfuse down; push again to
continue), 2 bad options, refused request (unknown judge, unvalidated judge without
--confirm-unvalidated) or configuration (no Langfuse keys).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

cli = typer.Typer(add_completion=False)
push_app = typer.Typer(help="Push judges, scores, labels and datasets to an outside system.", no_args_is_help=True)
cli.add_typer(push_app, name="push")


def _main():  # noqa: ANN202 - the cli.main module (imported late: it imports this module)
    from cli import main

    return main


def _judge_id(store, project_id: int, name: str) -> int:  # noqa: ANN001
    from integrations.langfuse_push import PushError, judge_by_name

    try:
        return judge_by_name(store, project_id, name)
    except PushError as exc:
        typer.echo(f"--judge: {exc}", err=True)
        raise typer.Exit(2) from exc


def _version_id(store, judge_id: int, number: int | None) -> int | None:  # noqa: ANN001
    if number is None:
        return None
    from evalboard.judges import list_versions

    versions = {v.number: v.id for v in list_versions(store, judge_id)}
    if number not in versions:
        typer.echo(f"--version {number}: the judge has versions {', '.join(f'v{n}' for n in versions) or 'none'}.",
                   err=True)
        raise typer.Exit(2)
    return versions[number]


@push_app.command("langfuse")
def push_langfuse(
    judge: str | None = typer.Option(None, "--judge", "-j", help="The judge to push: score config, prompt, "
                                     "evaluator (and --scores RUN: its verdicts)."),
    scores: int | None = typer.Option(None, "--scores", help="Push the verdicts of this judge run (its id) as scores."),
    annotations: str | None = typer.Option(None, "--annotations", help="Push people's labels of this round (name "
                                           "or id): verdict and failure-mode scores, notes as comments."),
    dataset: str | None = typer.Option(None, "--dataset", help="Push the kept queries as a Langfuse dataset of this name."),
    version: int | None = typer.Option(None, "--version", help="Judge version number (default: the validated "
                                       "version, else the latest)."),
    confirm_unvalidated: bool = typer.Option(False, "--confirm-unvalidated", help="Push a judge that is not "
                                             "validated (it is labelled 'not validated' in Langfuse)."),
    evaluator: bool = typer.Option(True, "--evaluator/--no-evaluator", help="Create the LLM-as-a-judge evaluator."),
    rule: bool = typer.Option(False, "--rule", help="Also create an evaluation rule, so Langfuse judges new traces."),
    rule_sampling: float = typer.Option(1.0, "--rule-sampling", help="Share of matching traces the rule judges, (0, 1]."),
    rule_env: list[str] = typer.Option([], "--rule-env", help="Rule: only this environment; repeat for several."),
    rule_trace_name: list[str] = typer.Option([], "--rule-trace-name", help="Rule: only traces with this name."),
    rule_tag: list[str] = typer.Option([], "--rule-tag", help="Rule: only traces with this tag."),
    rule_disabled: bool = typer.Option(False, "--rule-disabled", help="Create the rule disabled (a draft)."),
    provider: str = typer.Option("openai", "--provider", help="Langfuse LLM connection for the evaluator's model; "
                                 "'default' for the project's default evaluation model."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be pushed, send nothing."),
    project: str | None = typer.Option(None, "--project", "-p", help="Project name. Default: the only project."),
) -> None:
    """Push a judge, its verdicts, people's labels and the kept queries to Langfuse.

    Keys come from LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY and LANGFUSE_BASE_URL, or from
    .streamlit/secrets.toml. Pushing again sends only what is new or changed, and continues a
    push that stopped; nothing ends up in Langfuse twice.
    """
    from integrations.langfuse import LangfuseConfigError, LangfuseSettings
    from integrations.langfuse_push import PushError, PushRequest, RuleOptions, dry_run as plan, round_by_name, run_push

    main = _main()
    if scores is not None and judge is None:
        typer.echo("--scores needs --judge (the run is checked against the judge).", err=True)
        raise typer.Exit(2)
    if judge is None and annotations is None and dataset is None:
        typer.echo("Nothing to push: give --judge, --annotations or --dataset.", err=True)
        raise typer.Exit(2)
    if rule and judge is None:
        typer.echo("--rule needs --judge.", err=True)
        raise typer.Exit(2)
    try:
        settings = LangfuseSettings.resolve(secrets=main._read_secrets())
    except LangfuseConfigError as exc:
        typer.echo(f"{exc}.", err=True)
        raise typer.Exit(2) from exc
    store = main._store()
    pid = main._project_id(store, project)
    judge_id = _judge_id(store, pid, judge) if judge is not None else None
    try:
        rules = (RuleOptions(enabled=not rule_disabled, sampling=rule_sampling, environments=tuple(rule_env),
                             trace_names=tuple(rule_trace_name), tags=tuple(rule_tag)) if rule else None)
        request = PushRequest(
            judge=judge_id, version=_version_id(store, judge_id, version) if judge_id is not None else None,
            confirm_unvalidated=confirm_unvalidated, evaluator=evaluator, rule=rules,
            provider=None if provider.strip().lower() == "default" else provider.strip(), scores_run=scores,
            annotations_round=round_by_name(store, pid, annotations) if annotations is not None else None,
            dataset=dataset)
        if dry_run:  # sends nothing, so an unvalidated judge needs no confirmation to be looked at
            planned = plan(store, pid, replace(request, confirm_unvalidated=True), settings)
            lines = planned.lines()
            typer.echo(f"Dry run: nothing is sent to {settings.masked()}.")
            typer.echo(lines.to_string(index=False) if not lines.empty else "Nothing to push.")
            if not planned.validated and not confirm_unvalidated:
                typer.echo(f"'{planned.judge.name}' {planned.version.label} is not validated: pushing it needs "
                           "--confirm-unvalidated.")
            raise typer.Exit(0)

        def show(progress) -> None:  # noqa: ANN001
            if progress.done == progress.total or progress.done % 10 == 0:
                typer.echo(f"  {progress.done}/{progress.total} {progress.current}", err=True)

        report = run_push(store, pid, request, settings, who=_who(), on_progress=show)
    except PushError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    frame = report.objects
    for row in frame.itertuples():
        count = f" x{row.count}" if row.count != 1 else ""
        extra = f" ({row.detail})" if row.detail else ""
        link = f" {row.link}" if row.link and row.status in ("created", "updated") else ""
        typer.echo(f"{row.status:>9}{count}  {row.object}{extra}{link}")
    typer.echo(report.summary(), err=not report.ok)
    raise typer.Exit(0 if report.ok else 1)


def _who() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers: the log just leaves it empty
        return ""


@cli.command("export-judge")
def export_judge_cmd(
    name: str = typer.Argument(..., help="The judge's name."),
    fmt: str = typer.Option(..., "--format", "-f", help="braintrust, promptfoo, python or json."),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: a name from the judge "
                                       "and version, in the current folder; '-' for standard output)."),
    version: int | None = typer.Option(None, "--version", help="Version number (default: the validated version, "
                                       "else the latest, labelled 'not validated')."),
    project: str | None = typer.Option(None, "--project", "-p", help="Project name. Default: the only project."),
) -> None:
    """Export a judge for another tool (Braintrust, promptfoo, a Python module for CI, JSON).

    braintrust: a scorer file for `braintrust push`; promptfoo: an llm-rubric assertion;
    python: a self-contained module that judges (input, output) pairs with the openai SDK as
    evalboard does; json: the judge's full spec. Each file carries the judge's version and
    validation figures, and says so when the version is not validated."""
    from evalboard.exports import FORMATS, ExportError, export_judge

    main = _main()
    if fmt not in FORMATS:
        typer.echo(f"--format {fmt!r}: use one of {', '.join(FORMATS)}.", err=True)
        raise typer.Exit(2)
    store = main._store()
    pid = main._project_id(store, project)
    judge_id = _judge_id(store, pid, name)
    try:
        export = export_judge(store, judge_id, fmt, version_id=_version_id(store, judge_id, version))
    except ExportError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    if output is not None and str(output) == "-":
        typer.echo(export.content, nl=False)
        return
    path = output or Path(export.filename)
    try:
        path.write_text(export.content, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"Cannot write {path}: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Wrote {path} ({fmt}, {len(export.content):,} characters).")
