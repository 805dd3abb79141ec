"""Flask app factory: brand blueprints, admin endpoints and the fault hooks around them."""

from __future__ import annotations

import gevent
from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from .brands import enphase, fusionsolar, growatt_v1, growatt_v4, sandbox, solaredge
from .clock import SimClock, iso_utc
from .config import Fleet
from .faults import FaultError, Faults
from .metrics import exposition
from .world import World

BRANDS = (sandbox, growatt_v1, growatt_v4, solaredge, enphase, fusionsolar)
NGINX_ERROR_PAGE = "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center></body></html>"
REASONS = {500: "500 Internal Server Error", 502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable"}


def create_app(
    fleet: Fleet,
    clock: SimClock | None = None,
    profile: str = "fast",
    faults: Faults | None = None,
    limits_clock: str = "real",
) -> Flask:
    app = Flask(__name__)
    world = World(fleet, clock or SimClock(), profile, faults, limits_clock)
    app.extensions["mock_inverter"] = world
    for brand in BRANDS:
        app.register_blueprint(brand.bp)
    app.register_blueprint(_admin_blueprint(world))

    @app.get("/metrics")
    def metrics():
        body, content_type = exposition()
        return body, 200, {"Content-Type": content_type}

    def brand_of(path: str):
        return next((b for b in BRANDS if path.startswith(b.PREFIX + "/") or path == b.PREFIX), None)

    @app.before_request
    def inject_faults():
        brand = brand_of(request.path)
        if brand is None:
            return None
        # A brand that caps requests in progress counts each one from here (injected latency included) to
        # its answer (teardown below).
        arrive = getattr(brand, "arrive", None)
        refused = arrive() if arrive is not None else None
        if refused is not None:
            return refused
        if world.faults.latency_ms:
            gevent.sleep(world.faults.latency_ms / 1000.0)
        if world.faults.draw_error():
            status = world.faults.error_status()
            if brand_of(request.path) is sandbox:
                return sandbox.error(status, "injected_fault", REASONS[status])
            return NGINX_ERROR_PAGE.format(REASONS[status]), status, {"Content-Type": "text/html"}
        return None

    @app.teardown_request
    def depart(_exc):
        for departure in g.pop("departures", ()):
            departure()

    @app.after_request
    def name_the_refusing_limit(response):
        refused_by = g.get("refused_by")
        if refused_by:
            response.headers["X-Mock-Refused-By"] = refused_by
        return response

    @app.after_request
    def malform(response):
        if brand_of(request.path) and response.is_json and world.faults.draw_malformed():
            body = response.get_data()
            response.set_data(body[: max(1, len(body) // 2)])
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc):
        # Routing errors (404, 405) happen before any blueprint is chosen; answer in the brand's own shape.
        brand = brand_of(request.path)
        if brand is not None:
            return brand.http_error(exc)
        return jsonify(
            {"error": {"code": exc.name.lower().replace(" ", "_"), "message": exc.description, "details": {}}}
        ), exc.code

    return app


def _admin_blueprint(world: World):
    from flask import Blueprint

    bp = Blueprint("admin", __name__, url_prefix="/admin")

    @bp.get("/health")
    def health():
        return jsonify(
            {
                "ok": True,
                "sim_time": iso_utc(world.simulator.t),
                "clock": world.clock.now(),
                "clock_speed": world.clock.speed,
                "devices": len(world.fleet.devices),
                "profile": world.limits.profile,
            }
        )

    @bp.get("/stats")
    def stats():
        return jsonify(world.stats.snapshot())

    @bp.post("/stats/reset")
    def reset_stats():
        # Tests reset between cases; clearing the rate-limit windows too keeps cases independent.
        world.stats.reset()
        world.limits.reset()
        return jsonify({"ok": True})

    @bp.post("/tokens/reset")
    def reset_tokens():
        # Refresh tokens rotate: one used is refused after. Forgetting which were used, as a restart does,
        # lets tests start from the fleet's own tokens on a running mock instead of starting another.
        enphase.forget_used_refresh_tokens()
        return jsonify({"ok": True})

    @bp.get("/faults")
    def get_faults():
        return jsonify(world.faults.describe())

    @bp.post("/faults")
    def set_faults():
        settings = request.get_json(silent=True)
        try:
            world.faults.update(settings)
        except FaultError as exc:
            return jsonify({"error": {"code": "invalid_fault", "message": str(exc), "details": {}}}), 400
        world.apply_offline()
        return jsonify(world.faults.describe())

    @bp.errorhandler(Exception)
    def unexpected(exc):
        if isinstance(exc, HTTPException):
            return jsonify(
                {"error": {"code": exc.name.lower().replace(" ", "_"), "message": exc.description, "details": {}}}
            ), exc.code
        return jsonify({"error": {"code": "internal_error", "message": "unexpected server error", "details": {}}}), 500

    return bp
