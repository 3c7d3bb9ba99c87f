"""Langfuse settings resolution, masking, connection test and client factory (real SDK, fake server)."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

import integrations.langfuse as lf
from tests.fakes.langfuse_server import FakeLangfuse, fake_langfuse, fake_langfuse_factory  # noqa: F401 - fixtures


def settings_for(fake: FakeLangfuse, **overrides: object) -> lf.LangfuseSettings:
    values = {"public_key": fake.public_key, "secret_key": fake.secret_key, "base_url": fake.url}
    values.update(overrides)
    return lf.LangfuseSettings(**values)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- settings
def test_explicit_values_beat_env_which_beats_secrets() -> None:
    env = {"LANGFUSE_PUBLIC_KEY": "pk-lf-env-1111", "LANGFUSE_SECRET_KEY": "sk-lf-env-2222", "LANGFUSE_HOST": "https://env.example"}
    secrets = {"langfuse": {"public_key": "pk-lf-sec-3333", "secret_key": "sk-lf-sec-4444", "base_url": "https://sec.example"}}
    s = lf.LangfuseSettings.resolve(public_key="pk-lf-typed-9999", env=env, secrets=secrets)
    assert (s.public_key, s.secret_key, s.base_url) == ("pk-lf-typed-9999", "sk-lf-env-2222", "https://env.example")
    assert s.origins == {"public_key": "session", "secret_key": "env LANGFUSE_SECRET_KEY", "base_url": "env LANGFUSE_HOST"}
    s = lf.LangfuseSettings.resolve(env={}, secrets=secrets)
    assert (s.public_key, s.secret_key, s.base_url) == ("pk-lf-sec-3333", "sk-lf-sec-4444", "https://sec.example")
    s = lf.LangfuseSettings.resolve(env={}, secrets={"LANGFUSE_PUBLIC_KEY": "pk-lf-top-5555", "LANGFUSE_SECRET_KEY": "sk-lf-top-6666"})
    assert s.base_url == "https://cloud.langfuse.com" and s.origins["base_url"] == "default"


def test_base_url_prefers_langfuse_base_url_over_legacy_host() -> None:
    env = {"LANGFUSE_PUBLIC_KEY": "pk", "LANGFUSE_SECRET_KEY": "sk", "LANGFUSE_BASE_URL": "https://new.example/", "LANGFUSE_HOST": "https://old.example"}
    assert lf.LangfuseSettings.resolve(env=env).base_url == "https://new.example"  # trailing slash dropped


def test_missing_keys_say_which_and_where_to_set_them() -> None:
    with pytest.raises(lf.LangfuseConfigError, match=r"secret key \(LANGFUSE_SECRET_KEY\) not set.*Settings page"):
        lf.LangfuseSettings.resolve(public_key="pk-lf-1", env={}, secrets={})
    with pytest.raises(lf.LangfuseConfigError, match="must start with http"):
        lf.LangfuseSettings(public_key="pk", secret_key="sk", base_url="cloud.langfuse.com")


def test_secret_never_shown() -> None:
    s = lf.LangfuseSettings(public_key="pk-lf-abcdef-1234", secret_key="sk-lf-topsecret-5678", base_url="https://x.example")
    for text in (repr(s), str(s), s.masked(), f"{s}", repr([s])):
        assert "topsecret" not in text and "5678" not in text
    assert s.masked() == "pk-lf-…1234 at https://x.example"
    assert s.masked_secret_key == "sk-lf-…5678"
    assert hash(s) == hash(lf.LangfuseSettings(public_key="pk-lf-abcdef-1234", secret_key="sk-lf-topsecret-5678", base_url="https://x.example"))


# ----------------------------------------------------------------------------- connection test
def test_connection_ok(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    report = lf.test_connection(settings_for(fake_langfuse))
    assert report.ok and report.kind == "ok"
    assert report.server_version == "4.16.0" and report.project == "Fake project"
    assert "Connected to Langfuse 4.16.0" in report.message
    assert [r.path for r in fake_langfuse.requests] == ["/api/public/health", "/api/public/projects"]


def test_connection_wrong_keys(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    report = lf.test_connection(settings_for(fake_langfuse, secret_key="sk-lf-wrong"))
    assert not report.ok and report.kind == "bad_keys"
    assert "rejected the keys (401)" in report.message
    assert "sk-lf-wrong" not in report.message + report.detail


def test_connection_refused() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    report = lf.test_connection(lf.LangfuseSettings(public_key="pk", secret_key="sk", base_url=f"http://127.0.0.1:{port}"))
    assert report.kind == "server_down" and "connection refused" in report.message


def test_connection_wrong_path_is_404(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    report = lf.test_connection(settings_for(fake_langfuse, base_url=fake_langfuse.url + "/api"))
    assert report.kind == "wrong_url" and "(404)" in report.message and "without /api" in report.message


def test_connection_unknown_host() -> None:
    report = lf.test_connection(lf.LangfuseSettings(public_key="pk", secret_key="sk", base_url="http://no-such-host.invalid"), timeout=5)
    assert report.kind == "dns" and "could not be found" in report.message


def test_connection_tls_error(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    report = lf.test_connection(settings_for(fake_langfuse, base_url=fake_langfuse.url.replace("http://", "https://")))
    assert report.kind == "tls" and "secure connection" in report.message


def test_connection_rate_limited_says_how_long(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    fake_langfuse.inject(status=429, retry_after=12, count=1)
    report = lf.test_connection(settings_for(fake_langfuse))
    assert report.kind == "rate_limited" and "12 s" in report.message


def test_connection_timeout(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    fake_langfuse.inject(hang=3, count=1)
    report = lf.test_connection(settings_for(fake_langfuse), timeout=0.3)
    assert report.kind == "timeout" and "did not answer in time" in report.message


def test_connection_server_error(fake_langfuse: FakeLangfuse) -> None:  # noqa: F811
    fake_langfuse.inject(status=503, count=1)
    report = lf.test_connection(settings_for(fake_langfuse))
    assert report.kind == "server_error" and "unhealthy" in report.message


@pytest.fixture
def html_server() -> Iterator[str]:
    """A web server that is not Langfuse: every path answers 200 with an HTML page."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>Welcome to nginx!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_connection_not_langfuse(html_server: str) -> None:
    report = lf.test_connection(lf.LangfuseSettings(public_key="pk", secret_key="sk", base_url=html_server))
    assert report.kind == "not_langfuse" and "not a Langfuse server" in report.message


# ----------------------------------------------------------------------------- client factory
def test_make_client_replaces_a_stale_cached_client(fake_langfuse_factory) -> None:  # noqa: F811
    """The SDK caches one client per public key; a fixed secret key must take effect."""
    fake = fake_langfuse_factory(public_key="pk-lf-factory-test")
    wrong = lf.make_client(settings_for(fake, secret_key="sk-typo"))
    try:
        with pytest.raises(Exception):
            wrong.auth_check()
        right = lf.make_client(settings_for(fake))
        assert right.auth_check() is True
        right.create_score(name="tone", value=1.0, trace_id=fake.trace_ids[0] if fake.trace_ids else "t1", score_id="s-1")
        right.flush()
        assert "s-1" in fake.scores
        assert fake.otel_batches == 0  # no spans are started, so nothing goes over OTLP
    finally:
        lf.make_client(settings_for(fake)).shutdown()
