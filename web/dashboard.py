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

from models import inverters, jobs, lifecycle
from models.accounts import account_names
from models.base import iso, now
from models.brands import ADAPTERS
from models.ids import looks_like_id
from models.lifecycle import job_view
from web.auth import current_account
from web.extensions import owner
from web.inverters import inverter_view, latest_readings
from web.jobs import SEARCH_TEXT, attempt_view

log = logging.getLogger(__name__)

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/ui",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

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
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


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


@bp.get("/inverters", endpoint="inverters")
def inverter_list():
    rows = owner().call(inverters.list_visible, g.account.id)
    items = [_inverter_summary(inverter, latest) for inverter, latest in zip(rows, latest_readings(rows))]
    return render_template("inverters.html", inverters=items)


# How the onboarding form presents each brand: its name, where its API lives, and what its credentials are
# called in its own portal. The fields themselves come from the adapters (credential_fields), so a field an
# adapter adds appears here with a plain label until it is given a better one.
BRAND_NAMES = {
    "sandbox": "Sandbox (the demo API)",
    "growatt_v4": "Growatt (OpenAPI v4)",
    "growatt_v1": "Growatt (OpenAPI v1, older accounts)",
    "solaredge": "SolarEdge",
    "enphase": "Enphase (Enlighten API v4)",
    "fusionsolar": "Huawei FusionSolar",
}
BRAND_ADDRESSES = {
    "sandbox": "http://127.0.0.1:5100",
    "growatt_v4": "https://openapi.growatt.com",
    "growatt_v1": "https://openapi.growatt.com",
    "solaredge": "https://monitoringapi.solaredge.com",
    "enphase": "https://api.enphaseenergy.com",
    "fusionsolar": "https://eu5.fusionsolar.huawei.com",
}
CREDENTIAL_LABELS = {
    ("sandbox", "api_key"): ("API key", "The key the sandbox gave you."),
    ("growatt_v4", "token"): ("API token", "In the Growatt app or ShineServer: account settings, API token."),
    ("growatt_v1", "token"): ("API token", "In the Growatt app or ShineServer: account settings, API token."),
    ("solaredge", "api_key"): ("API key", "In the SolarEdge monitoring portal: Admin, Site access, API access."),
    ("enphase", "client_id"): ("Client ID", "Of your application in the Enphase developer portal."),
    ("enphase", "client_secret"): ("Client secret", "Of the same application."),
    ("enphase", "api_key"): ("API key", "Of the same application."),
    ("enphase", "refresh_token"): (
        "Refresh token",
        "From authorising the application for your system. It is replaced as it is used; we keep the new one.",
    ),
    ("enphase", "plan"): ("Plan", "Your application's Enphase plan: it sets how often the system may be asked."),
    ("fusionsolar", "user_name"): ("API user name", "The northbound API account your installer created."),
    ("fusionsolar", "system_code"): ("System code", "That account's password (system code)."),
}


def _credential_field(brand: str, key: str, options=()) -> dict:
    label, help_text = CREDENTIAL_LABELS.get((brand, key), (key.replace("_", " ").capitalize(), ""))
    return {"name": key, "label": label, "help": help_text, "options": list(options)}


def onboarding_brands() -> list[dict]:
    brands = []
    for name, cls in ADAPTERS.items():
        brands.append(
            {
                "name": name,
                "label": BRAND_NAMES.get(name, name),
                "address": BRAND_ADDRESSES.get(name, "https://api.example.com"),
                "prefixes": [prefix for prefix in cls.root_prefixes if prefix],
                "fields": [_credential_field(name, key) for key in cls.credential_fields]
                + [_credential_field(name, key, allowed) for key, allowed in cls.credential_options.items()],
            }
        )
    return brands


@bp.get("/inverters/new")
def new_inverters():
    return render_template("inverters_new.html", brands=onboarding_brands())


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


# The jobs page's time filter: created within the last ...
CREATED_WITHIN = {
    "1h": ("the last hour", 3600),
    "24h": ("the last 24 hours", 86400),
    "7d": ("the last 7 days", 7 * 86400),
    "30d": ("the last 30 days", 30 * 86400),
}


