"""Login, for real: a local OpenID Connect provider (oidc-provider-mock) on 127.0.0.1, the app
started with `streamlit run` and an [auth] secrets file of its own, and Chromium.

Unauthenticated browsers and people outside the allowlist see the login screen only: no page,
no project name, no trace text, neither in the page nor in anything the server sent over the
websocket. An allowed person logs in, sees the data, and labels under their login.
The allowlist rules and the screens are also checked without a browser (AppTest).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from streamlit.testing.v1 import AppTest

from evalboard.demo import DEMO_NAME
from evalboard.store import Store
from tests.browser.conftest import free_port, serve_app, wait_for_run
from ui.auth import Allowlist

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = "ana@example.com"
OUTSIDER = "eve@evil.example"
UNVERIFIED = "mallory@example.com"  # listed, but the provider says the address is not verified


# -- the allowlist, without a browser ----------------------------------------------------------

def test_allowlist_rules() -> None:
    rules = Allowlist.from_secrets({"evalboard": {"allowed_emails": ["Ana@Example.com "],
                                                  "allowed_domains": ["@team.example", "corp.example"]}})
    assert rules.allows("ana@example.com") and rules.allows("ANA@example.COM", True)
    assert rules.allows("bob@team.example") and rules.allows("x@corp.example", "true")
    assert not rules.allows("ana@example.com", False) and not rules.allows("ana@example.com", "false")
    for refused in ["eve@evil.example", "bob@eu.team.example", "team.example", "@team.example",
                    "bob@team.example.evil.example", "ana@example.com@evil.example", "", None]:
        assert not rules.allows(refused), refused
    assert Allowlist.from_secrets({"evalboard": {"allowed_emails": "a@x.org, b@y.org"}}).allows("b@y.org")
    assert Allowlist.from_secrets({}).is_empty()
    with pytest.raises(ValueError, match="allowed_domains must be a list"):
        Allowlist.from_secrets({"evalboard": {"allowed_domains": 5}})


def test_unreadable_secrets_file_fails_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A secrets file that exists but does not parse must not silently turn login off."""
    import ui.auth as auth

    class Broken:
        def to_dict(self) -> dict:
            raise FileNotFoundError("Error parsing secrets file")

    broken = tmp_path / "secrets.toml"
    broken.write_text("[auth\nredirect_uri = ")
    monkeypatch.setattr(auth.st, "secrets", Broken())
    monkeypatch.setattr(auth.st, "get_option", lambda name: [str(broken)])
    with pytest.raises(auth.SecretsUnreadable):
        auth.read_secrets()
    monkeypatch.setattr(auth.st, "get_option", lambda name: [str(tmp_path / "missing.toml")])
    assert auth.read_secrets() == {}  # no secrets file at all: the app runs without login


AUTH = {"redirect_uri": "http://127.0.0.1:1/oauth2callback", "cookie_secret": "x" * 32, "client_id": "c",
        "client_secret": "s", "server_metadata_url": "http://127.0.0.1:1/.well-known/openid-configuration"}


def _apptest(app_env: str, user: dict, secrets: dict) -> AppTest:
    from evalboard.demo import create_demo

    create_demo(Store(app_env))
    at = AppTest.from_file("../../app.py", default_timeout=30)
    for key, value in secrets.items():
        at.secrets[key] = value
    at.user = user
    return at.run()


def _everything(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "title", "caption", "error", "info", "warning", "subheader")
             for e in at.get(kind) if isinstance(getattr(e, "value", None), str)]
    return " ".join(parts + [str(s.options) for s in at.selectbox])


def test_login_screen_only_without_login(app_env: str) -> None:
    at = _apptest(app_env, {"is_logged_in": False}, {"auth": AUTH, "evalboard": {"allowed_emails": [ALLOWED]}})
    assert not at.exception
    assert [b.label for b in at.button] == ["Log in"]
    assert at.selectbox.len == 0 and at.sidebar.selectbox.len == 0  # no project picker, no page
    assert DEMO_NAME not in _everything(at)


