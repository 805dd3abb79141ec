// Shared by every dashboard page: calling the JSON API, showing times, signing out, and live streams.
"use strict";

window.Dash = (function () {
  // -- the JSON API ------------------------------------------------------------------------------
  // The session cookie authenticates every call (same origin); errors come back in the API's one
  // envelope {"error": {"code", "message", "details"}}.
  // options: headers (added to the request's), signal (an AbortController's: an aborted request answers
  // { ok: false, aborted: true }, and whatever the server answered it never reaches the page).
  async function api(method, url, body, options) {
    options = options || {};
    // X-Requested-With: a header a cross-site form cannot send. The API refuses a change made with the
    // session cookie alone without it (web/auth.py, 403 csrf_header_missing), beside SameSite=Lax.
    const headers = Object.assign({ Accept: "application/json", "X-Requested-With": "dashboard" }, options.headers || {});
    const init = { method: method, headers: headers, credentials: "same-origin", signal: options.signal };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const aborted = { ok: false, aborted: true, status: 0, data: null, message: "stopped" };
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      if (err.name === "AbortError") return aborted;
      return { ok: false, status: 0, data: null, message: "The server cannot be reached. Check your connection and try again." };
    }
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (err) {
        if (err.name === "AbortError") return aborted;
        data = null;
      }
    }
    const message = response.ok ? "" : errorMessage(response.status, data);
    if (response.status === 401) toSignIn();
    return { ok: response.ok, status: response.status, data: data, message: message,
             retryAfter: response.headers.get("Retry-After") };
  }

  // -- an expired or revoked session -----------------------------------------------------------------
  // Any page but sign-in itself sends the person to sign in again, back here afterwards.
  const SIGN_IN_PATH = "/ui/sign-in";

  function toSignIn() {
    if (window.location.pathname === SIGN_IN_PATH) return false;
    const here = window.location.pathname + window.location.search;
    window.location.assign(SIGN_IN_PATH + "?next=" + encodeURIComponent(here));
    return true;
  }

  // An EventSource does not say why it failed: ask the API whether the session is still valid.
  let probing = null;
  function checkSession() {
    if (!probing) {
      probing = fetch("/streams/stats", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { if (response.status === 401) toSignIn(); })
        .catch(function () { /* unreachable: the stream's own state says so */ })
        .finally(function () { probing = null; });
    }
    return probing;
  }

  function errorMessage(status, data) {
    const error = data && data.error;
    if (status === 401) return "Your session has ended. Sign in again.";
    if (error && error.message) return error.message;
    return "The request failed (HTTP " + status + ").";
  }

  function showError(element, message) {
    if (!element) return;
    element.textContent = message || "";
    element.hidden = !message;
  }

  // -- times -------------------------------------------------------------------------------------
  // Times arrive as ISO-8601 UTC; people read them in their own zone, recent ones as "12 s ago".
  const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  function relative(ms) {
    const s = Math.round(ms / 1000);
    const a = Math.abs(s);
    let text;
    if (a < 2) return "just now";
    if (a < 60) text = a + " s";
    else if (a < 3600) text = Math.floor(a / 60) + " min";
    else if (a < 86400) text = Math.floor(a / 3600) + " h";
    else text = Math.floor(a / 86400) + " d";
    return s >= 0 ? text + " ago" : "in " + text;
  }

  function renderTime(el, now) {
    const iso = el.getAttribute("datetime");
    if (!iso) return;
    const at = Date.parse(iso);
    if (isNaN(at)) return;
    const full = absolute.format(new Date(at));
    if (el.hasAttribute("data-relative")) {
      el.textContent = relative(now - at);
      el.title = full;
    } else {
      el.textContent = full;
    }
  }

  function refreshTimes(root) {
    const now = Date.now();
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) { renderTime(el, now); });
  }

  // -- live streams ------------------------------------------------------------------------------
  // An EventSource that says how it is doing (live / reconnecting / offline) and always resumes
  // after the last event it delivered. The browser reconnects by itself on a dropped connection and
  // sends Last-Event-ID; when it gives up (a refused or failed response), this opens a new
  // EventSource with ?last_event_id= so nothing published meanwhile is missed.
  const OFFLINE_AFTER_MS = 20000;
  const MAX_REOPEN_DELAY_MS = 15000;

  function LiveStream(url, options) {
    this.url = url;
    this.handlers = options.events || {};
    this.onState = options.onState || function () {};
    this.lastEventId = options.lastEventId || null;
    this.state = null;
    this.source = null;
    this.failures = 0;
    this.lostAt = null;
    this.reopenTimer = null;
    this.setState("connecting");
    this.open();
    const self = this;
    window.addEventListener("offline", function () { self.setState("offline"); });
    window.addEventListener("online", function () { if (self.state !== "live") self.reopen(0); });
    // Without this, a long outage would leave "reconnecting" on screen for ever.
    this.watchdog = setInterval(function () {
      if (self.state === "reconnecting" && self.lostAt && Date.now() - self.lostAt > OFFLINE_AFTER_MS) {
        self.setState("offline");
      }
    }, 1000);
  }

  LiveStream.prototype.open = function () {
    const target = new URL(this.url, window.location.href);
    if (this.lastEventId) target.searchParams.set("last_event_id", this.lastEventId);
    const source = new EventSource(target.toString());
    this.source = source;
    const self = this;
    source.onopen = function () {
      self.failures = 0;
      self.lostAt = null;
      self.setState("live");
    };
    source.onerror = function () {
      if (self.source !== source) return;
      if (!self.lostAt) self.lostAt = Date.now();
      checkSession();
      if (source.readyState === EventSource.CLOSED) {
        self.reopen(Math.min(MAX_REOPEN_DELAY_MS, 1000 * ++self.failures));   // 1 s, 2 s, 3 s … 15 s
      }
      if (!navigator.onLine) self.setState("offline");
      else if (self.state !== "offline" || Date.now() - self.lostAt < OFFLINE_AFTER_MS) self.setState("reconnecting");
    };
    Object.keys(this.handlers).forEach(function (name) {
      source.addEventListener(name, function (event) {
        if (event.lastEventId) self.lastEventId = event.lastEventId;
        let data = null;
        try { data = JSON.parse(event.data); } catch (err) { return; }
        self.handlers[name](data, event.lastEventId || null);
      });
    });
  };

  LiveStream.prototype.reopen = function (delayMs) {
    if (this.closed) return;
    if (this.source) this.source.close();
    clearTimeout(this.reopenTimer);
    const self = this;
    this.reopenTimer = setTimeout(function () { self.open(); }, delayMs);
  };

  // For good: a page that watches another set of things opens another stream.
  LiveStream.prototype.close = function () {
    this.closed = true;
    clearTimeout(this.reopenTimer);
    clearInterval(this.watchdog);
    if (this.source) this.source.close();
  };

  LiveStream.prototype.setState = function (state) {
    if (state === this.state) return;
    this.state = state;
    this.onState(state);
  };

  // Connects a LiveStream's state to a connection indicator drawn by the connection_indicator macro.
  function indicator(element) {
    return function (state) {
      if (!element) return;
      element.dataset.state = state;
      const label = element.querySelector(".connection-label");
      if (label) label.textContent = state;
    };
  }

  // -- page furniture ----------------------------------------------------------------------------
  function wireSignOut() {
    document.querySelectorAll("[data-sign-out]").forEach(function (button) {
      button.addEventListener("click", async function () {
        button.disabled = true;
        await api("DELETE", "/session");
        window.location.assign(button.dataset.signInUrl);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    refreshTimes();
    setInterval(refreshTimes, 1000);
    wireSignOut();
  });

  // -- status badges ---------------------------------------------------------------------------
  // The client side of the status_badge template macro; true if the badge changed.
  function setBadge(badge, status) {
    if (!badge || !status) return false;
    const text = status.replace(/_/g, " ");
    if (badge.textContent === text) return false;
    badge.textContent = text;
    badge.className = "badge badge-" + status;
    return true;
  }

  return {
    api: api,
    setBadge: setBadge,
    showError: showError,
    toSignIn: toSignIn,
    refreshTimes: refreshTimes,
    LiveStream: LiveStream,
    indicator: indicator,
  };
})();
