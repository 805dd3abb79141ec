"""Claimer: the dispatcher's database side (claiming, starting, renewing and giving back leases), one worker's.

Each method is one write through the database owner, so it shares the owner's group commit with the
outcomes being written meanwhile; none of them holds any state of the dispatcher's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models import jobs, lifecycle, telemetry
from models.db import DatabaseOwner


@dataclass(frozen=True)
class ClaimResult:
    """The jobs a claim took (each `started` or not), which of the jobs it was to start it started (the others'
    lease was lost: not ours to send), and the next due time when it came back short of what was wanted."""

    jobs: list
    started_ids: frozenset = field(default_factory=frozenset)
    next_due_at: float | None = None


class Claimer:
    def __init__(self, db: DatabaseOwner, worker_id: str, lease_s: float, per_host_cap: int):
        self.db = db
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.per_host_cap = per_host_cap

    def claim(self, want: int, to_start: list, free_slots: dict[str, int]) -> ClaimResult:
        """One transaction: start the attempts of `to_start` (waiting jobs given a slot), claim up to `want` due
        jobs, start those that fit a free slot, and read when the next job is due if the claim came back short
        (in the same trip to the database thread). `free_slots` is the caller's view when the claim began; slots
        only free up since."""
        result = self.db.write_brief(self._start_and_claim, want, to_start, dict(free_slots))
        claimed = result.jobs
        if getattr(claimed, "abandoned", 0):
            telemetry.JOB_ATTEMPTS.labels(lifecycle.ABANDONED).inc(claimed.abandoned)
        if getattr(claimed, "dead", 0):
            telemetry.JOBS_DEAD.inc(claimed.dead)
        return result

    def _start_and_claim(self, want: int, to_start: list, free_slots: dict[str, int]) -> ClaimResult:
        started_ids = jobs.start_attempts(self.worker_id, [(job.id, job.attempts) for job in to_start])

        def start_now(job) -> bool:
            free = free_slots.get(job.host, self.per_host_cap)
            free_slots[job.host] = free - 1
            return free > 0

        claimed = jobs.claim_due(self.worker_id, want, self.lease_s, start_now=start_now) if want > 0 else []
        next_due = jobs.next_due_at() if len(claimed) < want else None
        return ClaimResult(claimed, frozenset(started_ids), next_due)

    def release(self, keys: list[tuple[str, int]]) -> int:
        """Give back claimed attempts (job id, number) never sent, uncharged."""
        return self.db.write_brief(jobs.release, self.worker_id, keys) if keys else 0

    def renew(self, job_ids: list[str]) -> int:
        return self.db.write_brief(jobs.renew_leases, self.worker_id, job_ids, self.lease_s) if job_ids else 0

    def expire(self, job_ids: list[str]) -> int:
        """Make these in-flight jobs claimable at once (their attempts will be recorded abandoned)."""
        return self.db.write_brief(jobs.expire_leases, self.worker_id, job_ids) if job_ids else 0
