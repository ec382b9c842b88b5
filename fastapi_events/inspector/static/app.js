// fastapi-events inspector. Everything shown comes from the JSON endpoints and is inserted as text nodes
// (never innerHTML): event payloads are data, not markup.
"use strict";

(function () {
  const token = document.querySelector('meta[name="inspector-token"]').content;
  const MAX_ROWS = 500;
  const state = { after: 0, events: [], paused: false, filter: null, tab: "events", rate: [] };

  // -- small DOM helpers ---------------------------------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "onclick") node.addEventListener("click", value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const cell = (value, cls) => el("td", cls ? { class: cls } : {}, value === null || value === undefined ? "–" : value);
  const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "–");
  function fill(tbody, rows, emptyText, columns) {
    tbody.replaceChildren(...rows);
    if (!rows.length) tbody.appendChild(el("tr", { class: "empty" }, el("td", { colspan: String(columns) }, emptyText)));
  }
  function show(id, text, bad) {
    const node = document.getElementById(id);
    node.textContent = text;
    node.className = bad ? "error" : "muted";
  }
  const status = (text, bad) => show("status", text, bad);
  const notice = (text, bad) => show("notice", text, bad);

  async function getJSON(path) {
    const response = await fetch(path, { headers: { accept: "application/json" }, cache: "no-store" });
    if (!response.ok) throw new Error(path + ": HTTP " + response.status);
    return response.json();
  }
  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json", "x-inspector-token": token },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
    return data;
  }

  // -- events tail ---------------------------------------------------------------------------------------------
  function globToRegExp(glob) {
    let out = "";
    for (const ch of glob) {
      if (ch === "*") out += ".*";
      else if (ch === "?") out += ".";
      else out += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
    }
    return new RegExp("^" + out + "$");
  }
  function eventRow(event) {
    const handlers = el("td", { class: "handlers" });
    for (const run of event.handlers) {
      const item = el("div", { class: run.error ? "run failed" : "run" }, run.handler);
      if (run.error) item.appendChild(el("div", { class: "error" }, run.error));
      handlers.appendChild(item);
    }
    return el(
      "tr",
      { class: "event outcome-" + event.outcome.replace(/ /g, "-"), "data-seq": String(event.seq) },
      cell(clock(event.time)),
      el("td", { class: "name" }, event.name, event.source !== "dispatch" ? el("div", { class: "muted" }, event.source) : null),
      el("td", {}, el("code", { class: "payload" }, event.payload)),
      handlers,
      cell(event.outcome, "outcome"),
      cell(event.duration_ms),
    );
  }
  function renderEvents() {
    const shown = state.events.filter((e) => !state.filter || state.filter.test(e.name));
    fill(document.getElementById("events"), shown.slice().reverse().map(eventRow), "No events yet.", 6);
  }
  async function pollEvents() {
    const data = await getJSON("api/events?after=" + state.after);
    state.after = data.last;
    state.rate = data.rate;
    if (data.events.length) {
      // An event comes again once its handlers have run: replace the row already shown.
      const bySeq = new Map(state.events.map((e, i) => [e.seq, i]));
      for (const event of data.events) {
        if (bySeq.has(event.seq)) state.events[bySeq.get(event.seq)] = event;
        else state.events.push(event);
      }
      state.events = state.events.slice(-MAX_ROWS);
      renderEvents();
    }
    drawChart();
  }
  function drawChart() {
    const canvas = document.getElementById("chart");
    const ctx = canvas.getContext("2d");
    const width = canvas.width;
    const height = canvas.height;
    ctx.clearRect(0, 0, width, height);
    const now = Math.floor(Date.now() / 1000);
    const counts = new Map(state.rate.map(([second, n]) => [second, n]));
    const seconds = 300;
    let max = 1;
    for (const n of counts.values()) max = Math.max(max, n);
    const bar = width / seconds;
    ctx.fillStyle = "#3b82f6";
    for (let i = 0; i < seconds; i++) {
      const n = counts.get(now - seconds + 1 + i) || 0;
      const h = (n / max) * (height - 14);
      ctx.fillRect(i * bar, height - h, Math.max(1, bar - 0.5), h);
    }
    ctx.fillStyle = "#6b7280";
    ctx.font = "11px sans-serif";
    ctx.fillText("events/s, last 5 min (max " + max + ")", 4, 11);
    document.getElementById("rate-now").textContent = (counts.get(now - 1) || 0) + " events/s";
  }

  // -- handlers --------------------------------------------------------------------------------------------------
  async function loadHandlers() {
    const data = await getJSON("api/handlers");
    fill(
      document.getElementById("local"),
      data.local.map((h) =>
        el(
          "tr",
          { "data-function": h.function },
          cell(h.pattern),
          cell(h.function),
          cell(h.dependencies.join(", ") || "–"),
          cell(h.handled, "handled"),
          cell(h.failures, h.failures ? "failures bad" : "failures"),
          cell(h.p50_ms),
          cell(h.p99_ms),
          cell(h.last_error, "error"),
        ),
      ),
      "No LocalHandler registrations.",
      8,
    );
    fill(
      document.getElementById("forwarders"),
      data.forwarders.map((f) =>
        el(
          "tr",
          { "data-destination": f.destination },
          cell(f.system + " " + f.destination),
          cell(f.reachable === null ? "unknown" : f.reachable ? "yes" : "no", f.reachable === false ? "bad" : ""),
          cell(f.queued),
          cell(f.spool_path || "memory"),
          cell(f.delivered, "delivered"),
          cell(f.retried),
          cell(f.dead_lettered, "dead-lettered"),
          cell(f.dropped),
          cell(f.last_error, "error"),
        ),
      ),
      "No forwarders.",
      9,
    );
    fill(
      document.getElementById("webhooks"),
      (data.webhooks || []).map((w) =>
        el(
          "tr",
          { "data-url": w.url, "data-state": w.state },
          cell(w.url),
          cell(w.events.join(", ")),
          cell(w.state, w.state === "disabled" ? "state bad" : "state"),
          cell(w.queued),
          cell(w.delivered, "delivered"),
          cell(w.retried),
          cell(w.dead_lettered, "dead-lettered"),
          cell(w.disabled_reason, "error"),
        ),
      ),
      "No webhook endpoints.",
      8,
    );
    fill(
      document.getElementById("consumers"),
      data.consumers.map((c) =>
        el(
          "tr",
          {},
          cell(c.system + " " + c.destination),
          cell(c.messages),
          cell(c.failures),
          cell(Object.entries(c.lag).map(([p, n]) => p + ": " + n).join(", ") || "–"),
          cell(c.last_error, "error"),
        ),
      ),
      "No consumer seen in this process.",
      5,
    );
    fill(
      document.getElementById("outboxes"),
      data.outboxes.map((o) => el("tr", {}, cell(o.outbox), cell(o.table), cell(o.relay ? "yes" : "no (write only)"))),
      "No outbox.",
      3,
    );
  }

  // -- dead letters --------------------------------------------------------------------------------------------
  async function act(action, source, ids) {
    try {
      const result = await post("api/dead-letters/" + action, { source: source, ids: ids });
      notice(action === "replay" ? "replayed " + result.replayed : "purged " + result.purged);
    } catch (error) {
      notice(action + " failed: " + error.message, true);
    }
    await loadDead();
  }
  function deadSource(source) {
    const ids = source.items.map((d) => d.id);
    const rows = source.items.map((d) =>
      el(
        "tr",
        { "data-id": d.id },
        cell(clock(d.time)),
        cell(d.event),
        cell(d.reason, "error"),
        el("td", {}, el("code", { class: "payload" }, d.payload)),
        cell(d.attempts),
        el(
          "td",
          { class: "actions" },
          d.replayable ? el("button", { type: "button", class: "replay", onclick: () => act("replay", source.id, [d.id]) }, "Replay") : null,
          el("button", { type: "button", class: "purge", onclick: () => act("purge", source.id, [d.id]) }, "Purge"),
        ),
      ),
    );
    const body = el("tbody", {});
    fill(body, rows, source.error ? "Cannot read: " + source.error : "No dead letters.", 6);
    return el(
      "div",
      { class: "source", "data-source": source.id },
      el(
        "h2",
        {},
        source.kind + ": " + source.label + " (" + (source.total === null ? "?" : source.total) + ")",
        ids.length ? el("button", { type: "button", class: "replay-all", onclick: () => act("replay", source.id, ids) }, "Replay all") : null,
        ids.length ? el("button", { type: "button", class: "purge-all", onclick: () => act("purge", source.id, ids) }, "Purge all") : null,
      ),
      el(
        "table",
        { class: "grid" },
        el("thead", {}, el("tr", {}, ...["Time", "Event", "Reason", "Payload", "Attempts", ""].map((h) => el("th", {}, h)))),
        body,
      ),
    );
  }
  async function loadDead() {
    const data = await getJSON("api/dead-letters");
    const container = document.getElementById("dead-sources");
    container.replaceChildren(...data.sources.map(deadSource));
    if (!data.sources.length) container.appendChild(el("p", { class: "muted" }, "No spool or outbox in this app."));
    const total = data.sources.reduce((sum, s) => sum + (s.total || 0), 0);
    document.getElementById("dead-count").textContent = total ? String(total) : "";
    fill(
      document.getElementById("dead-recent"),
      data.recent.slice().reverse().map((d) => el("tr", {}, cell(clock(d.time)), cell(d.event), cell(d.where), cell(d.reason, "error"))),
      "None yet.",
      4,
    );
  }

  // -- scheduled (delayed outbox events not due yet) ------------------------------------------------------------
  async function cancelScheduled(source, ids) {
    try {
      const result = await post("api/scheduled/cancel", { source: source, ids: ids });
      notice("cancelled " + result.cancelled);
    } catch (error) {
      notice("cancel failed: " + error.message, true);
    }
    await loadScheduled();
  }
  function scheduledSource(source) {
    const rows = source.items.map((s) =>
      el(
        "tr",
        { "data-id": s.id },
        cell(clock(s.due)),
        cell(s.event),
        el("td", {}, el("code", {}, s.id)),
        el("td", {}, el("code", { class: "payload" }, s.payload)),
        cell(clock(s.dispatched)),
        el("td", { class: "actions" }, el("button", { type: "button", class: "cancel", onclick: () => cancelScheduled(source.id, [s.id]) }, "Cancel")),
      ),
    );
    const body = el("tbody", {});
    fill(body, rows, source.error ? "Cannot read: " + source.error : "Nothing scheduled.", 6);
    return el(
      "div",
      { class: "source", "data-source": source.id },
      el("h2", {}, "outbox: " + source.label + " (" + source.items.length + ")"),
      el(
        "table",
        { class: "grid" },
        el("thead", {}, el("tr", {}, ...["Due", "Event", "Id", "Payload", "Dispatched", ""].map((h) => el("th", {}, h)))),
        body,
      ),
    );
  }
  async function loadScheduled() {
    const data = await getJSON("api/scheduled");
    const container = document.getElementById("scheduled-sources");
    container.replaceChildren(...data.sources.map(scheduledSource));
    if (!data.sources.length) container.appendChild(el("p", { class: "muted" }, "No outbox in this process."));
  }

  // -- catalog -------------------------------------------------------------------------------------------------
  async function loadCatalog() {
    const data = await getJSON("api/catalog");
    fill(
      document.getElementById("catalog"),
      data.events.map((e) =>
        el(
          "tr",
          { "data-name": e.name },
          el("td", {}, el("code", {}, e.name), e.pattern ? el("div", { class: "muted" }, "pattern") : null, e.model ? el("div", { class: "muted" }, e.model) : null),
          cell(e.seen),
          cell(e.handlers.join(", ") || "–"),
          el("td", {}, e.schema ? el("pre", { class: "schema" }, JSON.stringify(e.schema, null, 2)) : "–"),
        ),
      ),
      "No events known yet.",
      4,
    );
  }

  // -- wiring --------------------------------------------------------------------------------------------------
  const loaders = { handlers: loadHandlers, dead: loadDead, scheduled: loadScheduled, catalog: loadCatalog };
  // Seconds between reloads of each view: dead letters are read from the spool files, and a re-rendered catalog
  // would keep resetting the schema the user is reading.
  const every = { handlers: 1, dead: 2, scheduled: 2, catalog: 10, events: 5 };
  let ticks = 0;
  async function tick(force) {
    try {
      if (!state.paused) await pollEvents();
      if (force || ticks % every[state.tab] === 0) {
        if (loaders[state.tab]) await loaders[state.tab]();
        else await loadDead(); // keeps the dead-letter badge current
      }
      ticks += 1;
      status(state.paused ? "live (tail paused)" : "live");
    } catch (error) {
      status("cannot reach the app: " + error.message, true);
    }
  }
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => {
      state.tab = button.dataset.tab;
      for (const other of document.querySelectorAll("#tabs button")) other.classList.toggle("active", other === button);
      for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.id === "tab-" + state.tab);
      tick(true);
    });
  }
  document.getElementById("pause").addEventListener("click", (e) => {
    state.paused = !state.paused;
    e.target.textContent = state.paused ? "Resume" : "Pause";
    e.target.classList.toggle("active", state.paused);
  });
  document.getElementById("filter").addEventListener("input", (e) => {
    const value = e.target.value.trim();
    state.filter = value ? globToRegExp(value) : null;
    renderEvents();
  });
  renderEvents();
  tick(true);
  setInterval(() => tick(false), 1000);
})();
