// Submit a job by hand: the form becomes a POST /jobs body; errors from the API are shown by the
// field they name.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const form = document.getElementById("job-form");
  const error = document.getElementById("job-form-error");
  const FIELD_INPUTS = {
    url: "url", method: "method", headers: "headers", body: "body", json: "body", timeout_s: "timeout",
    max_attempts: "max-attempts", "backoff.base_s": "base", "backoff.cap_s": "cap",
    "backoff.multiplier": "multiplier", "backoff.jitter": "jitter", backoff: "base", run_at: "run-at",
  };

  function fail(message, inputId) {
    form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
    Dash.showError(error, message);
    const input = inputId && document.getElementById(inputId);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    } else {
      error.scrollIntoView({ block: "center" });
    }
  }

  // By id, not form.<name>: form.method would be the form's own method attribute.
  function value(id) {
    return document.getElementById(id).value;
  }

  function number(id) {
    const raw = value(id).trim();
    return raw === "" ? undefined : Number(raw);
  }

  // Returns [body, null] or [null, [message, input id]].
  function build() {
    const body = { url: value("url").trim(), method: value("method") };
    const headers = {};
    const lines = value("headers").split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].trim();
      if (!line) continue;
      const colon = line.indexOf(":");
      if (colon < 1) return [null, ["Header line " + (i + 1) + " must look like Name: value.", "headers"]];
      headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
    }
    if (Object.keys(headers).length) body.headers = headers;
    const text = value("body");
    if (text !== "") {
      if (document.getElementById("body-is-json").checked) {
        try { body.json = JSON.parse(text); } catch (err) { return [null, ["The body is not valid JSON: " + err.message, "body"]]; }
      } else {
        body.body = text;
      }
    }
    body.max_attempts = number("max-attempts");
    body.timeout_s = number("timeout");
    body.backoff = { base_s: number("base"), cap_s: number("cap"), multiplier: number("multiplier"),
                     jitter: value("jitter") };
    const runAt = value("run-at");
    if (runAt) {
      const at = new Date(runAt);   // datetime-local is the person's local time
      if (isNaN(at)) return [null, ["The first attempt time is not a valid date and time.", "run-at"]];
      body.run_at = at.toISOString();
    }
    return [body, null];
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (!value("url").trim()) return fail("Enter the URL to call.", "url");
    const [body, problem] = build();
    if (problem) return fail(problem[0], problem[1]);
    const key = value("idempotency-key").trim();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const reply = await Dash.api("POST", "/jobs", body, key ? { headers: { "Idempotency-Key": key } } : undefined);
    button.disabled = false;
    if (reply.ok) {
      window.location.assign(form.dataset.jobPage.replace("JOB_ID", encodeURIComponent(reply.data.id)));
      return;
    }
    const field = reply.data && reply.data.error && reply.data.error.details && reply.data.error.details.field;
    // A named part of a field (headers.X-Signature) marks the field's input.
    fail(reply.message, field && (FIELD_INPUTS[field] || FIELD_INPUTS[String(field).split(".")[0]]));
  });
});
