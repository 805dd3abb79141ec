"""One log format for every process: one line per event, with the ids that matter.

`LOG_FORMAT=text` (the default) writes readable lines; `LOG_FORMAT=json` one JSON object per line
(python-json-logger) with `time`, `level`, `process`, `logger`, `message` and, where there is one,
`request_id`, `job_id` and `inverter_id`. Those ids are context variables: the web sets the request
id per request, the retry actor the job id per attempt. gevent's patching makes context variables
greenlet-local, so concurrent requests and attempts never see each other's ids.
"""

from __future__ import annotations

import contextvars
import logging
import sys

LOG_FORMATS = ("text", "json")

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
inverter_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("inverter_id", default=None)
_CONTEXT = (("request_id", request_id), ("job_id", job_id), ("inverter_id", inverter_id))


class ContextIds(logging.Filter):
    """Puts the current request, job and inverter ids on every record (None where there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT:
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{name}={value}" for name, _ in _CONTEXT if (value := getattr(record, name, None)))
        return f"{line} [{ids}]" if ids else line


def configure_logging(level: str, process: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextIds())
    if log_format == "json":
        # Imported here: the text format (the default) never needs it, and every process start would pay it.
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(job_id)s %(inverter_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"process": process},
                json_ensure_ascii=False,
            )
        )
    else:
        handler.setFormatter(_TextFormatter(f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level, logging.INFO), handlers=[handler], force=True)
    # requests/urllib3 log every connection at DEBUG; keep them at WARNING unless asked.
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, logging.getLogger().level))


def one_line(exc: BaseException) -> str:
    """An exception as one line (drivers put newlines in their messages) for start-up errors."""
    return " ".join(str(exc).split()) or exc.__class__.__name__
