"""The actors' one failure policy (actors/base.py): a failing message is logged and the actor carries on."""

from __future__ import annotations

import logging

from actors.base import Actor


class Flaky(Actor):
    def __init__(self):
        super().__init__()
        self.rearmed = []

    def handle(self, message):
        if message == "boom":
            raise ValueError("boom")
        return f"ok {message}"

    def after_failure(self, message):
        self.rearmed.append(message)

    def context(self):
        return "flaky actor"


def test_a_message_that_raises_is_logged_with_context_and_the_actor_goes_on(caplog):
    ref = Flaky.start()
    try:
        with caplog.at_level(logging.ERROR, logger="actors.base"):
            ref.tell("boom")
            assert ref.ask("after") == "ok after"
            assert ref.ask("boom") is None
        assert ref.is_alive()
        assert ref.proxy().rearmed.get() == ["boom", "boom"]
        assert [r.getMessage() for r in caplog.records] == ["flaky actor: handling str failed; carrying on"] * 2
    finally:
        ref.stop()
