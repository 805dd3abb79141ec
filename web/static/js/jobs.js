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
