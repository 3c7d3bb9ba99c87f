"""Shared fixtures: a fresh store on SQLite, and on Postgres when EVALBOARD_TEST_POSTGRES_URL is set.

`store` is parametrised over the backends available, so every store test runs on each.
Postgres tests create their own database and drop it afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from evalboard.store import Store

POSTGRES_URL = os.environ.get("EVALBOARD_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])


def _postgres_database() -> Iterator[str]:
    base = make_url(POSTGRES_URL)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")
    name = f"evalboard_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'evalboard.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.dispose()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'evalboard.db'}")
    yield s
    s.dispose()


@pytest.fixture
def project_id(store: Store) -> int:
    return store.create_project("Test project", "An assistant under test.").id  # type: ignore[return-value]


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the app (AppTest runs it in this process) at a fresh SQLite database."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("EVALBOARD_DATABASE_URL", url)
    monkeypatch.setenv("EVALBOARD_HOME", str(tmp_path))
    return url
