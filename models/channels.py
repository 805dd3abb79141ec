"""Names of Redis channels and keys: the one place both web and worker look them up."""

#: Published by the web process after a job is committed or re-queued; the dispatcher wakes on it.
JOBS_WAKEUP = "jobs:wakeup"

#: Prefix of per-job state-change channels (`job:<id>`).
JOB_CHANNEL_PREFIX = "job:"

#: Prefix of per-inverter reading channels (`inverter:<id>`) and the pattern web subscribes to.
INVERTER_CHANNEL_PREFIX = "inverter:"
INVERTER_PATTERN = "inverter:*"

#: Prefix of per-inverter replay logs (Redis Streams, capped).
INVERTER_LOG_PREFIX = "inverter-log:"

#: Per-inverter hash holding the newest reading (its event id and JSON) and the connectivity status.
INVERTER_LATEST_PREFIX = "inverter-latest:"

#: Key holding the last event id handed out, so ids are unique and ordered across all inverters.
INVERTER_EVENT_CLOCK = "inverter-log:clock"

#: One Stream of every reading, consumed by the recorder's consumer group (XREADGROUP/XACK).
READINGS_INGEST = "readings:ingest"
RECORDER_GROUP = "recorder"

#: Published when someone loses access to an inverter (a member removed, the inverter deleted):
#: JSON {"inverter_id", "account_id" (null: everyone)}; every web process closes those streams.
INVERTER_ACCESS_REVOKED = "inverter-access:revoked"

#: Published when inverters are onboarded or removed, so pollers pick them up without restart.
INVERTERS_CHANGED = "inverters:changed"

#: Prefix of per-connection hashes: inverter id -> when its poller last asked the brand (epoch seconds),
#: so a poller taking a connection over does not ask a device again sooner than the brand allows.
POLLER_SENT_PREFIX = "poller-sent:"

#: Prefix of the lease keys that make one poller process own a brand connection.
POLLER_LEASE_PREFIX = "poller-lease:"


def job_channel(job_id: str) -> str:
    return f"{JOB_CHANNEL_PREFIX}{job_id}"


def account_jobs_channel(account_id: str) -> str:
    """Every job event of one account (the jobs list), under the same `job:*` pattern web subscribes to.
    A job id never starts with "account:", so it never names a job's own channel."""
    return f"{JOB_CHANNEL_PREFIX}account:{account_id}"


def inverter_channel(inverter_id) -> str:
    return f"{INVERTER_CHANNEL_PREFIX}{inverter_id}"


def inverter_log(inverter_id) -> str:
    return f"{INVERTER_LOG_PREFIX}{inverter_id}"


def poller_lease(connection_id) -> str:
    return f"{POLLER_LEASE_PREFIX}{connection_id}"


def inverter_latest(inverter_id) -> str:
    return f"{INVERTER_LATEST_PREFIX}{inverter_id}"


def poller_sent(connection_id) -> str:
    return f"{POLLER_SENT_PREFIX}{connection_id}"


#: Calendar quota windows: hash per connection, window (index in the brand's quota) and period start
#: (epoch seconds): field = the scope's instance, value = calls counted (models/brands/budget.py).
QUOTA_CALENDAR_PREFIX = "quota:"
#: Rolling quota windows: a sorted set per connection, window and instance, one member per unit charged.
QUOTA_ROLLING_PREFIX = "quota-roll:"
#: A connection's last throttling reply and the pause it set (shown by GET /connections/<id>).
QUOTA_STATE_PREFIX = "quota-state:"


def quota_calendar(connection_id, window: int, period_start: int) -> str:
    return f"{QUOTA_CALENDAR_PREFIX}{connection_id}:{window}:{period_start}"


def quota_rolling(connection_id, window: int, instance: str) -> str:
    return f"{QUOTA_ROLLING_PREFIX}{connection_id}:{window}:{instance}"


def quota_state(connection_id) -> str:
    return f"{QUOTA_STATE_PREFIX}{connection_id}"


#: Published when alert rules are created, changed or deleted, so alert engines reload them.
ALERT_RULES_CHANGED = "alert-rules:changed"

#: Hash inverter id -> when an alert engine last heard from it (epoch seconds), and when an engine last
#: saved it: a restarted engine resumes each offline timer where it stood (actors/alerts.py).
ALERT_LAST_SEEN = "alert-engine:last-seen"
#: Hash "<rule id> <inverter id>" -> since when (a reading's time) that inverter's production has been under
#: its production_low rule's threshold, while that count runs: a restarted engine resumes it.
ALERT_BELOW_SINCE = "alert-engine:below-since"
ALERT_ENGINE_ALIVE = "alert-engine:alive"
