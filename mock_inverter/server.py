"""Serving: a gevent WSGI server whose handler can drop connections, plus the tick loop beside it."""

from __future__ import annotations

import socket
import struct

import gevent
from gevent.pywsgi import WSGIHandler, WSGIServer

from .physics import DAY_S, Curve, CurveKey, day_curve

MAX_TICKS_PER_WAKEUP = 100  # bounds how long one catch-up burst holds the hub
PREFETCH_REAL_S = 120.0


def _curve_on_a_thread(key: CurveKey, utc_day: int) -> Curve:
    # Off the hub: the first curve a process computes imports pandas and pvlib (~0.9 s of CPU, seconds on a busy
    # machine), and a stop signal or a request must not wait behind it.
    return gevent.get_hub().threadpool.apply(day_curve, (key, utc_day))


class FaultAwareHandler(WSGIHandler):
    def handle(self):
        # pywsgi writes headers and body separately; without NODELAY, Nagle plus the client's delayed ACK
        # adds ~40 ms to every keep-alive response.
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle()

    def handle_one_response(self):
        world = self.server.world
        # During an outage brand requests get a TCP reset; /admin stays up so tests can steer the mock.
        if not self.path.startswith("/admin") and world.faults.in_outage(world.clock.now()):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        super().handle_one_response()


class MockServer:
    def __init__(self, app, host: str = "127.0.0.1", port: int = 5100, access_log: bool = False):
        self.world = app.extensions["mock_inverter"]
        self.wsgi = WSGIServer(
            (host, port), app, handler_class=FaultAwareHandler, log="default" if access_log else None
        )
        self.wsgi.world = self.world
        self._ticker = None

    @property
    def port(self) -> int:
        return self.wsgi.server_port

    def start(self) -> None:
        self.wsgi.start()
        self._ticker = gevent.spawn(self._tick_loop)

    def serve_forever(self) -> None:
        self.start()
        self.wsgi._stop_event.wait()

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.kill(block=False)
        self.wsgi.stop(timeout=0.5)

    def _tick_loop(self) -> None:
        sim, clock = self.world.simulator, self.world.clock
        while True:
            sim.advance_to(clock.now(), max_ticks=MAX_TICKS_PER_WAKEUP)
            next_midnight = (sim.t // DAY_S + 1) * DAY_S
            if (next_midnight - sim.t) / clock.speed < PREFETCH_REAL_S:
                sim.curves.prefetch_step(int(next_midnight // DAY_S), compute=_curve_on_a_thread)
            wait = (sim.start + (sim.tick_no + 1) * sim.tick_s - clock.now()) / clock.speed
            gevent.sleep(min(max(wait, 0.002), 1.0))
