// Sentio dashboard: hash routes over the JSON API (docs/api.md), charts by uPlot, live updates
// from /api/events (server-sent events). No build step, no external requests.
"use strict";

const SENSORS = ["temperature", "vibration", "pressure", "humidity"];
const COLORS = { temperature: "#f0883e", vibration: "#a371f7", pressure: "#58a6ff", humidity: "#3fb950" };
// Any other machine's channels, in turn.
const PALETTE = ["#f0883e", "#a371f7", "#58a6ff", "#3fb950", "#d29922", "#db61a2", "#39c5cf", "#e5534b"];
const color = (s, i) => COLORS[s] || PALETTE[i % PALETTE.length];
const RANGES = ["15m", "1h", "6h", "1d", "7d"];
const view = document.getElementById("view");
let current = null; // the page on screen: { stop(), on{Readings,Scores,Alert}(data) }

// ---------- helpers ----------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c.nodeType ? c : String(c));
  return el;
}
const fmt = (v, d = 2) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
const time = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "–");
const dur = (ms) => (ms === null || ms === undefined ? "–" : ms < 1000 ? `${fmt(ms, 0)} ms` : `${fmt(ms / 1000, 1)} s`);

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}
function fail(e) {
  view.replaceChildren(h("div", { class: "error", "data-testid": "error" }, String(e.message || e)));
}
function toast(text) {
  const t = h("div", { class: "toast" }, text);
  document.getElementById("toasts").append(t);
  setTimeout(() => t.remove(), 6000);
}
// An alert's error share over its model's channels (`sensors`, display order: any profile's).
function shareBar(share, sensors) {
  const names = sensors && sensors.length ? sensors : Object.keys(share);
  return h("span", { class: "share", "data-testid": "share", title: names.map((s) => `${s} ${fmt(100 * share[s], 0)}%`).join(", ") },
    names.map((s, i) => h("i", { style: `width:${100 * share[s]}%;background:${color(s, i)}`, "data-sensor": s })));
}

// ---------- live feed ----------
let source = null;
function connect() {
  const live = document.getElementById("live");
  source = new EventSource("/api/events");
  source.onopen = () => { live.textContent = "live"; live.classList.remove("off"); };
  source.onerror = () => { live.textContent = "reconnecting"; live.classList.add("off"); };
  const on = (kind, fn) => source.addEventListener(kind, (e) => {
    const data = JSON.parse(e.data);
    if (current && current[fn]) current[fn](data);
  });
  on("readings", "onReadings");
  on("scores", "onScores");
  on("alert", "onAlert");
  source.addEventListener("alert", (e) => {
    const a = JSON.parse(e.data);
    if (a.state === "opened") toast(`${a.severity} alert on ${a.device}: ${a.top_sensor}`);
  });
  source.addEventListener("resync", () => route());
}

// ---------- charts ----------
// A uPlot plugin shading alert spans [span_start, window_end].
function spansPlugin(getSpans) {
  return {
    hooks: {
      drawClear: (u) => {
        const ctx = u.ctx;
        ctx.save();
        for (const a of getSpans()) {
          const x0 = u.valToPos(a.span_start / 1000, "x", true);
          const x1 = Math.max(u.valToPos(a.window_end / 1000, "x", true), x0 + 2);
          ctx.fillStyle = a.severity === "critical" ? "rgba(248,81,73,0.22)" : "rgba(210,153,34,0.22)";
          ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
        }
        ctx.restore();
      },
    },
  };
}
function chartOpts(title, series, width, getSpans, extra = {}) {
  return {
    title, width, height: 170,
    cursor: { sync: { key: "sentio" } },
    scales: { x: { time: true } },
    axes: [{ stroke: "#8a97a8", grid: { stroke: "#263040" } }, { stroke: "#8a97a8", grid: { stroke: "#263040" }, size: 60 }],
    series: [{}, ...series],
    plugins: [spansPlugin(getSpans)],
    ...extra,
  };
}

