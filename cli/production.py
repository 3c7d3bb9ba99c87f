"""`evalboard judge run` and `evalboard prevalence`: production runs without the app, for cron and CI.

    evalboard judge run --judge "Email tone" --source langfuse --since 24h --sample 1000
    evalboard judge run --judge "Email tone" --source round --round "Week 47" --batch
    evalboard prevalence --run 12 --json

Exit codes: 0 done, 1 the run failed or is incomplete (some verdicts could not be had: run it
again with --resume to retry them), 2 bad options or configuration (unknown or unvalidated
judge, no LLM for an LLM judge, Langfuse keys, bad dates), 130 stopped with Ctrl-C (run again
with --resume to continue; nothing judged is lost). Progress goes to stderr (a bar on a
terminal), results to stdout: with --json, one JSON object.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from evalboard.production import (
    ProductionError,
    judge_run_ids,
    RunOutcome,
    RunProgress,
    create_run,
    draw_sample,
    get_run,
    latest_run,
    resolve_judges,
    run_batch,
    run_direct,
    run_summary,
)
from evalboard.store import Store, StoreError

judge_app = typer.Typer(help="Run validated judges on production traces.", no_args_is_help=True)
SOURCES = ("langfuse", "round", "file")
PUSH_MODULE = "integrations.langfuse_push"


def _base() -> Any:
    """cli.main, imported when a command runs (it imports this module to register the commands)."""
    return importlib.import_module("cli.main")


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


class Progress:
    """Progress on stderr: a rich bar on a terminal, otherwise a line per phase and per tenth done."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.bar: Any = None
        self.task: Any = None
        self.last: tuple[str, int] = ("", -1)

    def __enter__(self) -> Progress:
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

            self.bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                           console=Console(stderr=True), transient=False)
            self.bar.__enter__()
            self.task = self.bar.add_task("Judging", total=None)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, p: RunProgress) -> None:
        what = {"judging": f"Judging ({p.judge})" if p.judge else "Judging", "polling": "Waiting for the batch",
                "ingesting": "Reading batch answers", "submitted": "Submitted", "done": "Done"}.get(p.phase, p.phase)
        if self.tty:
            self.bar.update(self.task, description=what, total=p.total or None, completed=p.done)
            return
        tenth = int(10 * p.done / p.total) if p.total else 0
        if (what, tenth) != self.last:
            self.last = (what, tenth)
            detail = f" {p.message}" if p.message else ""
            typer.echo(f"  {what}: {p.done}/{p.total}{detail}", err=True)


def _llm_client(store: Store) -> Any:
    from integrations.llm import LLMClient, LLMSettings

    try:
        settings = LLMSettings.resolve(secrets=_base()._read_secrets())
    except ValueError as exc:
        raise fail(f"The LLM settings are not valid: {exc}") from None
    if not settings.configured:
        raise fail(f"{settings.why_not_configured()} The chosen judges include LLM judges.")
    return LLMClient(settings, cache=store.llm_cache())


def _langfuse_sample(store: Store, pid: int, round_name: str | None, start: datetime | None, end: datetime | None,
                     sample: int | None, seed: int | None, env: list[str], tag: list[str]) -> Any:
    """Pull the sample from Langfuse into a round (continuing an interrupted pull into it)."""
    base = _base()
    from integrations.langfuse import LangfuseConfigError, LangfuseSettings, PullFilters, Sampling
    from integrations.langfuse_rounds import pending_pull, prepare_round

    try:
        settings = LangfuseSettings.resolve(secrets=base._read_secrets())
    except LangfuseConfigError as exc:
        raise fail(f"{exc}.") from None
    name = round_name or f"Production sample {datetime.now(UTC):%Y-%m-%d %H:%M}"
    rnd, created = prepare_round(store, pid, name)
    filters = PullFilters(since=start, until=end, environment=tuple(env), tags=tuple(tag))
    sampling = Sampling("random", sample, seed) if sample else Sampling("latest", None)
    pending = None if created else pending_pull(store, rnd.id)  # type: ignore[arg-type]
    if pending is not None:
        filters, sampling = pending.filters, pending.sampling
        typer.echo(f"Round '{rnd.name}': {pending.describe()} Continuing it.", err=True)
    typer.echo(f"Pulling the sample from Langfuse at {settings.base_url} into round '{rnd.name}'.", err=True)
    result = base.pull_into_round(store, settings, pid, rnd.id, filters, sampling)
    if result.status != "done":
        raise fail(result.summary(), 2 if result.config_error else 1)
    typer.echo(result.summary(), err=True)
    return draw_sample(store, pid, round_id=rnd.id, since=filters.since, until=filters.until,
                       definition={"source": "langfuse", "filters": filters.describe(), "sampling": result.sampling})


