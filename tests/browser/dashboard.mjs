// Drives the dashboard in Debian's headless Chromium with playwright-core.
//
//   node tests/browser/dashboard.mjs BASE_URL SCREENSHOT_DIR
//
// Opens the fleet page, filters and sorts it, opens the VM named `db=<script>alert(7)`, checks
// that its name is shown as text and that no script runs, that charts have data and the
// device list has MAC and path, then the agent page. Saves a screenshot of each page. Prints
// one line per check and "N passed, N failed"; exits 1 if any check failed.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launch, checker, assert } from "./lib.mjs";

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error("usage: node tests/browser/dashboard.mjs BASE_URL SCREENSHOT_DIR");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const SCRIPT_VM = "db=<script>alert(7)";
const { check, done } = checker();
const { context, close } = await launch();
const dialogs = [];
const pageErrors = [];
try {
  const page = await context.newPage();
  page.on("dialog", async (d) => { dialogs.push(d.message()); await d.dismiss(); });
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.setDefaultTimeout(30000);

  await check("fleet page lists every VM", async () => {
    await page.goto(base + "/");
    await page.waitForFunction(() => document.querySelectorAll("#fleet-table tr.vm-row").length >= 16);
    const hosts = await page.$$eval("#filter-host option", (o) => o.map((x) => x.value).filter(Boolean));
    assert(hosts.length >= 2, "host filter lists " + hosts.length + " hosts");
  });

  await check("fleet rows get CPU and rates (live refresh, no reload)", async () => {
    await page.waitForFunction(() => Array.from(document.querySelectorAll("#fleet-table tr.vm-row"))
      .some((r) => /%/.test(r.children[4].textContent) && /B\/s/.test(r.children[6].textContent)), null, { timeout: 45000 });
    const first = await page.textContent("#status");
    await page.waitForFunction((t) => document.querySelector("#status").textContent !== t, first);
  });

  await check("a VM named with <script> is shown as text", async () => {
    const names = await page.$$eval("#fleet-table .vm-name", (c) => c.map((x) => x.textContent));
    assert(names.includes(SCRIPT_VM), "no row shows " + SCRIPT_VM + " as text; names: " + names.slice(0, 5).join(" | "));
    const injected = await page.$$eval("#fleet-table script", (s) => s.length);
    assert(injected === 0, injected + " script elements inside the table");
  });

  await check("filter by name, host and state", async () => {
    await page.fill("#filter-name", "db=");
    let names = await page.$$eval("#fleet-table .vm-name", (c) => c.map((x) => x.textContent));
    assert(names.length >= 1 && names.every((n) => n.includes("db=")), "name filter: " + names.join(" | "));
    await page.fill("#filter-name", "");
    await page.selectOption("#filter-host", "hv1");
    const hosts = await page.$$eval("#fleet-table tr.vm-row", (r) => r.map((x) => x.children[1].textContent));
    assert(hosts.length >= 1 && hosts.every((h) => h === "hv1"), "host filter: " + hosts.join(","));
    await page.selectOption("#filter-host", "");
    await page.selectOption("#filter-state", "paused");
    const rows = await page.$$eval("#fleet-table tr.vm-row", (r) => r.length);
    assert(rows === 0, rows + " paused rows; the test fleet has none");
    await page.selectOption("#filter-state", "");
  });

  await check("sort by vCPUs", async () => {
    await page.click("th[data-key=vcpus]");
    const v = await page.$$eval("#fleet-table tr.vm-row", (r) => r.map((x) => Number(x.children[3].textContent)));
    assert(v.length > 2 && v.every((x, i) => i === 0 || v[i - 1] >= x), "not descending: " + v.join(","));
  });
  await page.screenshot({ path: join(shots, "fleet.png"), fullPage: false });

  await check("VM page shows the name as text and charts with data", async () => {
    await page.click("th[data-key=name]");
    await page.click(`#fleet-table .vm-name a >> text=${JSON.stringify(SCRIPT_VM)}`);
    await page.waitForURL(/\/vm\//);
    await page.waitForFunction((n) => document.querySelector("#vm-name").textContent === n, SCRIPT_VM);
    await page.waitForFunction(() => {
      const c = document.querySelector('.chart[data-chart="cpu"]');
      return c && Number(c.dataset.points) > 0 && c.querySelector("canvas");
    });
    const nic = await page.$$eval('.chart[data-chart^="nic:"]', (c) => c.map((x) => Number(x.dataset.points)));
    const disk = await page.$$eval('.chart[data-chart^="disk:"]', (c) => c.map((x) => Number(x.dataset.points)));
    assert(nic.length === 2 && disk.length === 2, `charts per NIC ${nic.length}, per disk ${disk.length}`);
    await page.waitForFunction(() => Array.from(document.querySelectorAll('.chart[data-chart^="nic:"]')).every((c) => Number(c.dataset.points) > 0));
    const title = await page.title();
    assert(title.includes(SCRIPT_VM), "title " + title);
  });

  await check("empty panels explain themselves", async () => {
    const text = await page.textContent('.chart[data-chart="memact"]');
    assert(/balloon/.test(text), "memact panel says: " + text);
  });

  await check("device list shows MAC and path", async () => {
    const rows = await page.$$eval("#vm-devices tr.device-row", (r) => r.map((x) => x.textContent));
    assert(rows.some((r) => r.includes("52:54:00:00:07:00")), "no MAC: " + rows.join(" | "));
    assert(rows.some((r) => r.includes("/var/lib/vmtel-demo/7-0.qcow2")), "no path: " + rows.join(" | "));
  });

  await check("range buttons reload the charts", async () => {
    await page.click('button[data-range="15m"]');
    await page.waitForURL(/range=15m/);
    await page.waitForFunction(() => Number(document.querySelector('.chart[data-chart="cpu"]').dataset.points) > 0);
  });
  await page.screenshot({ path: join(shots, "vm.png"), fullPage: true });

  await check("agent page shows sources, outputs and the store", async () => {
    await page.goto(base + "/agent");
    await page.waitForFunction(() => document.querySelectorAll("#agent-sources tbody tr").length >= 2);
    const sinks = await page.$$eval("#agent-sinks tbody tr", (r) => r.map((x) => x.children[0].textContent));
    assert(sinks.includes("store"), "outputs: " + sinks.join(","));
    await page.waitForSelector(".chart[data-chart=cycle] canvas");
  });
  await page.screenshot({ path: join(shots, "agent.png"), fullPage: true });

  await check("no script ran and no page error", async () => {
    assert(dialogs.length === 0, "dialogs opened: " + dialogs.join(","));
    assert(pageErrors.length === 0, "page errors: " + pageErrors.join(" | "));
  });
} finally {
  await close();
}
done();
