// The inverters list: every row's status, last reading and PV power follow one multi-inverter stream.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const table = document.querySelector("table.inverter-list");
  if (!table) return;
  const rows = {};
  table.querySelectorAll("tr[data-inverter-id]").forEach(function (row) { rows[row.dataset.inverterId] = row; });

  function setStatus(row, status) {
    Dash.setBadge(row.querySelector('[data-field="status"] .badge'), status);
  }

  function showReading(reading) {
    const row = rows[reading.inverter_id];
    if (!row) return;
    const cell = row.querySelector('[data-field="last-reading"]');
    cell.innerHTML = "";
    const time = document.createElement("time");
    time.setAttribute("datetime", reading.time);
    time.setAttribute("data-relative", "");
    cell.appendChild(time);
    Dash.refreshTimes(cell);
    const pv = reading.pv_power_w;
    row.querySelector('[data-field="pv"]').textContent = pv === null || pv === undefined ? "–" : Math.round(pv) + " W";
  }

  // Browsers allow few connections per host, so the whole list shares one stream (at most 50 inverters).
  if (Object.keys(rows).length > 50) return;
  new Dash.LiveStream(table.dataset.streamUrl, {
    events: {
      reading: showReading,
      status: function (event) { if (rows[event.inverter_id]) setStatus(rows[event.inverter_id], event.status); },
    },
  });
});
