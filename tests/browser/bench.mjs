// How the device page copes with a day of 1-second data for four sensors (scripts/bench-dashboard.sh
// prepares the data and the server): the API's answer (time, bytes on the wire with gzip) and, in
// chromium, the time to draw the page and the frame rate while the cursor sweeps the charts, with
// the server's min/max reduction (the default, 20,000 points) and without it (every frame).
//
//   BASE=http://127.0.0.1:18282 DEVICE=pump-01 node tests/browser/bench.mjs
import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";

const BASE = process.env.BASE;
const DEVICE = process.env.DEVICE || "pump-01";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const RUNS = 5;
const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function api(points) {
  const times = [];
  let bytes = 0;
  let frames = 0;
  let drawn = 0;
  let json = 0;
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    const r = await fetch(`${BASE}/api/devices/${DEVICE}/series?last=1d&points=${points}`, { headers: { "Accept-Encoding": "gzip" } });
    const buf = await r.arrayBuffer();
    times.push(performance.now() - t);
    // fetch decompresses without saying how much came: ask curl for the bytes on the wire.
    bytes = Number(execFileSync("curl", ["-s", "-H", "Accept-Encoding: gzip", "-o", "/dev/null", "-w", "%{size_download}", `${BASE}/api/devices/${DEVICE}/series?last=1d&points=${points}`]));
    json = buf.byteLength;
    const j = JSON.parse(new TextDecoder().decode(buf));
    frames = j.raw_frames;
    drawn = j.ts.length;
  }
  return { ms: median(times), bytes, json, frames, drawn };
}

async function page(browser, points) {
  const p = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const loads = [];
  const fps = [];
  for (let i = 0; i < RUNS; i++) {
    await p.goto(`${BASE}/#/`);
    await p.waitForSelector("[data-testid=device-card]");
    const t = await p.evaluate(async ([device, points]) => {
      const t0 = performance.now();
      location.hash = `#/device/${device}?last=1d&points=${points}`;
      while (!document.querySelector("[data-testid=chart-score] canvas")) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      return performance.now() - t0;
    }, [DEVICE, points]);
    loads.push(t);
    // Sweep the cursor over the temperature chart for about 2 s, counting animation frames.
    const box = await p.locator("[data-testid=chart-temperature] canvas").boundingBox();
    await p.evaluate(() => {
      window.__frames = [];
      const tick = (t) => { window.__frames.push(t); if (window.__frames.length < 100000) requestAnimationFrame(tick); };
      requestAnimationFrame(tick);
    });
    for (let x = 0; x < 120; x++) {
      await p.mouse.move(box.x + 5 + ((box.width - 10) * x) / 119, box.y + box.height / 2);
    }
    const frames = await p.evaluate(() => window.__frames);
    const span = (frames[frames.length - 1] - frames[0]) / 1000;
    fps.push((frames.length - 1) / span);
  }
  await p.close();
  return { load: median(loads), fps: median(fps) };
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
const rows = [];
for (const [name, points] of [["reduced (default)", 20000], ["every frame", 1000000]]) {
  const a = await api(points);
  const b = await page(browser, points);
  rows.push({ name, ...a, ...b });
}
await browser.close();
console.log("| series | frames | points per chart | API answer | JSON | on the wire (gzip) | page drawn | frames/s while the cursor sweeps |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const r of rows) {
  console.log(`| ${r.name} | ${r.frames} | ${r.drawn} | ${r.ms.toFixed(0)} ms | ${(r.json / 1e6).toFixed(2)} MB | ${(r.bytes / 1e6).toFixed(2)} MB | ${r.load.toFixed(0)} ms | ${r.fps.toFixed(0)} |`);
}
const [red, all] = rows;
console.log(`\nreduced vs every frame: API ${(all.ms / red.ms).toFixed(1)}x faster, ${(all.bytes / red.bytes).toFixed(1)}x fewer bytes, page drawn ${(all.load / red.load).toFixed(1)}x sooner`);
