// One inverter: recent history from the readings API at once, then live readings from its event
// stream, drawn with uPlot; the latest values as figures; the team for the owner to manage.
"use strict";

(function () {
  const HISTORY_WINDOW_S = 3600;      // of reading time: the simulated fleet's clock may differ from ours
  const HISTORY_PAGES = 8;            // readings API pages of up to 1000 (more than an hour at 1 s)
  const MAX_POINTS = 5000;
  const CHART_HEIGHT = 220;
  // The range picker. Ranges longer than RAW_MAX_SPAN_S, or whose raw readings would exceed MAX_POINTS, are
  // drawn from the energy rollups (hourly, daily beyond DAILY_FROM_S): a month is 720 rows, as quick as an hour.
  const RANGES = { hour: 3600, day: 86400, week: 7 * 86400, month: 30 * 86400 };
  const RAW_MAX_SPAN_S = 6 * 3600;
  const DAILY_FROM_S = 45 * 86400;
  const MAX_SPAN_S = 400 * 86400;
  const ROLLUP_PAGES = 3;             // energy API pages of up to 1000 buckets
  const TABLE_ROWS = 1000;
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
  // onZoom(min, max) after a drag selects a span; onCursor(idx) as the cursor (mouse or keys) moves.
  function makeChart(element, series, onZoom, onCursor) {
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
      // Drag across to zoom (the three charts together); the cursor's values show in the legend.
      cursor: { drag: { x: true, y: false, setScale: false }, sync: { key: "history" } },
      legend: { live: true },
      hooks: {
        setSelect: [function (u) {
          if (u.select.width < 5) return;
          const min = u.posToVal(u.select.left, "x"), max = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          onZoom(min, max);
        }],
        setCursor: [function (u) { onCursor(u, u.cursor.idx); }],
      },
      series: [{ value: function (u, v) { return v === null || v === undefined ? "–" : timeText(v); } }].concat(series.map(function (s) {
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
    // The keyboard's cursor: left and right step through the points, Home and End jump to the ends.
    element.addEventListener("keydown", function (event) {
      const xs = chart.data[0];
      if (!xs || !xs.length) return;
      const last = xs.length - 1;
      const current = chart.cursor.idx === null || chart.cursor.idx === undefined ? null : chart.cursor.idx;
      const step = event.shiftKey ? 10 : 1;
      let idx;
      let direction;
      if (event.key === "ArrowRight") { idx = current === null ? 0 : Math.min(last, current + step); direction = 1; }
      else if (event.key === "ArrowLeft") { idx = current === null ? last : Math.max(0, current - step); direction = -1; }
      else if (event.key === "Home") { idx = 0; direction = 1; }
      else if (event.key === "End") { idx = last; direction = -1; }
      else return;
      event.preventDefault();
      const empty = function (i) { return chart.data.slice(1).every(function (values) { return values[i] === null; }); };
      while (empty(idx) && idx + direction >= 0 && idx + direction <= last) idx += direction;
      chart.setCursor({ left: chart.valToPos(xs[idx], "x"), top: chart.bbox.height / devicePixelRatio / 2 });
    });
    return chart;
  }

  const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const secondsFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  function timeText(epochS, withSeconds) {
    return (withSeconds ? secondsFormat : timeFormat).format(new Date(epochS * 1000));
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

  // -- a range's data, from raw readings or from the energy rollups ------------------------------------
  // A view is what the charts and the table show: times (epoch s, ascending), one row per time, and where
  // the rows came from. The last hour is the live Readings themselves; other ranges are loaded once.
  function View(source, times, rows) {
    this.source = source;   // "readings" or "hour" / "day" (rollup period)
    this.times = times;
    this.rows = rows;
  }

  View.prototype.columns = function (fields) {
    const rows = this.rows;
    return [this.times.slice()].concat(fields.map(function (field) {
      return rows.map(function (row) { return row === null || row[field] === undefined ? null : row[field]; });
    }));
  };

  // Hourly or daily buckets as rows of the same fields as a reading (each power's average); a missing
  // bucket becomes a gap (a null row), not a straight line across it.
  function rollupView(period, buckets, until) {
    const times = [], rows = [];
    let previousEnd = null;
    buckets.forEach(function (bucket) {
      const start = Date.parse(bucket.start) / 1000, end = Date.parse(bucket.end) / 1000;
      if (previousEnd !== null && start - previousEnd > 1) {
        times.push((previousEnd + start) / 2);
        rows.push(null);
      }
      const row = { start: start, end: end, pv_wh: bucket.pv_wh, load_wh: bucket.load_wh };
      Object.keys(bucket.power || {}).forEach(function (field) { row[field] = bucket.power[field].avg; });
      times.push((start + Math.min(end, until)) / 2);   // the hour so far: the middle of what has passed
      rows.push(row);
      previousEnd = end;
    });
    return new View(period, times, rows);
  }

  // -- the page ------------------------------------------------------------------------------------
  function InverterPage(root) {
    this.root = root;
    this.readings = new Readings();   // the live last hour
    this.charts = {};
    this.drawPending = false;
    this.stream = null;
    this.historyLoaded = false;       // the stream opens once the stored history is on the charts
    this.resumeFrom = null;           // the event id the stream (re)opens from
    this.requests = new AbortController();   // the page's reads (get): aborted while the page is paused
    this.energyTimer = null;
    this.energyChart = null;
    this.energyDays = 0;
    this.range = "hour";
    this.view = null;                 // null: the live last hour
    this.span = null;                 // [since, until] of a loaded range (epoch s)
    this.zoom = null;                 // [min, max] while zoomed in
    this.loadSeq = 0;
    this.latestTime = null;           // the newest reading's time: ranges end there (the fleet's clock)
    this.tableShown = false;
  }

  InverterPage.prototype.start = async function () {
    const self = this;
    Object.keys(SERIES).forEach(function (name) {
      const element = self.root.querySelector('[data-chart="' + name + '"]');
      self.charts[name] = makeChart(element, SERIES[name],
        function (min, max) { self.zoomTo(min, max); },
        function (u, idx) { self.showCursor(name, u, idx); });
      element.addEventListener("dblclick", function () { self.zoomTo(null, null); });
    });
    this.wireHistoryControls();
    this.energyChart = makeEnergyChart(this.root.querySelector("[data-energy-chart]"));
    this.refreshEnergy();
    await this.loadLive();
  };

  // While the inverter is being removed (pause, resume).
  InverterPage.prototype.paused = function () {
    return this.requests.signal.aborted;
  };

  // A read of the page's: aborted, with every other on its way, when the page pauses.
  InverterPage.prototype.get = function (url) {
    return Dash.api("GET", url, undefined, { signal: this.requests.signal });
  };

  // The stored history, then the live stream from where it ends. Cut short by a pause, it starts over on resume.
  InverterPage.prototype.loadLive = async function () {
    const resumeFrom = await this.loadHistory();
    if (this.paused()) return;
    this.resumeFrom = resumeFrom;
    this.historyLoaded = true;
    this.goLive();
  };

  // The daily energy now, and again every ENERGY_REFRESH_MS (today's bar grows).
  InverterPage.prototype.refreshEnergy = function () {
    const self = this;
    this.loadEnergy();
    this.energyTimer = setInterval(function () { self.loadEnergy(); }, ENERGY_REFRESH_MS);
  };

  // While the inverter is being removed: the server ends its stream when it goes, and a stream, a refresh or a
  // read that came back meanwhile would find a 404. That includes a stream not open yet, whose history is still
  // loading (it loads again on resume), and a read already on its way, which the server might answer after the
  // removal: it is aborted, so no answer of it reaches the page.
  InverterPage.prototype.pause = function () {
    this.requests.abort();
    clearInterval(this.energyTimer);
    if (this.stream) {
      this.resumeFrom = this.stream.lastEventId;
      this.stream.close();
      this.stream = null;
    }
  };

  // The removal failed: back to live, from the last event seen.
  InverterPage.prototype.resume = function () {
    this.requests = new AbortController();
    this.refreshEnergy();   // the one on its way at the pause was aborted
    if (this.historyLoaded) this.goLive();
    else this.loadLive();
  };

  // The live stream, from resumeFrom, once the history is in and unless paused.
  InverterPage.prototype.goLive = function () {
    if (this.paused() || !this.historyLoaded) return;
    const self = this;
    this.stream = new Dash.LiveStream(this.root.dataset.streamUrl, {
      lastEventId: this.resumeFrom,
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
    const latest = await this.get(this.root.dataset.latestUrl);
    if (latest.aborted) return null;   // paused: loadLive loads it again on resume
    const reading = latest.ok && latest.data.reading;
    if (!reading) {
      note.textContent = latest.ok ? "No readings yet; they appear here as they arrive."
                                   : "History is unavailable (" + latest.message + "); showing live readings.";
      return null;
    }
    const since = new Date(Date.parse(reading.time) - HISTORY_WINDOW_S * 1000).toISOString();
    let resumeFrom = null, url = this.root.dataset.readingsUrl + "?limit=1000&since=" + encodeURIComponent(since);
    for (let page = 0; page < HISTORY_PAGES && url; page++) {
      const reply = await this.get(url);
      if (reply.aborted) return null;
      if (!reply.ok) break;
      for (const row of reply.data.readings) {
        this.readings.add(row, row.event_id);
        if (row.event_id) resumeFrom = newerId(resumeFrom, row.event_id);
      }
      url = reply.data.next_since ? this.root.dataset.readingsUrl + "?limit=1000&since="
                                    + encodeURIComponent(reply.data.next_since) : null;
    }
    this.addReading(reading, reading.event_id);
    this.showFigures(this.readings.latest());   // even when the latest was among the stored ones (not new)
    if (this.range === "hour") note.textContent = "The last hour of readings; new ones are added as they arrive.";
    return resumeFrom;
  };

  // -- the range picker ------------------------------------------------------------------------------
  InverterPage.prototype.wireHistoryControls = function () {
    const self = this;
    const custom = document.getElementById("custom-range");
    this.root.querySelectorAll('input[name="range"]').forEach(function (radio) {
      radio.addEventListener("change", function () {
        if (!radio.checked) return;
        Dash.showError(document.getElementById("range-error"), "");
        custom.hidden = radio.value !== "custom";
        if (radio.value === "custom") {
          self.prefillCustom();
          return;
        }
        self.showRange(radio.value);
      });
    });
    custom.addEventListener("submit", function (event) {
      event.preventDefault();
      const from = Date.parse(document.getElementById("range-from").value) / 1000;
      const to = Date.parse(document.getElementById("range-to").value) / 1000;
      const error = document.getElementById("range-error");
      custom.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
      if (isNaN(from) || isNaN(to)) return self.rangeError("Enter both a start and an end.", isNaN(from) ? "range-from" : "range-to");
      if (from >= to) return self.rangeError("The start must be before the end.", "range-from");
      if (to - from > MAX_SPAN_S) return self.rangeError("Pick at most 400 days.", "range-from");
      Dash.showError(error, "");
      self.showRange("custom", from, to);
    });
    document.getElementById("reset-zoom").addEventListener("click", function () { self.zoomTo(null, null); });
    const toggle = document.getElementById("toggle-table");
    toggle.addEventListener("click", function () {
      self.tableShown = !self.tableShown;
      toggle.setAttribute("aria-pressed", String(self.tableShown));
      toggle.textContent = self.tableShown ? "Show as charts" : "Show as table";
      document.getElementById("history-table").hidden = !self.tableShown;
      document.getElementById("history-charts").hidden = self.tableShown;
      document.getElementById("chart-help").hidden = self.tableShown;
      if (self.tableShown) self.renderTable();
    });
  };

  InverterPage.prototype.rangeError = function (message, inputId) {
    Dash.showError(document.getElementById("range-error"), message);
    const input = document.getElementById(inputId);
    input.setAttribute("aria-invalid", "true");
    input.focus();
  };

  // datetime-local wants local wall time without a zone.
  function localInput(epochS) {
    const d = new Date(epochS * 1000);
    const pad = function (n) { return String(n).padStart(2, "0"); };
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  InverterPage.prototype.prefillCustom = function () {
    const from = document.getElementById("range-from"), to = document.getElementById("range-to");
    const end = this.span ? this.span[1] : this.anchor();
    const start = this.span ? this.span[0] : end - RANGES.day;
    if (!to.value) to.value = localInput(end);
    if (!from.value) from.value = localInput(start);
  };

  // Ranges end at the newest reading (the fleet's clock, which a simulated fleet may run ahead of ours).
  InverterPage.prototype.anchor = function () {
    const latest = this.readings.latest();
    const now = Date.now() / 1000;
    return latest ? Math.max(now, Date.parse(latest.time) / 1000) : now;
  };

  InverterPage.prototype.showRange = async function (range, since, until) {
    this.range = range;
    this.zoom = null;
    const seq = ++this.loadSeq;   // a range still loading is dropped when it arrives
    document.getElementById("reset-zoom").hidden = true;
    const note = document.getElementById("history-note");
    if (range === "hour") {
      this.root.querySelector("#history").removeAttribute("aria-busy");
      this.view = null;
      this.span = null;
      note.textContent = "The last hour of readings; new ones are added as they arrive.";
      this.draw(true);
      return;
    }
    if (since === undefined) {
      until = this.anchor() + 1;
      since = until - RANGES[range];
    }
    this.span = [since, until];
    note.textContent = "Loading…";
    this.root.querySelector("#history").setAttribute("aria-busy", "true");
    const view = await this.loadRange(since, until);
    if (seq !== this.loadSeq) return;   // another range was picked meanwhile
    this.root.querySelector("#history").removeAttribute("aria-busy");
    if (view.error) {
      note.textContent = "History is unavailable (" + view.error + ").";
      return;
    }
    this.view = view;
    note.textContent = describe(view, since, until);
    this.draw(true);
  };

  function describe(view, since, until) {
    const span = timeText(since) + " to " + timeText(until);
    const points = view.rows.filter(function (row) { return row !== null; }).length;
    const count = function (word) { return points + " " + word + (points === 1 ? "" : "s"); };
    if (view.source === "readings") return count("reading") + " from " + span + ".";
    const what = view.source === "hour" ? "Hourly" : "Daily";
    return what + " averages from " + span + " (" + count(view.source) + " with data; the inverter's energy "
           + "rollups). Zoom in to a few hours to see each reading.";
  }

  // Raw readings for short spans, unless the first page shows there would be too many; rollups otherwise.
  InverterPage.prototype.loadRange = async function (since, until) {
    if (until - since <= RAW_MAX_SPAN_S) {
      const raw = await this.loadReadings(since, until);
      if (raw) return raw;
    }
    return this.loadRollups(until - since > DAILY_FROM_S ? "day" : "hour", since, until);
  };

  // null when the span holds more readings than MAX_POINTS (judged from the first page's density).
  InverterPage.prototype.loadReadings = async function (since, until) {
    const base = this.root.dataset.readingsUrl + "?limit=1000&until=" + encodeURIComponent(new Date(until * 1000).toISOString());
    let from = new Date(since * 1000).toISOString();
    const times = [], rows = [];
    for (let page = 0; page < HISTORY_PAGES && from; page++) {
      const reply = await this.get(base + "&since=" + encodeURIComponent(from));
      if (!reply.ok) return new View("readings", [], []).withError(stoppedOr(reply));
      reply.data.readings.forEach(function (row) { times.push(Date.parse(row.time) / 1000); rows.push(row); });
      from = reply.data.next_since;
      if (page === 0 && from && times.length > 1) {
        const covered = times[times.length - 1] - times[0];
        if (covered > 0 && times.length * (until - since) / covered > MAX_POINTS) return null;
      }
    }
    return new View("readings", times, rows);
  };

  InverterPage.prototype.loadRollups = async function (period, since, until) {
    const base = this.root.dataset.energyUrl + "?period=" + period + "&until=" + encodeURIComponent(new Date(until * 1000).toISOString());
    // From the start of the hour (or day) that holds `since`: the API gives the buckets that start within.
    let from = new Date((since - (period === "hour" ? since % 3600 : since % 86400)) * 1000).toISOString();
    const buckets = [];
    for (let page = 0; page < ROLLUP_PAGES && from; page++) {
      const reply = await this.get(base + "&since=" + encodeURIComponent(from));
      if (!reply.ok) return new View(period, [], []).withError(stoppedOr(reply));
      buckets.push.apply(buckets, reply.data.buckets);
      from = reply.data.next_since;
    }
    return rollupView(period, buckets, until);
  };

  View.prototype.withError = function (message) { this.error = message; return this; };

  function stoppedOr(reply) {
    return reply.aborted ? "stopped while the inverter was being removed; pick the range again" : reply.message;
  }

  // -- zoom ------------------------------------------------------------------------------------------
  // A drag on any chart zooms all three; zooming a rollup range to a few hours loads that span's readings.
  InverterPage.prototype.zoomTo = async function (min, max) {
    const reset = document.getElementById("reset-zoom");
    if (min === null) {
      this.zoom = null;
      reset.hidden = true;
      if (this.view && this.view.zoomedFrom) {
        this.view = this.view.zoomedFrom;
        document.getElementById("history-note").textContent = describe(this.view, this.span[0], this.span[1]);
      }
      this.draw(true);
      return;
    }
    this.zoom = [min, max];
    reset.hidden = false;
    this.draw(false);
    const base = this.view && this.view.zoomedFrom ? this.view.zoomedFrom : this.view;
    if (base && base.source !== "readings" && max - min <= RAW_MAX_SPAN_S) {
      const seq = ++this.loadSeq;
      const detail = await this.loadReadings(min, max);
      if (seq !== this.loadSeq || !detail || detail.error || !this.zoom) return;
      detail.zoomedFrom = base;
      this.view = detail;
      document.getElementById("history-note").textContent = "Zoomed in: " + describe(detail, min, max);
      this.draw(false);
    }
  };

  // -- drawing -----------------------------------------------------------------------------------------
  InverterPage.prototype.current = function () { return this.view || this.readings; };

  InverterPage.prototype.draw = function (rescale) {
    const self = this;
    const data = this.current();
    Object.keys(SERIES).forEach(function (name) {
      const fields = SERIES[name].map(function (s) { return s.field; });
      const chart = self.charts[name];
      chart.setData(data.columns(fields), !self.zoom && !self.span);
      if (self.zoom) chart.setScale("x", { min: self.zoom[0], max: self.zoom[1] });
      else if (self.span) chart.setScale("x", { min: self.span[0], max: self.span[1] });
      // The cursor where it was, over the new data: its values are read again.
      if (chart.cursor.left >= 0) chart.setCursor({ left: chart.cursor.left, top: chart.cursor.top });
      else self.showCursor(name, chart, null);
    });
    if (this.tableShown) this.renderTable();
  };

  InverterPage.prototype.scheduleDraw = function () {
    if (this.drawPending || this.view) return;   // live readings change only the live last hour's view
    this.drawPending = true;
    const self = this;
    requestAnimationFrame(function () {
      self.drawPending = false;
      if (!self.view) self.draw(false);
    });
  };

  // What the cursor points at, as one line of text beside its chart (mouse or keys).
  InverterPage.prototype.showCursor = function (name, u, idx) {
    const readout = this.root.querySelector('[data-readout="' + name + '"]');
    if (!readout) return;
    if (idx === null || idx === undefined || u.data[0][idx] === undefined) {
      readout.textContent = "";
      return;
    }
    const rollup = this.view && this.view.source !== "readings";
    const parts = SERIES[name].map(function (s, i) {
      const v = u.data[i + 1][idx];
      return s.label + " " + (s.scale === "%" ? FORMAT["%"](v) : watts(v));
    });
    const row = this.current().rows[idx];
    const when = rollup && row ? timeText(row.start) + " (" + (this.view.source === "hour" ? "hour" : "day") + " average)"
                               : timeText(u.data[0][idx], true);
    readout.textContent = when + ": " + parts.join(", ");
  };

  // -- the table: the same data as the charts (within the zoom), newest first --------------------------
  const TABLE_FIELDS = [
    ["pv_power_w", "PV", "W"], ["load_power_w", "Load", "W"], ["grid_import_w", "Grid import", "W"],
    ["grid_export_w", "Grid export", "W"], ["battery_power_w", "Battery (+ charging)", "W"],
    ["battery_soc_pct", "State of charge", "%"],
  ];

  InverterPage.prototype.tableRows = function () {
    const data = this.current();
    const rows = [];
    const lo = this.zoom ? this.zoom[0] : -Infinity, hi = this.zoom ? this.zoom[1] : Infinity;
    for (let i = data.times.length - 1; i >= 0; i--) {
      if (data.rows[i] !== null && data.times[i] >= lo && data.times[i] <= hi) rows.push([data.times[i], data.rows[i]]);
    }
    return rows;
  };

  InverterPage.prototype.renderTable = function () {
    const rollup = this.view && this.view.source !== "readings";
    const table = document.getElementById("history-table");
    const fields = TABLE_FIELDS.filter(function (f) { return !(rollup && f[0] === "battery_soc_pct"); });
    const head = table.querySelector("thead tr");
    head.innerHTML = "";
    [rollup ? (this.view.source === "hour" ? "Hour starting" : "Day starting") : "Time"]
      .concat(fields.map(function (f) { return f[1] + (rollup ? " (average)" : ""); }))
      .concat(rollup ? ["PV energy", "Load energy"] : [])
      .forEach(function (text) {
        const th = document.createElement("th");
        th.scope = "col";
        th.textContent = text;
        head.appendChild(th);
      });
    const rows = this.tableRows();
    const shown = rows.slice(0, TABLE_ROWS);
    const body = table.querySelector("tbody");
    const fragment = document.createDocumentFragment();
    shown.forEach(function (entry) {
      const row = entry[1];
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = rollup ? timeText(row.start) : timeText(entry[0], true);
      tr.appendChild(th);
      fields.forEach(function (f) {
        const td = document.createElement("td");
        const v = row[f[0]];
        td.textContent = FORMAT[f[2]](v === undefined ? null : v);
        tr.appendChild(td);
      });
      if (rollup) {
        [row.pv_wh, row.load_wh].forEach(function (wh) {
          const td = document.createElement("td");
          td.textContent = FORMAT.Wh(wh);
          tr.appendChild(td);
        });
      }
      fragment.appendChild(tr);
    });
    body.replaceChildren(fragment);
    const what = rollup ? (this.view.source === "hour" ? "Hourly averages" : "Daily averages") : "Readings";
    document.getElementById("history-table-caption").textContent = what + ", newest first: " + rows.length
      + (rows.length === 1 ? " row" : " rows") + (rows.length > shown.length ? " (the newest " + shown.length + " shown; zoom in or pick a shorter range for the rest)" : "")
      + (this.zoom ? ", within the zoom." : ".");
  };

  InverterPage.prototype.loadEnergy = async function () {
    const note = document.getElementById("energy-note");
    const reply = await this.get(this.root.dataset.energyUrl + "?period=day");
    if (reply.aborted) return;
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
      const remove = event.target.closest("[data-remove-inverter]");
      if (remove) {
        const serial = document.querySelector("h1").textContent;
        if (!window.confirm("Remove " + serial + "? Its readings and team go with it.")) return;
        remove.disabled = true;
        window.inverterPage.pause();
        const reply = await Dash.api("DELETE", "/inverters/" + document.getElementById("inverter").dataset.inverterId);
        if (!reply.ok) {
          window.inverterPage.resume();
          remove.disabled = false;
          Dash.showError(section.querySelector("#team-error"), reply.message);
          return;
        }
        window.location.assign("/ui/inverters");
        return;
      }
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