def _push_scores(store: Store, run_id: int, client: Any) -> tuple[list[str], bool]:
    """Push a finished run's verdicts to Langfuse as scores, one push per judge, when the push
    feature is installed. Returns notes to print and whether every push succeeded."""
    try:
        push = importlib.import_module(PUSH_MODULE)
    except ModuleNotFoundError:
        return [("Pushing scores needs the Langfuse push feature (integrations/langfuse_push.py), which this "
                 "installation does not have. The verdicts are stored; push them later.")], True
    from integrations.langfuse import LangfuseConfigError, LangfuseSettings

    run = get_run(store, run_id)
    if run.status != "finished":
        return [f"Scores not pushed: run {run_id} is {run.status}; push once it has finished."], False
    try:
        settings = LangfuseSettings.resolve(secrets=_base()._read_secrets())
    except LangfuseConfigError as exc:
        return [f"Scores not pushed: {exc}."], False
    notes, ok = [], True
    for version_id, judge_run in judge_run_ids(client, store, run_id).items():
        judge = next(j for j in run.judges if j.version_id == version_id)
        request = push.PushRequest(judge=judge.judge_id, version=version_id, scores_run=judge_run, evaluator=False)
        try:
            report = push.run_push(store, run.project_id, request, settings, who=os.environ.get("USER", "cli"))
        except push.PushError as exc:
            notes.append(f"{judge.judge}: scores not pushed: {exc}")
            ok = False
            continue
        notes.append(f"{judge.judge}: {report.summary()}")
        ok = ok and report.ok
    return notes, ok


def _finish(store: Store, outcome: RunOutcome, as_json: bool, push_scores: bool, waited: bool, client: Any) -> None:
    notes: list[str] = []
    pushed = True
    if push_scores:
        notes, pushed = _push_scores(store, outcome.run_id, client)
    summary = run_summary(store, outcome.run_id)
    if as_json:
        typer.echo(json.dumps({**summary, "outcome": {k: v for k, v in vars(outcome).items()},
                               "notes": notes}, default=str))
    else:
        typer.echo(outcome.summary())
        _print_estimates(summary)
        for note in notes:
            typer.echo(note)
    status = summary["run"]["status"]
    if (status == "finished" and pushed) or (status == "submitted" and not waited):
        raise typer.Exit(0)
    if status in ("cancelled", "incomplete", "submitted"):
        typer.echo(f"Run again with `evalboard judge run --resume {outcome.run_id}` to finish it.", err=True)
    raise typer.Exit(1)


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1%}"


def _print_estimates(summary: dict[str, Any]) -> None:
    run = summary["run"]
    typer.echo(f"Run {run['id']} '{run['name']}' ({run['status']}): {run['sample_description']}.")
    for e in summary["estimates"]:
        head = f"  {e['mode']} ({e['judge']} {e['version']}): {e['flagged']} of {e['judged']} flagged, raw {_pct(e['raw'])} " \
               f"[{_pct(e['raw_low'])}, {_pct(e['raw_high'])}]"
        if e["refused"]:
            typer.echo(f"{head}; no correction: {e['refused']}")
        else:
            typer.echo(f"{head}; corrected {_pct(e['corrected'])} [{_pct(e['low'])}, {_pct(e['high'])}] "
                       f"(TPR {e['tpr']:.2f}, TNR {e['tnr']:.2f})")