// ---------- pages ----------
const pages = {
  async overview() {
    view.replaceChildren(h("h1", {}, "Devices"), h("div", { class: "grid", "data-testid": "devices" }));
    const grid = view.querySelector(".grid");
    async function refresh() {
      const o = await api("/api/overview");
      if (!o.devices.length) {
        grid.replaceChildren(h("p", { class: "muted" }, "No devices yet: start `sentio simulate` or `sentio demo`, and `sentio ingest`."));
        return;
      }
      grid.replaceChildren(...o.devices.map((d) => {
        const ratio = d.score ? d.score.score / d.score.threshold : 0;
        return h("a", { class: `card ${d.state}`, href: `#/device/${encodeURIComponent(d.device)}`, "data-testid": "device-card", "data-device": d.device, "data-state": d.state },
          h("div", { class: "title" }, d.device, h("span", { class: `badge ${d.state}` }, d.state)),
          h("div", { class: "kv" }, (d.channels && d.channels.length ? d.channels : SENSORS).flatMap((s) => {
            const r = d.readings[s];
            const arrival = r && r.ts_source === "arrival";
            return [h("span", { class: "k" }, s), h("span", arrival ? { title: "no timestamp from the device: stamped when it arrived" } : {}, r ? `${fmt(r.value)} ${r.unit}${arrival ? " ⧗" : ""}` : "–")];
          }),
          h("span", { class: "k" }, "anomaly score"), h("span", {}, d.score ? `${fmt(d.score.score, 3)} / ${fmt(d.score.threshold, 3)}` : "–")),
          h("div", { class: "scorebar", title: "score / threshold" }, h("i", { class: ratio >= 1 ? "over" : "", style: `width:${Math.min(100, 50 * ratio)}%` })),
          d.open_alert ? h("div", { class: "muted", style: "margin-top:6px" }, `${d.open_alert.severity}: ${d.open_alert.top_sensor} since ${time(d.open_alert.window_end)}`) : null);
      }));
    }
    await refresh();
    const timer = setInterval(() => refresh().catch(() => {}), 2000);
    return { stop: () => clearInterval(timer), onAlert: () => refresh().catch(() => {}) };
  },

  async device(id) {
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const last = RANGES.includes(params.get("last")) ? params.get("last") : "1h";
    const points = /^\d+$/.test(params.get("points") || "") ? `&points=${params.get("points")}` : "";
    const d = await api(`/api/devices/${encodeURIComponent(id)}/series?last=${last}${points}`);
    const width = Math.max(400, view.clientWidth - 40);
    let spans = d.alerts;
    const toolbar = h("div", { class: "toolbar" }, h("span", { class: "muted" }, "range"),
      RANGES.map((r) => h("button", { class: r === last ? "active" : "", onclick: () => { location.hash = `#/device/${encodeURIComponent(id)}?last=${r}`; } }, r)),
      h("span", { class: "muted", "data-testid": "frames" }, `${d.raw_frames} frames${d.reduced ? ` (drawn as ${d.ts.length} min/max points)` : ""}`));
    view.replaceChildren(h("h1", {}, `Device ${d.device}`), toolbar, h("div", { id: "charts", "data-testid": "charts" }), h("h2", {}, "Alerts in this range"), h("div", { id: "dev-alerts" }));
    const box = view.querySelector("#charts");
    const span = d.to - d.from;
    // One chart per channel the device reported in the range, as the API orders them.
    const channels = d.sensors;
    const data = channels.map((_, i) => [d.ts.map((t) => t / 1000), d.values[i]]);
    const plots = channels.map((s, i) => {
      const el = h("div", { class: "chart", "data-testid": `chart-${s}`, "data-points": data[i][0].length, "data-last": data[i][0][data[i][0].length - 1] });
      box.append(el);
      return new uPlot(chartOpts(`${s} (${d.units[i]})`, [{ label: s, stroke: color(s, i), width: 1.2, spanGaps: false }], width, () => spans), data[i], el);
    });
    const sdata = [d.scores.ts.map((t) => t / 1000), d.scores.score, d.scores.threshold];
    const sel = h("div", { class: "chart", "data-testid": "chart-score", "data-points": sdata[0].length });
    box.append(sel);
    const scorePlot = new uPlot(chartOpts("anomaly score", [
      { label: "score", stroke: "#f85149", width: 1.2 },
      { label: "threshold", stroke: "#8a97a8", dash: [6, 4], width: 1 }], width, () => spans,
    { scales: { x: { time: true }, y: { distr: 3 } } }), sdata, sel);
    function renderAlerts() {
      box.dataset.alerts = spans.length;
      view.querySelector("#dev-alerts").replaceChildren(alertTable(spans.slice().reverse(), false));
      for (const p of [...plots, scorePlot]) p.redraw(false);
    }
    renderAlerts();
    const keep = (arr) => { const min = arr[0][arr[0].length - 1] - span / 1000; let k = 0; while (k < arr[0].length && arr[0][k] < min) k++; if (k) for (const c of arr) c.splice(0, k); };
    return {
      stop() { for (const p of [...plots, scorePlot]) p.destroy(); },
      onReadings(all) {
        const r = all[d.device];
        if (!r) return;
        channels.forEach((s, i) => {
          // The feed names its columns: a channel it does not carry this time is skipped.
          const c = r.sensors.indexOf(s);
          if (c < 0) return;
          r.ts.forEach((t, j) => { if (r.values[c][j] !== null) { data[i][0].push(t / 1000); data[i][1].push(r.values[c][j]); } });
          keep(data[i]);
          plots[i].setData(data[i]);
          const el = plots[i].root.parentElement;
          el.dataset.points = data[i][0].length;
          el.dataset.last = data[i][0][data[i][0].length - 1];
        });
      },
      onScores(all) {
        const s = all[d.device];
        if (!s) return;
        s.ts.forEach((t, j) => { sdata[0].push(t / 1000); sdata[1].push(s.score[j]); sdata[2].push(s.threshold[j]); });
        keep(sdata);
        scorePlot.setData(sdata);
      },
      async onAlert(a) {
        if (a.device !== d.device) return;
        const fresh = await api(`/api/devices/${encodeURIComponent(id)}/series?last=${last}&points=100`).catch(() => null);
        if (fresh) { spans = fresh.alerts; renderAlerts(); }
      },
    };
  },

  async alerts() {
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const o = await api("/api/overview");
    const filters = { device: params.get("device") || "", sensor: params.get("sensor") || "", severity: params.get("severity") || "", state: params.get("state") || "all", last: params.get("last") || "1d" };
    const select = (name, options) => h("select", { "data-testid": `filter-${name}`, onchange: (e) => { filters[name] = e.target.value; const q = new URLSearchParams(Object.entries(filters).filter(([, v]) => v)); location.hash = `#/alerts?${q}`; } },
      options.map(([v, label]) => h("option", { value: v, selected: filters[name] === v }, label)));
    view.replaceChildren(h("h1", {}, "Alerts"), h("div", { class: "toolbar" },
      select("device", [["", "all devices"], ...o.devices.map((d) => [d.device, d.device])]),
      select("sensor", [["", "any top sensor"], ...[...new Set(o.devices.flatMap((d) => d.channels || SENSORS))].map((s) => [s, s])]),
      select("severity", [["", "any severity"], ["warning", "warning"], ["critical", "critical"]]),
      select("state", [["all", "open and resolved"], ["open", "open"], ["resolved", "resolved"]]),
      select("last", [["1h", "last hour"], ["6h", "last 6 h"], ["1d", "last day"], ["7d", "last week"]])), h("div", { id: "alert-list" }));
    async function refresh(freshId) {
      const q = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
      const r = await api(`/api/alerts?${q}`);
      view.querySelector("#alert-list").replaceChildren(h("p", { class: "muted" }, `${r.total} alerts from ${time(r.from)} to ${time(r.to)}`), alertTable(r.alerts, true, freshId));
    }
    await refresh();
    return { onAlert: (a) => refresh(a.alert_id).catch(() => {}) };
  },

  async model() {
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const profile = params.get("profile");
    const m = await api(profile ? `/api/models?profile=${encodeURIComponent(profile)}` : "/api/models");
    view.replaceChildren(h("h1", {}, `Model ${m.name}`));
    // One model per asset profile: choose whose.
    if (m.profiles && m.profiles.length > 1) {
      view.append(h("div", { class: "toolbar" }, h("select", { "data-testid": "model-profile", onchange: (e) => { location.hash = `#/model?profile=${encodeURIComponent(e.target.value)}`; } },
        m.profiles.map((p) => h("option", { value: p, selected: (m.profile || "pump") === p }, `profile ${p}`)))));
    }
    if (m.hint) view.append(h("p", { class: "muted", "data-testid": "model-hint" }, m.hint));
    if (!m.versions.length) return {};
    const rows = m.versions.map((v) => h("tr", { "data-testid": "model-version" },
      h("td", {}, `v${v.version} `, v.champion ? h("span", { class: "badge champion" }, m.alias) : null),
      h("td", {}, time(v.created)), h("td", {}, fmt(v.threshold, 4)), h("td", {}, v.threshold_method || "–"),
      h("td", {}, fmt(v.best_validation_loss, 5)), h("td", {}, `${v.data_from || "–"} → ${v.data_to || "–"}`),
      h("td", {}, v.devices || "–"), h("td", {}, v.train_windows || "–")));
    view.append(h("table", {}, h("tr", {}, ["version", "registered", "threshold", "method", "best val. loss", "training data", "devices", "train windows"].map((c) => h("th", {}, c))), rows));
    const shown = m.versions.find((v) => v.champion) || m.versions[0];
    view.append(h("h2", {}, `Loss per epoch, v${shown.version}`));
    const el = h("div", { class: "chart", "data-testid": "loss-chart" });
    view.append(el);
    const epochs = shown.train_loss.map((_, i) => i + 1);
    const p = new uPlot({ width: Math.max(400, view.clientWidth - 40), height: 260, scales: { x: { time: false }, y: { distr: 3 } },
      axes: [{ stroke: "#8a97a8", grid: { stroke: "#263040" }, label: "epoch" }, { stroke: "#8a97a8", grid: { stroke: "#263040" }, size: 70 }],
      series: [{ label: "epoch" }, { label: "train", stroke: "#58a6ff", width: 1.5 }, { label: "validation", stroke: "#f0883e", width: 1.5 }] },
    [epochs, shown.train_loss, shown.validation_loss], el);
    return { stop: () => p.destroy() };
  },

  async pipeline() {
    view.replaceChildren(h("h1", {}, "Pipeline"), h("div", { class: "grid", id: "stats", "data-testid": "pipeline" }), h("h2", {}, "Ingestion and lag while this page is open"), h("div", { class: "chart", id: "rate" }));
    const hist = [[], [], []];
    const clock = (u, splits) => splits.map((v) => new Date(v * 1000).toISOString().slice(11, 19));
    const plot = new uPlot({ width: Math.max(400, view.clientWidth - 40), height: 200, scales: { x: { time: true } },
      axes: [{ stroke: "#8a97a8", grid: { stroke: "#263040" }, values: clock, space: 80 }, { stroke: "#8a97a8", grid: { stroke: "#263040" }, size: 70 }],
      series: [{}, { label: "readings/s", stroke: "#3fb950" }, { label: "consumer lag", stroke: "#d29922" }] }, hist, view.querySelector("#rate"));
    const stat = (label, value, note) => h("div", { class: "card" }, h("div", { class: "muted" }, label), h("div", { class: "stat", "data-testid": `stat-${label.replace(/\W+/g, "-")}` }, value), note ? h("div", { class: "muted" }, note) : null);
    async function refresh() {
      const p = await api("/api/pipeline");
      const lag = p.consumer_lag;
      const det = p.detection;
      view.querySelector("#stats").replaceChildren(
        stat("readings per second", fmt(p.readings_per_s, 0), "stored by the ETL"),
        stat("readings stored", p.readings.toLocaleString(), `newest ${time(p.latest_reading)}`),
        stat("consumer lag", lag ? (lag.error ? "?" : lag.total.toLocaleString()) : "–", lag ? (lag.error || `group ${p.consumer_group}, messages not yet stored`) : "no bus configured for this server"),
        stat("dead letters", p.dead_letters.toLocaleString(), `malformed messages, kept on ${p.dead_letter_topic}`),
        stat("detection latency p50 / p99", det ? `${dur(det.latency_p50_ms)} / ${dur(det.latency_p99_ms)}` : "–", det ? `${det.windows_scored.toLocaleString()} windows scored, ${fmt(det.windows_per_s, 0)}/s${det.latency_p50_ms === null ? "; no latency while the simulation runs sped up" : ""}` : "scoring runs in another process"),
        stat("alert delay p50 / p99", `${dur(p.alert_delay.p50_ms)} / ${dur(p.alert_delay.p99_ms)}`, `newest reading of the window to the alert, over ${p.alert_delay.alerts} alerts of the last hour raised within 2 min of their data (later ones, as from a replay of history, left out)`),
        ...(p.bridges || []).map(bridgeStat));
      hist[0].push(Date.now() / 1000); hist[1].push(p.readings_per_s); hist[2].push(lag && !lag.error ? lag.total : null);
      if (hist[0].length > 900) for (const c of hist) c.shift();
      plot.setData(hist);
    }
    await refresh();
    const timer = setInterval(() => refresh().catch(() => {}), 2000);
    return { stop: () => { clearInterval(timer); plot.destroy(); } };
  },
};

