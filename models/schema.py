"""The schema, created and migrated at start-up.

Migrations are numbered steps applied in order inside one write transaction that also holds a
lock (SQLite's write lock, a PostgreSQL advisory lock), so two processes starting at once apply
each step exactly once and the second simply finds the schema current.

Every process calls ensure_schema at start, so it is also where SECRET_KEY is checked: a migration
encrypts stored brand credentials with it, and a process whose key cannot decrypt what is stored
must not start (models/encryption.py).
"""

from __future__ import annotations

import logging

import peewee

from models import encryption
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
        migrate(
            *(
                migrator.add_column(model._meta.table_name, name, model._meta.fields[name])
                for name in names
                if name not in existing
            )
        )

    return step


def _migrations():
    from models.accounts import Account, ApiKey, Session
    from models.inverters import BrandConnection, Inverter, InverterMember, Reading
    from models.jobs import Attempt, Job

    return [
        (1, _create(Account, ApiKey, Session, Job, Attempt)),
        (2, _create(BrandConnection, Inverter, InverterMember, Reading)),
        (3, _retention),
        (4, encryption.encrypt_plaintext_credentials),
        (5, _add_columns(BrandConnection, "poll_interval_s")),
        (6, _alerts),
        (7, _add_columns(Attempt, "response")),
        (8, _drop_redundant_indexes),
    ]


def version_of(step) -> int:
    """The schema version a migration step brings the schema to."""
    return next(version for version, candidate in _migrations() if candidate is step)


def latest_version() -> int:
    """The version a fully migrated schema is at."""
    return max(version for version, _ in _migrations())


def _retention(db):
    """Energy rollups, and the index the job purge walks (finished jobs by finish time)."""
    from models.energy import EnergyRollup

    db.create_tables([EnergyRollup], safe=True)
    from models.retention import TERMINAL_LITERALS

    db.execute_sql(f"CREATE INDEX IF NOT EXISTS job_finished ON job (updated_at) WHERE status IN ({TERMINAL_LITERALS})")


def _alerts(db):
    """Webhook endpoints, alert rules and alerts; jobs signed with an endpoint's secrets."""
    from models.alerts import Alert, AlertRule
    from models.jobs import Job
    from models.webhooks import WebhookEndpoint

    db.create_tables([WebhookEndpoint, AlertRule, Alert], safe=True)
    _add_columns(Job, "sign_with")(db)


# Plain indexes whose column leads another index on their table (a foreign key's own index beside a composite that
# starts with it), as peewee made them before version 8: (table, index, its column). They answer nothing the longer
# one does not, and each cost every insert one more b-tree page. The models no longer ask for them (index=False);
# tests/test_schema_indexes.py keeps it so.
REDUNDANT_BEFORE_VERSION_8 = (
    ("alert", "alert_inverter_id", "inverter_id"),  # alert_inverter_id_id
    ("alert", "alert_rule_id", "rule_id"),  # alert_rule_id_inverter_id_open_slot
    ("inverter", "inverter_connection_id", "connection_id"),  # inverter_connection_id_serial
    ("inverter_member", "inverter_member_inverter_id", "inverter_id"),  # the primary key (inverter_id, account_id)
    ("job", "job_account_id", "account_id"),  # job_account_id_id
    ("reading", "reading_inverter_id", "inverter_id"),  # reading_inverter_id_time
    ("webhook_endpoint", "webhook_endpoint_account_id", "account_id"),  # webhook_endpoint_account_id_id
)


def _drop_redundant_indexes(db):
    for _, name, _ in REDUNDANT_BEFORE_VERSION_8:
        db.execute_sql(f'DROP INDEX IF EXISTS "{name}"')


def ensure_schema(owner: DatabaseOwner) -> int:
    """Apply pending migrations; return the schema version now in force.

    SecretKeyError (one line) without SECRET_KEY, before anything is applied, or when the key cannot
    decrypt every stored brand credential.
    """
    encryption.keyring()
    version = owner.call(_ensure_schema, owner.db)
    owner.call(encryption.check_stored_credentials)
    return version


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
