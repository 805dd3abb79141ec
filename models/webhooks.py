"""Webhook endpoints and Standard Webhooks signatures (https://www.standardwebhooks.com).

An endpoint is a URL an account registers for some event types, with a signing secret `whsec_` +
base64 of 24 random bytes, shown once at creation or rotation and stored encrypted with SECRET_KEY
(the same CredentialsField as brand credentials). Rotation keeps the previous secret signing too
until WEBHOOK_SECRET_OVERLAP_S has passed, so receivers can switch keys without losing a message.

A job (an alert's or any ordinary one with `sign_with`) names the endpoint whose secrets sign it.
Its worker signs at *each attempt* with a fresh webhook-timestamp: receivers refuse timestamps older
than their tolerance (5 minutes in the reference libraries), and a retry can come hours later. The
webhook-id stays the same across attempts, so receivers deduplicate on it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as random_secrets

import peewee

from models.accounts import Account
from models.base import BaseModel, JSONField, now
from models.db import chunks
from models.encryption import CredentialsField
from models.ids import new_id

EVENT_TYPES = (
    "inverter.offline",
    "inverter.online",
    "inverter.fault",
    "battery.low",
    "battery.recovered",
    "production.low",
    "production.recovered",
    "energy.daily_summary",
)
SECRET_PREFIX = "whsec_"
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = "webhook-id", "webhook-timestamp", "webhook-signature"
SIGNING_HEADERS = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)


class WebhookEndpoint(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=26, default=new_id)
    account = peewee.ForeignKeyField(Account, backref="webhook_endpoints", on_delete="CASCADE", index=False)
    url = peewee.TextField()
    description = peewee.CharField(max_length=500, default="")
    event_types = JSONField()
    # {"current": "whsec_…", "previous": "whsec_…" | None, "previous_until": epoch | None}, encrypted at rest.
    secrets = CredentialsField()
    created_at = peewee.DoubleField(default=now)
    rotated_at = peewee.DoubleField(null=True)

    class Meta:
        indexes = ((("account", "id"), False),)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(random_secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret)


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, as the specification defines it."""
    signed = f"{message_id}.{timestamp}.".encode() + (body or b"")
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def signing_headers(active_secrets: list[str], message_id: str, body: bytes | None, at: float) -> dict:
    """The three headers for one attempt sent at `at`: one signature per active secret, space-separated."""
    timestamp = int(at)
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(signature(s, message_id, timestamp, body or b"") for s in active_secrets),
    }


def active_secrets(stored: dict | None, at: float) -> list[str]:
    if not stored:
        return []
    keys = [stored["current"]]
    if stored.get("previous") and (stored.get("previous_until") or 0) > at:
        keys.append(stored["previous"])
    return keys


# -- queries (run on the database owner) ---------------------------------------------------------
def create_endpoint(account_id: str, url: str, description: str, event_types: list[str]) -> tuple[WebhookEndpoint, str]:
    secret = new_secret()
    endpoint = WebhookEndpoint.create(
        account=account_id,
        url=url,
        description=description,
        event_types=event_types,
        secrets={"current": secret, "previous": None, "previous_until": None},
    )
    return endpoint, secret


def list_endpoints(account_id: str) -> list[WebhookEndpoint]:
    return list(WebhookEndpoint.select().where(WebhookEndpoint.account == account_id).order_by(WebhookEndpoint.id))


def get_endpoint(account_id: str, endpoint_id: str) -> WebhookEndpoint | None:
    return WebhookEndpoint.get_or_none((WebhookEndpoint.account == account_id) & (WebhookEndpoint.id == endpoint_id))


def delete_endpoint(account_id: str, endpoint_id: str) -> bool:
    return bool(
        WebhookEndpoint.delete()
        .where((WebhookEndpoint.account == account_id) & (WebhookEndpoint.id == endpoint_id))
        .execute()
    )


def rotate_secret(account_id: str, endpoint_id: str, overlap_s: float) -> tuple[WebhookEndpoint, str] | None:
    endpoint = get_endpoint(account_id, endpoint_id)
    if endpoint is None:
        return None
    secret, t = new_secret(), now()
    endpoint.secrets = {"current": secret, "previous": endpoint.secrets["current"], "previous_until": t + overlap_s}
    endpoint.rotated_at = t
    endpoint.save()
    return endpoint, secret


def endpoint_secrets(endpoint_id: str) -> dict | None:
    """The stored secrets of an endpoint (None once deleted: its jobs then go unsigned and fail verification)."""
    row = WebhookEndpoint.select(WebhookEndpoint.secrets).where(WebhookEndpoint.id == endpoint_id).first()
    return row.secrets if row else None


def subscribed_endpoints(account_ids) -> dict[str, list[tuple[str, str, list[str]]]]:
    """(id, url, event types) of every endpoint of these accounts, per account, in one query: what an alert's
    webhook jobs need, without decrypting the secrets (a job's worker reads them when it signs)."""
    found: dict[str, list[tuple[str, str, list[str]]]] = {}
    for chunk in chunks(sorted(account_ids), 500):
        query = (
            WebhookEndpoint.select(
                WebhookEndpoint.account, WebhookEndpoint.id, WebhookEndpoint.url, WebhookEndpoint.event_types
            )
            .where(WebhookEndpoint.account.in_(chunk))
            .order_by(WebhookEndpoint.id)
            .tuples()
        )
        for account_id, endpoint_id, url, event_types in query:
            found.setdefault(account_id, []).append((endpoint_id, url, event_types))
    return found


def signed(headers: dict, stored: dict | None, default_id: str, body: bytes | None, at: float) -> dict:
    """`headers` with fresh Standard Webhooks headers for an attempt sent at `at`. A webhook-id the job
    carries (an alert's) is kept; otherwise `default_id`. Signing headers a caller set are replaced."""
    message_id = next((value for name, value in headers.items() if name.lower() == ID_HEADER), default_id)
    kept = {name: value for name, value in headers.items() if name.lower() not in SIGNING_HEADERS}
    keys = active_secrets(stored, at)
    if not keys:  # the endpoint was deleted: send unsigned rather than with a stale signature
        return kept
    return {**kept, **signing_headers(keys, message_id, body, at)}