@bp.get("/jobs", endpoint="jobs")
def job_list():
    """The list, filtered as the API's (a bad value is ignored, as a person may have edited the address)."""
    status = request.args.get("status") or None
    if status not in (None, *lifecycle.STATUSES):
        status = None
    search = (request.args.get("q") or "").strip() or None
    if search is not None and not SEARCH_TEXT.fullmatch(search):
        search = None
    within = request.args.get("within") if request.args.get("within") in CREATED_WITHIN else None
    since = now() - CREATED_WITHIN[within][1] if within else None
    before = request.args.get("before") or None
    if before is not None and not looks_like_id(before):
        before = None
    job_filter = jobs.JobFilter(status=status, search=search, since=since)
    rows = owner().call(jobs.list_jobs, g.account.id, job_filter, JOBS_PER_PAGE + 1, before)
    older = rows[JOBS_PER_PAGE - 1].id if len(rows) > JOBS_PER_PAGE else None
    counts = owner().call(jobs.count_by_status, g.account.id)
    # What the bulk buttons send: the same filter as the API takes it (the window as an absolute time).
    api_filter = {key: value for key, value in (("q", search), ("since", iso(since))) if value}
    return render_template(
        "jobs.html",
        jobs=[job_view(job) for job in rows[:JOBS_PER_PAGE]],
        counts=counts,
        total=sum(counts.values()),
        status=status,
        statuses=lifecycle.STATUSES,
        older=older,
        paged=before is not None,
        search=search,
        within=within,
        created_within=CREATED_WITHIN,
        filters={"status": status, "q": search, "within": within},
        api_filter=api_filter,
        filtered=bool(search or within),
        can_retry=status in (None, *lifecycle.REQUEUEABLE),
        can_cancel=status in (None, *lifecycle.CANCELLABLE),
    )


@bp.get("/jobs/new")
def new_job():
    return render_template("job_new.html")


@bp.get("/jobs/<job_id>")
def job(job_id):
    found = _job(job_id)
    if found is None:
        return _not_found("job")
    view = job_view(found)
    return render_template("job.html", job=view, request_text=_request_text(view["request"]), **_job_state(found))


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
    return owner().call(inverters.visible_inverter, g.account.id, inverter_id)


def _inverter_summary(inverter, latest) -> dict:
    event_id, reading, live_status = latest
    return {
        **inverter_view(inverter, g.account.id),
        "status": live_status or inverter.status,
        "last_reading_at": (reading or {}).get("time"),
        "last_event_id": event_id,
        "reading": reading,
    }


def _team(inverter) -> dict:
    def load():
        member_ids = inverters.member_ids(inverter.id)
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
    return owner().call_brief(jobs.get_job, g.account.id, job_id)


def _job_state(job) -> dict:
    """What the changing part of a job's page shows: the attempts with the waits between them."""
    attempts = owner().call(jobs.list_attempts, job.id)
    timeline, previous = [], None
    for attempt in attempts:
        # The first attempt of a run a person started (a retry after the job died or was cancelled) waited
        # from that click, not from the attempt before it: the time between is the person's, not the backoff's.
        by_hand = previous is not None and (
            previous.outcome == lifecycle.GIVE_UP or (job.budget_start and attempt.number == job.budget_start + 1)
        )
        previous_end = previous.finished_at if previous is not None else None
        if by_hand:
            wait_s = attempt.started_at - attempt.scheduled_at if attempt.scheduled_at is not None else None
        else:
            wait_s = attempt.started_at - previous_end if previous_end is not None else None
        timeline.append(
            {
                **attempt_view(attempt),
                "outcome": attempt.outcome or "running",
                "retried_by_hand": by_hand,
                "wait_s": None if wait_s is None else max(0.0, wait_s),
            }
        )
        previous = attempt
    waiting_s = None
    if job.status in lifecycle.CANCELLABLE and job.next_attempt_at is not None:
        waiting_s = max(0.0, job.next_attempt_at - now())
    return {
        "timeline": timeline,
        "waiting_s": waiting_s,
        "finished": job.status in lifecycle.TERMINAL,
        "can_cancel": job.status in lifecycle.CANCELLABLE,
        "can_retry": job.status in lifecycle.REQUEUEABLE,
    }


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
# (unit, its name, the next smaller unit shown with it, its name), largest first.
_DURATION_UNITS = ((86400, "d", 3600, "h"), (3600, "h", 60, "min"), (60, "min", 1, "s"))


@bp.app_template_filter("duration")
def duration(seconds) -> str:
    """1.234 -> "1.23 s", 0.0412 -> "41 ms", 60 -> "1 min", 3725 -> "1 h 2 min", 90000 -> "1 d 1 h"."""
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if round(seconds * 1000) < 1000:
        return f"{seconds * 1000:.0f} ms"
    if round(seconds, 1) < 60:
        return f"{float(f'{seconds:.3g}'):g} s"
    whole = round(seconds)  # rounded once, so 3599.6 s reads "1 h", never "60 min"
    big, big_unit, small, small_unit = next(units for units in _DURATION_UNITS if whole >= units[0])
    text = f"{whole // big} {big_unit}"
    rest = whole % big // small
    return f"{text} {rest} {small_unit}" if rest else text


@bp.app_template_filter("plural")
def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """3 | plural("attempt") -> "3 attempts"; 1 -> "1 attempt"."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"