def test_outsider_and_empty_allowlist_are_refused(app_env: str) -> None:
    at = _apptest(app_env, {"is_logged_in": True, "email": OUTSIDER},
                  {"auth": AUTH, "evalboard": {"allowed_emails": [ALLOWED]}})
    assert any("is not allowed" in e.value for e in at.error) and DEMO_NAME not in _everything(at)
    assert [b.label for b in at.button] == ["Log out"]
    nobody = _apptest(app_env, {"is_logged_in": True, "email": ALLOWED}, {"auth": AUTH})
    assert any("No one is allowed yet" in c.value for c in nobody.caption)
    assert DEMO_NAME not in _everything(nobody)


def test_allowed_user_labels_under_the_login(app_env: str) -> None:
    at = _apptest(app_env, {"is_logged_in": True, "email": "Ana@Example.com"},
                  {"auth": AUTH, "evalboard": {"allowed_domains": ["example.com"]}})
    assert not at.exception
    assert any(ALLOWED in c.value for c in at.sidebar.caption)
    assert at.sidebar.text_input.len == 0  # no name box: the login says who labels
    at.switch_page("app_pages/annotate.py").run()
    assert not at.exception
    assert not any("Who is labelling" in i.value for i in at.info)


def test_without_login_the_sidebar_says_who_can_reach_the_app(app_env: str) -> None:
    at = _apptest(app_env, {}, {})
    assert not at.exception and at.sidebar.text_input.len == 1
    notes = " ".join(c.value for c in at.sidebar.caption) + " ".join(w.value for w in at.sidebar.warning)
    assert "No login configured" in notes


# -- for real: OIDC provider, app server, Chromium ---------------------------------------------

@dataclass
class LoginApp:
    url: str
    provider: str
    secret_words: list[str]  # text that must never reach an unauthenticated browser
    log: Path


