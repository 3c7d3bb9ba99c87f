"""Login: who may open evalboard once it is shared beyond one machine.

With `[auth]` in Streamlit secrets (an OpenID Connect provider, see `st.login`), everyone must
log in and be on the allowlist kept in the `[evalboard]` table:

    [evalboard]
    allowed_emails = ["maya@example.com"]      # these people
    allowed_domains = ["example.com"]          # and anyone whose email is at this domain
    # login_provider = "google"                # when [auth] names its providers ([auth.google])

`gate()` runs first in app.py. For anyone not logged in, or logged in but not allowed, it draws
the login screen and stops the script (`st.stop()`) before navigation, the sidebar or any page
runs: no page code runs and no project data is sent to that browser. It fails closed: a secrets
file that exists but cannot be read, or an `[auth]` table with no allowlist, lets nobody in.

Without `[auth]` the app works as before for whoever can reach it; .streamlit/config.toml makes
it listen on 127.0.0.1 only, and the sidebar says so (`access_note()`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import streamlit as st

from ui.state import logged_in_email

LOCAL_ADDRESSES = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class Allowlist:
    """Emails and email domains allowed in; compared case-insensitively, domains exactly
    (allowing "example.com" does not allow "eu.example.com": list each one)."""

    emails: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()

    @classmethod
    def from_secrets(cls, secrets: Mapping[str, Any]) -> Allowlist:
        table = secrets.get("evalboard") or {}
        return cls(emails=frozenset(_clean(table.get("allowed_emails"), "allowed_emails")),
                   domains=frozenset(d.lstrip("@") for d in _clean(table.get("allowed_domains"),
                                                                   "allowed_domains")))

    def is_empty(self) -> bool:
        return not self.emails and not self.domains

    def allows(self, email: str | None, email_verified: Any = None) -> bool:
        """True when `email` is listed or at a listed domain. An email the provider marks as
        not verified (`email_verified` false) is refused: anyone could claim one."""
        if not email or email_verified is False or str(email_verified).lower() == "false":
            return False
        email = email.strip().lower()
        local, at, domain = email.rpartition("@")
        if not at or not local or not domain:
            return False
        return email in self.emails or domain in self.domains


def _clean(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):  # one address, or a comma-separated list
        value = value.split(",")
    if not isinstance(value, Iterable):
        raise ValueError(f"[evalboard] {name} must be a list of strings")
    return [str(v).strip().lower() for v in value if str(v).strip()]


class SecretsUnreadable(RuntimeError):
    """A secrets file exists but Streamlit could not read it."""


def read_secrets() -> dict[str, Any]:
    """Streamlit secrets as a dict; {} when there is no secrets file at all. Raises
    SecretsUnreadable when one exists but cannot be parsed (so login cannot be silently off)."""
    try:
        return st.secrets.to_dict()
    except FileNotFoundError as exc:  # StreamlitSecretNotFoundError subclasses it
        paths = st.get_option("secrets.files") or []
        if any(os.path.exists(p) for p in paths):
            raise SecretsUnreadable(str(exc)) from exc
        return {}


def login_configured(secrets: Mapping[str, Any]) -> bool:
    return bool(secrets.get("auth"))


def gate() -> str | None:
    """Let the script go on only for allowed users; returns their email (None when login is
    not configured). Everyone else gets the login screen and the script stops here."""
    try:
        secrets = read_secrets()
    except SecretsUnreadable as exc:
        _screen()
        st.error(f"The secrets file cannot be read, so nobody can be let in: {exc}")
        st.stop()
    if not login_configured(secrets):
        return None
    try:
        allowlist = Allowlist.from_secrets(secrets)
    except ValueError as exc:
        _screen()
        st.error(f"Login is misconfigured: {exc}.")
        st.stop()
    provider = (secrets.get("evalboard") or {}).get("login_provider") or None
    user = st.user.to_dict()
    if not user.get("is_logged_in"):
        _screen()
        st.write("Log in to open evalboard.")
        st.button("Log in", type="primary", on_click=st.login, args=(provider,) if provider else (),
                  icon=":material/login:", key="auth.login")
        st.stop()
    email = logged_in_email()
    if allowlist.is_empty() or not allowlist.allows(email, user.get("email_verified")):
        _screen()
        who = f"`{email.replace('`', '')}`" if email else "Your account (the provider sent no email address)"
        st.error(f"{who} is not allowed to open this evalboard.")
        if allowlist.is_empty():
            st.caption("No one is allowed yet: list people or domains under [evalboard] "
                       "allowed_emails / allowed_domains in the secrets.")
        else:
            st.caption("Ask whoever runs it to add you, or log in with another account.")
        st.button("Log out", on_click=st.logout, icon=":material/logout:", key="auth.logout")
        st.stop()
    return email


def _screen() -> None:
    st.title("evalboard")


def access_note() -> tuple[str, str]:
    """(kind, text) for the sidebar: who can reach this app. kind is "ok" or "warning"."""
    address = str(st.get_option("server.address") or "")
    if address in LOCAL_ADDRESSES:
        return "ok", "No login configured: the app listens on this machine only."
    return "warning", (f"No login configured, yet the app listens on {address or 'every address'}: "
                       "anyone who can reach it sees all data. Configure [auth] in the secrets.")


def logout_button() -> None:
    st.button("Log out", on_click=st.logout, icon=":material/logout:", key="auth.sidebar_logout")