// One bridge on the pipeline page: of this process, or reported by a `sentio bridge` elsewhere
// (running, stale when its reports stopped coming, or stopped).
function bridgeStat(b) {
  const reported = b.process === "reported";
  const where = reported ? ` (${b.host}, pid ${b.pid})` : "";
  const state = !reported || b.state === "running" ? "" : b.state === "stopped" ? `STOPPED at ${time(b.reported_at)}; ` : `STALE: no report since ${time(b.reported_at)}; `;
  const arrival = b.arrival_time ? `, ${b.arrival_time.toLocaleString()} stamped on arrival` : "";
  const note = b.kind === "mqtt"
    ? `${state}${b.connected ? "connected to" : "NOT connected to"} ${b.endpoint}${where}; ${b.messages.toLocaleString()} messages, ${b.readings.toLocaleString()} readings, ${b.dead_letters.toLocaleString()} dead letters${arrival}`
    : `${state}POST ${b.endpoint}${where}; ${b.messages.toLocaleString()} requests (${(b.refused || 0).toLocaleString()} refused), ${b.readings.toLocaleString()} readings, ${b.dead_letters.toLocaleString()} dead lines${arrival}`;
  const el = h("div", { class: "card", "data-testid": "bridge", "data-bridge": b.bridge || b.kind, "data-state": reported ? b.state : "running" },
    h("div", { class: "muted" }, b.kind === "mqtt" ? "MQTT bridge readings per second" : "HTTP ingest readings per second"),
    h("div", { class: "stat" }, reported && b.state !== "running" ? "–" : fmt(b.readings_per_s, 0)),
    h("div", { class: "muted" }, note));
  return el;
}

