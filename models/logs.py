"""One log format for every process: one line per event, key=value pairs for the ids that matter."""
from __future__ import annotations

import logging
import sys


def configure_logging(level: str, process: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s",
        force=True,
    )
    # requests/urllib3 log every connection at DEBUG; keep them at WARNING unless asked.
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, logging.getLogger().level))


def one_line(exc: BaseException) -> str:
    """An exception as one line (drivers put newlines in their messages) for start-up errors."""
    return " ".join(str(exc).split()) or exc.__class__.__name__
