"""Serving under gunicorn: its gevent worker, with our hardened server (web/server.py) inside it.

gunicorn's own gevent workers have no header-read deadline and answer overload by not accepting; this
worker runs the same `Server` as `python -m web`, so timeouts, the connection cap with its health
reserve and the JSON refusals hold in production too. On a graceful stop (SIGTERM, or a restart by
SIGHUP / max_requests) the worker stops taking requests and then ends the app's streams at once (in that
order, see `begin_stop`), so browsers resume with Last-Event-ID against another worker instead of waiting
out the graceful timeout.
"""

from __future__ import annotations

import logging

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker

from models.logs import configure_logging
from models.settings import get_settings
from web.extensions import collaborators_of, shutdown_hooks
from web.server import Handler, Server, begin_stop, server_limits


class _GunicornServer(Server):
    def __init__(self, listener, application, *, log=None, handler_class=None, **kwargs):
        # gunicorn's access logger is not a file (gevent's handler writes to one): our own logging instead.
        # The listening socket is gunicorn's, made with its own backlog setting.
        super().__init__(
            listener,
            application,
            log=None,
            error_log=logging.getLogger("web.server"),
            backlog=None,
            **server_limits(collaborators_of(application).settings),
            **kwargs,
        )


class Worker(GeventPyWSGIWorker):
    wsgi_handler = Handler

    def server_class(self, *args, **kwargs) -> _GunicornServer:
        # gunicorn keeps the servers it makes to itself; the stop below needs them.
        server = _GunicornServer(*args, **kwargs)
        self.servers.append(server)
        return server

    def init_process(self):
        self.servers: list[_GunicornServer] = []
        settings = get_settings()  # the environment's, as the app will read it: logging before the app is built
        configure_logging(settings.log_level, f"web[{self.pid}]", settings.log_format)
        super().init_process()

    def run(self):
        gevent.spawn(self._begin_stop_when_told)
        super().run()

    def _begin_stop_when_told(self):
        while self.alive:
            gevent.sleep(0.1)
        # gunicorn's own loop closes the servers too, but only at its next tick, up to a second later.
        begin_stop(self.servers, shutdown_hooks(self.wsgi))
