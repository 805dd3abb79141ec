// The jobs list: bulk retry and cancel of the jobs the page's filter selects, through one API call each.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const message = document.getElementById("bulk-message");
  const error = document.getElementById("bulk-error");

  document.querySelectorAll("[data-bulk-action]").forEach(function (button) {
    button.addEventListener("click", async function () {
      const action = button.dataset.bulkAction;
      button.disabled = true;
      Dash.showError(error, "");
      const query = button.dataset.filter ? "?" + button.dataset.filter : "";
      const reply = await Dash.api("POST", "/jobs/" + action + query);
      button.disabled = false;
      if (!reply.ok) {
        Dash.showError(error, reply.message);
        return;
      }
      const n = reply.data.affected;
      const jobs = n === 1 ? "1 job" : n + " jobs";
      let text = action === "retry" ? jobs + " queued again." : jobs + " cancelled.";
      if (n === 0) text = action === "retry" ? "No job to retry." : "No job to cancel.";
      if (n >= reply.data.max_per_call) text += " At most " + reply.data.max_per_call + " at a time: press again for the rest.";
      message.textContent = text;
      // The list and its counts are drawn by the server: draw them again, keeping the message.
      sessionStorage.setItem("bulk-message", text);
      window.location.reload();
    });
  });

  const kept = sessionStorage.getItem("bulk-message");
  if (kept) {
    sessionStorage.removeItem("bulk-message");
    message.textContent = kept;
  }
});

// The list and its counts, live: one stream of the account's job events for the page. A row on the page
// follows its job; jobs that are not on it are announced, with a link that draws the list again.
document.addEventListener("DOMContentLoaded", function () {
  const news = document.getElementById("jobs-news");
  const table = document.getElementById("job-list");
  const paged = new URLSearchParams(window.location.search).has("before");
  const unseen = new Set();
  let countsTimer = null;

  function setCounts(counts) {
    let total = 0;
    Object.keys(counts).forEach(function (status) {
      total += counts[status];
      const count = document.querySelector('[data-status-filter="' + status + '"] .count');
      if (count) count.textContent = counts[status];
    });
    const all = document.querySelector('[data-status-filter="all"] .count');
    if (all) all.textContent = total;
  }

  // Counts come from the server (a job leaving one status enters another): at most one call per 300 ms.
  function refreshCounts() {
    if (countsTimer) return;
    countsTimer = setTimeout(async function () {
      countsTimer = null;
      const reply = await Dash.api("GET", "/jobs/stats");
      if (reply.ok) setCounts(reply.data.counts);
    }, 300);
  }

  function onJob(event) {
    refreshCounts();
    const row = document.querySelector('tr[data-job-id="' + event.id + '"]');
    if (row) {
      Dash.setBadge(row.querySelector(".badge"), event.status);
      row.querySelector(".attempts").textContent = event.attempts;
      const updated = row.querySelector(".updated time");
      if (updated && event.updated_at) updated.setAttribute("datetime", event.updated_at);
      return;
    }
    // A new job belongs at the top of the first page, if it matches the status shown.
    const status = table ? table.dataset.status : new URLSearchParams(window.location.search).get("status");
    if (paged || event.attempts !== 0 || (status && status !== event.status)) return;
    unseen.add(event.id);
    news.querySelector("span").textContent = unseen.size === 1 ? "1 new job." : unseen.size + " new jobs.";
    news.querySelector("a").href = window.location.pathname + window.location.search;
    news.hidden = false;
  }

  new Dash.LiveStream("/jobs/events", {
    onState: Dash.indicator(document.getElementById("connection")),
    events: {
      job: onJob,
      counts: function (data) { setCounts(data.counts); },
    },
  });
});
