"""Which inverters an account may stream: each account's visible set, read once per VISIBLE_FOR_S, and
revocations applied to it at once.

A reconnect storm (a web restart, a team opening its plants) would otherwise ask the database once per
stream. A miss asks the database for just those inverters, so new access works at once; a revocation (a
member removed, an inverter deleted) drops the inverter from the sets at once, and a set read while a
revocation arrived is not kept, since the database may have answered before the change.
"""

from __future__ import annotations

import time

from models import inverters

# How long an account's visible set is reused; bounds how long a lost revocation message could matter.
VISIBLE_FOR_S = 2.0
# Accounts whose visible sets are kept; beyond it the cache starts afresh.
VISIBLE_ACCOUNTS = 10_000


class AccessCache:
    def __init__(self, owner):
        self.owner = owner
        # account id -> [until when, ids of the inverters it may view].
        self.visible: dict[str, list] = {}
        self.revocations = 0

    def visible_of(self, account_id: str, inverter_ids: list[str]) -> set[str]:
        """Which of these inverters the account may view."""
        now = time.monotonic()
        revocations = self.revocations  # a revocation while the database answers may be missing from it
        cached = self.visible.get(account_id)
        if cached is None or cached[0] <= now:
            if cached is not None:
                cached[0] = now + VISIBLE_FOR_S  # one refresh at a time; the others use the old set
            try:
                ids = self.owner.call(inverters.all_visible_ids, account_id)
            finally:
                if cached is not None:
                    cached[0] = now  # expired again, unless replaced below
            fresh = [now + VISIBLE_FOR_S, ids]
            if revocations == self.revocations:
                if len(self.visible) >= VISIBLE_ACCOUNTS:
                    self.visible.clear()
                self.visible[account_id] = fresh
            cached = fresh
        visible = {i for i in inverter_ids if i in cached[1]}
        missing = [i for i in inverter_ids if i not in visible]
        if missing:
            found = self.owner.call(inverters.visible_ids, account_id, missing)
            if revocations == self.revocations:
                cached[1].update(found)
            visible |= found
        return visible

    def revoke(self, inverter_id: str, account_id: str | None) -> None:
        """The account (every account, if None) lost access to the inverter."""
        self.revocations += 1
        for account, (_, ids) in self.visible.items():
            if account_id in (None, account):
                ids.discard(inverter_id)
