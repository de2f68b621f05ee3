// End-to-end test of the dashboard: starts `sentio demo` on a mixed fleet (examples/mixed-fleet.toml:
// 6 pumps and 2 six-channel compressors) in a scratch directory, drives Debian's chromium with
// playwright-core through every page, and checks what a person would look at: the devices listed,
// charts drawn with data that grows live, a new alert (from an anomaly the simulator injects)
// appearing on the alerts page and on its device's chart without a reload, a compressor's page
// with its six charts and an alert naming its channels, and each profile's model.
// Screenshots go to $SCREENSHOTS (default ./screenshots). Node.js 18 or later (Debian 12's).
//
//   SENTIO_BIN=target/debug/sentio node tests/browser/dashboard.mjs
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const BIN = resolve(process.env.SENTIO_BIN || "target/debug/sentio");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = resolve(process.env.SCREENSHOTS || join(dirname(fileURLToPath(import.meta.url)), "screenshots"));
const DEVICES = 8;
const FLEET = resolve(dirname(fileURLToPath(import.meta.url)), "../../examples/mixed-fleet.toml");
const COMPRESSOR = ["current", "flow", "discharge_pressure", "discharge_temperature", "vibration_x", "vibration_y"];
mkdirSync(SHOTS, { recursive: true });

const log = (...a) => console.log(`[${new Date().toISOString().slice(11, 19)}]`, ...a);
function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  log(`ok: ${what}`);
}
// A page shows no raw JavaScript values where data should be.
async function clean(page, name) {
  const text = await page.locator("main").innerText();
  const bad = text.match(/\b(null|undefined|NaN|\[object Object\])\b/);
  check(!bad, `the ${name} page shows no "${bad ? bad[0] : "null"}"`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, fn, timeoutMs, everyMs = 500) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

// ---- the demo ----
const work = mkdtempSync(join(tmpdir(), "sentio-browser-"));
const demo = spawn(BIN, ["--config", FLEET, "demo", "--backfill", "90m", "--speedup", "10", "--duration", "900s", "--bind", "127.0.0.1:0"], {
  cwd: work,
  env: {
    ...process.env,
    RUST_LOG: "warn",
    // A smaller model trains in seconds; anomalies come often enough to see one live.
    SENTIO__TRAIN__EPOCHS: "12",
    SENTIO__TRAIN__HIDDEN: "32",
    SENTIO__TRAIN__THREADS: "2",
    SENTIO__SIMULATOR__ANOMALIES__RATE_PER_HOUR: "4",
  },
  stdio: ["ignore", "pipe", "pipe"],
});
let output = "";
let base = null;
let live = false;
for (const stream of [demo.stdout, demo.stderr]) {
  stream.on("data", (chunk) => {
    const text = chunk.toString();
    output += text;
    for (const line of text.split("\n")) {
      if (line.trim() && !line.includes("\r")) log(`demo: ${line.trim()}`);
      const m = line.match(/dashboard: (http:\/\/[\d.:]+)/);
      if (m) base = m[1];
      if (/live: (streaming|replaying)/.test(line)) live = true;
    }
  });
}
let demoExited = null;
demo.on("exit", (code) => { demoExited = code; });

let browser;
try {
  await until("the dashboard address", () => base || (demoExited !== null && Promise.reject(new Error(`demo exited (${demoExited}): ${output}`))), 60_000);
  log(`dashboard at ${base}`);
  await until("training and the backfill replay (the demo going live)", () => live || (demoExited !== null && Promise.reject(new Error(`demo exited: ${output}`))), 600_000, 1000);
  const api = async (path) => {
    const r = await fetch(base + path);
    if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
    return r.json();
  };

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const external = [];
  const errors = [];
  page.on("request", (r) => { if (!r.url().startsWith(base)) external.push(r.url()); });
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

  // Overview: every device, each with its four latest readings.
  await page.goto(`${base}/#/`);
  await page.waitForSelector("[data-testid=device-card]");
  await until(`${DEVICES} device cards`, async () => (await page.locator("[data-testid=device-card]").count()) === DEVICES, 15_000);
  const pumpCard = page.locator('[data-testid=device-card][data-device^="pump-"]').first();
  const firstCard = await pumpCard.innerText();
  check(/temperature\s+[\d.-]+ °C/.test(firstCard) && /humidity\s+[\d.-]+ %/.test(firstCard), `the overview lists ${DEVICES} devices with their latest readings`);
  const compressorCard = await page.locator('[data-testid=device-card][data-device^="compressor-"]').first().innerText();
  check(COMPRESSOR.every((c) => new RegExp(`${c}\\s+[\\d.-]+ `).test(compressorCard)), `a compressor's card lists its six channels with values`);
  await until("the live indicator", async () => (await page.locator("#live").innerText()) === "live", 10_000);
  await clean(page, "overview");
  await page.screenshot({ path: join(SHOTS, "overview.png"), fullPage: true });

  // A device page: four sensor charts and the score, with data, growing live.
  const device = await pumpCard.getAttribute("data-device");
  await page.goto(`${base}/#/device/${device}`);
  await page.waitForSelector("[data-testid=chart-score] canvas");
  const points = async (s) => Number(await page.locator(`[data-testid=chart-${s}]`).getAttribute("data-points"));
  for (const s of ["temperature", "vibration", "pressure", "humidity", "score"]) {
    check((await points(s)) > 100, `the ${s} chart of ${device} is drawn with data (${await points(s)} points)`);
  }
  const newest = async () => Number(await page.locator("[data-testid=chart-temperature]").getAttribute("data-last"));
  const before = await newest();
  await until("live readings appended to the chart", async () => (await newest()) > before, 15_000);
  check(true, `the temperature chart moved on live by ${(await newest()) - before} s of readings without a reload`);
  await clean(page, "device");
  await page.screenshot({ path: join(SHOTS, "device.png"), fullPage: true });

  // The alerts page: a new alert appears without a reload.
  await page.goto(`${base}/#/alerts?last=1d`);
  await page.waitForSelector("[data-testid=alerts], [data-testid=no-alerts]");
  const known = new Set(await page.locator("[data-testid=alert-row]").evaluateAll((rows) => rows.map((r) => r.dataset.alertId)));
  log(`${known.size} alerts listed; waiting for a new one`);
  const fresh = await until("a new alert on the alerts page", async () => {
    const ids = await page.locator("[data-testid=alert-row]").evaluateAll((rows) => rows.map((r) => [r.dataset.alertId, r.dataset.device]));
    return ids.find(([id]) => !known.has(id));
  }, 300_000, 250);
  const [alertId, alertDevice] = fresh;
  const seenAt = Date.now();
  const stored = (await api(`/api/alerts?device=${alertDevice}&last=1d`)).alerts.find((a) => a.alert_id === alertId);
  check(stored, `alert ${alertId} on ${alertDevice} is in the API`);
  const delay = (seenAt - stored.detected_at) / 1000;
  log(`alert ${alertId} (${stored.severity}, top sensor ${stored.top_sensor}) shown ${delay.toFixed(1)} s after the detector raised it`);
  check(delay < 15, `the new alert appeared on the alerts page within seconds (${delay.toFixed(1)} s)`);
  await clean(page, "alerts");
  await page.screenshot({ path: join(SHOTS, "alerts.png"), fullPage: true });

  // ... and on its device's chart.
  await page.goto(`${base}/#/device/${alertDevice}?last=15m`);
  await page.waitForSelector("[data-testid=chart-score] canvas");
  await until("the alert in the device page's table", async () => (await page.locator(`[data-alert-id="${alertId}"]`).count()) > 0, 10_000);
  check(Number(await page.locator("[data-testid=charts]").getAttribute("data-alerts")) > 0, `the alert span is marked on ${alertDevice}'s charts`);
  await clean(page, "device (alert)");
  await page.screenshot({ path: join(SHOTS, "device-alert.png"), fullPage: true });

  // A compressor: six aligned charts, and an alert that names its channels.
  const compressorAlert = await until("an alert on a compressor", async () =>
    (await api("/api/alerts?last=1d")).alerts.find((a) => a.device.startsWith("compressor-")), 300_000, 1000);
  check(compressorAlert.sensors.length === 6 && COMPRESSOR.includes(compressorAlert.top_sensor),
    `compressor alert ${compressorAlert.alert_id} names its top channel ${compressorAlert.top_sensor} of ${compressorAlert.sensors.join(", ")}`);
  const comp = compressorAlert.device;
  await page.goto(`${base}/#/device/${comp}?last=6h`);
  await page.waitForSelector("[data-testid=chart-score] canvas");
  for (const s of [...COMPRESSOR, "score"]) {
    check((await points(s)) > 100, `the ${s} chart of ${comp} is drawn with data (${await points(s)} points)`);
  }
  const row = page.locator(`[data-alert-id="${compressorAlert.alert_id}"]`);
  await until("the compressor's alert in its device page's table", async () => (await row.count()) > 0, 10_000);
  const segments = await row.locator("[data-testid=share] i").evaluateAll((is) => is.map((i) => i.dataset.sensor));
  check(segments.length === 6 && COMPRESSOR.every((c) => segments.includes(c)), `its error share covers the six channels (${segments.join(", ")})`);
  await clean(page, "device (compressor)");
  await page.screenshot({ path: join(SHOTS, "device-compressor.png"), fullPage: true });

  // The model page: the champion, its threshold and loss curves.
  await page.goto(`${base}/#/model`);
  await page.waitForSelector("[data-testid=loss-chart] canvas");
  const versions = await page.locator("[data-testid=model-version]").allInnerTexts();
  check(versions.length >= 1 && versions.some((v) => /champion/i.test(v)), `the model page lists ${versions.length} version(s) with the champion`);
  const profiles = await page.locator("[data-testid=model-profile] option").allInnerTexts();
  check(profiles.includes("profile compressor") && profiles.includes("profile pump"), `the model page offers each profile's model (${profiles.join(", ")})`);
  await page.goto(`${base}/#/model?profile=compressor`);
  await until("the compressor's model", async () => /sentio-compressor/.test(await page.locator("h1").innerText()), 10_000);
  await page.waitForSelector("[data-testid=loss-chart] canvas");
  await clean(page, "model");
  await page.screenshot({ path: join(SHOTS, "model.png"), fullPage: true });

  // The pipeline page: readings per second, lag, dead letters, latency.
  await page.goto(`${base}/#/pipeline`);
  await page.waitForSelector("[data-testid=pipeline] .card");
  const rate = await until("a readings/s figure", async () => {
    const t = await page.locator("[data-testid=stat-readings-per-second]").innerText();
    return Number(t) > 0 ? t : null;
  }, 15_000);
  const lag = await page.locator("[data-testid=stat-consumer-lag]").innerText();
  check(rate && lag !== "–", `the pipeline page shows ${rate} readings/s and a consumer lag of ${lag}`);
  // The demo's HTTP ingest endpoint is one of its bridges.
  const bridge = await page.locator("[data-testid=bridge]").first().innerText();
  check(/HTTP ingest readings per second/.test(bridge) && /POST \/api\/v1\/readings/.test(bridge), `the pipeline page shows the demo's bridge: ${bridge.replace(/\s+/g, " ")}`);
  await sleep(6000);
  await clean(page, "pipeline");
  await page.screenshot({ path: join(SHOTS, "pipeline.png"), fullPage: true });

  check(external.length === 0, `the browser requested nothing outside the dashboard (${external.join(", ") || "none"})`);
  check(errors.length === 0, `no script errors (${errors.join("; ") || "none"})`);
  log("browser test passed");
} finally {
  if (browser) await browser.close();
  demo.kill("SIGINT");
  await until("the demo to stop", () => demoExited !== null, 30_000).catch(() => demo.kill("SIGKILL"));
  rmSync(work, { recursive: true, force: true });
}
