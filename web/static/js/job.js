// One job: its state follows the job's event stream; the state panel is redrawn by the server (the
// same template as the first render) after each change; cancel and retry call the jobs API.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const root = document.getElementById("job");
  const panel = document.getElementById("job-panel");
  const message = document.getElementById("job-message");
  let refreshing = null, again = false;

  // One refresh at a time; changes that arrive during one trigger exactly one more.
  async function refreshPanel() {
    if (refreshing) { again = true; return refreshing; }
    refreshing = (async function () {
      do {
        again = false;
        const response = await fetch(root.dataset.panelUrl, { credentials: "same-origin" });
        if (response.ok) {
          panel.innerHTML = await response.text();
          Dash.refreshTimes(panel);
        } else if (response.status === 401) {
          Dash.toSignIn();
        }
      } while (again);
    })();
    try { await refreshing; } finally { refreshing = null; }
  }

  function showStatus(status) {
    if (Dash.setBadge(document.getElementById("job-status"), status)) {
      // The panel itself is not a live region (it is redrawn whole); announce just the status.
      document.getElementById("job-announcer").textContent = "Job status: " + status.replace(/_/g, " ");
    }
  }

  new Dash.LiveStream(root.dataset.eventsUrl, {
    onState: Dash.indicator(document.getElementById("connection")),
    events: {
      job: function (event) {
        showStatus(event.status);   // at once; the panel with attempts and result follows
        refreshPanel();
      },
    },
  });

  panel.addEventListener("click", async function (event) {
    const button = event.target.closest("[data-job-action]");
    if (!button) return;
    const action = button.dataset.jobAction;
    button.disabled = true;
    Dash.showError(message, "");
    const reply = await Dash.api("POST", "/jobs/" + root.dataset.jobId + "/" + action);
    if (!reply.ok) {
      button.disabled = false;
      Dash.showError(message, reply.message);
    }
    await refreshPanel();
  });
});
