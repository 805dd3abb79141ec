"""gunicorn settings for the web process in production: `gunicorn -c gunicorn.conf.py` (Procfile.production).

Every value comes from the one settings object (models/settings.py), so the environment variables of the
README's table mean the same under gunicorn as under `python -m web`; WEB_WORKERS sets the process count.
"""

from models.settings import get_settings
from web.server import HEALTH_RESERVE, server_limits

_settings = get_settings()

wsgi_app = "web:create_app()"
bind = f"{_settings.host}:{_settings.port}"
workers = _settings.web_workers
worker_class = "web.gunicorn_worker.Worker"
# gunicorn's pool must never be the limit: our server refuses past its own cap, with a JSON 503.
worker_connections = server_limits(_settings)["max_connections"] + HEALTH_RESERVE + 16
graceful_timeout = max(1, round(_settings.shutdown_grace_s))
timeout = 30
backlog = 4096
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
# No control socket (gunicorn 27 makes one per user by default; two servers on one machine would share it).
control_socket_disable = True
