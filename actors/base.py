"""The actors' one failure policy.

An exception escaping `on_receive` stops a Pykka actor, and a BaseException (a gevent Timeout is one)
stops every actor of the process. Every actor here therefore derives from `Actor` and writes
`handle(message)` instead: whatever a message's handling raises is logged with the actor's context,
`after_failure(message)` lets the actor re-arm what the message would have (a timer, a claim), and the
actor carries on with the next message (an `ask` whose handling failed gets None).
"""

from __future__ import annotations

import logging
from typing import Any

import pykka

log = logging.getLogger(__name__)


class Actor(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        try:
            return self.handle(message)
        except Exception:
            log.exception("%s: handling %s failed; carrying on", self.context(), type(message).__name__)
            try:
                self.after_failure(message)
            except Exception:
                log.exception("%s: recovering from a failed %s failed too", self.context(), type(message).__name__)
            return None

    def handle(self, message: Any) -> Any:
        raise NotImplementedError

    def after_failure(self, message: Any) -> None:
        """Re-arm whatever the failed message would have (default: nothing)."""

    def context(self) -> str:
        """What a log line needs to say which actor this is."""
        return type(self).__name__