function alertTable(alerts, withDevice, freshId) {
  if (!alerts.length) return h("p", { class: "muted", "data-testid": "no-alerts" }, "No alerts.");
  return h("table", { "data-testid": "alerts" },
    h("tr", {}, ["anomaly at", withDevice ? "device" : null, "state", "severity", "score / threshold", "top sensor", "error share", "model"].filter(Boolean).map((c) => h("th", {}, c))),
    alerts.map((a) => h("tr", { class: a.alert_id === freshId ? "fresh" : "", "data-testid": "alert-row", "data-alert-id": a.alert_id, "data-device": a.device, "data-sensor": a.top_sensor },
      h("td", {}, time(a.span_start || a.window_start)),
      withDevice ? h("td", {}, h("a", { href: `#/device/${encodeURIComponent(a.device)}` }, a.device)) : null,
      h("td", {}, h("span", { class: `badge ${a.state}` }, a.state)),
      h("td", {}, h("span", { class: `badge ${a.severity}` }, a.severity)),
      h("td", {}, `${fmt(a.score, 3)} / ${fmt(a.threshold, 3)}`),
      h("td", {}, a.top_sensor), h("td", {}, shareBar(a.sensor_share, a.sensors)), h("td", { class: "muted" }, a.model))));
}

async function route() {
  if (current && current.stop) current.stop();
  current = null;
  const [path] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  const name = parts[0] || "overview";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === (name === "device" ? "overview" : name));
  try {
    if (name === "device" && parts[1]) current = await pages.device(decodeURIComponent(parts[1]));
    else if (pages[name] && name !== "device") current = await pages[name]();
    else view.replaceChildren(h("p", {}, "No such page. ", h("a", { href: "#/" }, "Overview")));
  } catch (e) {
    fail(e);
  }
}

window.addEventListener("hashchange", route);
connect();
route();
