"""When a submission's wake-up starts a claim: at once for a lone submission, after a short wait in a stream.

A claim and the outcome write that follows it cost a transaction each on the database thread, whatever the
number of jobs they carry. At light load each job paid for its own (100 jobs/s: every claim took one job). A
worker hearing submissions in quick succession waits `window_s` before it claims, so the jobs of that moment
share a claim and then an outcome write: at 100 jobs/s, 20 ms take a fifth of the job's CPU off for ~12 ms of
first-attempt latency (docs/benchmarks.md). A submission with none in the window before it is claimed at once:
an idle system answers a lone job as fast as ever, and each batch of POST /jobs/batch is one wake-up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


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
