"""The web process: Flask application factory with one blueprint per area."""

from __future__ import annotations

from flask import Flask

from models.schema import ensure_schema
from models.settings import Settings
from web import session
from web.errors import register_error_handlers
from web.extensions import Collaborators, collaborators_of, run_shutdown_hooks, shutdown_hooks


def create_app(settings: Settings | None = None) -> Flask:
    """The app, owning what its settings name (web/extensions.py); without settings, the environment's."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.request_body_limit)
    app.json.sort_keys = False
    app.session_interface = session.NoCookieSession()
    collaborators = Collaborators.open(settings)
    try:
        ensure_schema(collaborators.owner)
    except BaseException:
        collaborators.close()
        raise
    collaborators.init_app(app)
    register_error_handlers(app)

    from web import alerts, dashboard, health, inverters, jobs, openapi, request_ids, streams, telemetry

    request_ids.install(app)
    telemetry.install(app)
    app.register_blueprint(health.bp)
    jobs.install(app)
    app.register_blueprint(session.bp)
    inverters.install(app)
    app.register_blueprint(alerts.bp)
    streams.install(app)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(dashboard.root)
    return app


def close_app(app: Flask) -> None:
    """End the app's streams and let go of its Redis client and database owner (tests, embedding).

    Every shutdown hook runs and the collaborators are let go even when a hook fails; the first failure is then
    raised to the caller, who asked for the close and may want to know (a stopping server logs it instead:
    web/server.py `begin_stop`)."""
    try:
        failures = run_shutdown_hooks(shutdown_hooks(app))
    finally:
        collaborators_of(app).close()
    if failures:
        raise failures[0]
