"""The dashboard: server-rendered pages for people, under /ui, on top of the JSON API.

Pages are rendered from the same queries and views the API uses. Everything that changes state
(signing in and out, submitting, cancelling and retrying jobs, team members) is done by the page's
JavaScript calling the JSON API with the session cookie, so each rule lives in one place; live data
comes from the API's event streams. Two small HTML fragments (a job's state, an inverter's team) let
the pages refresh a part of themselves with the same templates that drew it.
"""
from __future__ import annotations

import json
import logging
import os
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, g, redirect, render_template, request, url_for

from models import inverters as inverter_queries
from models import jobs as job_queries
from models import lifecycle
from models.lifecycle import job_view
from models.accounts import account_names
from models.base import now
from models.db import owner
from models.ids import looks_like_id
from web.auth import current_account
from web.inverters import inverter_view, latest_readings
from web.jobs import attempt_view

log = logging.getLogger(__name__)

bp = Blueprint("dashboard", __name__, url_prefix="/ui", template_folder="templates",
               static_folder="static", static_url_path="/static")

# The site's root, outside /ui: people who type the bare address land on the dashboard.
root = Blueprint("root", __name__)


@root.get("/")
def site_root():
    return redirect(url_for("dashboard.home"))


JOBS_PER_PAGE = 25
# Pages reachable without a session (everything else sends the visitor to sign in first).
_PUBLIC_ENDPOINTS = {"dashboard.sign_in", "dashboard.static"}
# Fragments are fetched by scripts: they answer 401 instead of redirecting to the sign-in page.
_FRAGMENT_ENDPOINTS = {"dashboard.job_panel", "dashboard.team"}

# No inline script or style and nothing from another origin: the page can only talk to this server.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


# -- sessions and headers ------------------------------------------------------------------------
@bp.before_request
def _require_session():
    if request.endpoint in _PUBLIC_ENDPOINTS:
        return None
    if current_account() is not None:
        return None
    if request.endpoint in _FRAGMENT_ENDPOINTS:
        return Response("sign in again", status=401, mimetype="text/plain")
    return redirect(url_for("dashboard.sign_in", next=request.full_path.rstrip("?")))


@bp.after_request
def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"  # pages show one account's data
    return response