@pytest.fixture(scope="module")
def login_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoginApp]:
    import oidc_provider_mock
    import werkzeug.serving

    home = tmp_path_factory.mktemp("login")
    provider = werkzeug.serving.make_server("127.0.0.1", 0, oidc_provider_mock.app(require_nonce=True), threaded=True)
    threading.Thread(target=provider.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    issuer = f"http://127.0.0.1:{provider.server_port}"
    # The provider's users: one listed but with an unverified address.
    httpx.put(f"{issuer}/users/{UNVERIFIED}", json={"email": UNVERIFIED, "email_verified": False}).raise_for_status()

    port = free_port()
    secrets = home / "secrets.toml"  # never the repository's .streamlit/secrets.toml
    secrets.write_text(f"""
[auth]
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
cookie_secret = "cookie-secret-for-the-login-test-0123456789"
client_id = "evalboard-test"
client_secret = "client-secret-for-the-login-test"
server_metadata_url = "{issuer}/.well-known/openid-configuration"

[evalboard]
allowed_emails = ["{ALLOWED}", "{UNVERIFIED}"]
allowed_domains = ["team.example"]
""")
    db_url = f"sqlite:///{home / 'evalboard.db'}"
    env = {**os.environ, "EVALBOARD_DATABASE_URL": db_url, "EVALBOARD_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "cli.main", "demo"], cwd=ROOT, env=env, check=True, capture_output=True)
    store = Store(db_url)
    pid = store.list_projects()[0].id
    previews = store.list_traces(pid, limit=3)["input_preview"].tolist()
    words = [DEMO_NAME, "Round 1", *(p[:30] for p in previews)]
    store.dispose()
    log = home / "streamlit.log"
    with serve_app(env, home, ["--secrets.files", str(secrets)], port=port) as url:
        yield LoginApp(url, issuer, words, log)
    provider.shutdown()


class Wire:
    """Everything the app server sent to one browser page over the websocket."""

    def __init__(self, page: Page) -> None:
        self.frames: list[bytes] = []
        page.on("websocket", lambda ws: ws.on("framereceived", self._add))

    def _add(self, payload: bytes | str) -> None:
        self.frames.append(payload if isinstance(payload, bytes) else payload.encode())

    def has(self, word: str) -> bool:
        return any(word.encode() in f for f in self.frames)


def _log_in(page: Page, app: LoginApp, who: str) -> None:
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{app.provider}/**")
    page.locator("input[name=sub]").fill(who)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{app.url}/**")
    wait_for_run(page)


def _assert_no_data(page: Page, wire: Wire, app: LoginApp) -> None:
    html = page.content()
    for word in app.secret_words:
        assert word not in html, word
        assert not wire.has(word), word
    assert page.locator("[data-testid='stSidebarNav']").count() == 0




@pytest.mark.browser
@pytest.mark.parametrize("path", ["/", "/annotate?trace=5"])
def test_unauthenticated_browser_gets_the_login_screen_only(login_app: LoginApp, browser: Browser, path: str) -> None:
    page = browser.new_page()
    wire = Wire(page)
    page.goto(login_app.url + path)
    wait_for_run(page)
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    _assert_no_data(page, wire, login_app)
    assert wire.frames  # the check above did look at what the server sent
    page.close()


@pytest.mark.browser
@pytest.mark.parametrize("who", [ALLOWED])  # allowed domains: test_allowlist_rules and the AppTest test
def test_allowed_user_logs_in_sees_the_data_and_logs_out(login_app: LoginApp, browser: Browser, who: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    wire = Wire(page)
    page.goto(login_app.url)
    wait_for_run(page)
    _log_in(page, login_app, who)
    expect(page.get_by_text(DEMO_NAME).first).to_be_visible()  # the home page names the project
    assert wire.has(DEMO_NAME)  # so the wire checks of the refused cases can see data when sent
    expect(page.locator("[data-testid='stSidebar']")).to_contain_text(f"Signed in as {who}")
    page.goto(f"{login_app.url}/traces")  # the login cookie carries over to deep links
    wait_for_run(page)
    expect(page.get_by_text(re.compile(r"^[\d,]+ traces match"))).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{login_app.provider}/oauth2/end_session**")  # the provider ends its session too
    page.get_by_role("button", name="End session").click()
    page.wait_for_url(f"{login_app.url}/**")
    page.goto(login_app.url)
    wait_for_run(page)
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    context.close()


@pytest.mark.browser
@pytest.mark.parametrize("who", [OUTSIDER, UNVERIFIED])
def test_logged_in_user_outside_the_allowlist_is_refused(login_app: LoginApp, browser: Browser, who: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    wire = Wire(page)
    page.goto(login_app.url)
    wait_for_run(page)
    _log_in(page, login_app, who)
    expect(page.get_by_text("is not allowed to open this evalboard")).to_be_visible()
    for path in ("/traces", "/annotate"):
        page.goto(login_app.url + path)
        wait_for_run(page)
        expect(page.get_by_text("is not allowed to open this evalboard")).to_be_visible()
    _assert_no_data(page, wire, login_app)
    context.close()


def test_serve_warns_only_when_exposed_without_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`evalboard serve --address 0.0.0.0` warns when no [auth] is configured."""
    from typer.testing import CliRunner

    import cli.main as cli

    calls: list[list[str]] = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    monkeypatch.setenv("EVALBOARD_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setattr(cli, "_read_secrets", lambda: None)
    runner = CliRunner()
    exposed = runner.invoke(cli.app, ["serve", "--address", "0.0.0.0", "--no-demo"])
    assert exposed.exit_code == 0 and "no login is configured" in exposed.output
    local = runner.invoke(cli.app, ["serve", "--no-demo"])
    assert "no login" not in local.output
    monkeypatch.setattr(cli, "_read_secrets", lambda: {"auth": AUTH})
    guarded = runner.invoke(cli.app, ["serve", "--address", "0.0.0.0", "--no-demo"])
    assert "no login" not in guarded.output
    assert [c[c.index("--server.address") + 1] for c in calls] == ["0.0.0.0", "127.0.0.1", "0.0.0.0"]
