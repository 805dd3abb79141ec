"""Sending messages from outside an actor's own message loop (timers, greenlets, subscriptions)."""

from __future__ import annotations

import pykka


def tell_unless_dead(ref: pykka.ActorRef, message) -> None:
    """`ref.tell(message)`, ignored if the actor has stopped: a timer or greenlet outliving it is normal."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        pass
