"""Brand connections, inverters, their team members and stored readings: tables and every query on them.

A brand connection is one set of credentials at one brand endpoint; brands rate-limit per credential,
so it is also the unit one BrandPoller polls. An inverter belongs to one connection and one owner
account; members may read and stream it. Readings are unique per (inverter, time), so storing the same
reading twice (a redelivered ingest entry) is harmless.
"""

from __future__ import annotations

import hashlib
import json

import peewee

from models.accounts import Account
from models.base import BaseModel, JSONField, now
from models.db import database, sql
from models.encryption import CredentialsField
from models.ids import new_id

ONLINE = "online"
OFFLINE = "offline"
UNKNOWN = "unknown"


class BrandConnection(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=26, default=new_id)
    brand = peewee.CharField(max_length=40)
    base_url = peewee.CharField(max_length=500)
    credentials = CredentialsField()  # encrypted at rest with SECRET_KEY
    credentials_hash = peewee.CharField(max_length=64)
    created_at = peewee.DoubleField(default=now)
    # The poll interval its owner asked for (PATCH /connections/<id>); NULL: the brand's default setting.
    poll_interval_s = peewee.DoubleField(null=True)

    class Meta:
        indexes = ((("brand", "base_url", "credentials_hash"), True),)


class Inverter(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=26, default=new_id)
    connection = peewee.ForeignKeyField(BrandConnection, backref="inverters", on_delete="CASCADE", index=False)
    brand = peewee.CharField(max_length=40)
    serial = peewee.CharField(max_length=100)
    device_type = peewee.CharField(max_length=40)
    model = peewee.CharField(max_length=200, null=True)
    plant_id = peewee.CharField(max_length=100, null=True)
    timezone = peewee.CharField(max_length=64, null=True)
    owner = peewee.ForeignKeyField(Account, backref="inverters", on_delete="CASCADE")
    status = peewee.CharField(max_length=12, default=UNKNOWN)
    status_changed_at = peewee.DoubleField(null=True)
    created_at = peewee.DoubleField(default=now)

    class Meta:
        indexes = ((("connection", "serial"), True),)


class InverterMember(BaseModel):
    inverter = peewee.ForeignKeyField(Inverter, backref="members", on_delete="CASCADE", index=False)
    account = peewee.ForeignKeyField(Account, backref="memberships", on_delete="CASCADE", index=True)
    added_at = peewee.DoubleField(default=now)

    class Meta:
        primary_key = peewee.CompositeKey("inverter", "account")


class Reading(BaseModel):
    inverter = peewee.ForeignKeyField(Inverter, backref="readings", on_delete="CASCADE", index=False)
    time = peewee.DoubleField()
    event_id = peewee.CharField(max_length=40, null=True)
    data = JSONField()
    stored_at = peewee.DoubleField(default=now)

    class Meta:
        indexes = ((("inverter", "time"), True),)


# -- connections ---------------------------------------------------------------------------------
def credentials_hash(credentials: dict) -> str:
    return hashlib.sha256(json.dumps(credentials, sort_keys=True).encode()).hexdigest()


def connection_for(brand: str, base_url: str, credentials: dict) -> BrandConnection:
    """The connection with these credentials, created on first use (one poller per credential)."""
    digest = credentials_hash(credentials)
    found = find_connection(brand, base_url, digest)
    if found is not None:
        return found
    return BrandConnection.create(brand=brand, base_url=base_url, credentials=credentials, credentials_hash=digest)


def find_connection(brand: str, base_url: str, digest: str) -> BrandConnection | None:
    return BrandConnection.get_or_none(
        (BrandConnection.brand == brand)
        & (BrandConnection.base_url == base_url)
        & (BrandConnection.credentials_hash == digest)
    )


def store_credentials(connection_id: str, credentials: dict) -> None:
    """The connection's current credentials, after the adapter rotated them (an OAuth refresh). The hash stays
    that of the credentials first given, so the connection keeps its identity through every rotation."""
    BrandConnection.update(credentials=credentials).where(BrandConnection.id == connection_id).execute()


def connections_with_inverters() -> list[BrandConnection]:
    return list(
        BrandConnection.select()
        .where(BrandConnection.id.in_(Inverter.select(Inverter.connection)))
        .order_by(BrandConnection.id)
    )


def connection(connection_id: str) -> BrandConnection | None:
    return BrandConnection.get_or_none(BrandConnection.id == connection_id)


def owned_connection(account_id: str, connection_id: str) -> tuple[BrandConnection, list[Inverter]] | None:
    """The connection and its inverters if this account owns an inverter on it; None otherwise (404).

    A connection is one set of credentials; whoever onboarded inverters with them owns it."""
    found = connection(connection_id)
    if found is None:
        return None
    inverters = pollable(connection_id)
    if not any(i.owner_id == account_id for i in inverters):
        return None
    return found, inverters


def set_poll_interval(connection_id: str, interval_s: float | None) -> None:
    BrandConnection.update(poll_interval_s=interval_s).where(BrandConnection.id == connection_id).execute()


# -- inverters -----------------------------------------------------------------------------------
class AlreadyOnboarded(Exception):
    """The serial is already onboarded on this connection by another account."""


