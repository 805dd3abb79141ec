"""Live inverter events in Redis: how the pollers publish them and how streams read them back.

One Lua script publishes an event atomically:
  * gives it an id `<ms>-<seq>` from one clock key, so ids are unique and ordered across *all*
    inverters (a multi-inverter stream can then resume from one Last-Event-ID without gaps);
  * appends it to the inverter's capped replay log (a Stream; the entry id is the event id);
  * for a reading, remembers it as the inverter's latest and appends it to the ingest Stream the
    recorder consumes with a consumer group;
  * PUBLISHes it as JSON `{"id", "event", "inverter_id", "data"}` on `inverter:<id>`.
It is idempotent: a reading no newer than the latest one, or a status equal to the current one, is
skipped (an alert, published once per episode change by the alert engine, is always logged). So a
publisher that lost its connection mid-pipeline can simply send its batch again.
"""

from __future__ import annotations

import json
import re

from models.channels import INVERTER_EVENT_CLOCK, READINGS_INGEST, inverter_channel, inverter_latest, inverter_log

READING = "reading"
STATUS = "status"
ALERT = "alert"

_EVENT_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")

PUBLISH_SCRIPT = """
local kind = ARGV[1]
if kind == 'reading' then
  local last = redis.call('HGET', KEYS[3], 'time')
  if last and tonumber(ARGV[2]) <= tonumber(last) then return false end
elseif kind == 'status' then
  if redis.call('HGET', KEYS[3], 'status') == ARGV[2] then return false end
end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local seq = 0
local last_id = redis.call('GET', KEYS[5])
if last_id then
  local lms, lseq = string.match(last_id, '^(%d+)-(%d+)$')
  lms = tonumber(lms)
  if lms >= ms then ms = lms; seq = tonumber(lseq) + 1 end
end
local id = string.format('%d-%d', ms, seq)
redis.call('SET', KEYS[5], id)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], id, 'event', kind, 'data', ARGV[3])
if kind == 'reading' then
  redis.call('HSET', KEYS[3], 'time', ARGV[2], 'id', id, 'data', ARGV[3])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'inverter_id', ARGV[6], 'event_id', id,
             'time', ARGV[2], 'data', ARGV[3])
elseif kind == 'status' then
  redis.call('HSET', KEYS[3], 'status', ARGV[2])
end
redis.call('PUBLISH', KEYS[2], '{"id":"' .. id .. '","event":"' .. kind .. '","inverter_id":"' .. ARGV[6]
           .. '","data":' .. ARGV[3] .. '}')
return id
"""


def dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def publish_args(
    kind: str, inverter_id: str, order: str, data_json: str, log_maxlen: int, ingest_maxlen: int
) -> tuple[list, list]:
    """KEYS and ARGV of PUBLISH_SCRIPT for one event; `order` is a reading's time, the new status, or (unused)
    an alert's id."""
    keys = [
        inverter_log(inverter_id),
        inverter_channel(inverter_id),
        inverter_latest(inverter_id),
        READINGS_INGEST,
        INVERTER_EVENT_CLOCK,
    ]
    return keys, [kind, order, data_json, log_maxlen, ingest_maxlen, inverter_id]


def event_key(event_id: str) -> tuple[int, int] | None:
    """An event id as a sortable tuple, or None if it is not one of ours."""
    match = _EVENT_ID.match(event_id or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def replay(redis, inverter_id: str, after_id: str) -> list[tuple[str, str, str]]:
    """Events logged after `after_id` (exclusive): [(id, kind, data json)], oldest first."""
    return _events(redis.xrange(inverter_log(inverter_id), min="(" + after_id, max="+"))


def _events(entries) -> list[tuple[str, str, str]]:
    return [(entry_id, fields.get("event", READING), fields.get("data", "null")) for entry_id, fields in entries]


def snapshot(redis, inverter_ids: list[str], after_id: str | None) -> list:
    """For each inverter, in one atomic MULTI (so no event can fall between two inverters' reads):
    the events after `after_id`, or without it (id, reading json, status) of the latest reading."""
    pipe = redis.pipeline(transaction=True)
    for inverter_id in inverter_ids:
        if after_id is not None:
            pipe.xrange(inverter_log(inverter_id), min="(" + after_id, max="+")
        else:
            pipe.hmget(inverter_latest(inverter_id), "id", "data", "status")
    replies = pipe.execute()
    return [_events(reply) for reply in replies] if after_id is not None else replies


def forget(redis, inverter_id: str) -> None:
    """Drop an inverter's replay log and latest reading (it has been deleted)."""
    redis.delete(inverter_log(inverter_id), inverter_latest(inverter_id))
