// Sign in: trade the API key for the HttpOnly session cookie (POST /session), then go on.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const form = document.getElementById("sign-in");
  const input = document.getElementById("api-key");
  const error = document.getElementById("sign-in-error");
  const button = form.querySelector("button[type=submit]");

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      fail("Enter your API key.");
      return;
    }
    button.disabled = true;
    const reply = await Dash.api("POST", "/session", { api_key: key });
    button.disabled = false;
    if (reply.ok) {
      input.value = "";
      window.location.assign(form.dataset.next);
    } else if (reply.status === 401) {
      fail("That API key is not valid. Check it and try again.");
    } else {
      fail(reply.message);
    }
  });

  function fail(message) {
    input.setAttribute("aria-invalid", "true");
    Dash.showError(error, message);
    input.focus();
  }
});