def onboard(
    owner_id: str,
    connection: BrandConnection,
    serial: str,
    device_type: str,
    model: str | None,
    plant_id: str | None,
    timezone: str | None,
) -> tuple[Inverter, bool]:
    """Create the inverter; (existing, False) if this owner already has it; AlreadyOnboarded if another does."""
    existing = Inverter.get_or_none((Inverter.connection == connection.id) & (Inverter.serial == serial))
    if existing is not None:
        if existing.owner_id != owner_id:
            raise AlreadyOnboarded(existing.id)
        return existing, False
    inverter = Inverter.create(
        connection=connection.id,
        brand=connection.brand,
        serial=serial,
        device_type=device_type,
        model=model,
        plant_id=plant_id,
        timezone=timezone,
        owner=owner_id,
    )
    return inverter, True


def onboarded_serials(connection_id: str) -> dict[str, tuple[str, str]]:
    """serial -> (inverter id, owner id) of the inverters onboarded on a connection."""
    rows = Inverter.select(Inverter.serial, Inverter.id, Inverter.owner).where(Inverter.connection == connection_id)
    return {row.serial: (row.id, row.owner_id) for row in rows}


def _visible_to(account_id: str):
    member_of = InverterMember.select(InverterMember.inverter).where(InverterMember.account == account_id)
    return (Inverter.owner == account_id) | Inverter.id.in_(member_of)


def visible_inverter(account_id: str, inverter_id: str) -> Inverter | None:
    """The inverter if this account owns it or is a member; None otherwise (callers answer 404)."""
    return Inverter.select().where((Inverter.id == inverter_id) & _visible_to(account_id)).first()


_VISIBLE_IDS = (
    "SELECT id FROM inverter WHERE owner_id = ? UNION SELECT inverter_id FROM inverter_member WHERE account_id = ?"
)


def all_visible_ids(account_id: str) -> set[str]:
    """Every inverter this account owns or is a member of, in raw SQL: the stream hub caches it."""
    return {row[0] for row in database.execute_sql(sql(_VISIBLE_IDS), (account_id, account_id))}


def visible_ids(account_id: str, inverter_ids: list[str]) -> set[str]:
    rows = Inverter.select(Inverter.id).where(Inverter.id.in_(inverter_ids) & _visible_to(account_id))
    return {row.id for row in rows}


def list_visible(account_id: str) -> list[Inverter]:
    return list(Inverter.select().where(_visible_to(account_id)).order_by(Inverter.id))


def member_ids(inverter_id: str) -> list[str]:
    return [
        m.account_id
        for m in InverterMember.select().where(InverterMember.inverter == inverter_id).order_by(InverterMember.added_at)
    ]


def delete_inverter(inverter_id: str) -> None:
    # Readings go with it (ON DELETE CASCADE); delete them first so SQLite's cascade has less to do.
    Reading.delete().where(Reading.inverter == inverter_id).execute()
    InverterMember.delete().where(InverterMember.inverter == inverter_id).execute()
    Inverter.delete().where(Inverter.id == inverter_id).execute()


def add_member(inverter_id: str, account_id: str) -> bool:
    """True if added, False if already a member."""
    inserted = (
        InverterMember.insert(inverter=inverter_id, account=account_id, added_at=now()).on_conflict_ignore().execute()
    )
    return bool(inserted)


def remove_member(inverter_id: str, account_id: str) -> bool:
    return bool(
        InverterMember.delete()
        .where((InverterMember.inverter == inverter_id) & (InverterMember.account == account_id))
        .execute()
    )


def pollable(connection_id: str) -> list[Inverter]:
    """The inverters a connection's poller polls, oldest first (so batches stay stable as more join)."""
    return list(Inverter.select().where(Inverter.connection == connection_id).order_by(Inverter.created_at))


def set_status(changes: list[tuple[str, str, float]]) -> None:
    """Record connectivity changes: [(inverter id, status, at)]."""
    for inverter_id, status, at in changes:
        Inverter.update(status=status, status_changed_at=at).where(Inverter.id == inverter_id).execute()


# -- readings ------------------------------------------------------------------------------------
def store_readings(rows: list[dict]) -> int:
    """Insert readings [{inverter_id, time, event_id, data}], skipping ones already stored or whose
    inverter has been deleted meanwhile; returns how many rows were offered for known inverters."""
    if not rows:
        return 0
    known = {
        row.id for row in Inverter.select(Inverter.id).where(Inverter.id.in_(list({r["inverter_id"] for r in rows})))
    }
    stamp = now()
    values = [
        {
            "inverter": r["inverter_id"],
            "time": r["time"],
            "event_id": r.get("event_id"),
            "data": r["data"],
            "stored_at": stamp,
        }
        for r in rows
        if r["inverter_id"] in known
    ]
    for start in range(0, len(values), 200):  # SQLite caps the bound variables of one statement
        Reading.insert_many(values[start : start + 200]).on_conflict_ignore().execute()
    return len(values)


def latest_reading(inverter_id: str) -> Reading | None:
    return Reading.select().where(Reading.inverter == inverter_id).order_by(Reading.time.desc()).first()


def latest_stored(inverter_ids) -> dict[str, Reading]:
    """The newest stored reading of each inverter that has one: what Redis no longer holds."""
    found = {inverter_id: latest_reading(inverter_id) for inverter_id in inverter_ids}
    return {inverter_id: reading for inverter_id, reading in found.items() if reading is not None}


def readings_between(inverter_id: str, since: float | None, until: float | None, limit: int) -> list[Reading]:
    """Readings with since <= time < until, oldest first, at most limit."""
    query = Reading.select().where(Reading.inverter == inverter_id)
    if since is not None:
        query = query.where(Reading.time >= since)
    if until is not None:
        query = query.where(Reading.time < until)
    return list(query.order_by(Reading.time).limit(limit))