@judge_app.command("run")
def judge_run(
    judge: list[str] = typer.Option([], "--judge", "-j", help="A validated judge, by its name or its failure "
                                    "mode's; repeat for several."),
    source: str = typer.Option("langfuse", "--source", help="Where the production sample comes from: langfuse, "
                               "round or file."),
    round_name: str | None = typer.Option(None, "--round", "-r", help="--source round: the round to sample. "
                                          "--source langfuse: the round to pull into (default: a new one)."),
    file: Path | None = typer.Option(None, "--file", help="--source file: a JSONL, JSON, CSV or Parquet file of traces."),
    since: str | None = typer.Option(None, "--since", help="Traces started at or after: 2026-11-01, "
                                     "2026-11-01T12:00 (UTC unless an offset is given), or an age: 30m, 24h, 7d, 2w."),
    until: str | None = typer.Option(None, "--until", help="Traces started before (same forms). Default: now."),
    sample: int | None = typer.Option(None, "--sample", "-n", help="Judge a uniform random sample of N traces "
                                      "(default: all that match)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the random sample (drawn and recorded when not given)."),
    env: list[str] = typer.Option([], "--env", help="--source langfuse: only this environment (repeatable)."),
    tag: list[str] = typer.Option([], "--tag", help="--source langfuse: only traces with this tag (repeatable)."),
    project: str | None = typer.Option(None, "--project", "-p", help="Project name (default: the only project)."),
    batch: bool = typer.Option(False, "--batch", help="Send LLM judgments through the provider's Batch API "
                               "(cheaper, takes up to 24 h) instead of concurrent calls."),
    poll_every: float = typer.Option(30.0, "--poll-every", help="With --batch: seconds between status checks."),
    no_wait: bool = typer.Option(False, "--no-wait", help="With --batch: submit and exit 0; run again with "
                                 "--resume RUN later to collect the answers."),
    resume: str | None = typer.Option(None, "--resume", help="Continue run ID (or 'last': the newest unfinished "
                                      "run) with its own sample and judges, without repeating any judgment."),
    concurrency: int | None = typer.Option(None, "--concurrency", help="LLM calls at once (default: the LLM settings')."),
    push_scores: bool = typer.Option(False, "--push-scores", help="Afterwards, write the verdicts to Langfuse as "
                                     "scores (needs the Langfuse push feature)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (run, outcome, estimates) on stdout."),
) -> None:
    """Judge a production sample with validated judges, then print the corrected prevalence.

    Every verdict is stored as it arrives: after a crash, Ctrl-C or a kill, `--resume RUN`
    continues without repeating a single judgment (so does running a batch run again)."""
    base = _base()
    now = datetime.now(UTC)
    if poll_every <= 0:
        raise fail(f"--poll-every must be a positive number of seconds, got {poll_every}.")
    if concurrency is not None and concurrency < 1:
        raise fail(f"--concurrency must be at least 1, got {concurrency}.")
    store = base._store()
    if resume is not None:
        run = _resumed(store, base, resume, project)
        client = _llm_client(store) if any(j.kind == "llm" for j in run.judges) else None
        typer.echo(f"Continuing run {run.id} '{run.name}' ({run.status}): {run.describe_sample()}.", err=True)
    else:
        if not judge:
            raise fail("Name at least one judge with --judge NAME (or continue a run with --resume RUN).")
        if source not in SOURCES:
            raise fail(f"--source must be one of {', '.join(SOURCES)}, got {source!r}.")
        if sample is not None and sample < 1:
            raise fail(f"--sample must be a positive number of traces, got {sample}.")
        start = base.parse_when(since, "--since", now) if since else None
        end = base.parse_when(until, "--until", now) if until else None
        if start and end and start >= end:
            raise fail(f"--since ({start.isoformat()}) must be before --until ({end.isoformat()}).")
        pid = base._project_id(store, project)
        try:
            choices = resolve_judges(store, pid, judge)
        except ProductionError as exc:
            raise fail(f"--judge: {exc}") from None
        client = _llm_client(store) if any(c.kind == "llm" for c in choices) else None  # before any pull
        try:
            drawn = _sample(store, base, pid, source, round_name, file, start, end, sample, seed, env, tag)
            run_id = create_run(store, pid, choices, drawn, execution="batch" if batch else "direct",
                                who=os.environ.get("USER", "cli"))
        except (ProductionError, StoreError) as exc:
            raise fail(str(exc)) from None
        run = get_run(store, run_id)
        typer.echo(f"Run {run.id} '{run.name}': {run.describe_sample()}.", err=True)
    try:
        with Progress(sys.stderr.isatty()) as progress:
            if run.execution == "batch":
                outcome = run_batch(client, store, run.id, poll_every=poll_every, wait=not no_wait,
                                    on_progress=progress)
            else:
                outcome = run_direct(client, store, run.id, concurrency=concurrency, on_progress=progress)
    except KeyboardInterrupt:
        typer.echo(f"\nStopped. Nothing judged is lost: `evalboard judge run --resume {run.id}` continues.", err=True)
        raise typer.Exit(130) from None
    except ProductionError as exc:
        raise fail(str(exc)) from None
    _finish(store, outcome, as_json, push_scores, waited=run.execution != "batch" or not no_wait, client=client)


