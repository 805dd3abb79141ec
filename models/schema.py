"""The schema, created and migrated at start-up.

Migrations are numbered steps applied in order inside one write transaction that also holds a
lock (SQLite's write lock, a PostgreSQL advisory lock), so two processes starting at once apply
each step exactly once and the second simply finds the schema current.
"""
from __future__ import annotations

import logging

import peewee

from models.base import BaseModel, now
from models.db import DatabaseOwner, is_sqlite, write_transaction

log = logging.getLogger(__name__)

_ADVISORY_LOCK_ID = 7_291_001


class SchemaVersion(BaseModel):
    version = peewee.IntegerField(primary_key=True)
    applied_at = peewee.DoubleField(default=now)


def _create(*models):
    def step(db):
        db.create_tables(models, safe=True)
    return step


def _add_columns(model, *names):
    def step(db):
        from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate

        migrator = SqliteMigrator(db) if is_sqlite(db) else PostgresqlMigrator(db)
        existing = {c.name for c in db.get_columns(model._meta.table_name)}
        migrate(*(migrator.add_column(model._meta.table_name, name, model._meta.fields[name])
                  for name in names if name not in existing))
    return step


def _migrations():
    from models.accounts import Account, ApiKey, Session
    from models.inverters import BrandConnection, Inverter, InverterMember, Reading
    from models.jobs import Attempt, Job

    return [
        (1, _create(Account, ApiKey, Session, Job, Attempt)),
        (2, _create(BrandConnection, Inverter, InverterMember, Reading)),
        (3, _add_columns(BrandConnection, "poll_interval_s")),
    ]


def ensure_schema(owner: DatabaseOwner) -> int:
    """Apply pending migrations; return the schema version now in force."""
    return owner.call(_ensure_schema, owner.db)


def _ensure_schema(db) -> int:
    db.connect(reuse_if_open=True)
    with write_transaction(db):
        if not is_sqlite(db):
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_ID,))
        db.create_tables([SchemaVersion], safe=True)
        applied = {row.version for row in SchemaVersion.select()}
        for version, step in _migrations():
            if version in applied:
                continue
            log.info("applying schema migration %d", version)
            step(db)
            SchemaVersion.create(version=version)
            applied.add(version)
    return max(applied) if applied else 0
