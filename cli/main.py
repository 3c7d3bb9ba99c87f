"""The `evalboard` command: the same workflow as the app, from a terminal, cron or CI.

It is an entry layer like the pages: it parses arguments, calls evalboard/ and integrations/,
and prints. Exit codes: 0 done, 1 the work failed, 2 bad arguments or configuration.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from evalboard.demo import DEMO_NAME, create_demo
from evalboard.store import Store, StoreError
from integrations.files import FieldMapping, FileImportError, import_file
from integrations.langfuse import LangfuseConfigError, LangfuseSettings, PullFilters, Sampling
from integrations.langfuse_rounds import RoundPull, discard_pending, pending_pull, prepare_round, pull_into_round

app = typer.Typer(
    help="evalboard: error analysis and validated LLM judges for LLM apps.\n\n"
         "Data lives in SQLite under $EVALBOARD_HOME (default ~/.evalboard) unless "
         "EVALBOARD_DATABASE_URL points elsewhere (e.g. postgresql+psycopg://...).",
    no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")
pull_app = typer.Typer(help="Pull traces from outside systems into a round.", no_args_is_help=True)
app.add_typer(pull_app, name="pull")
app.add_typer(__import__("cli.push", fromlist=["cli"]).cli)  # `push langfuse`, `export-judge` (cli/push.py)

ROOT = Path(__file__).resolve().parent.parent


def _store() -> Store:
    try:
        return Store()
    except Exception as exc:  # noqa: BLE001 - any connection problem is a configuration error
        typer.echo(f"Cannot open the database: {exc}", err=True)
        raise typer.Exit(2) from exc


def _project_id(store: Store, name: str | None, create: bool = False) -> int:
    if name is None:
        projects = store.list_projects()
        if len(projects) == 1:
            return projects[0].id  # type: ignore[return-value]
        names = ", ".join(p.name for p in projects) or "none yet"
        typer.echo(f"Choose a project with --project (projects: {names}).", err=True)
        raise typer.Exit(2)
    project = store.project_by_name(name)
    if project is None:
        if not create:
            typer.echo(f"No project named '{name}'.", err=True)
            raise typer.Exit(2)
        project = store.create_project(name)
        typer.echo(f"Created project '{name}'.")
    return project.id  # type: ignore[return-value]


def _parse_map(items: list[str]) -> FieldMapping | None:
    if not items:
        return None
    values: dict[str, object] = {}
    for item in items:
        key, sep, field = item.partition("=")
        if not sep or key not in FieldMapping.model_fields:
            typer.echo(f"--map {item!r}: expected PART=FIELD with PART one of "
                       f"{', '.join(FieldMapping.model_fields)}.", err=True)
            raise typer.Exit(2)
        values[key] = [f.strip() for f in field.split(",")] if key == "metadata" else field.strip()
    return FieldMapping.model_validate(values)


@app.command("import")
def import_cmd(
    files: list[Path] = typer.Argument(..., help="JSONL, JSON, CSV or Parquet files.", exists=False),
    project: str | None = typer.Option(None, "--project", "-p", help="Project name (created if missing)."),
    round_name: str | None = typer.Option(None, "--round", "-r", help="Also put the traces in this round."),
    fmt: str | None = typer.Option(None, "--format", help="jsonl, json, csv or parquet (default: by extension)."),
    mapping: list[str] = typer.Option([], "--map", help="Field mapping for unrecognised shapes, "
                                      "e.g. --map input=question --map output=reply --map id=uuid."),
) -> None:
    """Import traces from local files; bad rows are reported with file and line, good rows kept.

    Re-importing a file adds nothing twice. Shapes recognised without --map: OpenAI chat
    `messages`, Langfuse-style traces with `observations`, input/output-like columns.
    """
    store = _store()
    pid = _project_id(store, project or "default", create=True)
    field_map = _parse_map(mapping)
    failed = False
    for path in files:
        try:
            report = import_file(store, pid, path, fmt=fmt, mapping=field_map, round_name=round_name)
        except (FileImportError, StoreError) as exc:
            typer.echo(str(exc), err=True)
            failed = True
            continue
        typer.echo(report.summary())
        for issue in report.issues[:20]:
            typer.echo(f"  {issue}", err=True)
        if len(report.issues) > 20:
            typer.echo(f"  ... and {report.skipped - 20} more bad rows", err=True)
    raise typer.Exit(1 if failed else 0)


@app.command()
def demo(replace: bool = typer.Option(False, help="Delete and recreate an existing demo project.")) -> None:
    """Create the demo project: a fictional docs assistant (offline, deterministic)."""
    store = _store()
    pid = create_demo(store, replace=replace)
    typer.echo(f"Demo project '{DEMO_NAME}' ready ({store.project_overview(pid)['traces']} traces).")


@app.command()
def projects() -> None:
    """List projects with their trace and round counts."""
    store = _store()
    for p in store.list_projects():
        counts = store.project_overview(p.id)  # type: ignore[arg-type]
        typer.echo(f"{p.name}\t{counts['traces']} traces\t{counts['rounds']} rounds")


@app.command()
def serve(
    port: int = typer.Option(8501, help="Port to listen on."),
    address: str = typer.Option("127.0.0.1", help="Address to bind; anything but 127.0.0.1 needs login."),
    demo_on_empty: bool = typer.Option(True, "--demo/--no-demo",
                                       help="Create the demo project when the database is empty."),
) -> None:
    """Start the app (Streamlit) on the configured database."""
    store = _store()
    if demo_on_empty and not store.list_projects():
        create_demo(store)
        typer.echo(f"Empty database: created the demo project '{DEMO_NAME}'.")
    store.dispose()
    if address not in ("127.0.0.1", "localhost", "::1") and not (_read_secrets() or {}).get("auth"):
        typer.echo(f"Warning: no login is configured, yet the app will listen on {address}: anyone "
                   "who can reach it sees every trace and label. Configure login first ([auth] and "
                   "[evalboard] allowed_emails in .streamlit/secrets.toml).", err=True)
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
           "--server.port", str(port), "--server.address", address,
           "--browser.gatherUsageStats", "false"]
    raise typer.Exit(subprocess.call(cmd, cwd=ROOT, env=os.environ.copy()))


# --------------------------------------------------------------------------------- pull langfuse
_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*(m|min|h|d|w)$")
_AGE_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, option: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 date or date-time (UTC unless it carries an offset), or an age before `now`
    such as 30m, 24h, 7d, 2w. Bad input stops the command with exit code 2, naming the option."""
    value = text.strip()
    age = _AGE.match(value.lower())
    if age:
        return (now or datetime.now(UTC)) - timedelta(**{_AGE_UNITS[age.group(2)]: float(age.group(1))})
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        typer.echo(f"{option} {text!r}: expected a date or time such as 2026-10-01, 2026-10-01T12:00 or "
                   "2026-10-01T12:00+02:00 (UTC unless an offset is given), or an age such as 30m, 24h, 7d, 2w.",
                   err=True)
        raise typer.Exit(2) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _secrets_paths() -> list[Path]:
    """Where Streamlit looks for secrets (global, then the app's folder and the working folder;
    later files win), so the CLI finds the keys the app uses."""
    paths = [Path.home() / ".streamlit" / "secrets.toml", ROOT / ".streamlit" / "secrets.toml",
             Path.cwd() / ".streamlit" / "secrets.toml"]
    return list(dict.fromkeys(p.resolve() for p in paths))


