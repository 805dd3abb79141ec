"""How the dispatcher lets the jobs of one moment share transactions at light load, without holding up a busy one.

A claim and an outcome write cost a transaction each on the database thread, whatever the number of jobs they
carry. At light load each job paid for its own (100 jobs/s: every claim took one job, every outcome was written
alone). Two waits, both bounded by WAKE_COALESCE_MS (`window_s`), make the jobs of a moment travel together:

- WakeDelay: a worker hearing submissions in quick succession waits the window before it claims, so the jobs of
  that moment share a claim. A submission with none in the window before it is claimed at once: an idle system
  answers a lone job as fast as ever, and each batch of POST /jobs/batch is one wake-up. The worker's listener
  waits the window out itself, so the wake-ups published meanwhile are read together after it.
- OutcomeHold: attempts sent together (by one claim, or started with one outcome write) finish together, but
  their reports arrive one by one, and the first used to be written alone. Its outcome now waits for the others
  sent with it, at most the window, so that they share one write. The attempt itself is not delayed, only the
  recording of its result (and a retry due within the window, which is claimed once that is written). The
  dispatcher writes at once, without asking, when the slot is wanted (a waiting job takes it with the outcome, or
  the last claim got all the jobs it asked for) and when it drains.

At 100 jobs/s the claim's wait took a fifth of a job's CPU off for ~12 ms of first-attempt latency, and the
outcome's wait halves the outcome writes again, ~8% of the worker's CPU (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable


class WakeDelay:
    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self.clock = clock
        self._last = -math.inf

    def for_submission(self) -> float:
        """Seconds to wait before claiming for a submission heard now (to be asked for every one heard)."""
        now = self.clock()
        in_a_stream = now - self._last < self.window_s
        self._last = now
        return self.window_s if in_a_stream else 0.0


class OutcomeHold:
    """Which attempts went out together, and how long the outcomes waiting to be written may wait for the rest."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self.clock = clock
        self._sent_with: dict[Hashable, int] = {}  # attempt -> the sending it went out in
        self._in_request: Counter[int] = Counter()  # sending -> its attempts whose request is not done
        self._sendings = 0
        self._waiting_for: set[int] = set()  # the sendings of the outcomes waiting to be written
        self._deadline: float | None = None

    def sent(self, attempts: Iterable[Hashable]) -> None:
        """These attempts went out together."""
        self._sendings += 1
        for attempt in attempts:
            self._sent_with[attempt] = self._sendings
            self._in_request[self._sendings] += 1

    def finished(self, attempt: Hashable, outcome_waiting: bool) -> None:
        """The request of `attempt` is done; `outcome_waiting`: its outcome waits to be written."""
        sending = self._sent_with.pop(attempt, None)
        if sending is None:
            return
        self._in_request[sending] -= 1
        if self._in_request[sending] <= 0:
            del self._in_request[sending]
        if outcome_waiting:
            self._waiting_for.add(sending)

    def wait_s(self) -> float:
        """How much longer the waiting outcomes may wait for attempts sent with them (0: write them now)."""
        if not self.window_s or not any(sending in self._in_request for sending in self._waiting_for):
            return 0.0
        now = self.clock()
        if self._deadline is None:
            self._deadline = now + self.window_s
        return max(0.0, self._deadline - now)

    def written(self) -> None:
        """The waiting outcomes were taken to be written."""
        self._waiting_for.clear()
        self._deadline = None
