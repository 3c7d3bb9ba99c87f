"""The LLM for pages: settings from the session, the environment and secrets; one cached client.

Pages call `llm_disabled_reason()` to disable LLM buttons (its one line is the button's help and
caption) and `llm_client(store)` to get the client. Nothing secret goes into session state from
here: the `settings.llm` session dict is written by the Settings page, and the API key in it is
never rendered or exported.
"""

from __future__ import annotations

import hashlib
from typing import Any

import streamlit as st

from evalboard.store import Store
from integrations.llm import LLMClient, LLMSettings

SESSION_KEY = "settings.llm"


def streamlit_secrets() -> dict[str, Any] | None:
    """Streamlit secrets as a plain dict, or None when there is no secrets file (reading
    st.secrets then raises) or it cannot be parsed."""
    try:
        return st.secrets.to_dict()
    except FileNotFoundError:  # StreamlitSecretNotFoundError subclasses it
        return None
    except Exception:  # noqa: BLE001 - a broken secrets file must not break every page
        return None


def llm_settings() -> LLMSettings:
    """Settings from, highest first: the session (`settings.llm`), the environment, secrets [llm].
    Raises ValueError when a value is malformed (the message names it)."""
    explicit = st.session_state.get(SESSION_KEY) or {}
    return LLMSettings.resolve(dict(explicit), secrets=streamlit_secrets())


def llm_disabled_reason() -> str | None:
    """One line saying how to configure an LLM, or None when one is configured."""
    try:
        settings = llm_settings()
    except ValueError as exc:
        return f"The LLM settings are not valid: {exc}"
    return settings.why_not_configured()


def _fingerprint(settings: LLMSettings, store: Store) -> str:
    """A cache key for the client that changes with any setting but shows none (the API key
    and the database URL may hold secrets, so only their hash goes into the key)."""
    parts = [repr(sorted((f, repr(getattr(settings, f))) for f in settings.__dataclass_fields__)), store.url]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


@st.cache_resource(max_entries=8, show_spinner=False)
def _client_for(fingerprint: str, _settings: LLMSettings, _store: Store) -> LLMClient:
    # Arguments starting with "_" are not hashed by Streamlit: the fingerprint stands for them.
    return LLMClient(_settings, cache=_store.llm_cache())


def llm_client(store: Store) -> LLMClient:
    """The shared client for the current settings, caching answers in the store. Raises
    ValueError for malformed settings; check `llm_disabled_reason()` first."""
    settings = llm_settings()
    return _client_for(_fingerprint(settings, store), settings, store)
