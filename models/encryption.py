"""Brand credentials encrypted at rest with SECRET_KEY.

Brand API keys, tokens and passwords must be sent to the brand, so unlike our own API keys and
sessions they cannot be stored hashed. They are stored as Fernet tokens (AES-128-CBC with an
HMAC-SHA256: a token made with another key, or altered, fails to decrypt instead of giving garbage).

SECRET_KEY holds one or more Fernet keys separated by commas (settings check their form): the first
encrypts, every one decrypts (MultiFernet). Rotation: put a new key first and restart every process,
run `python -m models rotate-secret` (re-encrypts every stored credential with the first key), then
drop the old key. Every process checks at start (ensure_schema) that a key is set and that it
decrypts every stored credential, and refuses to start with one line otherwise.
"""

from __future__ import annotations

import json

import peewee
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from models.base import json_text
from models.db import database, sql
from models.settings import SettingsError, get_settings

MISSING = (
    "SECRET_KEY is not set: brand credentials are stored encrypted with it; make one with "
    "`python -m models new-secret-key` (make run keeps one in var/secret-key)"
)


class SecretKeyError(SettingsError):
    """SECRET_KEY is missing, or cannot decrypt the stored credentials."""


class Credentials(dict):
    """A brand's credentials. The repr names the fields, never the values: a log line, an error or a
    traceback that shows one leaks nothing."""

    def __repr__(self) -> str:
        return f"Credentials({', '.join(sorted(self))}: redacted)"

    __str__ = __repr__


_keyrings: dict[tuple, MultiFernet] = {}


def keyring() -> MultiFernet:
    """This process's keys (SettingsError if there are none)."""
    keys = get_settings().secret_key
    if not keys:
        raise SecretKeyError(MISSING)
    if keys not in _keyrings:
        _keyrings[keys] = MultiFernet([Fernet(key) for key in keys])
    return _keyrings[keys]


def new_key() -> str:
    return Fernet.generate_key().decode()


def encrypt(credentials: dict) -> str:
    return keyring().encrypt(json_text(credentials).encode()).decode()


def decrypt(token: str) -> Credentials:
    try:
        plain = keyring().decrypt(token.encode())
    except InvalidToken:
        raise SecretKeyError(
            "SECRET_KEY cannot decrypt stored brand credentials: they were encrypted with a key "
            "that is not in SECRET_KEY"
        ) from None
    return Credentials(json.loads(plain))


class CredentialsField(peewee.TextField):
    """A credentials dict, stored as a Fernet token (text, the same on SQLite and PostgreSQL)."""

    def db_value(self, value):
        return None if value is None else encrypt(value)

    def python_value(self, value):
        return None if value is None else decrypt(value)


# -- every stored credential at once (raw rows: the field would decrypt them) ----------------------
def _stored() -> list[tuple[str, str]]:
    return list(database.execute_sql("SELECT id, credentials FROM brand_connection ORDER BY id"))


def _store(connection_id: str, token: str) -> None:
    database.execute_sql(sql("UPDATE brand_connection SET credentials = ? WHERE id = ?"), (token, connection_id))


def _is_plaintext(stored: str) -> bool:
    return stored.lstrip().startswith("{")  # JSON as stored before encryption; a Fernet token is base64


def encrypt_plaintext_credentials(_db=None) -> int:
    """The migration that encrypts credentials stored as JSON before encryption existed; returns how many."""
    plain = [(connection_id, stored) for connection_id, stored in _stored() if _is_plaintext(stored)]
    for connection_id, stored in plain:
        _store(connection_id, encrypt(json.loads(stored)))
    return len(plain)


def reencrypt_credentials() -> int:
    """Re-encrypt every stored credential with the first key of SECRET_KEY (run in one transaction)."""
    rows = _stored()
    for connection_id, token in rows:
        try:
            _store(connection_id, keyring().rotate(token.encode()).decode())
        except InvalidToken:
            raise SecretKeyError(unreadable_message([connection_id], len(rows))) from None
    return len(rows)


def unreadable_message(connection_ids: list[str], total: int) -> str:
    return (
        f"SECRET_KEY cannot decrypt the stored credentials of {len(connection_ids)} of {total} brand "
        f"connection(s) (first: {connection_ids[0]}): they were encrypted with a key that is not in SECRET_KEY; "
        "list that key after the new one (SECRET_KEY=new,old) and run `python -m models rotate-secret`"
    )


def check_stored_credentials() -> int:
    """Raise SecretKeyError unless every stored credential decrypts; returns how many there are."""
    ring, rows = keyring(), _stored()
    unreadable = []
    for connection_id, token in rows:
        try:
            ring.decrypt(token.encode())
        except InvalidToken:
            unreadable.append(connection_id)
    if unreadable:
        raise SecretKeyError(unreadable_message(unreadable, len(rows)))
    return len(rows)
