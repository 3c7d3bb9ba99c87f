"""Langfuse for pages: settings from the session, the environment and secrets; pulls in the background.

Settings. `langfuse_settings()` resolves, highest first: keys typed on the Settings page for this
session (`settings.langfuse`, a dict that lives only in st.session_state: never in the database,
never rendered), the environment (LANGFUSE_*), then Streamlit secrets. `setting_sources()` says
where each value comes from, masked, for the Settings page.

Pulls. A pull can take minutes, so the Pull page starts it in a daemon thread (`start_pull`)
and shows its `PullJob` from a fragment that reruns twice a second. The thread only calls
`integrations.langfuse_rounds.pull_into_round` (no Streamlit calls: a background thread has no
script context) and copies its progress into the job under a lock; the page reads a
`snapshot()`. Jobs are also listed process-wide by round, so a second session (or a second
click) cannot start another pull into a round that is being filled, and a pull still running
is not mistaken for an interrupted one.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from evalboard.store import Store
from integrations.langfuse import LangfuseConfigError, LangfuseSettings, PullFilters, Sampling
from integrations.langfuse_rounds import RoundPull, pull_into_round
from ui.llm import streamlit_secrets

SESSION_KEY = "settings.langfuse"
FIELDS = ("public_key", "secret_key", "base_url")
LABELS = {"public_key": "Public key", "secret_key": "Secret key", "base_url": "Base URL"}


# ============================================================================ settings
def session_values() -> dict[str, str]:
    """The values typed for this session (only the non-empty ones)."""
    raw = st.session_state.get(SESSION_KEY) or {}
    return {k: str(raw[k]).strip() for k in FIELDS if raw.get(k) and str(raw[k]).strip()}


def langfuse_settings() -> LangfuseSettings:
    """Settings from the session, then the environment, then secrets. Raises LangfuseConfigError
    (its message says what is missing and where to set it)."""
    return LangfuseSettings.resolve(**session_values(), secrets=streamlit_secrets())


def langfuse_disabled_reason() -> str | None:
    """One line saying how to configure Langfuse, or None when keys are set."""
    try:
        langfuse_settings()
    except LangfuseConfigError as exc:
        return str(exc)
    return None


def mask_secret(value: str | None) -> str:
    """'…' and the last 4 characters (a known 'pk-lf-'/'sk-lf-'/'sk-' prefix kept); short values
    show nothing of themselves."""
    if not value:
        return ""
    prefix = next((p for p in ("pk-lf-", "sk-lf-", "sk-") if value.startswith(p)), "")
    rest = value[len(prefix):]
    return prefix + ("…" + rest[-4:] if len(rest) > 8 else "…")


def origin_words(origin: str) -> str:
    """'env LANGFUSE_PUBLIC_KEY' -> 'environment (LANGFUSE_PUBLIC_KEY)', 'session' -> 'this session'."""
    if origin == "session":
        return "this session"
    if origin.startswith("env "):
        return f"environment ({origin[4:]})"
    if origin.startswith("secrets "):
        return f"secrets.toml ({origin[8:]})"
    return origin


def setting_sources() -> dict[str, tuple[str, str]]:
    """For each setting: (masked value, where it comes from), or ("", "not set").

    `LangfuseSettings.resolve` refuses to resolve anything while a key is missing, so each key
    is resolved with a stand-in for the *other* key: the precedence stays resolve's own.
    """
    values = session_values()
    secrets = streamlit_secrets()
    out: dict[str, tuple[str, str]] = {name: ("", "not set") for name in FIELDS}
    for name, stand_in in (("public_key", "secret_key"), ("secret_key", "public_key")):
        given = {**values, stand_in: "stand-in"}
        try:
            resolved = LangfuseSettings.resolve(**given, secrets=secrets)
        except LangfuseConfigError:
            continue
        out[name] = (mask_secret(getattr(resolved, name)), origin_words(resolved.origins.get(name, "")))
        out["base_url"] = (resolved.base_url, origin_words(resolved.origins.get("base_url", "default")))
    if out["base_url"][1] == "not set":  # both keys missing: say which URL would be used
        try:
            resolved = LangfuseSettings.resolve(**{**values, "public_key": "x", "secret_key": "x"}, secrets=secrets)
            out["base_url"] = (resolved.base_url, origin_words(resolved.origins.get("base_url", "default")))
        except LangfuseConfigError:
            pass
    return out


# ============================================================================ background pulls
@dataclass
class PullJob:
    """One pull running (or run) in a background thread; read it through `snapshot()`."""

    round_id: int
    round_name: str
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    error: str | None = None
    announced: bool = False  # the page has shown the outcome once (and made the round current)
    _state: RoundPull | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, state: RoundPull) -> None:
        with self._lock:
            self._state = copy.copy(state)

    def snapshot(self) -> RoundPull:
        """A copy of the latest progress (status 'running' with phase 'starting' before any)."""
        with self._lock:
            if self._state is None:
                return RoundPull(self.round_id, self.round_name)
            return copy.copy(self._state)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


_JOBS: dict[int, PullJob] = {}  # round id -> its running pull, process-wide
_JOBS_LOCK = threading.Lock()


def running_job(round_id: int) -> PullJob | None:
    """The pull filling this round right now in this process (any session), if any."""
    with _JOBS_LOCK:
        job = _JOBS.get(round_id)
    return job if job is not None and job.running else None


def start_pull(store: Store, settings: LangfuseSettings, project_id: int, round_id: int, round_name: str,
               filters: PullFilters, sampling: Sampling, **pull_kwargs: Any) -> PullJob:
    """Start `pull_into_round` in a daemon thread and return its job.

    Raises RuntimeError when a pull into this round is already running in this process.
    The garbage-collector pause of `pull_traces` is off by default here: it is process-wide,
    and other sessions of the server keep running meanwhile.
    """
    job = PullJob(round_id=round_id, round_name=round_name)
    pull_kwargs.setdefault("pause_gc", False)

    def work() -> None:
        try:
            pull_into_round(store, settings, project_id, round_id, filters, sampling,
                            cancel=job.cancel, on_progress=job.update, **pull_kwargs)
        except BaseException as exc:  # noqa: BLE001 - shown on the page; the job record says failed
            job.error = f"{type(exc).__name__}: {exc}"
        finally:
            with _JOBS_LOCK:
                if _JOBS.get(round_id) is job:
                    del _JOBS[round_id]

    with _JOBS_LOCK:
        live = _JOBS.get(round_id)
        if live is not None and live.running:
            raise RuntimeError(f"A pull into round '{round_name}' is already running.")
        job.thread = threading.Thread(target=work, name=f"langfuse-pull-round-{round_id}", daemon=True)
        _JOBS[round_id] = job
        job.thread.start()
    return job
