// Adding inverters: the brand's credentials go to POST /connections/discover (the brand's device list,
// through its adapter), the devices picked go to POST /inverters one by one, and one stream of the new
// inverters shows each one's first reading. Errors say what to fix in the words of the brand's own portal.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const form = document.getElementById("discover-form");
  const brandSelect = document.getElementById("brand");
  const baseUrl = document.getElementById("base-url");
  const baseUrlHelp = document.getElementById("base-url-help");
  const discoverError = document.getElementById("discover-error");
  const discoverButton = document.getElementById("discover-button");
  const kept = document.getElementById("credentials-kept");
  const devicesSection = document.getElementById("devices");
  const deviceRows = devicesSection.querySelector("tbody");
  const onboardForm = document.getElementById("onboard-form");
  const onboardError = document.getElementById("onboard-error");
  const progress = document.getElementById("progress");
  const progressList = document.getElementById("progress-list");
  const RATE_LIMIT_TRIES = 5;

  // The checked connection, in this page's memory only: the inputs are cleared once the brand accepts it.
  let connection = null;
  let brand = null;
  let stream = null;
  const watched = {};   // inverter id -> its progress item

  function brandLabel() { return brandSelect.options[brandSelect.selectedIndex].text; }
  function fieldsOf(name) { return form.querySelector('.brand-fields[data-brand="' + name + '"]'); }
  function labelOf(input) { return form.querySelector('label[for="' + input.id + '"]').textContent; }

  // -- the brand and its fields -------------------------------------------------------------------
  let defaultAddress = null;
  function showBrand() {
    form.querySelectorAll(".brand-fields").forEach(function (group) {
      group.hidden = group.dataset.brand !== brandSelect.value;
    });
    const group = fieldsOf(brandSelect.value);
    if (!baseUrl.value || baseUrl.value === defaultAddress) baseUrl.value = group.dataset.address;
    defaultAddress = group.dataset.address;
    const prefixes = group.dataset.prefixes ? group.dataset.prefixes.split(" ") : [];
    baseUrlHelp.textContent = "Where " + brandLabel() + "'s API answers, normally " + group.dataset.address + "."
      + (prefixes.length ? " A test server may serve it under " + prefixes.join(" or ") + "." : "");
    clearInvalid();
  }
  brandSelect.addEventListener("change", showBrand);
  showBrand();

  function clearInvalid() {
    form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
    Dash.showError(discoverError, "");
  }

  function fail(element, message, input) {
    Dash.showError(element, message);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  }

  // -- what an answer means to a site owner ---------------------------------------------------------
  // Returns [message, the input to fix or null].
  function explain(reply, serial) {
    const error = reply.data && reply.data.error;
    const code = error && error.code;
    const group = fieldsOf(brand);
    const secrets = Array.from(group.querySelectorAll("[data-credential]"));
    const address = connection ? connection.base_url : baseUrl.value.trim();
    if (reply.status === 0) return [reply.message, null];
    if (code === "brand_rejected_credentials") {
      const names = secrets.map(labelOf).join(", ").replace(/, ([^,]*)$/, " and $1");
      return [brandLabel() + " did not accept these credentials. Check the " + names
              + " (copy them again from the brand's portal) and try again.", secrets[0] || null];
    }
    if (code === "brand_unreachable") {
      return [brandLabel() + " could not be reached at " + address + ". Check the API address; if it is right, "
              + "the brand's service may be down for a while: try again later.", baseUrl];
    }
    if (code === "blocked_destination") {
      return ["This server may not connect to " + address + " (a private or reserved address). "
              + "Check the API address.", baseUrl];
    }
    if (code === "unknown_serial") {
      return [brandLabel() + " no longer lists " + serial + " for this account. Find your devices again: "
              + "it may have been removed or moved to another account.", null];
    }
    if (code === "already_onboarded") {
      return ["Another account has already added " + serial + ". Ask its owner to add you to its team.", null];
    }
    if (code === "brand_rate_limited") {
      return [brandLabel() + " asks us to slow down. Wait a minute and try again.", null];
    }
    const field = error && error.details && error.details.field;
    if (field && field.indexOf("connection.") === 0) {
      const name = field.slice("connection.".length);
      const input = name === "base_url" ? baseUrl : group.querySelector('[name="' + name + '"]');
      if (input === baseUrl && error.details.expected) {
        return ["Check the API address: enter only the address, such as " + group.dataset.address
                + ", with nothing after it.", input];
      }
      if (input) return ["Check the " + labelOf(input) + ": it " + error.message.replace(field + " ", "") + ".", input];
    }
    return [reply.message, null];
  }

  // A brand that asks us to slow down says for how long: wait that long (a few times) before giving up.
  async function patiently(call, onWait) {
    for (let attempt = 1; ; attempt++) {
      const reply = await call();
      const limited = reply.data && reply.data.error && reply.data.error.code === "brand_rate_limited";
      if (!limited || attempt >= RATE_LIMIT_TRIES) return reply;
      const seconds = Math.max(1, Math.min(60, Number(reply.retryAfter) || 2));
      onWait(seconds);
      await new Promise(function (resolve) { setTimeout(resolve, seconds * 1000); });
    }
  }

  // -- 2. find the devices -------------------------------------------------------------------------
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    clearInvalid();
    const name = brandSelect.value;
    const group = fieldsOf(name);
    const candidate = { base_url: baseUrl.value.trim() };
    if (!candidate.base_url) return fail(discoverError, "Enter the API address of " + brandLabel() + ".", baseUrl);
    for (const input of group.querySelectorAll("input, select")) {
      if (input.tagName === "INPUT" && !input.value) {
        return fail(discoverError, "Enter your " + labelOf(input) + ".", input);
      }
      candidate[input.name] = input.value;
    }
    brand = name;
    connection = candidate;
    discoverButton.disabled = true;
    discoverButton.textContent = "Asking " + brandLabel() + "…";
    const reply = await patiently(
      function () { return Dash.api("POST", "/connections/discover", { brand: name, connection: candidate }); },
      function (seconds) { discoverButton.textContent = brandLabel() + " asks us to wait; trying again in " + seconds + " s…"; }
    );
    discoverButton.disabled = false;
    discoverButton.textContent = "Find my devices";
    if (!reply.ok) {
      const [message, input] = explain(reply, null);
      connection = null;
      return fail(discoverError, message, input);
    }
    // Accepted: the secrets leave the form (they stay in this page's memory to add the devices picked).
    group.querySelectorAll("[data-credential]").forEach(function (input) { input.value = ""; });
    form.hidden = true;
    document.getElementById("credentials-kept-text").textContent =
      brandLabel() + " accepted your credentials. They are stored encrypted when you add a device, and never shown again.";
    kept.hidden = false;
    showDevices(reply.data.devices);
  });

  document.getElementById("change-credentials").addEventListener("click", function () {
    connection = null;
    kept.hidden = true;
    devicesSection.hidden = true;
    form.hidden = false;
    const first = fieldsOf(brandSelect.value).querySelector("[data-credential]");
    (first || brandSelect).focus();
  });

  // -- 3. pick ---------------------------------------------------------------------------------------
  function cell(row, text, header) {
    const el = document.createElement(header ? "th" : "td");
    if (header) el.scope = "row";
    el.textContent = text === null || text === undefined || text === "" ? "–" : text;
    row.appendChild(el);
    return el;
  }

  function showDevices(devices) {
    deviceRows.innerHTML = "";
    Dash.showError(onboardError, "");
    const free = devices.filter(function (d) { return !d.onboarded; }).length;
    document.getElementById("devices-summary").textContent = devices.length === 0
      ? brandLabel() + " lists no devices for this account. Check that your devices are registered with it."
      : brandLabel() + " lists " + devices.length + (devices.length === 1 ? " device" : " devices") + "; "
        + (free === 1 ? "1 is" : free + " are") + " not added yet. Tick the ones to add.";
    devices.forEach(function (device) {
      const row = document.createElement("tr");
      row.dataset.serial = device.serial;
      const pick = cell(row, "");
      pick.textContent = "";
      if (device.onboarded === "by_you") {
        const link = document.createElement("a");
        link.href = "/ui/inverters/" + device.inverter_id;
        link.textContent = "already yours";
        pick.appendChild(link);
      } else if (device.onboarded) {
        pick.textContent = "added by another account";
      } else {
        const box = document.createElement("input");
        box.type = "checkbox";
        box.name = "serial";
        box.value = device.serial;
        box.id = "pick-" + device.serial.replace(/[^A-Za-z0-9_-]/g, "_");
        box.setAttribute("aria-label", "Add " + device.serial);
        pick.appendChild(box);
      }
      cell(row, device.serial, true);
      cell(row, device.device_type || "told when added");
      cell(row, device.model);
      cell(row, device.plant_id);
      cell(row, device.timezone);
      deviceRows.appendChild(row);
    });
    devicesSection.hidden = false;
    document.getElementById("devices-heading").focus();
  }

  // -- 4. add, then wait for each one's first reading ------------------------------------------------------
  onboardForm.addEventListener("submit", async function (event) {
    event.preventDefault();
    const boxes = Array.from(onboardForm.querySelectorAll('input[name="serial"]:checked'));
    if (!boxes.length) {
      const first = onboardForm.querySelector('input[name="serial"]');
      return fail(onboardError, "Tick at least one device to add.", first);
    }
    if (!connection) return fail(onboardError, "Enter your credentials again.", null);
    Dash.showError(onboardError, "");
    const button = document.getElementById("onboard-button");
    button.disabled = true;
    progress.hidden = false;
    document.getElementById("progress-heading").focus();
    const added = [];
    for (const box of boxes) {
      const serial = box.value;
      const item = progressItem(serial);
      say(item, "Adding…");
      const reply = await patiently(
        function () { return Dash.api("POST", "/inverters", { brand: brand, serial: serial, connection: connection }); },
        function (seconds) { say(item, brandLabel() + " asks us to wait; trying again in " + seconds + " s…"); }
      );
      if (!reply.ok) {
        item.classList.add("progress-failed");
        say(item, explain(reply, serial)[0]);
        continue;
      }
      const inverter = reply.data;
      box.closest("td").textContent = "added";
      const link = item.querySelector("a");
      link.href = "/ui/inverters/" + inverter.id;
      item.dataset.inverterId = inverter.id;
      watched[inverter.id] = item;
      item.querySelector(".progress-added").textContent = "Added (" + inverter.device_type
        + (inverter.timezone ? ", " + inverter.timezone : "") + "). ";
      say(item, "Waiting for its first reading…");
      added.push(inverter.id);
    }
    button.disabled = false;
    if (added.length) watch();
  });

  function progressItem(serial) {
    const item = document.createElement("li");
    item.dataset.serial = serial;
    const link = document.createElement("a");
    link.textContent = serial;
    link.href = "#";
    const added = document.createElement("span");
    added.className = "progress-added";
    const text = document.createElement("span");
    text.className = "progress-text";
    item.appendChild(link);
    item.appendChild(document.createTextNode(": "));
    item.appendChild(added);
    item.appendChild(text);
    progressList.appendChild(item);
    return item;
  }

  function say(item, text) { item.querySelector(".progress-text").textContent = text; }

  function watts(v) {
    if (v === null || v === undefined) return null;
    return Math.abs(v) >= 1000 ? (v / 1000).toFixed(2) + " kW" : Math.round(v) + " W";
  }

  // One stream for every inverter added on this page (a new one reopens it with the whole set).
  function watch() {
    if (stream) stream.close();
    stream = new Dash.LiveStream("/stream?inverters=" + Object.keys(watched).join(","), {
      onState: Dash.indicator(document.getElementById("connection")),
      events: {
        reading: function (reading) {
          const item = watched[reading.inverter_id];
          if (!item || item.dataset.firstReading) return;
          item.dataset.firstReading = reading.time;
          item.classList.add("progress-done");
          const parts = [["solar", watts(reading.pv_power_w)], ["load", watts(reading.load_power_w)]]
            .filter(function (p) { return p[1] !== null; })
            .map(function (p) { return p[0] + " " + p[1]; });
          say(item, "First reading at " + new Date(reading.time).toLocaleTimeString() + (parts.length ? ": " + parts.join(", ") : "") + ".");
        },
        status: function (event) {
          const item = watched[event.inverter_id];
          if (item && !item.dataset.firstReading && event.status === "offline") {
            say(item, "Added, but " + brandLabel() + " reports it offline: its first reading comes when it is back online.");
          }
        },
      },
    });
  }
});
