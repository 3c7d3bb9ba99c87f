"""Fixtures of the trust suite: databases on demand (SQLite, and Postgres when
EVALBOARD_TEST_POSTGRES_URL is set), and Chromium for the browser tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL, _postgres_database

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BACKENDS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(reason="Debian's chromium is not installed (scripts/setup-tests.sh installs it)")
    for item in items:
        if "tests/trust" in str(item.fspath) and item.get_closest_marker("browser"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    return {"executable_path": CHROMIUM, "args": [
        "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]}


@pytest.fixture
def new_database(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """`new_database("sqlite" | "postgres")` -> the URL of a fresh, empty database (Postgres
    databases are dropped at teardown)."""
    cleanups: list[Iterator[str]] = []
    counter = iter(range(1000))

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'db{next(counter)}.sqlite'}"
        if not POSTGRES_URL:
            pytest.skip("EVALBOARD_TEST_POSTGRES_URL is not set")
        gen = _postgres_database()
        url = next(gen)
        cleanups.append(gen)
        return url

    yield make
    for gen in cleanups:
        next(gen, None)  # runs the generator's cleanup (DROP DATABASE)
