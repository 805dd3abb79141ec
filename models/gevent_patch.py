"""gevent's monkey-patching for the project's processes (`python -m web`, `python -m actors`, the mock
inverter), at a fraction of its start-up cost. Import this module and call patch_all() first, before
anything else is imported.

gevent.monkey.patch_all() tells its plugins about each module it patches, and looks them up each time:
some 25 importlib.metadata.entry_points() calls, each a scan of every installed distribution's metadata
(~0.15 s of CPU a process start in this project's environment, more with more packages installed). The
installed packages do not change while it patches, so here one scan answers all of them: the same plugins
are found and called (gevent's own among them), in the same order.
"""

from __future__ import annotations


def patch_all() -> None:
    from importlib import metadata

    from gevent import monkey

    everything = metadata.entry_points()
    look_up = metadata.entry_points
    metadata.entry_points = lambda **params: everything.select(**params) if params else everything  # type: ignore[assignment]
    try:
        monkey.patch_all()
    finally:
        metadata.entry_points = look_up
