"""Accounts, their API keys (stored hashed) and browser sessions."""

from __future__ import annotations

import hashlib
import secrets

import peewee

from models.base import BaseModel, now
from models.ids import new_id

KEY_PREFIX = "sk_"
SESSION_PREFIX = "ss_"


def _digest(secret: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Account(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=26, default=new_id)
    name = peewee.CharField(max_length=200, unique=True)
    created_at = peewee.DoubleField(default=now)


class ApiKey(BaseModel):
    key_hash = peewee.CharField(primary_key=True, max_length=64)
    account = peewee.ForeignKeyField(Account, backref="keys", on_delete="CASCADE")
    prefix = peewee.CharField(max_length=16)
    created_at = peewee.DoubleField(default=now)


class Session(BaseModel):
    token_hash = peewee.CharField(primary_key=True, max_length=64)
    account = peewee.ForeignKeyField(Account, backref="sessions", on_delete="CASCADE")
    expires_at = peewee.DoubleField(index=True)


class AccountExists(ValueError):
    pass


def create_account(name: str) -> tuple[Account, str]:
    """Create an account with one API key; the plain key is returned once and never stored."""
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValueError("account name must be 1..200 characters")
    try:
        account = Account.create(name=name)
    except peewee.IntegrityError:
        raise AccountExists(f"an account named {name!r} already exists") from None
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    ApiKey.create(key_hash=_digest(key), account=account, prefix=key[:8])
    return account, key


def account_for_key(key: str) -> Account | None:
    if not key or not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    row = ApiKey.select(ApiKey, Account).join(Account).where(ApiKey.key_hash == _digest(key)).first()
    return row.account if row else None


def account_by_name(name: str) -> Account | None:
    return Account.get_or_none(Account.name == name)


def account_by_id_or_name(ref: str) -> Account | None:
    return Account.get_or_none((Account.id == ref) | (Account.name == ref))


def account_names(account_ids) -> dict[str, str]:
    return {a.id: a.name for a in Account.select(Account.id, Account.name).where(Account.id.in_(list(account_ids)))}


def open_session(account: Account, ttl_s: float) -> str:
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    Session.create(token_hash=_digest(token), account=account, expires_at=now() + ttl_s)
    return token


def account_for_session(token: str) -> Account | None:
    if not token or not token.startswith(SESSION_PREFIX) or len(token) > 200:
        return None
    row = (
        Session.select(Session, Account)
        .join(Account)
        .where((Session.token_hash == _digest(token)) & (Session.expires_at > now()))
        .first()
    )
    return row.account if row else None


def close_session(token: str) -> None:
    if token:
        Session.delete().where(Session.token_hash == _digest(token)).execute()
