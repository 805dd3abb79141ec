"""HostSlots: which claimed jobs a dispatcher runs or holds, per host, within its limits. Pure: no I/O, no clock.

A claimed job is in exactly one place here until its attempt is reported finished or it is given back:
- running: its attempt holds a slot of its host (MAX_IN_FLIGHT_PER_HOST) and of the worker (MAX_IN_FLIGHT);
  `to_start` are the running ones whose attempt is not started yet (the next claim's transaction starts them);
- waiting: claimed, not started, queued behind its host's full slots;
- a successor: taken from its host's queue for an attempt whose request is done, to be started in that
  attempt's outcome transaction, not yet running.

Running attempts are keyed by (job id, attempt number), not job: a job whose retry is due at once can be
claimed and started again before its previous attempt's report arrives.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

Key = tuple[str, int]


def key_of(job: Any) -> Key:
    return (job.id, job.attempts)


class HostSlots:
    def __init__(self, max_in_flight: int, per_host: int):
        self.max_in_flight = max_in_flight
        self.per_host_cap = per_host
        self.running: dict[Key, str] = {}
        self.per_host: collections.Counter = collections.Counter()
        self.waiting: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self.waiting_count = 0
        self.successors: dict[Key, Any] = {}
        self.to_start: list = []

    # -- how much to claim ---------------------------------------------------------------------
    def free_slots(self) -> dict[str, int]:
        """Per-host slots free now, for the hosts with attempts running (a host with waiting jobs has none)."""
        return {host: max(0, self.per_host_cap - running) for host, running in self.per_host.items()}

    def wanted(self, claim_batch: int, free_slots: dict[str, int]) -> int:
        """How many jobs a claim may take: at most the worker's room, and only what can start now plus one
        host's worth of waiting jobs (jobs for a busy host would otherwise pile up claimed where no other worker
        can take them, and wait out a lease after a crash)."""
        queue_room = self.per_host_cap - self.waiting_count
        held = len(self.running) + len(self.successors) + self.waiting_count
        return max(0, min(claim_batch, self.max_in_flight - held, queue_room + sum(free_slots.values())))

    # -- a job's way through -------------------------------------------------------------------
    def take(self, job: Any) -> None:
        """`job`'s attempt holds a slot of its host."""
        self.running[key_of(job)] = job.host
        self.per_host[job.host] += 1

    def free(self, key: Key) -> str | None:
        """The attempt `key` gives its slot back; its host, or None if it held none."""
        host = self.running.pop(key, None)
        if host is not None:
            self.per_host[host] -= 1
            if self.per_host[host] <= 0:
                del self.per_host[host]
        return host

    def wait(self, job: Any, first: bool = False) -> None:
        """`job` (claimed, not started) queues for a slot of its host; `first`: at the head of the queue."""
        queue = self.waiting[job.host]
        if first:
            queue.appendleft(job)
        else:
            queue.append(job)
        self.waiting_count += 1

    def has_waiting(self, host: str) -> bool:
        return bool(self.waiting.get(host))

    def promote(self, host: str) -> None:
        """Give the free slots of `host` to its waiting jobs, in order; the next claim starts their attempts."""
        queue = self.waiting.get(host)
        while queue and self.per_host[host] < self.per_host_cap:
            job = queue.popleft()
            self.waiting_count -= 1
            self.take(job)
            self.to_start.append(job)
        if queue is not None and not queue:
            del self.waiting[host]

    def take_to_start(self) -> list:
        """The running jobs whose attempt the next claim must start (they are handed over, not kept here)."""
        to_start, self.to_start = self.to_start, []
        return to_start

    def give_back_to_start(self, jobs: Iterable[Any]) -> None:
        """A claim that was to start `jobs` failed: the next one starts them."""
        self.to_start = [*jobs, *self.to_start]

    def take_successor(self, host: str, key: Key) -> Any | None:
        """The next job waiting for `host`, handed to the running attempt `key` to start with its outcome."""
        queue = self.waiting.get(host)
        if not queue or key not in self.running:
            return None
        successor = queue.popleft()
        self.waiting_count -= 1
        if not queue:
            del self.waiting[host]
        self.successors[key] = successor
        return successor

    def successor_of(self, key: Key) -> Any | None:
        """The successor handed to the attempt `key`, no longer held as such."""
        return self.successors.pop(key, None)

    # -- leases and shutdown -------------------------------------------------------------------
    def held_ids(self) -> list[str]:
        """Every job whose lease this worker must keep: running, successors, waiting."""
        return (
            [job_id for job_id, _ in self.running]
            + [job.id for job in self.successors.values()]
            + [job.id for queue in self.waiting.values() for job in queue]
        )

    def running_ids(self) -> list[str]:
        return [job_id for job_id, _ in self.running]

    def give_up_unstarted(self) -> list[Key]:
        """Forget every claimed job whose attempt was not started (waiting, to start); their keys. Successors
        stay: their outcome's write is on its way and says whether it started them."""
        unstarted = [key_of(job) for queue in self.waiting.values() for job in queue]
        unstarted += [key_of(job) for job in self.to_start]
        for job in self.to_start:
            self.free(key_of(job))
        self.to_start = []
        self.waiting.clear()
        self.waiting_count = 0
        return unstarted

    def stats(self) -> dict[str, int]:
        return {
            "running": len(self.running),
            "waiting": self.waiting_count,
            "starting": len(self.to_start),
            "successors": len(self.successors),
        }
