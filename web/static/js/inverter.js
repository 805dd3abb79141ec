// One inverter: recent history from the readings API at once, then live readings from its event
// stream, drawn with uPlot; the latest values as figures; the team for the owner to manage.
"use strict";

(function () {
  const HISTORY_WINDOW_S = 3600;      // of reading time: the simulated fleet's clock may differ from ours
  const HISTORY_PAGES = 8;            // readings API pages of up to 1000 (more than an hour at 1 s)
  const MAX_POINTS = 5000;
  const CHART_HEIGHT = 220;
  const ENERGY_REFRESH_MS = 5 * 60 * 1000;   // today's bar grows; the API computes it from raw readings

  const SERIES = {
    power: [
      { field: "pv_power_w", label: "PV", stroke: "#d55e00", fill: "rgba(213,94,0,0.08)" },
      { field: "load_power_w", label: "Load", stroke: "#0072b2" },
    ],
    grid: [
      { field: "grid_import_w", label: "Import", stroke: "#cc79a7" },
      { field: "grid_export_w", label: "Export", stroke: "#009e73" },
    ],
    battery: [
      { field: "battery_power_w", label: "Battery (+ charging)", stroke: "#56b4e9", scale: "W" },
      { field: "battery_soc_pct", label: "State of charge", stroke: "#7a5c00", scale: "%", dash: [6, 3] },
    ],
  };

  // -- formatting ----------------------------------------------------------------------------------
  function watts(v) {
    if (v === null || v === undefined) return "–";
    return Math.abs(v) >= 1000 ? (v / 1000).toFixed(2) + " kW" : Math.round(v) + " W";
  }

  // Tick labels with as many decimals as the tick step needs, so a narrow range (a battery
  // holding steady at 907 W) does not label two ticks alike.
  function axisWatts(u, ticks, axisIdx, space, step) {
    const kilo = ticks.some(function (v) { return Math.abs(v) >= 1000; });
    const scaled = kilo ? step / 1000 : step;
    const decimals = scaled > 0 && scaled < 1 ? Math.min(3, Math.ceil(-Math.log10(scaled))) : 0;
    return ticks.map(function (v) {
      return kilo ? (v / 1000).toFixed(decimals) + " kW" : v.toFixed(decimals) + " W";
    });
  }

  // Room for the longest tick label (uPlot asks again whenever the labels change).
  function axisSize(u, values) {
    const longest = values && values.length ? Math.max.apply(null, values.map(function (v) { return String(v).length; })) : 6;
    return Math.max(48, longest * 7 + 24);
  }

  const FORMAT = {
    W: watts,
    Wh: function (v) { return v === null || v === undefined ? "–" : (v / 1000).toFixed(1) + " kWh"; },
    "%": function (v) { return v === null || v === undefined ? "–" : Math.round(v) + " %"; },
    "°C": function (v) { return v === null || v === undefined ? "–" : v.toFixed(1) + " °C"; },
  };

  function eventKey(id) {
    const match = /^(\d+)-(\d+)$/.exec(id || "");
    return match ? [Number(match[1]), Number(match[2])] : null;
  }

  function newerId(a, b) {
    const ka = eventKey(a), kb = eventKey(b);
    if (!ka) return b;
    if (!kb) return a;
    return (ka[0] > kb[0] || (ka[0] === kb[0] && ka[1] > kb[1])) ? a : b;
  }

  // -- the readings, kept in time order and unique per reading time ---------------------------------
  function Readings() {
    this.times = [];       // epoch seconds, ascending
    this.rows = [];        // the readings, in the same order
    this.byTime = new Set();
    this.eventIds = new Set();
  }

  // Returns true if the reading is new. A reading is identified by its time (the database's key);
  // replay after a reconnect and the history/stream overlap deliver some twice.
  Readings.prototype.add = function (reading, eventId) {
    const t = Date.parse(reading.time) / 1000;
    if (isNaN(t)) return false;
    if (eventId) this.eventIds.add(eventId);
    if (this.byTime.has(t)) return false;
    this.byTime.add(t);
    let i = this.times.length;
    while (i > 0 && this.times[i - 1] > t) i--;   // almost always appends
    this.times.splice(i, 0, t);
    this.rows.splice(i, 0, reading);
    if (this.times.length > MAX_POINTS) {
      this.byTime.delete(this.times.shift());
      this.rows.shift();
    }
    return true;
  };

  Readings.prototype.latest = function () {
    return this.rows.length ? this.rows[this.rows.length - 1] : null;
  };

  Readings.prototype.columns = function (fields) {
    const rows = this.rows;
    return [this.times.slice()].concat(fields.map(function (field) {
      return rows.map(function (row) { return row[field] === undefined ? null : row[field]; });
    }));
  };

  // -- charts --------------------------------------------------------------------------------------
  function makeChart(element, series) {
    const hasPercent = series.some(function (s) { return s.scale === "%"; });
    const axes = [
      {},
      { scale: "W", size: axisSize, values: axisWatts },
    ];
    const scales = { x: { time: true }, W: { auto: true } };
    if (hasPercent) {
      axes.push({ scale: "%", side: 1, size: 48, grid: { show: false },
                  values: function (u, ticks) { return ticks.map(function (v) { return v + " %"; }); } });
      scales["%"] = { auto: false, range: [0, 100] };
    }
    const options = {
      width: Math.max(200, element.clientWidth),
      height: CHART_HEIGHT,
      scales: scales,
      axes: axes,
      cursor: { drag: { x: false, y: false } },
      legend: { live: false },   // names only: the figures above show the values
      series: [{}].concat(series.map(function (s) {
        return {
          label: s.label, stroke: s.stroke, fill: s.fill, width: 2, dash: s.dash, scale: s.scale || "W",
          value: function (u, v) { return s.scale === "%" ? FORMAT["%"](v) : watts(v); },
        };
      })),
    };
    const chart = new uPlot(options, [[]].concat(series.map(function () { return []; })), element);
    new ResizeObserver(function () {
      chart.setSize({ width: Math.max(200, element.clientWidth), height: CHART_HEIGHT });
    }).observe(element);
    return chart;
  }

  // Daily energy as bars, PV and load side by side around each local day's middle.
  function makeEnergyChart(element) {
    const kwh = function (u, v) { return v === null || v === undefined ? "–" : v.toFixed(1) + " kWh"; };
    const bars = function (align) { return uPlot.paths.bars({ size: [0.4, 40], align: align }); };
    const options = {
      width: Math.max(200, element.clientWidth),
      height: CHART_HEIGHT,
      scales: { x: { time: true, auto: false, range: function () {
                  const now = Date.now() / 1000;
                  return [now - 30.5 * 86400, now + 0.75 * 86400];
                } },
                kWh: { auto: true, range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } },
      axes: [{}, { scale: "kWh", size: 64,
                   values: function (u, ticks) { return ticks.map(function (v) { return v + " kWh"; }); } }],
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      series: [
        {},
        { label: "PV", scale: "kWh", stroke: "#d55e00", fill: "rgba(213,94,0,0.6)", paths: bars(-1),
          points: { show: false }, value: kwh },
        { label: "Load", scale: "kWh", stroke: "#0072b2", fill: "rgba(0,114,178,0.6)", paths: bars(1),
          points: { show: false }, value: kwh },
      ],
    };
    const chart = new uPlot(options, [[], [], []], element);
    new ResizeObserver(function () {
      chart.setSize({ width: Math.max(200, element.clientWidth), height: CHART_HEIGHT });
    }).observe(element);
    return chart;
  }

  // -- the page ------------------------------------------------------------------------------------
  function InverterPage(root) {
    this.root = root;
    this.readings = new Readings();
    this.charts = {};
    this.drawPending = false;
    this.stream = null;
    this.energyChart = null;
    this.energyDays = 0;
  }

  InverterPage.prototype.start = async function () {
    const self = this;
    Object.keys(SERIES).forEach(function (name) {
      const element = self.root.querySelector('[data-chart="' + name + '"]');
      self.charts[name] = makeChart(element, SERIES[name]);
    });
    this.energyChart = makeEnergyChart(this.root.querySelector("[data-energy-chart]"));
    this.loadEnergy();
    setInterval(function () { self.loadEnergy(); }, ENERGY_REFRESH_MS);
    const resumeFrom = await this.loadHistory();
    this.stream = new Dash.LiveStream(this.root.dataset.streamUrl, {
      lastEventId: resumeFrom,
      onState: Dash.indicator(document.getElementById("connection")),
      events: {
        reading: function (reading, id) { self.addReading(reading, id); },
        status: function (event) { self.showDeviceStatus(event.status); },
        alert: function (message) { document.dispatchEvent(new CustomEvent("inverter-alert", { detail: message })); },
      },
    });
  };

  // The stored history, and the event id to resume the stream from: the newest *stored* reading's,
  // so the stream replays whatever the recorder had not stored yet when we asked.
  InverterPage.prototype.loadHistory = async function () {
    const note = document.getElementById("history-note");
    const latest = await Dash.api("GET", this.root.dataset.latestUrl);
    const reading = latest.ok && latest.data.reading;
    if (!reading) {
      note.textContent = latest.ok ? "No readings yet; they appear here as they arrive."
                                   : "History is unavailable (" + latest.message + "); showing live readings.";
      return null;
    }
    const since = new Date(Date.parse(reading.time) - HISTORY_WINDOW_S * 1000).toISOString();
    let resumeFrom = null, url = this.root.dataset.readingsUrl + "?limit=1000&since=" + encodeURIComponent(since);
    for (let page = 0; page < HISTORY_PAGES && url; page++) {
      const reply = await Dash.api("GET", url);
      if (!reply.ok) break;
      for (const row of reply.data.readings) {
        this.readings.add(row, row.event_id);
        if (row.event_id) resumeFrom = newerId(resumeFrom, row.event_id);
      }
      url = reply.data.next_since ? this.root.dataset.readingsUrl + "?limit=1000&since="
                                    + encodeURIComponent(reply.data.next_since) : null;
    }
    this.addReading(reading, reading.event_id);
    note.textContent = "The last hour of readings; new ones are added as they arrive.";
    return resumeFrom;
  };

  InverterPage.prototype.loadEnergy = async function () {
    const note = document.getElementById("energy-note");
    const reply = await Dash.api("GET", this.root.dataset.energyUrl + "?period=day");
    if (!reply.ok) {
      note.textContent = "Daily energy is unavailable (" + reply.message + ").";
      return;
    }
    const days = reply.data.buckets;
    this.energyDays = days.length;
    this.energyChart.setData([
      days.map(function (d) { return (Date.parse(d.start) + Date.parse(d.end)) / 2000; }),
      days.map(function (d) { return d.pv_wh / 1000; }),
      days.map(function (d) { return d.load_wh / 1000; }),
    ]);
    const today = days.length && !days[days.length - 1].complete ? "; the last bar is today so far" : "";
    note.textContent = days.length ? "Days from midnight to midnight in " + reply.data.timezone + today + "."
                                   : "No energy recorded in the last 30 days yet.";
  };

  InverterPage.prototype.addReading = function (reading, eventId) {
    const isNew = this.readings.add(reading, eventId);
    if (!isNew) return;
    if (reading === this.readings.latest()) this.showFigures(reading);
    this.scheduleDraw();
  };

  InverterPage.prototype.scheduleDraw = function () {
    if (this.drawPending) return;
    this.drawPending = true;
    const self = this;
    requestAnimationFrame(function () {
      self.drawPending = false;
      Object.keys(SERIES).forEach(function (name) {
        const fields = SERIES[name].map(function (s) { return s.field; });
        self.charts[name].setData(self.readings.columns(fields));
      });
    });
  };

  InverterPage.prototype.showFigures = function (reading) {
    this.root.querySelectorAll("[data-figure]").forEach(function (dd) {
      const value = reading[dd.dataset.figure];
      let text = (FORMAT[dd.dataset.unit] || String)(value === undefined ? null : value);
      if (dd.dataset.figure === "battery_power_w" && value) {
        text += value > 0 ? " charging" : " discharging";
      }
      dd.textContent = text;
    });
    const time = this.root.querySelector('[data-field="reading-time"]');
    time.setAttribute("datetime", reading.time);
    Dash.refreshTimes(time.parentNode);
  };

  InverterPage.prototype.showDeviceStatus = function (status) {
    Dash.setBadge(this.root.querySelector('[data-field="device-status"] .badge'), status);
  };

  // For the browser tests and anyone curious in the console.
  InverterPage.prototype.eventIds = function () { return Array.from(this.readings.eventIds); };
  InverterPage.prototype.pointCount = function () { return this.readings.times.length; };

  // -- team (the owner adds and removes members) ----------------------------------------------------
  function wireTeam(section) {
    const refresh = async function () {
      const response = await fetch(section.dataset.teamUrl, { credentials: "same-origin" });
      if (response.ok) section.innerHTML = await response.text();
      else if (response.status === 401) Dash.toSignIn();
    };
    section.addEventListener("submit", async function (event) {
      const form = event.target.closest("[data-add-member]");
      if (!form) return;
      event.preventDefault();
      const input = form.querySelector("input[name=account]");
      const name = input.value.trim();
      if (!name) {
        Dash.showError(section.querySelector("#team-error"), "Enter an account name or id.");
        return;
      }
      const reply = await Dash.api("POST", form.dataset.addMember, { account: name });
      if (!reply.ok) {
        Dash.showError(section.querySelector("#team-error"),
                       reply.status === 404 ? "There is no account " + JSON.stringify(name) + "." : reply.message);
        return;
      }
      await refresh();
      section.querySelector("#member-account").focus();
    });
    section.addEventListener("click", async function (event) {
      const button = event.target.closest("[data-remove-member]");
      if (!button) return;
      button.disabled = true;
      const reply = await Dash.api("DELETE", "/inverters/" + document.getElementById("inverter").dataset.inverterId
                                   + "/members/" + encodeURIComponent(button.dataset.removeMember));
      if (!reply.ok) {
        button.disabled = false;
        Dash.showError(section.querySelector("#team-error"), reply.message);
        return;
      }
      await refresh();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const root = document.getElementById("inverter");
    const page = new InverterPage(root);
    window.inverterPage = page;
    wireTeam(document.getElementById("team"));
    page.start();
  });
})();
