"""Live-metrics actors (brand pollers and the recorder): started by the actor system's pollers role."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def start_metrics_actors(settings, db, redis):
    """Start the metrics actors; return a function that stops them."""
    log.info("no brand pollers configured yet")
    return lambda: None
