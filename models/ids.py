"""Sortable unique ids: creation time first, so newest-first listing is an index walk."""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


_lock = threading.Lock()
_last = (0, 0)


def new_id() -> str:
    """A 26-character ULID: 48 bits of milliseconds then 80 random bits, Crockford base32.

    Monotonic within a process: an id made in the same millisecond as the previous one is the
    previous one plus one, so creation order and sort order agree (newest-first listings).
    """
    global _last
    with _lock:
        ms, rand = int(time.time() * 1000), int.from_bytes(os.urandom(10), "big")
        if ms <= _last[0]:
            ms, rand = _last[0], _last[1] + 1
            if rand >= 1 << 80:
                ms, rand = ms + 1, 0
        _last = (ms, rand)
    value = (ms << 80) | rand
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def looks_like_id(text: str) -> bool:
    return isinstance(text, str) and len(text) == 26 and all(c in _CROCKFORD for c in text)