def _resumed(store: Store, base: Any, resume: str, project: str | None) -> Any:
    try:
        if resume.strip().lower() == "last":
            run = latest_run(store, base._project_id(store, project), unfinished=True)
            if run is None:
                raise fail("--resume last: this project has no unfinished production run.")
            return run
        return get_run(store, int(resume))
    except ProductionError as exc:  # a ValueError too: catch it first
        raise fail(f"--resume: {exc}") from None
    except ValueError:
        raise fail(f"--resume takes a run id or 'last', got {resume!r}.") from None


def _sample(store: Store, base: Any, pid: int, source: str, round_name: str | None, file: Path | None,
            start: datetime | None, end: datetime | None, n: int | None, seed: int | None, env: list[str],
            tag: list[str]) -> Any:
    if source != "langfuse" and (env or tag):
        raise fail("--env and --tag filter a Langfuse pull; with --source round or file, choose the round or file.")
    if source == "langfuse":
        return _langfuse_sample(store, pid, round_name, start, end, n, seed, env, tag)
    if source == "round":
        if not round_name:
            raise fail("--source round needs --round NAME (the round to sample).")
        rnd = next((r for r in store.list_rounds(pid) if r.name == round_name), None)
        if rnd is None:
            names = ", ".join(f"'{r.name}'" for r in store.list_rounds(pid)) or "none yet"
            raise fail(f"--round: no round named '{round_name}' in this project (rounds: {names}).")
        return draw_sample(store, pid, round_id=rnd.id, since=start, until=end, n=n, seed=seed)
    if file is None:
        raise fail("--source file needs --file PATH.")
    if not file.is_file():
        raise fail(f"--file: {file} does not exist or is not a file.")
    from integrations.files import FileImportError, import_file

    try:
        report = import_file(store, pid, file, round_name=round_name or f"Production sample: {file.name}")
    except FileImportError as exc:
        raise fail(f"--file: {exc}") from None
    typer.echo(report.summary(), err=True)
    return draw_sample(store, pid, round_id=report.round_id, since=start, until=end, n=n, seed=seed,
                       definition={"source": "file", "path": str(file)})


def prevalence_cmd(
    run: str = typer.Option("last", "--run", help="Production run id, or 'last' (the project's newest run)."),
    project: str | None = typer.Option(None, "--project", "-p", help="With --run last: the project "
                                       "(default: the only project)."),
    confidence: float = typer.Option(0.95, "--confidence", help="Interval level, between 0 and 1."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: the run, its estimates and the method."),
) -> None:
    """Raw rate and corrected prevalence per failure mode of a production run, with intervals.

    The correction uses each judge's TPR and TNR from its frozen test split; it is refused, with
    the reason, when TPR + TNR <= 1. Exit codes: 0 shown, 2 no such run or a bad option."""
    base = _base()
    if not 0 < confidence < 1:
        raise fail(f"--confidence must be between 0 and 1, got {confidence}.")
    store = base._store()
    try:
        if run.strip().lower() == "last":
            found = latest_run(store, base._project_id(store, project))
            if found is None:
                raise fail("This project has no production run yet: start one with `evalboard judge run`.")
            run_id = found.id
        else:
            run_id = get_run(store, int(run)).id
    except ProductionError as exc:  # a ValueError too: catch it first
        raise fail(f"--run: {exc}") from None
    except ValueError:
        raise fail(f"--run takes a run id or 'last', got {run!r}.") from None
    summary = run_summary(store, run_id, confidence=confidence)
    if as_json:
        typer.echo(json.dumps(summary, default=str))
    else:
        _print_estimates(summary)
        typer.echo(f"Intervals: {confidence:.0%}, method {summary['method']['name']}; they assume "
                   f"{summary['method']['assumes']}.")
