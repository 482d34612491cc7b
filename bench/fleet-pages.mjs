// Times the hosts and fleet pages in Debian's headless Chromium (playwright-core from
// web/node_modules): from the start of navigation to the table's rows drawn, ROUNDS times each
// in a fresh page; prints one JSON line [{page, ms, ms_max, rows}].
//
//   node bench/fleet-pages.mjs BASE_URL [ROUNDS]

import { launch } from "../tests/browser/lib.mjs";

const [base, roundsArg] = process.argv.slice(2);
if (!base) {
  console.error("usage: node bench/fleet-pages.mjs BASE_URL [ROUNDS]");
  process.exit(2);
}
const rounds = Number(roundsArg || 5);
const pages = [
  { page: "hosts", path: "/", rows: "#hosts-table tr.host-row" },
  { page: "fleet", path: "/fleet", rows: "#fleet-table tr.vm-row" },
];
const { context, close } = await launch();
const out = [];
try {
  for (const p of pages) {
    const times = [];
    let rows = 0;
    for (let i = 0; i < rounds + 1; i++) {
      const page = await context.newPage();
      page.setDefaultTimeout(60000);
      const t0 = Date.now();
      await page.goto(base + p.path, { waitUntil: "commit" });
      await page.waitForFunction((sel) => document.querySelectorAll(sel).length > 0, p.rows);
      const ms = Date.now() - t0;
      rows = await page.$$eval(p.rows, (r) => r.length);
      await page.close();
      if (i > 0) times.push(ms); // the first round warms the browser's cache of the assets
    }
    times.sort((a, b) => a - b);
    out.push({ page: p.page, ms: times[Math.floor(times.length / 2)], ms_max: times[times.length - 1], rows });
  }
} finally {
  await close();
}
console.log(JSON.stringify(out));
