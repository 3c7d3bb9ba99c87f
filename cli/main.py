"""The `evalboard` command: the same workflow as the app, from a terminal, cron or CI.

It is an entry layer like the pages: it parses arguments, calls evalboard/ and integrations/,
and prints. Exit codes: 0 done, 1 the work failed, 2 bad arguments or configuration.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from evalboard.demo import DEMO_NAME, create_demo
from evalboard.store import Store, StoreError
from integrations.files import FieldMapping, FileImportError, import_file

app = typer.Typer(
    help="evalboard: error analysis and validated LLM judges for LLM apps.\n\n"
         "Data lives in SQLite under $EVALBOARD_HOME (default ~/.evalboard) unless "
         "EVALBOARD_DATABASE_URL points elsewhere (e.g. postgresql+psycopg://...).",
    no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")

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
    """Create the demo project: a fictional docs assistant with 300 traces (offline, deterministic)."""
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
    if address not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"Warning: binding to {address} exposes your traces to the network; "
                   "configure login ([auth] in .streamlit/secrets.toml) first.", err=True)
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
           "--server.port", str(port), "--server.address", address,
           "--browser.gatherUsageStats", "false"]
    raise typer.Exit(subprocess.call(cmd, cwd=ROOT, env=os.environ.copy()))


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply schema migrations (the app and every command also do this at start)."""
    store = Store(migrate=False)
    before = store.schema_revision()
    store.upgrade(revision)
    typer.echo(f"Database schema: {before or 'empty'} -> {store.schema_revision()}.")


if __name__ == "__main__":
    app()