@bp.app_template_global()
def asset(filename: str) -> str:
    """A static file's URL with its modification time, so browsers never run a stale script."""
    try:
        version = int(os.stat(os.path.join(bp.static_folder, filename)).st_mtime)
    except OSError:
        version = 0
    return url_for("dashboard.static", filename=filename, v=version)


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: only a dashboard path on this site (no open redirect)."""
    default = url_for("dashboard.inverters")
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/") or "\\" in target:
        return default
    return target


def _not_found(what: str):
    return render_template("not_found.html", what=what), 404


# -- pages -----------------------------------------------------------------------------------------
@bp.get("/")
def home():
    return redirect(url_for("dashboard.inverters"))


@bp.get("/sign-in")
def sign_in():
    next_url = _safe_next(request.args.get("next"))
    if current_account() is not None:
        return redirect(next_url)
    return render_template("sign_in.html", next_url=next_url)


@bp.get("/inverters")
def inverters():
    rows = owner().call(inverter_queries.list_visible, g.account.id)
    items = [_inverter_summary(inverter, latest) for inverter, latest in zip(rows, latest_readings(rows))]
    return render_template("inverters.html", inverters=items)


@bp.get("/inverters/<inverter_id>")
def inverter(inverter_id):
    found = _visible_inverter(inverter_id)
    if found is None:
        return _not_found("inverter")
    [latest] = latest_readings([found])
    return render_template("inverter.html", inverter=_inverter_summary(found, latest), team=_team(found))


@bp.get("/inverters/<inverter_id>/team")
def team(inverter_id):
    found = _visible_inverter(inverter_id)
    if found is None:
        abort(404)
    return render_template("_team.html", inverter_id=found.id, team=_team(found))


@bp.get("/jobs")
def jobs():
    status = request.args.get("status") or None
    if status not in (None, *lifecycle.STATUSES):
        status = None
    before = request.args.get("before") or None
    if before is not None and not looks_like_id(before):
        before = None
    rows = owner().call(job_queries.list_jobs, g.account.id, job_queries.JobFilter(status=status), JOBS_PER_PAGE + 1,
                      before)
    older = rows[JOBS_PER_PAGE - 1].id if len(rows) > JOBS_PER_PAGE else None
    counts = owner().call(job_queries.count_by_status, g.account.id)
    return render_template("jobs.html", jobs=[job_view(job) for job in rows[:JOBS_PER_PAGE]], counts=counts,
                           total=sum(counts.values()), status=status, statuses=lifecycle.STATUSES,
                           older=older, paged=before is not None)


@bp.get("/jobs/new")
def new_job():
    return render_template("job_new.html")


@bp.get("/jobs/<job_id>")
def job(job_id):
    found = _job(job_id)
    if found is None:
        return _not_found("job")
    view = job_view(found)
    return render_template("job.html", job=view, request_text=_request_text(view["request"]),
                           **_job_state(found))


@bp.get("/jobs/<job_id>/panel")
def job_panel(job_id):
    found = _job(job_id)
    if found is None:
        abort(404)
    return render_template("_job_panel.html", job=job_view(found), **_job_state(found))


@bp.route("/<path:unknown>")
def unknown_page(unknown):
    return _not_found("page")


# -- inverters ---------------------------------------------------------------------------------------
def _visible_inverter(inverter_id: str):
    if not looks_like_id(inverter_id):
        return None
    return owner().call(inverter_queries.visible_inverter, g.account.id, inverter_id)


def _inverter_summary(inverter, latest) -> dict:
    event_id, reading, live_status = latest
    return {**inverter_view(inverter, g.account.id), "status": live_status or inverter.status,
            "last_reading_at": (reading or {}).get("time"), "last_event_id": event_id, "reading": reading}


def _team(inverter) -> dict:
    def load():
        member_ids = inverter_queries.member_ids(inverter.id)
        names = account_names([inverter.owner_id, *member_ids])
        return member_ids, names

    member_ids, names = owner().call(load)
    return {
        "owner": {"id": inverter.owner_id, "name": names.get(inverter.owner_id, inverter.owner_id)},
        "members": [{"id": m, "name": names.get(m, m)} for m in member_ids],
        "is_owner": inverter.owner_id == g.account.id,
    }


# -- jobs --------------------------------------------------------------------------------------------
def _job(job_id: str):
    if not looks_like_id(job_id):
        return None
    return owner().call(job_queries.get_job, g.account.id, job_id)


def _job_state(job) -> dict:
    """What the changing part of a job's page shows: the attempts with the waits between them."""
    attempts = owner().call(job_queries.list_attempts, job.id)
    timeline, previous_end = [], None
    for attempt in attempts:
        started = attempt.started_at
        timeline.append({
            **attempt_view(attempt),
            "outcome": attempt.outcome or "running",
            "wait_s": (started - previous_end) if started is not None and previous_end is not None else None,
        })
        previous_end = attempt.finished_at or previous_end
    waiting_s = None
    if job.status in lifecycle.CANCELLABLE and job.next_attempt_at is not None:
        waiting_s = max(0.0, job.next_attempt_at - now())
    return {"timeline": timeline, "waiting_s": waiting_s, "finished": job.status in lifecycle.TERMINAL,
            "can_cancel": job.status in lifecycle.CANCELLABLE,
            "can_retry": job.status in lifecycle.REQUEUEABLE}


def _request_text(request_view: dict) -> str:
    """The request as an HTTP message for a person to read (job_view has already masked secrets)."""
    lines = [f"{request_view['method']} {request_view['url']}"]
    lines += [f"{name}: {value}" for name, value in (request_view.get("headers") or {}).items()]
    if "json" in request_view:
        lines += ["", json.dumps(request_view["json"], indent=2, ensure_ascii=False)]
    elif request_view.get("body") is not None:
        lines += ["", request_view["body"]]
    return "\n".join(lines)


# -- template helpers ------------------------------------------------------------------------------
@bp.app_template_filter("duration")
def duration(seconds) -> str:
    """1.234 -> "1.23 s", 0.0412 -> "41 ms", 3725 -> "1 h 2 min"."""
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"