def _read_secrets() -> dict[str, Any] | None:
    merged: dict[str, Any] = {}
    for path in _secrets_paths():
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            typer.echo(f"Cannot read {path}: {exc}", err=True)
            raise typer.Exit(2) from exc
        for key, value in data.items():  # tables merge, so a later file can set one key of [langfuse]
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged or None


def _pull_project(store: Store, name: str | None) -> int:
    """--project NAME (made if missing); without it the only project, or 'default' in an empty database."""
    if name is None and not store.list_projects():
        name = "default"
    return _project_id(store, name, create=name is not None)


class _Printer:
    """Progress on the terminal: a rich progress bar on a TTY, otherwise one plain line per step."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.bar: Any = None
        self.task: Any = None
        self.phase = ""
        self.waiting: str | None = None

    def __enter__(self) -> "_Printer":
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("{task.fields[note]}"), transient=False)
            self.bar.__enter__()
            self.task = self.bar.add_task("Finding matching traces", total=None, note="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, pull: RoundPull) -> None:
        if self.tty:
            note = pull.waiting or (f"{pull.added} new, {pull.duplicates} already here" if pull.planned else "")
            described = "Pulling traces" if pull.planned else "Finding matching traces"
            self.bar.update(self.task, description=described, total=pull.planned or None, completed=pull.done, note=note)
            return
        if pull.waiting and pull.waiting != self.waiting:
            typer.echo(f"  {pull.waiting}")
        self.waiting = pull.waiting
        if pull.phase == self.phase and pull.phase != "batch":
            return
        self.phase = pull.phase
        if pull.phase == "listing":
            typer.echo("Finding matching traces...")
        elif pull.phase == "planned" and not pull.already_complete:
            resumed = f" (continuing: {pull.done_before} already pulled)" if pull.resumed else ""
            typer.echo(f"{pull.planned} of {pull.matched} matching traces to pull{resumed}.")
        elif pull.phase == "batch":
            typer.echo(f"  {pull.done}/{pull.planned} traces ({pull.added} new, {pull.duplicates} already here)")


@pull_app.command("langfuse")
def pull_langfuse(
    round_name: str = typer.Option(..., "--round", "-r", help="Round to pull into (made if missing). "
                                   "Run again with the same round to continue an interrupted pull."),
    since: str | None = typer.Option(None, "--since", help="Traces started at or after: 2026-10-01, "
                                     "2026-10-01T12:00 (UTC unless an offset is given), or an age: 30m, 24h, 7d, 2w."),
    until: str | None = typer.Option(None, "--until", help="Traces started before (same forms as --since). "
                                     "Default: now."),
    tag: list[str] = typer.Option([], "--tag", help="Only traces with this tag; repeat for traces with all of them."),
    env: list[str] = typer.Option([], "--env", help="Only this environment; repeat for any of several."),
    name: str | None = typer.Option(None, "--name", help="Only traces with this name."),
    user: str | None = typer.Option(None, "--user", help="Only this user id."),
    session: str | None = typer.Option(None, "--session", help="Only this session id."),
    release: str | None = typer.Option(None, "--release", help="Only this release."),
    trace_version: str | None = typer.Option(None, "--trace-version", help="Only this version (of the trace's root step)."),
    sample: int | None = typer.Option(None, "--sample", "-n", help="Take N traces: the latest N, or a random N "
                                      "with --random. Default: all matching traces."),
    random_sample: bool = typer.Option(False, "--random", help="With --sample: a uniform random sample."),
    seed: int | None = typer.Option(None, "--seed", help="With --random: the seed (drawn and recorded when not given)."),
    project: str | None = typer.Option(None, "--project", "-p", help="Project name (made if missing). "
                                       "Default: the only project."),
    restart: bool = typer.Option(False, "--restart", help="Discard an interrupted pull into this round "
                                 "instead of continuing it."),
) -> None:
    """Pull traces from Langfuse into a round, with their steps, scores, tokens and cost.

    Keys come from LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY and LANGFUSE_BASE_URL, or from
    .streamlit/secrets.toml. Nothing is imported twice: a rerun of a finished pull adds nothing,
    and a rerun after an interruption (Ctrl-C, error, killed) continues where it stopped.
    Exit codes: 0 done, 1 the pull failed (server errors after retries, network), 2 bad options
    or configuration (no keys, keys rejected with 401/403, wrong URL, bad dates), 130 Ctrl-C.
    """
    now = datetime.now(UTC)
    if sample is not None and sample < 1:
        typer.echo(f"--sample must be a positive number of traces, got {sample}.", err=True)
        raise typer.Exit(2)
    if random_sample and sample is None:
        typer.echo("--random needs --sample N (how many traces to draw).", err=True)
        raise typer.Exit(2)
    if seed is not None and not random_sample:
        typer.echo("--seed only applies to a random sample: add --random --sample N.", err=True)
        raise typer.Exit(2)
    start = parse_when(since, "--since", now) if since else None
    end = parse_when(until, "--until", now) if until else None
    if start is not None and end is not None and start >= end:
        typer.echo(f"--since ({start.isoformat()}) must be before --until ({end.isoformat()}).", err=True)
        raise typer.Exit(2)
    filters = PullFilters(since=start, until=end, environment=tuple(env), trace_name=name, tags=tuple(tag),
                          user_id=user, session_id=session, release=release, version=trace_version)
    sampling = Sampling("random" if random_sample else "latest", sample, seed)
    try:
        settings = LangfuseSettings.resolve(secrets=_read_secrets())
    except LangfuseConfigError as exc:
        typer.echo(f"{exc}.", err=True)
        raise typer.Exit(2) from exc

    store = _store()
    pid = _pull_project(store, project)
    try:
        rnd, created = prepare_round(store, pid, round_name)
    except StoreError as exc:
        typer.echo(f"--round: {exc}", err=True)
        raise typer.Exit(2) from exc
    pending = pending_pull(store, rnd.id) if not created else None  # type: ignore[arg-type]
    if pending is not None and restart:
        discard_pending(store, rnd.id)  # type: ignore[arg-type]
        typer.echo(f"Discarded the interrupted pull into round '{rnd.name}'.")
    elif pending is not None:
        filters, sampling = pending.filters, pending.sampling
        typer.echo(f"Round '{rnd.name}': {pending.describe()} Continuing it with its own options "
                   "(--restart discards it instead).")
    typer.echo(f"Pulling from Langfuse at {settings.base_url} into {'new ' if created else ''}round '{rnd.name}'.")
    try:
        with _Printer(sys.stdout.isatty()) as printer:
            result = pull_into_round(store, settings, pid, rnd.id, filters, sampling, on_progress=printer)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        typer.echo("\nStopped. Run the same command again to continue where it stopped.", err=True)
        raise typer.Exit(130) from None
    if result.status == "done":
        typer.echo(result.summary())
        if result.sampling.get("seed") is not None:
            typer.echo(f"Random sample drawn with seed {result.sampling['seed']} (recorded on the round).")
        raise typer.Exit(0)
    typer.echo(result.summary(), err=True)
    raise typer.Exit(2 if result.config_error else 1)


@app.command("export")
def export_cmd(
    project: str = typer.Argument(..., help="Name of the project to back up."),
    file: Path = typer.Argument(..., help="File to write: .jsonl, or .jsonl.gz to compress."),
) -> None:
    """Back up a whole project to one file.

    Everything the project holds goes in: traces, rounds, labels and their history, failure
    modes and taxonomy history, judges with versions, runs and verdicts, and settings (never
    secrets)."""
    from evalboard.backup import BackupError, export_project

    store = _store()
    pid = _project_id(store, project)
    try:
        report = export_project(store, pid, file)
    except (BackupError, OSError) as exc:
        typer.echo(f"Export failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(report.summary())


@app.command("restore")
def restore_cmd(
    file: Path = typer.Argument(..., help="A file written by `evalboard export`."),
    as_name: str | None = typer.Option(None, "--as", help="Restore under this project name."),
) -> None:
    """Restore a project backup into this database as a new project.

    Every row gets a new id, so the project can sit beside others. All or nothing: a damaged or
    incomplete file restores nothing."""
    from evalboard.backup import restore_project

    store = _store()
    try:
        report = restore_project(store, file, name=as_name)
    except StoreError as exc:  # BackupError is a StoreError
        typer.echo(f"Restore failed: {exc}", err=True)
        raise typer.Exit(2 if "already exists" in str(exc) else 1) from exc
    typer.echo(report.summary())


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("heads", help="Target revision (default: the newest).")) -> None:
    """Apply schema migrations (the app and every command also do this at start)."""
    store = Store(migrate=False)
    before = store.schema_revision()
    store.upgrade(revision)
    typer.echo(f"Database schema: {before or 'empty'} -> {store.schema_revision()}.")


from cli.production import judge_app, prevalence_cmd  # noqa: E402 - after the helpers it uses

app.add_typer(judge_app, name="judge")
app.command("prevalence")(prevalence_cmd)

if __name__ == "__main__":
    app()
