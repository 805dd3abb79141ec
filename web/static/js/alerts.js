// The inverter page's alerts: the list from GET /inverters/<id>/alerts, new and cleared ones live from the
// page's stream (inverter.js hands each `alert` event on as an "inverter-alert" DOM event), and the owner's
// Acknowledge button (POST …/alerts/<id>/acknowledge). Buttons are real buttons: reachable by keyboard.
"use strict";

(function () {
  const TITLES = {
    offline: "Offline",
    fault: "Fault reported",
    battery_low: "Battery low",
    production_low: "Low production",
    daily_summary: "Daily energy summary",
  };

  function number(v, unit) {
    return v === null || v === undefined ? "–" : Math.round(v) + " " + unit;
  }

  function describe(alert) {
    const v = alert.values || {};
    switch (alert.kind) {
      case "offline": return "No reading for " + v.minutes + " min";
      case "fault": return "Device status: " + (v.status || "fault");
      case "battery_low": return "State of charge " + number(v.battery_soc_pct, "%") + " (below " + v.below_pct + " %)";
      case "production_low": return "Solar " + number(v.pv_power_w, "W") + " of " + number(v.expected_w, "W") + " expected";
      case "daily_summary": return "Energy today " + number(v.energy_today_wh, "Wh");
      default: return "";
    }
  }

  function timeElement(iso) {
    const el = document.createElement("time");
    el.setAttribute("datetime", iso);
    el.setAttribute("data-relative", "");
    el.textContent = iso;
    return el;
  }

  function AlertList(section) {
    this.section = section;
    this.url = section.dataset.alertsUrl;
    this.canAcknowledge = section.dataset.canAcknowledge === "true";
    this.list = section.querySelector("[data-alert-list]");
    this.note = section.querySelector("[data-alerts-note]");
    this.error = section.querySelector("[data-alerts-error]");
    this.alerts = new Map();
  }

  AlertList.prototype.load = async function () {
    const reply = await Dash.api("GET", this.url);
    if (!reply.ok) {
      this.note.textContent = "Alerts could not be loaded: " + reply.message;
      return;
    }
    const self = this;
    reply.data.alerts.forEach(function (alert) { self.alerts.set(alert.alert_id, alert); });
    this.render();
  };

  // An alert event from the stream: a new episode, or one that cleared. Acknowledgement is not in it.
  AlertList.prototype.arrived = function (message) {
    const data = message.data;
    if (!data || !data.alert_id) return;
    const known = this.alerts.get(data.alert_id);
    this.alerts.set(data.alert_id, Object.assign({ acknowledged_at: null }, known || {}, data,
      { acknowledged_at: known ? known.acknowledged_at : null }));
    this.render();
    this.note.textContent = (data.cleared_at ? "Cleared: " : "New alert: ") + (TITLES[data.kind] || data.kind);
  };

  AlertList.prototype.acknowledge = async function (alertId, button) {
    button.disabled = true;
    Dash.showError(this.error, "");
    const reply = await Dash.api("POST", this.url + "/" + encodeURIComponent(alertId) + "/acknowledge");
    if (!reply.ok) {
      button.disabled = false;
      Dash.showError(this.error, reply.message);
      return;
    }
    this.alerts.set(alertId, reply.data);
    this.render();
    this.note.textContent = "Alert acknowledged.";
    const item = this.list.querySelector('[data-alert-id="' + CSS.escape(alertId) + '"] [data-acknowledged]');
    if (item) item.focus();  // the button is gone: keep the keyboard's place on what replaced it
  };

  AlertList.prototype.render = function () {
    const self = this;
    const alerts = Array.from(this.alerts.values()).sort(function (a, b) {
      return a.alert_id < b.alert_id ? 1 : a.alert_id > b.alert_id ? -1 : 0;  // ids grow with time: newest first
    });
    this.list.replaceChildren.apply(this.list, alerts.map(function (alert) { return self.item(alert); }));
    if (this.note.textContent === "Loading alerts…" || !alerts.length) {
      this.note.textContent = alerts.length ? alerts.length + " alerts" : "No alerts.";
    }
    Dash.refreshTimes(this.list);
  };

  AlertList.prototype.item = function (alert) {
    const self = this;
    const li = document.createElement("li");
    li.className = "alert-item";
    li.dataset.alertId = alert.alert_id;
    li.dataset.state = alert.cleared_at || alert.kind === "daily_summary" ? "cleared" : "open";
    const title = document.createElement("strong");
    title.textContent = TITLES[alert.kind] || alert.kind;
    const state = document.createElement("span");
    state.className = "badge " + (li.dataset.state === "open" ? "badge-offline" : "badge-online");
    state.textContent = alert.kind === "daily_summary" ? "summary" : li.dataset.state;
    const when = document.createElement("p");
    when.className = "subtle";
    when.append("Opened ", timeElement(alert.opened_at));
    if (alert.cleared_at && alert.kind !== "daily_summary") when.append(" · cleared ", timeElement(alert.cleared_at));
    const what = document.createElement("p");
    what.textContent = describe(alert);
    li.append(title, " ", state, what, when);
    if (alert.acknowledged_at) {
      const done = document.createElement("p");
      done.className = "subtle";
      done.tabIndex = -1;
      done.dataset.acknowledged = "";
      done.append("Acknowledged ", timeElement(alert.acknowledged_at));
      li.append(done);
    } else if (this.canAcknowledge) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "button-secondary";
      button.textContent = "Acknowledge";
      button.setAttribute("aria-label", "Acknowledge " + title.textContent + " alert opened " + alert.opened_at);
      button.addEventListener("click", function () { self.acknowledge(alert.alert_id, button); });
      li.append(button);
    }
    return li;
  };

  document.addEventListener("DOMContentLoaded", function () {
    const section = document.getElementById("alerts");
    if (!section) return;
    const alerts = new AlertList(section);
    document.addEventListener("inverter-alert", function (event) { alerts.arrived(event.detail); });
    alerts.load();
  });
})();
