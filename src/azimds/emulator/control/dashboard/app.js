// The azimds dashboard: a client of the control plane's JSON API, nothing more.
// The token comes from the link's fragment (#token=…), which browsers never send to a server; it is kept in
// this tab's sessionStorage and sent as "Authorization: Bearer" on every call. Data is only ever written with
// textContent, never parsed as HTML.
"use strict";

(() => {
  const KEY = "azimds-token";
  const PAGE = 100;
  const token = takeToken();
  const state = { vm: null, vmInfo: null, offset: 0, total: 0, busy: false, lastFleet: 0 };

  function takeToken() {
    const found = /(?:^|&)token=([^&]*)/.exec(location.hash.slice(1));
    if (found) {
      const value = decodeURIComponent(found[1]);
      try { sessionStorage.setItem(KEY, value); } catch (e) { /* storage off: memory only */ }
      history.replaceState(null, "", location.pathname + location.search);  // out of the address bar
      return value;
    }
    try { return sessionStorage.getItem(KEY); } catch (e) { return null; }
  }

  // -- talking to the control plane ----------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const reply = await fetch(path, init);
    const text = await reply.text();
    const value = text ? JSON.parse(text) : null;
    if (!reply.ok) {
      let message = (value && value.error) || reply.statusText;
      if (value && value.problems) message += ": " + value.problems.join("; ");
      if (reply.status === 401) message += " — open the link `azimds serve` printed (…/dashboard#token=…)";
      throw new ApiError(reply.status, reply.status + " " + message);
    }
    return value;
  }

  function vmQuery(prefix) {
    return state.vm ? prefix + "vm=" + encodeURIComponent(state.vm) : "";
  }

  function say(message, bad) {
    const status = $("status");
    status.textContent = message;
    status.classList.toggle("bad", Boolean(bad));
    state.saidAt = Date.now();
  }

  async function act(what, call) {
    try {
      await call();
      say(what);
      await refresh(true);
    } catch (error) {
      say(error.message, true);
    }
  }

  // -- small DOM helpers ----------------------------------------------------------------------------------
  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "class") node.className = value;
      else if (name === "data") for (const [k, v] of Object.entries(value)) node.dataset[k] = v;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // Redraw a list only when what it shows changed, so that the buttons under the pointer stay put between polls.
  const shown = new Map();
  function fill(node, rows, data) {
    const key = data === undefined ? null : JSON.stringify(data);
    if (key !== null && shown.get(node.id) === key) return;
    shown.set(node.id, key);
    node.replaceChildren(...(typeof rows === "function" ? rows() : rows));
  }

  function when(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    return new Date(Math.round(seconds) * 1000).toISOString().replace(".000Z", "Z").replace("T", " ");
  }

  // -- the panels -----------------------------------------------------------------------------------------
  async function loadClock() {
    const clock = await api("GET", "/v1/clock");
    $("clock-now").textContent = when(Math.floor(clock.now));
    $("clock-mode").textContent = clock.mode === "manual" ? "manual" : clock.mode + " ×" + clock.speed;
    state.now = clock.now;
  }

  async function loadFleet() {
    const fleet = await api("GET", "/v1/fleet?offset=" + state.offset + "&limit=" + PAGE);
    state.total = fleet.total;
    state.lastFleet = Date.now();
    if (state.vm === null && fleet.vms.length) state.vm = fleet.vms[0].name;
    for (const vm of fleet.vms) if (vm.name === state.vm) state.vmInfo = vm;
    const rows = () => fleet.vms.map((vm) => {
      const place = vm.scaleSet ? "scale set " + vm.scaleSet
        : vm.availabilitySet ? "availability set " + vm.availabilitySet : "";
      return el("tr", { data: { vm: vm.name }, class: vm.name === state.vm ? "selected" : "",
                        onclick: () => select(vm) },
        el("td", {}, el("button", { type: "button", class: "link" }, vm.name)),
        el("td", {}, place), el("td", { class: "mono" }, vm.addresses.join(", ") || "(others)"),
        el("td", {}, vm.faultDomain), el("td", {}, vm.updateDomain),
        el("td", { class: "count" }, vm.events), el("td", {}, vm.changed ? "changed" : ""));
    });
    fill($("fleet-rows"), rows, [fleet.vms, state.vm]);
    const last = fleet.offset + fleet.vms.length;
    $("fleet-range").textContent = fleet.total > fleet.vms.length
      ? (fleet.offset + 1) + "–" + last + " of " + fleet.total : fleet.total + (fleet.total === 1 ? " VM" : " VMs");
    $("fleet-prev").disabled = fleet.offset === 0;
    $("fleet-next").disabled = last >= fleet.total;
    fill($("sets"), () => fleet.sets.map((set) => el("li", { data: { set: set.name } },
      el("strong", {}, set.name), " ",
      set.kind === "scaleSet"
        ? "scale set of " + set.size + ", " + set.faultDomains + " fault and " + set.updateDomains + " update domains "
        : "availability set of " + set.size + " ",
      set.kind === "scaleSet"
        ? el("button", { type: "button", title: "one event per update domain, of the type chosen below",
            onclick: () => act("walk planned for " + set.name,
              () => api("POST", "/v1/fleet/walk", { set: set.name, type: $("ev-type").value })) },
            "walk update domains")
        : null)), fleet.sets);
    $("vm-name").textContent = state.vm || "—";
    const info = state.vmInfo;
    $("vm-note").textContent = info && info.scaleSet
      ? "A scale-set instance shows changed tags at its next reboot (unless scaleSetTags is immediate)." : "";
  }

  async function loadTags() {
    const list = await api("GET", "/v1/metadata/compute/tagsList" + vmQuery("?"));
    fill($("tags-rows"), (list || []).map((tag) => tagRow(tag.name, tag.value)));
  }

  function tagRow(name, value) {
    const row = el("tr", { class: "tag" },
      el("td", {}, el("input", { type: "text", class: "tag-name", maxlength: "512", "aria-label": "tag name" })),
      el("td", {}, el("input", { type: "text", class: "tag-value", maxlength: "256", "aria-label": "tag value" })),
      el("td", {}, el("button", { type: "button", class: "tag-remove", onclick: () => row.remove() }, "remove")));
    row.querySelector(".tag-name").value = name;
    row.querySelector(".tag-value").value = value;
    return row;
  }

  async function loadEvents() {
    const book = await api("GET", "/v1/events" + vmQuery("?"));
    $("incarnation").textContent = "DocumentIncarnation " + book.incarnation;
    const rows = () => book.events.map((event) => {
      const buttons = [];
      const button = (action, label) => buttons.push(el("button", {
        type: "button", data: { action }, onclick: () => act(label + " " + event.eventId,
          () => api("POST", "/v1/events/" + encodeURIComponent(event.eventId) + "/" + action + vmQuery("?"))),
      }, action));
      if (event.status === "Scheduled") { button("approve", "approved"); button("start", "started"); }
      if (event.status === "Started") button("complete", "completed");
      if (event.status === "Scheduled") button("cancel", "cancelled");
      const resources = event.resources.length > 4
        ? event.resources.slice(0, 4).join(", ") + " +" + (event.resources.length - 4) : event.resources.join(", ");
      return el("tr", { data: { event: event.eventId }, class: "ev-" + event.status.toLowerCase() },
        el("td", { class: "mono" }, event.eventId), el("td", {}, event.type),
        el("td", { class: "ev-status" }, event.status), el("td", {}, when(event.notBefore)),
        el("td", {}, event.durationInSeconds), el("td", {}, resources),
        el("td", {}, event.approvals.join(", ")), el("td", { class: "actions" }, ...buttons));
    });
    fill($("events-rows"), rows, [book.events, state.vm]);
    drawTimeline(book.events);
  }

  function drawTimeline(events) {
    const now = state.now || Date.now() / 1000;
    const spans = events.map((e) => {
      const start = e.status === "Started" ? (e.started || now) : e.notBefore;
      return { e, published: Math.min(e.published, start), start, end: start + e.active };
    });
    let lo = Math.min(now, ...spans.map((s) => s.published));
    let hi = Math.max(now + 60, ...spans.map((s) => s.end));
    const pad = (hi - lo) * 0.03;
    lo -= pad; hi += pad;
    const x = (t) => ((t - lo) / (hi - lo) * 100).toFixed(3) + "%";
    const w = (a, b) => (Math.max(b - a, 0) / (hi - lo) * 100).toFixed(3) + "%";
    const lanes = spans.map((s) => {
      const notice = el("div", { class: "bar notice", title: "published → NotBefore" });
      notice.style.left = x(s.published); notice.style.width = w(s.published, s.start);
      const active = el("div", { class: "bar active " + s.e.status.toLowerCase(),
                                 title: s.e.type + " " + s.e.status });
      active.style.left = x(s.start); active.style.width = w(s.start, s.end);
      return el("div", { class: "lane" }, el("span", { class: "lane-label" }, s.e.type + " " + s.e.eventId.slice(0, 8)),
        el("div", { class: "track" }, notice, active));
    });
    const marker = el("div", { class: "now", title: "now" });
    marker.style.left = x(now);
    const axis = el("div", { class: "axis" }, el("span", {}, when(Math.round(lo))), el("span", {}, "now " + when(Math.floor(now))),
      el("span", {}, when(Math.round(hi))));
    const body = el("div", { class: "lanes" }, ...(lanes.length ? lanes : [el("p", { class: "note" }, "no events")]));
    const tracks = el("div", { class: "tracks" }, body, el("div", { class: "overlay" }, marker));
    $("timeline").replaceChildren(tracks, axis);
  }

  async function loadFaults() {
    const faults = await api("GET", "/v1/faults");
    fill($("faults"), () => (faults.faults.length
      ? faults.faults.map((fault) => el("li", {}, JSON.stringify(fault)))
      : [el("li", { class: "note" }, "none")]), faults.faults);
  }

  async function loadJournal() {
    const journal = await api("GET", "/v1/journal?limit=40");
    fill($("journal-rows"), () => journal.entries.slice().reverse().map((entry) => el("tr",
      { class: entry.status >= 400 || entry.status === 0 ? "bad" : "" },
      el("td", {}, when(entry.time)), el("td", {}, entry.peer), el("td", {}, entry.method),
      el("td", { class: "url" }, entry.url), el("td", {}, entry.status),
      el("td", {}, (entry.latency * 1000).toFixed(2)))), journal.entries);
  }

  async function refresh(all) {
    await loadClock();
    const parts = [loadEvents(), loadFaults(), loadJournal()];
    if (all || Date.now() - state.lastFleet > 5000) parts.push(loadFleet());
    await Promise.all(parts);
  }

  async function select(vm) {
    state.vm = vm.name;
    state.vmInfo = vm;
    for (const row of $("fleet-rows").children) row.classList.toggle("selected", row.dataset.vm === vm.name);
    $("vm-name").textContent = vm.name;
    try {
      await Promise.all([loadTags(), loadEvents(), loadFleet()]);
    } catch (error) {
      say(error.message, true);
    }
  }

  async function poll() {
    try {
      await refresh(false);
      if (Date.now() - (state.saidAt || 0) > 4000) say("live · " + new Date().toLocaleTimeString());
    } catch (error) {
      say(error.message, true);
    }
    setTimeout(poll, 1000);
  }

  // -- the controls --------------------------------------------------------------------------------------
  function number(id) {
    const text = $(id).value.trim();
    return text === "" ? undefined : Number(text);
  }

  function wire() {
    $("fleet-prev").addEventListener("click", () => {
      state.offset = Math.max(0, state.offset - PAGE);
      act("fleet", loadFleet);
    });
    $("fleet-next").addEventListener("click", () => {
      state.offset += PAGE;
      act("fleet", loadFleet);
    });
    $("tag-add").addEventListener("click", () => $("tags-rows").append(tagRow("", "")));
    $("tags-save").addEventListener("click", () => {
      const tags = {};
      for (const row of $("tags-rows").querySelectorAll("tr")) {
        const name = row.querySelector(".tag-name").value.trim();
        if (name) tags[name] = row.querySelector(".tag-value").value;
      }
      act("tags of " + state.vm + " saved", async () => {
        await api("PUT", "/v1/tags" + vmQuery("?"), tags);
        await loadTags();
      });
    });
    $("reboot").addEventListener("click", () => act(state.vm + " rebooted", async () => {
      await api("POST", "/v1/reboot" + vmQuery("?"));
      await loadTags();
    }));
    $("schedule-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const spec = { type: $("ev-type").value, approval: $("ev-approval").value };
      const duration = number("ev-duration");
      const notice = number("ev-notice");
      const resources = $("ev-resources").value.split(",").map((s) => s.trim()).filter(Boolean);
      const description = $("ev-description").value;
      if (duration !== undefined) spec.durationInSeconds = duration;
      if (notice !== undefined) spec.notice = notice;
      if (resources.length) spec.resources = resources;
      if (description) spec.description = description;
      act(spec.type + " scheduled", () => api("POST", "/v1/events" + vmQuery("?"), spec));
    });
    for (const button of document.querySelectorAll("[data-advance]")) {
      button.addEventListener("click", () => act("clock advanced",
        () => api("POST", "/v1/clock", { advance: Number(button.dataset.advance) })));
    }
    $("advance-form").addEventListener("submit", (event) => {
      event.preventDefault();
      act("clock advanced", () => api("POST", "/v1/clock", { advance: number("advance-seconds") }));
    });
    $("speed-form").addEventListener("submit", (event) => {
      event.preventDefault();
      act("clock speed set", () => api("POST", "/v1/clock", { speed: number("speed") }));
    });
    $("fault-form").addEventListener("submit", (event) => {
      event.preventDefault();
      act("fault added", () => api("POST", "/v1/faults", { spec: $("fault-spec").value }));
    });
    $("faults-clear").addEventListener("click", () => act("faults cleared", () => api("DELETE", "/v1/faults")));
  }

  async function start() {
    wire();
    try {
      await loadFleet();
      await loadTags();
    } catch (error) {
      say(error.message, true);
    }
    poll();
  }

  start();
})();
