"""The Settings page (AppTest): where each Langfuse and LLM value comes from, keys for this
session only (never rendered in full), and the two connection tests against the fake servers."""

from __future__ import annotations

from typing import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from tests.fakes.langfuse_server import FakeLangfuse
from tests.fakes.langfuse_server import fake_langfuse  # noqa: F401 - fixture
from tests.fakes.openai_server import fake_openai  # noqa: F401 - fixture

APP = "../../app.py"
PAGE = "app_pages/settings.py"
LANGFUSE_ENV = ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_BASE_URL", "LANGFUSE_HOST")
LLM_ENV = ("EVALBOARD_LLM_BASE_URL", "OPENAI_BASE_URL", "EVALBOARD_LLM_API_KEY", "OPENAI_API_KEY", "EVALBOARD_LLM_MODEL")


@pytest.fixture
def clean_env(app_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[str]:  # noqa: ANN001
    """No Langfuse or LLM settings from the machine: no env vars, no secrets file in reach."""
    for name in LANGFUSE_ENV + LLM_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    yield app_env


def open_settings(**secrets: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    for key, value in secrets.items():
        at.secrets[key] = value
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def rendered(at: AppTest) -> str:
    """Everything the page sends to the browser, as text (element protos, widgets included)."""
    out: list[str] = []

    def walk(node) -> None:  # noqa: ANN001
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            for child in children.values():
                walk(child)
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))

    walk(at._tree)
    return "\n".join(out)


def sources_text(at: AppTest) -> str:
    return " ".join(m.value for m in at.markdown)


def use_langfuse(at: AppTest, **values: str) -> AppTest:
    for name, value in values.items():
        at.text_input(key=f"settings.lf_{name}").input(value)
    at.button(key="settings.lf_use").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_env_keys_shown_masked_with_their_origin_and_tested(clean_env: str, fake_langfuse: FakeLangfuse,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", fake_langfuse.public_key)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", fake_langfuse.secret_key)
    monkeypatch.setenv("LANGFUSE_BASE_URL", fake_langfuse.url)
    at = open_settings()
    text = sources_text(at)
    assert "`pk-lf-…1234` from environment (LANGFUSE_PUBLIC_KEY)" in text
    assert "`sk-lf-…5678` from environment (LANGFUSE_SECRET_KEY)" in text
    assert f"`{fake_langfuse.url}` from environment (LANGFUSE_BASE_URL)" in text
    at.button(key="settings.lf_test").click().run()
    assert [s.value for s in at.success][0].startswith("Connected to Langfuse 4.16.0")
    page = rendered(at)
    assert "sk-lf-…5678" in page and fake_langfuse.secret_key not in page
    assert fake_langfuse.requests_to("/api/public/projects"), "the keys were checked"


def test_no_keys_says_how_to_configure_and_disables_the_test(clean_env: str) -> None:
    at = open_settings()
    assert "**Public key**: not set" in sources_text(at)
    assert any("LANGFUSE_PUBLIC_KEY" in i.value and "Settings page" in i.value for i in at.info)
    assert at.button(key="settings.lf_test").disabled


def test_session_keys_win_stay_out_of_the_page_and_can_be_forgotten(clean_env: str, fake_langfuse: FakeLangfuse,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-from-the-environment-0000")
    at = open_settings()
    use_langfuse(at, public_key=fake_langfuse.public_key, secret_key=fake_langfuse.secret_key, base_url=fake_langfuse.url)
    text = sources_text(at)
    assert "`pk-lf-…1234` from this session" in text and "`sk-lf-…5678` from this session" in text
    assert at.session_state["settings.langfuse"]["secret_key"] == fake_langfuse.secret_key
    # The typed secret does not linger in the form's widget, and is never sent to the browser.
    assert at.text_input(key="settings.lf_secret_key").value == ""
    assert fake_langfuse.secret_key not in rendered(at)
    at.button(key="settings.lf_test").click().run()
    assert any("Connected to Langfuse" in s.value for s in at.success)

    at.button(key="settings.lf_forget").click().run()
    assert "settings.langfuse" not in at.session_state
    text = sources_text(at)
    assert "from environment (LANGFUSE_PUBLIC_KEY)" in text and "**Secret key**: not set" in text


def test_rejected_keys_are_explained(clean_env: str, fake_langfuse: FakeLangfuse) -> None:
    at = open_settings()
    use_langfuse(at, public_key=fake_langfuse.public_key, secret_key="sk-lf-not-the-right-one", base_url=fake_langfuse.url)
    at.button(key="settings.lf_test").click().run()
    assert any("rejected the keys (401)" in e.value for e in at.error)
    assert not at.success


def test_bad_url_is_refused_and_not_kept(clean_env: str) -> None:
    at = open_settings()
    use_langfuse(at, base_url="langfuse.example.com")
    assert any("Base URL must start with http:// or https://" in e.value for e in at.error)
    assert "settings.langfuse" not in at.session_state


def test_keys_from_secrets_toml(clean_env: str, fake_langfuse: FakeLangfuse) -> None:
    at = open_settings(langfuse={"public_key": fake_langfuse.public_key, "secret_key": fake_langfuse.secret_key,
                                 "base_url": fake_langfuse.url})
    assert "`pk-lf-…1234` from secrets.toml ([langfuse] public_key)" in sources_text(at)
    at.button(key="settings.lf_test").click().run()
    assert any("Connected to Langfuse" in s.value for s in at.success)


def test_llm_from_env_is_tested_with_one_completion(clean_env: str, fake_openai, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001, F811
    monkeypatch.setenv("EVALBOARD_LLM_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("EVALBOARD_LLM_MODEL", "tiny-model")
    monkeypatch.setenv("EVALBOARD_LLM_API_KEY", "sk-test-secret-abcd9876")
    at = open_settings()
    text = sources_text(at)
    assert "**Model**: `tiny-model` from environment" in text and "`sk-…9876` from environment" in text
    assert any(f"Configured: model tiny-model at {fake_openai.base_url}" in s.value for s in at.success)
    at.button(key="settings.llm_test").click().run()
    assert any("The model tiny-model answered: “echo: Reply with the single word OK.”" in s.value for s in at.success)
    assert len(fake_openai.requests) == 1
    assert "sk-test-secret-abcd9876" not in rendered(at)

    fake_openai.fail_next(1, 500)
    at.button(key="settings.llm_test").click().run()
    errors = [e.value for e in at.error]
    assert errors and errors[0].startswith("The LLM test failed") and "500" in errors[0]
    assert len(fake_openai.requests) == 2, "a test makes one request: no retries"


def test_llm_session_values(clean_env: str, fake_openai) -> None:  # noqa: ANN001, F811
    at = open_settings()
    assert any("No LLM configured" in i.value for i in at.info)
    assert at.button(key="settings.llm_test").disabled
    at.text_input(key="settings.llm_base_url").input(fake_openai.base_url)
    at.text_input(key="settings.llm_model").input("session-model")
    at.button(key="settings.llm_use").click().run()
    assert at.session_state["settings.llm"] == {"base_url": fake_openai.base_url, "model": "session-model"}
    assert "`session-model` from this session" in sources_text(at)
    at.button(key="settings.llm_test").click().run()
    assert any("session-model answered" in s.value for s in at.success)

    at.text_input(key="settings.llm_base_url").input("ftp://nowhere")
    at.button(key="settings.llm_use").click().run()
    assert any("must start with http://" in e.value for e in at.error)
    assert at.session_state["settings.llm"]["base_url"] == fake_openai.base_url, "the bad value was not kept"
