"""Keys never leak: run the main flows with recognisable fake keys, then search everything they
left behind for those keys. Zero hits allowed in each place:

- the database: a full SQL dump of every table, and the raw bytes of the database file and its
  write-ahead log (what a copied file or a backup tape holds);
- the project export (`evalboard export`);
- logs: every log record at DEBUG level from every library, and what the CLI printed;
- error messages: keys rejected (401), servers down, a missing environment variable;
- the running app: the HTML of every page and every byte the server sent over the websocket,
  and the app server's own output.

Flows: LLM calls (complete, structured, a batch via map, a 401 whose body quotes the key), a
Langfuse connection test and pull (SDK and CLI), a target run whose Authorization header is
`Bearer ${ENV:APP_TOKEN}`, and a database URL with a password that cannot connect.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from evalboard import query_store as qs
from evalboard.backup import export_project
from evalboard.store import Store

ROOT = Path(__file__).resolve().parents[2]
LLM_KEY = "sk-test-CANARY-123"
LF_PUBLIC = "pk-lf-CANARY"
LF_SECRET = "sk-lf-CANARY"
TARGET_TOKEN = "tok-CANARY-target"
DB_PASSWORD = "pw-CANARY-db"
CANARIES = [LLM_KEY, LF_PUBLIC, LF_SECRET, TARGET_TOKEN, DB_PASSWORD]


class Verdict(BaseModel):
    verdict: str
    reason: str


@dataclass
class Leftovers:
    """Everything the flows left behind, by place."""

    places: dict[str, str] = field(default_factory=dict)
    home: Path = Path()
    db_url: str = ""

    def add(self, place: str, text: str) -> None:
        self.places[place] = self.places.get(place, "") + "\n" + text


class _Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(f"{record.name}: {record.getMessage()}")
        except Exception as exc:  # noqa: BLE001 - a record that cannot format is still a record
            self.lines.append(f"{record.name}: {record.msg!r} {record.args!r} ({exc})")


def _llm_flows(store: Store, out: Leftovers) -> None:
    from integrations.llm import LLMCallError, LLMClient, LLMSettings
    from tests.fakes.openai_server import FakeOpenAI

    with FakeOpenAI(api_key=LLM_KEY) as fake:
        client = LLMClient(LLMSettings(base_url=fake.base_url, api_key=LLM_KEY, model="fake-model",
                                       retry_base_delay=0.01, max_retries=1), cache=store.llm_cache())
        client.complete([{"role": "user", "content": "hello"}], feature="test")
        client.structured([{"role": "user", "content": "judge this"}], Verdict, feature="test")
        client.map(["a", "b", "c"], lambda q: client.complete([{"role": "user", "content": q}]), concurrency=2)
        fake.fail_next(2, 500)
        try:
            client.complete([{"role": "user", "content": "server down"}], use_cache=False)
        except LLMCallError as exc:
            out.add("errors", f"{exc} {exc!r}")
        out.add("errors", repr(client) + repr(client.settings))
    with FakeOpenAI(api_key="sk-the-right-one") as strict:  # our key is wrong here: 401 quoting it
        client = LLMClient(LLMSettings(base_url=strict.base_url, api_key=LLM_KEY, model="fake-model", max_retries=0))
        with pytest.raises(LLMCallError) as rejected:
            client.complete([{"role": "user", "content": "hello"}])
        assert "401" in str(rejected.value)
        out.add("errors", f"{rejected.value} {rejected.value!r} {rejected.value.__cause__!r}")


def _langfuse_flows(store: Store, out: Leftovers) -> None:
    from integrations.langfuse import LangfuseSettings, PullFilters, RetryPolicy, test_connection
    from integrations.langfuse_rounds import prepare_round, pull_into_round
    from tests.fakes.langfuse_data import BASE_TIME
    from tests.fakes.langfuse_server import FakeLangfuse

    with FakeLangfuse(traces=60, seed=3, public_key=LF_PUBLIC, secret_key=LF_SECRET) as fake:
        settings = LangfuseSettings(public_key=LF_PUBLIC, secret_key=LF_SECRET, base_url=fake.url, timeout=5.0)
        out.add("errors", f"{settings!r} {settings.masked()} {test_connection(settings)!r}")
        wrong = LangfuseSettings(public_key=LF_PUBLIC, secret_key=LF_SECRET + "-wrong", base_url=fake.url, timeout=5.0)
        report = test_connection(wrong)
        assert not report.ok
        out.add("errors", f"{report!r}")
        pid = store.create_project("Pulled").id
        rnd, _ = prepare_round(store, pid, "from langfuse")
        window = PullFilters(since=BASE_TIME - timedelta(days=1), until=BASE_TIME + timedelta(days=30))
        result = pull_into_round(store, settings, pid, rnd.id, window, retry=RetryPolicy(max_retries=1, base_delay=0.01))
        assert result.status == "done" and result.added == 60
        env = {**os.environ, "EVALBOARD_DATABASE_URL": store.url, "LANGFUSE_PUBLIC_KEY": LF_PUBLIC,
               "LANGFUSE_SECRET_KEY": LF_SECRET, "LANGFUSE_BASE_URL": fake.url}
        cli = subprocess.run([sys.executable, "-m", "cli.main", "pull", "langfuse", "--round", "cli pull",
                              "--project", "Pulled", "--since", window.since.isoformat(),
                              "--until", window.until.isoformat()],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr[-2000:]
        out.add("cli output", cli.stdout + cli.stderr)
        env["LANGFUSE_SECRET_KEY"] = LF_SECRET + "-wrong"
        refused = subprocess.run([sys.executable, "-m", "cli.main", "pull", "langfuse", "--round", "refused",
                                  "--project", "Pulled"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2
        out.add("cli output", refused.stdout + refused.stderr)


def _target_flow(store: Store, out: Leftovers) -> None:
    from integrations.target import HttpTarget, TargetError, run_target, save_target, start_run
    from tests.fakes.target_app import TargetApp

    pid = store.create_project("Targeted").id
    tup = qs.add_tuples(store, pid, [{"persona": "expert"}], "manual").ids[0]
    qs.add_queries(store, pid, [qs.NewQuery(text=f"question {i}", tuple_id=tup, dimensions={"persona": "expert"},
                                            status="kept") for i in range(6)])
    with TargetApp(token=TARGET_TOKEN) as app:
        target = HttpTarget(name="my app", url=app.url("/chat"), headers={"Authorization": "Bearer ${ENV:APP_TOKEN}"},
                            body_template='{"query": "{{query}}"}', answer_path="data.answer")
        run = start_run(store, pid, save_target(store, pid, target), round_name="target run")
        report = run_target(store, run.id, env={"APP_TOKEN": TARGET_TOKEN}, retry_base_delay=0.01)
        assert report.succeeded == 6
        run2 = start_run(store, pid, qs.get_target(store, qs.list_targets(store, pid)[0].id).id, round_name="no env")
        with pytest.raises(TargetError) as missing:
            run_target(store, run2.id, env={})
        out.add("errors", str(missing.value))


def _database_url_flow(out: Leftovers) -> None:
    env = {**os.environ, "EVALBOARD_DATABASE_URL": f"postgresql+psycopg://evalboard:{DB_PASSWORD}@127.0.0.1:1/nowhere"}
    failed = subprocess.run([sys.executable, "-m", "cli.main", "projects"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2 and "Cannot open the database" in failed.stderr
    out.add("cli output", failed.stdout + failed.stderr)


def _database_dump(store: Store, home: Path, out: Leftovers) -> None:
    with sqlite3.connect(home / "evalboard.db") as conn:
        out.add("database dump", "\n".join(conn.iterdump()))
    raw = b"".join(p.read_bytes() for p in home.glob("evalboard.db*"))
    out.add("database files", raw.decode("latin-1"))


@pytest.fixture(scope="module")
def leftovers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Leftovers]:
    home = tmp_path_factory.mktemp("secrets")
    out = Leftovers(home=home, db_url=f"sqlite:///{home / 'evalboard.db'}")
    handler = _Everything()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        store = Store(out.db_url)
        _llm_flows(store, out)
        _langfuse_flows(store, out)
        _target_flow(store, out)
        _database_url_flow(out)
        for project in store.list_projects():
            report = export_project(store, project.id, home / f"export-{project.id}.jsonl")
            out.add("exports", report.path.read_text() + report.summary())
        store.dispose()
        _database_dump(store, home, out)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    out.add("logs", "\n".join(handler.lines))
    yield out


@pytest.mark.parametrize("place", ["database dump", "database files", "exports", "logs", "errors", "cli output"])
def test_no_key_in(leftovers: Leftovers, place: str) -> None:
    text = leftovers.places[place]
    assert len(text) > 200  # the flows did leave something here to search
    hits = [c for c in CANARIES if c in text]
    assert hits == [], f"{hits} found in {place}: ...{text[max(0, text.find(hits[0]) - 200):][:400]}..."


def test_the_flows_really_used_the_keys(leftovers: Leftovers) -> None:
    """The searches above mean something: the data the keys fetched is there, and the logs saw
    the requests that carried the keys."""
    store = Store(leftovers.db_url)
    names = [p.name for p in store.list_projects()]
    assert {"Pulled", "Targeted"} <= set(names)
    assert store.count_traces(store.project_by_name("Pulled").id) == 60
    assert store.count_traces(store.project_by_name("Targeted").id) == 6
    assert "/v1/chat/completions" in leftovers.places["logs"] or "chat/completions" in leftovers.places["logs"]
    store.dispose()


@pytest.mark.browser
def test_running_app_shows_and_logs_no_key(leftovers: Leftovers, browser, tmp_path: Path) -> None:  # noqa: ANN001
    """The app, with every key in its secrets file and APP_TOKEN in its environment: no page's
    HTML, no websocket message and none of its output holds a key."""
    from tests.browser.conftest import free_port, wait_for_run
    from ui.navigation import SECTIONS

    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[llm]\nbase_url = "http://127.0.0.1:9/v1"\napi_key = "{LLM_KEY}"\nmodel = "m"\n\n'
                       f'[langfuse]\npublic_key = "{LF_PUBLIC}"\nsecret_key = "{LF_SECRET}"\n'
                       f'base_url = "http://127.0.0.1:9"\n\n[myapp]\ntoken = "{TARGET_TOKEN}"\n')
    port = free_port()
    log = tmp_path / "app.log"
    env = {**os.environ, "EVALBOARD_DATABASE_URL": leftovers.db_url, "EVALBOARD_HOME": str(leftovers.home),
           "APP_TOKEN": TARGET_TOKEN}
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none", "--global.developmentMode", "false", "--logger.level", "debug",
             "--secrets.files", str(secrets)], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    frames: list[bytes] = []
    pages: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        page = browser.new_page()
        page.on("websocket", lambda ws: ws.on("framereceived", lambda p: frames.append(
            p if isinstance(p, bytes) else p.encode())))
        for file, _title, _icon in (p for section in SECTIONS.values() for p in section):
            path = "" if file.endswith("home.py") else Path(file).stem
            page.goto(f"{url}/{path}")
            wait_for_run(page)
            pages[path or "home"] = page.content()
        page.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert len(pages) == sum(len(s) for s in SECTIONS.values()) and frames
    assert "sk-…-123" in pages["settings"]  # the app did read the keys: it shows them masked
    for name, html in pages.items():
        assert [c for c in CANARIES if c in html] == [], f"a key in the HTML of page {name}"
    wire = b"".join(frames)
    assert [c for c in CANARIES if c.encode() in wire] == [], "a key went over the websocket"
    output = log.read_text()
    assert "Uvicorn server started" in output or "You can now view" in output
    assert [c for c in CANARIES if c in output] == [], "a key in the app's output"
