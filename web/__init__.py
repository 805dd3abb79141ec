"""The web process: Flask application factory with one blueprint per area."""

from __future__ import annotations

from flask import Flask

from models.db import open_database
from models.net.policy import DestinationPolicy
from models.schema import ensure_schema
from models.settings import Settings, get_settings
from web import session
from web.errors import register_error_handlers


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask(__name__)
    app.config.update(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.request_body_limit,
        DESTINATION_POLICY=DestinationPolicy.from_settings(settings),
    )
    app.json.sort_keys = False
    app.session_interface = session.NoCookieSession()
    ensure_schema(open_database(settings.database_url))
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
