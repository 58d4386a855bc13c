// The OLOL dashboard: reads the proxy's live feed (/ui/events) and draws it.
// Every string that comes from a host or a client is put in the page as text (textContent), never as HTML.
"use strict";
(function () {
  const KEY_STORE = "olol.apiKey";
  const HISTORY = 300; // points kept for the charts (one a second: five minutes)
  const STALE_MS = 5000; // no update for this long: the proxy is lost, reconnect

  const $ = (id) => document.getElementById(id);
  let apiKey = sessionStorage.getItem(KEY_STORE) || "";
  let access = null; // "open", "full" or "read", from the feed's hello
  let state = null; // the latest update
  let prev = null; // the update before, for rates
  let retryMs = 1000;
  let abort = null;
  let watchdog = null;
  const traffic = { t: [], rps: [], eps: [], fps: [], rsps: [], queued: [] };
  const hostHistory = new Map(); // host id -> {t, ttft, tps, load}
  let trafficPlot = null;
  let hostPlot = null;
  let chatting = false;
  let historyPicked = false; // the operator chose the host chart's host; until then it follows the traffic
  let pgMessages = [];

  // ------------------------------------------------------------------ helpers
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function authHeaders(extra) {
    const h = Object.assign({}, extra || {});
    if (apiKey) h.Authorization = "Bearer " + apiKey;
    return h;
  }
  function canAct() {
    return access === "open" || access === "full";
  }
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : v.toFixed(0)) + " " + units[i];
  }
  function duration(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function ms(seconds) {
    return seconds === null || seconds === undefined ? "–" : (seconds * 1000).toFixed(seconds < 0.1 ? 1 : 0) + " ms";
  }
  function setConn(text, cls) {
    const c = $("conn");
    c.textContent = text;
    c.className = "pill " + cls;
  }
  function replaceRows(tbody, rows) {
    tbody.replaceChildren(...rows);
  }
  function confirmAction(text) {
    const dialog = $("confirm");
    $("confirm-text").textContent = text;
    return new Promise((resolve) => {
      const done = (ok) => {
        $("confirm-ok").onclick = null;
        $("confirm-cancel").onclick = null;
        dialog.close();
        resolve(ok);
      };
      $("confirm-ok").onclick = () => done(true);
      $("confirm-cancel").onclick = () => done(false);
      dialog.oncancel = () => done(false);
      dialog.showModal();
    });
  }
  async function ndjson(resp, onLine) {
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) onLine(JSON.parse(line));
      }
    }
    if (buf.trim()) onLine(JSON.parse(buf));
  }
  async function errorText(resp) {
    try {
      const body = await resp.json();
      return typeof body.error === "string" ? body.error : JSON.stringify(body.error);
    } catch (e) {
      return resp.status + " " + resp.statusText;
    }
  }

  // ------------------------------------------------------------------ the feed
  function showPrompt(message) {
    $("dash").hidden = true;
    $("access").hidden = true;
    $("key-prompt").hidden = false;
    $("key-error").textContent = message || "";
    setConn("key needed", "conn-wait");
    $("key-input").focus();
  }

  function resetWatchdog() {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => { if (abort) abort.abort(); }, STALE_MS);
  }

  async function connect() {
    abort = new AbortController();
    let resp;
    try {
      resp = await fetch("events", { headers: authHeaders(), cache: "no-store", signal: abort.signal });
    } catch (e) {
      return lost();
    }
    if (resp.status === 401 || resp.status === 403) {
      const why = apiKey ? "That key was not accepted." : "";
      apiKey = "";
      sessionStorage.removeItem(KEY_STORE);
      return showPrompt(why);
    }
    if (!resp.ok) return lost();
    resetWatchdog();
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let event = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          resetWatchdog();
          if (event === "hello") onHello(JSON.parse(data));
          else if (event === "state") onState(JSON.parse(data));
        }
      }
    } catch (e) {
      // aborted by the watchdog, or the connection broke: reconnect below
    }
    lost();
  }

  function lost() {
    clearTimeout(watchdog);
    setConn("proxy lost — reconnecting…", "conn-bad");
    document.body.classList.add("offline");
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 5000);
  }

  function onHello(hello) {
    access = hello.access;
    retryMs = 1000;
    document.body.classList.remove("offline");
    $("key-prompt").hidden = true;
    $("dash").hidden = false;
    const a = $("access");
    a.hidden = access === "open";
    a.textContent = access === "full" ? "full key" : "read-only key";
    $("forget-key").hidden = !apiKey;
    setConn("live", "conn-ok");
    document.body.classList.toggle("read-only", !canAct());
    for (const b of document.querySelectorAll(".act")) {
      b.disabled = !canAct();
      b.title = canAct() ? "" : "needs a full API key";
    }
    $("pg-input").disabled = !canAct();
  }

  // ------------------------------------------------------------------ rendering
  function onState(s) {
    prev = state;
    state = s;
    if (prev) {
      const dt = Math.max(0.001, s.t - prev.t);
      const rate = (k) => Math.max(0, (s.traffic[k] - prev.traffic[k]) / dt);
      push(traffic, { t: s.t, rps: rate("requests"), eps: rate("errors"), fps: rate("failovers"), rsps: rate("resumes"), queued: queuedNow(s) });
      $("s-rps").textContent = rate("requests").toFixed(1);
    } else {
      $("s-rps").textContent = "0.0";
    }
    for (const h of s.hosts) {
      let hist = hostHistory.get(h.id);
      if (!hist) hostHistory.set(h.id, (hist = { t: [], ttft: [], tps: [], load: [] }));
      push(hist, { t: s.t, ttft: h.ttft === null ? null : h.ttft * 1000, tps: h.tps, load: h.load });
    }
    renderSummary(s);
    renderHosts(s);
    renderModels(s);
    renderSplit(s.split);
    renderRecent(s);
    renderQueues(s);
    renderPlaygroundModels(s);
    renderCharts();
  }

  function push(series, point) {
    for (const k of Object.keys(series)) {
      series[k].push(point[k]);
      if (series[k].length > HISTORY) series[k].shift();
    }
  }

  function renderSummary(s) {
    const up = s.hosts.filter((h) => h.state !== "down").length;
    $("s-hosts").textContent = up + " / " + s.hosts.length;
    $("s-models").textContent = s.models.length;
    $("s-errors").textContent = Math.round(s.traffic.errors);
    $("s-failovers").textContent = Math.round(s.traffic.failovers);
    // Streams broken after the first byte: "finished elsewhere / broken" (an older proxy sends neither).
    $("s-resumes").textContent = s.traffic.resumes === undefined ? "–" : Math.round(s.traffic.resumed) + " / " + Math.round(s.traffic.resumes);
    $("s-queued").textContent = queuedNow(s);
    $("s-sessions").textContent = s.traffic.sessions === null ? "–" : s.traffic.sessions;
    $("s-uptime").textContent = duration(s.uptime_s);
    $("hosts-note").textContent = s.balancer + " routing";
  }

  function queuedNow(s) {
    return Object.values(s.traffic.queues || {}).reduce((a, q) => a + (typeof q === "number" ? q : q.depth || 0), 0);
  }

  function loadedOn(s) {
    const byHost = s.hosts.map(() => []);
    for (const m of s.models) for (const i of m.loaded) byHost[i].push(m.name);
    return byHost;
  }

  function renderHosts(s) {
    const loaded = loadedOn(s);
    const rows = s.hosts.map((h, i) => {
      const tr = el("tr");
      tr.dataset.host = h.id;
      tr.className = "state-" + h.state;
      const id = el("td");
      id.append(el("div", h.id, "mono"), el("div", h.kind || "", "muted small"));
      const st = el("td");
      st.append(el("span", h.state, "badge badge-" + h.state), el("span", " " + duration(h.for_s), "muted small"));
      if (h.err) st.append(el("div", h.err, "error small"));
      const load = el("td");
      const bar = el("div", null, "meter");
      const fill = el("div", null, "meter-fill");
      fill.style.width = Math.min(100, (100 * h.load) / Math.max(1, h.cap)) + "%";
      bar.append(fill);
      load.append(el("div", h.load + " / " + h.cap, "small"), bar);
      const models = el("td");
      for (const name of loaded[i]) models.append(el("span", name, "chip"));
      if (!loaded[i].length) models.append(el("span", "none loaded", "muted small"));
      const mem = el("td");
      mem.append(el("div", h.ram_free === null || h.ram_free === undefined ? "–" : "RAM " + bytes(h.ram_free) + (h.ram_total ? " / " + bytes(h.ram_total) : ""), "small"));
      if (h.vram_total !== undefined) mem.append(el("div", "VRAM " + bytes(h.vram_free) + " / " + bytes(h.vram_total), "small"));
      const hit = el("td", h.hit === undefined || h.hit === null ? "–" : Math.round(h.hit * 100) + "%");
      if (h.idx) hit.append(el("div", bytes(h.idx) + " indexed", "small muted"));
      const act = el("td", null, "actions");
      const draining = h.state === "draining";
      const b = el("button", draining ? "Undrain" : "Drain", "act small-btn");
      b.type = "button";
      b.dataset.action = draining ? "undrain" : "drain";
      b.disabled = !canAct();
      b.onclick = () => drain(h.id, !draining);
      act.append(b);
      tr.append(id, st, load, models, mem, el("td", ms(h.ttft)), el("td", h.tps === null ? "–" : h.tps.toFixed(1)), hit, act);
      return tr;
    });
    replaceRows($("hosts"), rows);
    const sel = $("history-host");
    const ids = s.hosts.map((h) => h.id);
    if (sel.options.length !== ids.length || ids.some((id, i) => sel.options[i].value !== id)) {
      const keep = sel.value;
      sel.replaceChildren(...ids.map((id) => { const o = el("option", id); o.value = id; return o; }));
      if (ids.includes(keep)) sel.value = keep;
    }
    if (!historyPicked && s.recent.length && ids.includes(s.recent[0][2])) sel.value = s.recent[0][2];
  }

  function renderModels(s) {
    const rows = s.models.map((m) => {
      const tr = el("tr");
      tr.dataset.model = m.name;
      const present = m.hosts.filter((i) => s.hosts[i].state !== "down").length;
      const hosts = el("td");
      for (const i of m.hosts) hosts.append(el("span", s.hosts[i].id, "chip chip-" + s.hosts[i].state));
      const loadedTd = el("td");
      for (const i of m.loaded) loadedTd.append(el("span", s.hosts[i].id, "chip chip-loaded"));
      if (!m.loaded.length) loadedTd.append(el("span", "–", "muted"));
      const want = m.want === undefined ? "" : " of " + m.want + " wanted";
      const reps = el("td", present + want, m.want !== undefined && present < m.want ? "error" : "");
      const act = el("td", null, "actions");
      const del = el("button", "Delete", "act small-btn danger-outline");
      del.type = "button";
      del.dataset.action = "delete";
      del.disabled = !canAct();
      del.onclick = () => deleteModel(m.name);
      act.append(del);
      tr.append(el("td", m.name, "mono"), el("td", m.q || "–"), el("td", m.size ? bytes(m.size) : "–"), hosts, loadedTd, reps, act);
      return tr;
    });
    replaceRows($("models"), rows);
  }

  function renderSplit(split) {
    const card = $("split-card");
    const plan = split && split.plan;
    card.hidden = !plan;
    if (!plan) return;
    $("split-name").textContent = split.model + (split.ready ? " · ready" : " · starting");
    const total = plan.assignments.reduce((a, x) => a + (x.stop - x.start), 0) || 1;
    const mem = plan.assignments.reduce((a, x) => a + (x.memory_bytes || 0), 0) || 1;
    const rows = plan.assignments.map((a, i) => {
      const row = el("div", null, "split-row");
      const label = el("div", a.host + (a.output ? " (output)" : ""), "mono small split-label");
      const layers = el("div", null, "split-bar");
      const lf = el("div", "layers " + a.start + "–" + a.stop, "split-fill c" + (i % 6));
      lf.style.width = (100 * (a.stop - a.start)) / total + "%";
      layers.append(lf);
      const memBar = el("div", null, "split-bar thin");
      const mf = el("div", bytes(a.memory_bytes), "split-fill mem c" + (i % 6));
      mf.style.width = (100 * (a.memory_bytes || 0)) / mem + "%";
      memBar.append(mf);
      row.append(label, layers, memBar);
      return row;
    });
    $("split-plan").replaceChildren(...rows);
    const tunnels = Object.entries(split.tunnels || {}).map(([addr, t]) => {
      const parts = Object.entries(t).filter(([k]) => k !== "data_path").map(([k, v]) => k + " " + (typeof v === "number" && k.includes("bytes") ? bytes(v) : v));
      return el("div", addr + " · " + t.data_path + " · " + parts.join(" · "));
    });
    $("split-tunnels").replaceChildren(...tunnels);
  }

  function renderRecent(s) {
    const rows = s.recent.map(([t, model, host, why, ttft]) => {
      const tr = el("tr");
      tr.append(el("td", new Date(t * 1000).toLocaleTimeString(), "muted small"), el("td", model, "mono"),
        el("td", host, "mono"), el("td", why), el("td", ms(ttft)));
      return tr;
    });
    if (!rows.length) {
      const tr = el("tr");
      const td = el("td", "no requests yet", "muted");
      td.colSpan = 5;
      tr.append(td);
      rows.push(tr);
    }
    replaceRows($("recent"), rows);
  }

  function renderQueues(s) {
    const entries = Object.entries(s.traffic.queues || {});
    const q = $("queues");
    q.replaceChildren(...entries.map(([model, d]) => el("span", model + ": " + (typeof d === "number" ? d : d.depth) + " waiting", "chip")));
  }

  function renderPlaygroundModels(s) {
    const sel = $("pg-model");
    const names = s.models.map((m) => m.name);
    if (sel.options.length === names.length && names.every((n, i) => sel.options[i].value === n)) return;
    const keep = sel.value;
    sel.replaceChildren(...names.map((n) => { const o = el("option", n); o.value = n; return o; }));
    if (names.includes(keep)) sel.value = keep;
  }

  // ------------------------------------------------------------------ charts (uPlot)
  function chartWidth(node) {
    return Math.max(280, node.clientWidth - 8);
  }
  // The time axis spans what is kept, and at least 20 s: set by hand, because uPlot
  // stretches a single point over years and keeps that scale as points arrive.
  function feed(plot, data) {
    const t = data[0];
    plot.setData(data, false);
    if (t.length) plot.setScale("x", { min: Math.min(t[0], t[t.length - 1] - 20), max: t[t.length - 1] });
  }

  function renderCharts() {
    if (typeof uPlot === "undefined" || !traffic.t.length) return; // uPlot mis-scales a plot first fed no points
    const tNode = $("traffic-chart");
    if (!trafficPlot) {
      trafficPlot = new uPlot({
        width: chartWidth(tNode), height: 180,
        scales: { x: { time: true } },
        series: [{}, { label: "requests/s", stroke: "#2f6fed", width: 2, fill: "rgba(47,111,237,0.08)" },
          { label: "errors/s", stroke: "#d64545", width: 2 }, { label: "failovers/s", stroke: "#e0a100", width: 2 },
          { label: "resumes/s", stroke: "#7c3aed", width: 2 },
          { label: "queued", stroke: "#0891b2", width: 1, dash: [4, 4] }],
        axes: [{}, { size: 40 }],
      }, [[], [], [], [], [], []], tNode);
    }
    feed(trafficPlot, [traffic.t, traffic.rps, traffic.eps, traffic.fps, traffic.rsps, traffic.queued]);
    const hNode = $("host-chart");
    const hist = hostHistory.get($("history-host").value);
    if (!hostPlot) {
      hostPlot = new uPlot({
        width: chartWidth(hNode), height: 180,
        scales: { x: { time: true }, ms: {}, tps: {} },
        series: [{}, { label: "TTFT ms", stroke: "#7c3aed", width: 2, scale: "ms", spanGaps: true },
          { label: "tok/s", stroke: "#0f9d58", width: 2, scale: "tps", spanGaps: true },
          { label: "load", stroke: "#888", width: 1, scale: "tps", dash: [4, 4] }],
        axes: [{}, { scale: "ms", size: 44 }, { scale: "tps", side: 1, size: 40, grid: { show: false } }],
      }, [[], [], [], []], hNode);
    }
    if (hist) feed(hostPlot, [hist.t, hist.ttft, hist.tps, hist.load]);
  }
  window.addEventListener("resize", () => {
    if (trafficPlot) trafficPlot.setSize({ width: chartWidth($("traffic-chart")), height: 180 });
    if (hostPlot) hostPlot.setSize({ width: chartWidth($("host-chart")), height: 180 });
  });

  // ------------------------------------------------------------------ actions
  async function drain(id, on) {
    const verb = on ? "Drain" : "Undrain";
    const what = on ? "New requests will go to other hosts; streams it serves now finish." : "The host takes new requests again.";
    if (!(await confirmAction(verb + " " + id + "? " + what))) return;
    const resp = await fetch("../api/hosts/" + encodeURIComponent(id) + (on ? "/drain" : "/undrain"), { method: "POST", headers: authHeaders() });
    if (!resp.ok) alertText(await errorText(resp));
  }

  async function deleteModel(name) {
    if (!(await confirmAction("Delete " + name + " from every host of the cluster?"))) return;
    const resp = await fetch("../api/delete", { method: "DELETE", headers: authHeaders({ "Content-Type": "application/json" }), body: JSON.stringify({ model: name }) });
    if (!resp.ok) alertText(await errorText(resp));
  }

  function alertText(text) {
    $("pull-status").hidden = false;
    $("pull-text").textContent = text;
    $("pull-text").className = "error";
  }

  async function pull(ev) {
    ev.preventDefault();
    const model = $("pull-model").value.trim();
    const replicas = Math.max(1, parseInt($("pull-replicas").value, 10) || 1);
    if (!model) return;
    if (!(await confirmAction("Pull " + model + " to " + replicas + " host(s)?"))) return;
    const bar = $("pull-progress");
    const text = $("pull-text");
    $("pull-status").hidden = false;
    bar.removeAttribute("value");
    text.className = "";
    text.textContent = "pulling " + model + "…";
    $("pull-button").disabled = true;
    const perHost = new Map();
    try {
      const resp = await fetch("../api/pull", { method: "POST", headers: authHeaders({ "Content-Type": "application/json" }), body: JSON.stringify({ model, replicas, stream: true }) });
      if (!resp.ok) throw new Error(await errorText(resp));
      let final = null;
      await ndjson(resp, (line) => {
        if (line.error) throw new Error(line.error);
        const o = line.olol || {};
        if (o.host && o.total) {
          perHost.set(o.host, [o.completed || 0, o.total]);
          let c = 0, t = 0;
          for (const [a, b] of perHost.values()) { c += a; t += b; }
          bar.value = t ? c / t : 0;
          text.textContent = model + ": " + bytes(c) + " / " + bytes(t) + " on " + perHost.size + " host(s)";
        } else if (line.status && line.status !== "success") {
          text.textContent = model + ": " + line.status;
        }
        if (line.status === "success") final = line;
      });
      if (!final) throw new Error("the pull ended without success");
      bar.value = 1;
      const hosts = (final.olol && final.olol.hosts) || [];
      text.textContent = model + ": done" + (hosts.length ? " on " + hosts.join(", ") : "");
      text.className = "ok";
    } catch (e) {
      bar.value = 0;
      text.textContent = model + ": " + e.message;
      text.className = "error";
    } finally {
      $("pull-button").disabled = !canAct();
    }
  }

  function pgBubble(role, text) {
    const b = el("div", null, "msg msg-" + role);
    b.append(el("div", role === "user" ? "you" : "assistant", "msg-role small muted"), el("div", text, "msg-text"));
    $("pg-log").append(b);
    $("pg-log").scrollTop = $("pg-log").scrollHeight;
    return b.lastChild;
  }

  async function chat(ev) {
    ev.preventDefault();
    if (chatting) return;
    const input = $("pg-input");
    const content = input.value.trim();
    const model = $("pg-model").value;
    if (!content || !model) return;
    chatting = true;
    $("pg-send").disabled = true;
    input.value = "";
    pgBubble("user", content);
    pgMessages.push({ role: "user", content });
    const out = pgBubble("assistant", "");
    const meta = $("pg-meta");
    meta.textContent = "waiting for a host…";
    const started = performance.now();
    let ttft = null;
    let answer = "";
    try {
      const resp = await fetch("../api/chat", { method: "POST", headers: authHeaders({ "Content-Type": "application/json" }),
        body: JSON.stringify({ model, messages: pgMessages, stream: true, options: { num_predict: 128 } }) });
      if (!resp.ok) throw new Error(await errorText(resp));
      const host = resp.headers.get("X-OLOL-Host") || "?";
      meta.textContent = "answering: " + host;
      let final = null;
      await ndjson(resp, (line) => {
        if (line.error) throw new Error(line.error);
        const piece = (line.message && line.message.content) || "";
        if (ttft === null && piece) ttft = (performance.now() - started) / 1000;
        answer += piece;
        out.textContent = answer;
        if (line.done) final = line;
      });
      pgMessages.push({ role: "assistant", content: answer });
      const tps = final && final.eval_count && final.eval_duration ? final.eval_count / (final.eval_duration / 1e9) : null;
      meta.replaceChildren(el("span", "answered by "), el("span", host, "mono pg-host"),
        el("span", " · TTFT " + ms(ttft) + (tps ? " · " + tps.toFixed(1) + " tok/s" : "") + (final && final.eval_count ? " · " + final.eval_count + " tokens" : "")));
    } catch (e) {
      out.textContent = answer;
      meta.textContent = "error: " + e.message;
      pgMessages.pop();
    } finally {
      chatting = false;
      $("pg-send").disabled = !canAct();
    }
  }

  // ------------------------------------------------------------------ wiring
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    apiKey = $("key-input").value.trim();
    $("key-input").value = "";
    if (!apiKey) return;
    sessionStorage.setItem(KEY_STORE, apiKey);
    $("key-prompt").hidden = true;
    setConn("connecting…", "conn-wait");
    connect();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    location.reload();
  });
  $("pull-form").addEventListener("submit", pull);
  $("pg-form").addEventListener("submit", chat);
  $("pg-input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("pg-form").requestSubmit(); }
  });
  $("pg-clear").addEventListener("click", () => { pgMessages = []; $("pg-log").replaceChildren(); $("pg-meta").textContent = ""; });
  $("history-host").addEventListener("change", () => { historyPicked = true; renderCharts(); });
  connect();
})();
