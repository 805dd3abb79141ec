"""The schema's indexes, on SQLite and PostgreSQL: none is a plain index whose columns lead another index (or the
primary key) on the same table. Such an index answers nothing the longer one does not, and every insert, and
every change to its columns, writes one more b-tree page: for a job or a reading, one in three to seven."""

from __future__ import annotations

import pytest

from models.db import close_database, open_database
from models.schema import REDUNDANT_BEFORE_VERSION_8, ensure_schema, latest_version
from tests.conftest import emptied


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated(request, database_url):
    url = database_url if request.param == "sqlite" else emptied(request.getfixturevalue("postgres_server_url"))
    owner = open_database(url)
    ensure_schema(owner)
    yield owner
    close_database()


def _indexes(db) -> dict[str, list[tuple[str, tuple[str, ...], bool]]]:
    """table -> (name, columns, serves alone: unique or partial) of every index, the primary key's among them."""
    found = {}
    for table in db.get_tables():
        indexes = [
            (index.name, tuple(index.columns), index.unique or " WHERE " in (index.sql or "").upper())
            for index in db.get_indexes(table)
        ]
        indexes.append((f"{table} primary key", tuple(db.get_primary_keys(table)), True))
        found[table] = indexes
    return found


def _redundant(db) -> list[str]:
    redundant = []
    for table, indexes in _indexes(db).items():
        for name, columns, serves_alone in indexes:
            if serves_alone:
                continue
            for other, other_columns, _ in indexes:
                if other != name and len(other_columns) > len(columns) and other_columns[: len(columns)] == columns:
                    redundant.append(f"{table}.{name} {columns} leads {other} {other_columns}")
                    break
    return redundant


def test_no_plain_index_leads_another_on_its_table(migrated):
    assert migrated.call(_redundant, migrated.db) == []


def test_a_database_from_before_version_8_loses_its_redundant_indexes(migrated):
    def as_before(db):
        for table, name, column in REDUNDANT_BEFORE_VERSION_8:
            db.execute_sql(f'CREATE INDEX "{name}" ON "{table}" ("{column}")')
        db.execute_sql("DELETE FROM schema_version WHERE version >= 8")

    migrated.call(as_before, migrated.db)
    assert len(migrated.call(_redundant, migrated.db)) == len(REDUNDANT_BEFORE_VERSION_8)
    assert ensure_schema(migrated) == latest_version()
    assert migrated.call(_redundant, migrated.db) == []
