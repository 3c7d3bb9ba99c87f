"""The Alembic migrations build exactly the schema the table definitions describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from evalboard.db import metadata
from evalboard.store import Store


def test_migrations_match_models(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_upgrade_is_repeatable(store: Store) -> None:
    store.upgrade()
    store.upgrade()
    assert store.schema_revision() == Store.head_revision()
