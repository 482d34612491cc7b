// Screenshots of `vmtel demo` for the README and docs/dashboard.md: the hosts, fleet, problems
// and top pages and one VM's page, in headless Chromium. Run by scripts/screenshots.
//   node tests/browser/demo_shots.mjs BASE_URL OUT_DIR

import { join } from "node:path";
import { launch } from "./lib.mjs";

const [base, out] = process.argv.slice(2);
if (!base || !out) {
  console.error("usage: demo_shots.mjs BASE_URL OUT_DIR");
  process.exit(2);
}
const { context, close } = await launch();
const page = await context.newPage();
const shot = async (path, wait, file) => {
  await page.goto(base + path);
  await page.waitForFunction(wait, null, { timeout: 30000 });
  // Let the charts draw.
  await page.waitForLoadState("networkidle");
  await page.screenshot({ path: join(out, file), fullPage: false });
  console.log("wrote " + join(out, file));
};
try {
  await shot("/", () => document.querySelectorAll("#hosts-table tr.host-row svg.spark").length >= 3, "demo-hosts.png");
  await shot("/fleet", () => document.querySelectorAll("#fleet-table tbody tr").length >= 30, "demo-fleet.png");
  await shot("/problems", () => document.querySelectorAll("#problems-table tbody tr").length >= 4, "demo-problems.png");
  await shot("/top?by=cpu_pct&range=1h", () => document.querySelectorAll("#top-table tbody tr").length >= 10, "demo-top.png");
  const href = await page.goto(base + "/fleet").then(() =>
    page.waitForSelector("#fleet-table tbody tr a")).then(() =>
    page.$$eval("#fleet-table tbody tr a", (a) => (a.find((x) => /web-09|web-/.test(x.textContent)) || a[0]).getAttribute("href")));
  await shot(href, () => document.querySelectorAll("canvas, svg.chart, .chart").length >= 3, "demo-vm.png");
} finally {
  await close();
}
