// Drives the dashboard in Debian's headless Chromium with playwright-core.
//
//   node tests/browser/dashboard.mjs BASE_URL SCREENSHOT_DIR
//
// Against a `vmtel run` on the test fleet (hosts hv0 and hv1, 8 VMs each, one named
// `db=<script>alert(7)`): the hosts page (rows, VM counts, link to the fleet of a host), the
// source indicator, the fleet page (filters, sort and paging on the server), the problems page
// (rows, the script name shown as text), the top page (by and range, highest first), the VM
// page (name as text, charts with data, devices), the agent page, and last the hosts page's CPU
// trends (they need two 2-minute buckets). Saves a screenshot of each page. Prints one line per
// check and "N passed, N failed"; exits 1 if any check failed.

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
// The /api/ requests the page made, as paths with their query.
const requests = [];
try {
  const page = await context.newPage();
  page.on("dialog", async (d) => { dialogs.push(d.message()); await d.dismiss(); });
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("request", (r) => { const u = new URL(r.url()); if (u.pathname.startsWith("/api/")) requests.push(u.pathname + u.search); });
  page.setDefaultTimeout(30000);

  await check("hosts page: a row per host with its VMs", async () => {
    await page.goto(base + "/");
    await page.waitForFunction(() => document.querySelectorAll("#hosts-table tr.host-row").length === 2);
    const rows = await page.$$eval("#hosts-table tr.host-row", (r) => r.map((x) => Array.from(x.children, (c) => c.textContent)));
    assert(rows.map((r) => r[0]).join(",") === "hv0,hv1", "hosts: " + rows.map((r) => r[0]).join(","));
    for (const r of rows) {
      assert(r[1] === "8" && r[2] === "0" && r[3] === "0", `${r[0]}: running/paused/other ${r[1]}/${r[2]}/${r[3]}`);
      assert(/s ago/.test(r[10]) && !/silent/.test(r[10]), `${r[0]} last seen: ${r[10]}`);
      // The test driver's host CPU counters stand still: no busy share to show.
      assert(r[9] === "–", `${r[0]} host CPU: ${r[9]}`);
      // Against the host's capacity from its vm_host line: libvirt's test driver has 16 CPUs
      // and 3 GiB (virsh nodeinfo).
      assert(/^\d+ \/ 16$/.test(r[4]), `${r[0]} vCPUs / CPUs: ${r[4]}`);
      assert(/ \/ 3(\.0+)? GiB$/.test(r[5]), `${r[0]} memory / host: ${r[5]}`);
    }
    const silent = await page.$$eval("#hosts-table tr.host-row.silent", (r) => r.length);
    assert(silent === 0, silent + " hosts flagged silent");
    const summary = await page.textContent("#hosts-summary");
    assert(/2 host\(s\), 16 VM\(s\) running/.test(summary) && /no silent host/.test(summary), "summary: " + summary);
    await page.waitForFunction(() => Array.from(document.querySelectorAll("#hosts-table tr.host-row"))
      .every((r) => /%/.test(r.children[6].textContent) && /B\/s/.test(r.children[7].textContent)), null, { timeout: 45000 });
    const active = await page.$$eval("header nav a.active", (a) => a.map((x) => x.id));
    assert(active.join() === "nav-hosts", "active nav: " + active.join());
  });

  await check("the source indicator names the embedded history and marks it healthy", async () => {
    await page.waitForFunction(() => document.querySelector("#source").dataset.health === "ok");
    const text = await page.textContent("#source");
    assert(/embedded history \/.*history\.db/.test(text), "source says: " + text);
    const err = await page.$eval("#error", (e) => e.textContent).catch(() => null);
    assert(err === null, "an error box is shown: " + err);
  });

  await check("a host links to the fleet filtered by that host", async () => {
    await Promise.all([page.waitForURL(/\/fleet\?host=hv1$/), page.click('#hosts-table a[href="/fleet?host=hv1"]')]);
    await page.waitForFunction(() => {
      const r = Array.from(document.querySelectorAll("#fleet-table tr.vm-row"));
      return r.length === 8 && r.every((x) => x.children[1].textContent === "hv1");
    });
    assert(await page.inputValue("#filter-host") === "hv1", "host filter shows " + await page.inputValue("#filter-host"));
    assert(requests.some((r) => r.startsWith("/api/fleet?") && r.includes("host=hv1") && r.includes("limit=100")),
      "no /api/fleet?host=hv1&limit=100 request: " + requests.filter((r) => r.startsWith("/api/fleet")).join(" "));
  });

  await check("fleet page lists every VM, 100 a page", async () => {
    await page.goto(base + "/fleet");
    await page.waitForFunction(() => document.querySelectorAll("#fleet-table tr.vm-row").length === 16);
    const hosts = await page.$$eval("#filter-host option", (o) => o.map((x) => x.value).filter(Boolean));
    assert(hosts.join() === "hv0,hv1", "host filter lists " + hosts.join());
    const range = await page.textContent("#fleet-range");
    assert(range === "showing 1–16 of 16", "pager says " + range);
    assert(await page.isDisabled("#fleet-prev") && await page.isDisabled("#fleet-next"), "pager buttons enabled on the only page");
    const active = await page.$$eval("header nav a.active", (a) => a.map((x) => x.id));
    assert(active.join() === "nav-fleet", "active nav: " + active.join());
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

  await check("filter by text, host and state on the server", async () => {
    const names = () => page.$$eval("#fleet-table .vm-name", (c) => c.map((x) => x.textContent));
    await page.fill("#filter-name", "db=");
    await page.waitForFunction(() => {
      const n = Array.from(document.querySelectorAll("#fleet-table .vm-name"), (x) => x.textContent);
      return n.length > 0 && n.every((x) => x.includes("db="));
    });
    let n = await names();
    assert(n.length === 2, "text filter: " + n.join(" | "));
    assert(requests.some((r) => r.startsWith("/api/fleet?") && r.includes("q=db%3D")), "the text filter was not sent to the server");
    assert(/[?&]q=db%3D/.test(page.url()), "the address does not keep the filter: " + page.url());
    await page.fill("#filter-name", "");
    await page.waitForFunction(() => document.querySelectorAll("#fleet-table tr.vm-row").length === 16);
    await page.selectOption("#filter-host", "hv1");
    await page.waitForFunction(() => Array.from(document.querySelectorAll("#fleet-table tr.vm-row")).every((x) => x.children[1].textContent === "hv1"));
    n = await names();
    assert(n.length === 8, "host filter: " + n.length + " rows");
    await page.selectOption("#filter-host", "");
    await page.selectOption("#filter-state", "paused");
    await page.waitForFunction(() => document.querySelector("#fleet-range").textContent === "showing 0–0 of 0");
    const rows = await page.$$eval("#fleet-table tr.vm-row", (r) => r.length);
    assert(rows === 0, rows + " paused rows; the test fleet has none");
    const empty = await page.textContent("#fleet-empty");
    assert(/No VM matches/.test(empty), "empty state says: " + empty);
    await page.selectOption("#filter-state", "running");
    await page.waitForFunction(() => document.querySelectorAll("#fleet-table tr.vm-row").length === 16);
    await page.selectOption("#filter-state", "");
  });

  await check("sort by vCPUs and by net rx on the server", async () => {
    await page.click("th[data-key=vcpus]");
    await page.waitForFunction(() => {
      const v = Array.from(document.querySelectorAll("#fleet-table tr.vm-row"), (x) => Number(x.children[3].textContent));
      return v.length === 16 && v.every((x, i) => i === 0 || v[i - 1] >= x) && v[0] > v[15];
    });
    assert(requests.some((r) => r.includes("sort=vcpus") && r.includes("dir=desc")), "no sort=vcpus&dir=desc request");
    await page.click("th[data-key=net_rx_bps]");
    await page.waitForFunction(() => document.querySelector("th[data-key=net_rx_bps]").classList.contains("sorted-desc") &&
      !document.querySelector("#error"));
    assert(requests.some((r) => r.includes("sort=net_rx_bps")), "no sort=net_rx_bps request");
  });
  await page.click("th[data-key=vcpus]");
  await page.waitForFunction(() => document.querySelector("th[data-key=vcpus]").classList.contains("sorted-desc"));
  await page.screenshot({ path: join(shots, "fleet.png"), fullPage: false });

  await check("fleet pager: pages of ?limit= VMs from the server", async () => {
    await page.goto(base + "/fleet?limit=5&sort=name");
    const pageText = async (want) => {
      await page.waitForFunction((w) => document.querySelector("#fleet-range").textContent === w, want);
      return page.$$eval("#fleet-table tr.vm-row", (r) => r.map((x) => x.children[0].textContent + "@" + x.children[1].textContent));
    };
    const p1 = await pageText("showing 1–5 of 16");
    assert(p1.length === 5 && await page.isDisabled("#fleet-prev") && !await page.isDisabled("#fleet-next"), "first page: " + p1.join(","));
    await page.click("#fleet-next");
    const p2 = await pageText("showing 6–10 of 16");
    assert(p2.length === 5 && !p2.some((n) => p1.includes(n)), "second page repeats the first: " + p2.join(","));
    assert(requests.some((r) => r.includes("offset=5") && r.includes("limit=5")), "no offset=5&limit=5 request");
    assert(/offset=5/.test(page.url()), "the address does not keep the page: " + page.url());
    await page.click("#fleet-next");
    await pageText("showing 11–15 of 16");
    await page.click("#fleet-next");
    const last = await pageText("showing 16–16 of 16");
    assert(last.length === 1 && await page.isDisabled("#fleet-next"), "last page: " + last.join(","));
    await page.click("#fleet-prev");
    await pageText("showing 11–15 of 16");
    await page.selectOption("#filter-host", "hv0");
    await pageText("showing 1–5 of 8");
  });

  await check("problems page lists the test driver's rising counters", async () => {
    await page.goto(base + "/problems");
    // Every running VM's NIC drop/error and disk error counters rise with the clock.
    await page.waitForFunction(() => {
      const rules = Array.from(document.querySelectorAll("#problems-table tr.problem-row"), (r) => r.dataset.rule);
      return ["nic_drops", "nic_errors", "disk_errors"].every((r) => rules.filter((x) => x === r).length === 16);
    }, null, { timeout: 45000 });
    const rows = await page.$$eval("#problems-table tr.problem-row", (r) => r.map((x) => ({
      rule: x.dataset.rule, cells: Array.from(x.children, (c) => c.textContent), href: x.children[2].querySelector("a")?.getAttribute("href") })));
    const drops = rows.filter((r) => r.rule === "nic_drops");
    assert(drops.length === 16, drops.length + " nic_drops rows");
    assert(drops.every((r) => r.cells[0] === "NIC drops" && /drop/.test(r.cells[3]) && /ago \(/.test(r.cells[4])),
      "a nic_drops row reads: " + drops[0].cells.join(" | "));
    const script = rows.find((r) => r.cells[2] === SCRIPT_VM);
    assert(script, "no row shows " + SCRIPT_VM + " as text");
    assert(/^\/vm\/hv[01]\/[0-9a-f-]+$/.test(script.href), "VM link " + script.href);
    const injected = await page.$$eval("#problems-table script", (s) => s.length);
    assert(injected === 0, injected + " script elements inside the table");
    const th = await page.textContent("#problems-thresholds");
    assert(/10 %/.test(th) && /90 %/.test(th) && /3 cycles/.test(th) && /10 min/.test(th), "thresholds line: " + th);
    await page.selectOption("#problems-rule", "nic_errors");
    const shown = await page.$$eval("#problems-table tr.problem-row", (r) => r.map((x) => x.dataset.rule));
    assert(shown.length === 16 && shown.every((r) => r === "nic_errors"), "rule filter shows " + shown.length);
    await page.selectOption("#problems-rule", "");
  });
  await page.screenshot({ path: join(shots, "problems.png"), fullPage: false });

  await check("problems link to the VM page", async () => {
    await Promise.all([page.waitForURL(/\/vm\//), page.click(`#problems-table .problem-vm a >> text=${JSON.stringify(SCRIPT_VM)}`)]);
    await page.waitForFunction((n) => document.querySelector("#vm-name").textContent === n, SCRIPT_VM);
  });

  const values = () => page.$$eval("#top-table tr.top-row", (r) => r.map((x) => Number(x.dataset.value)));
  const descending = (v) => v.every((x, i) => i === 0 || v[i - 1] >= x);
  await check("top page ranks VMs by CPU, highest first", async () => {
    await page.goto(base + "/top");
    await page.waitForFunction(() => document.querySelectorAll("#top-table tr.top-row").length === 10);
    const v = await values();
    assert(descending(v), "not descending: " + v.join(","));
    const cells = await page.$$eval("#top-table tr.top-row", (r) => r.map((x) => Array.from(x.children, (c) => c.textContent)));
    assert(cells[0][0] === "1" && cells[9][0] === "10" && /%$/.test(cells[0][3]), "first row: " + cells[0].join(" | "));
    const href = await page.getAttribute("#top-table tr.top-row .top-vm a", "href");
    assert(/^\/vm\/hv[01]\/[0-9a-f-]+\?range=1h$/.test(href), "VM link " + href);
    const hosts = await page.$$eval("#top-host option", (o) => o.map((x) => x.value));
    assert(hosts.join() === ",hv0,hv1", "host choices: " + hosts.join());
  });

  await check("top page: switch to network over 15m, then one host", async () => {
    await page.selectOption("#top-by", "net");
    await page.waitForURL(/\/top\?by=net$/);
    await page.waitForFunction(() => /Network/.test(document.querySelector("#top-table thead").textContent) &&
      Array.from(document.querySelectorAll("#top-table tr.top-row")).every((r) => /B\/s$/.test(r.children[3].textContent)));
    await page.selectOption("#top-range", "15m");
    await page.waitForURL(/\/top\?by=net&range=15m$/);
    await page.waitForFunction(() => /15 min/.test(document.querySelector("#top-title").textContent));
    let v = await values();
    assert(v.length === 10 && descending(v) && v[0] > 0, "net over 15m: " + v.join(","));
    await page.selectOption("#top-host", "hv1");
    await page.waitForURL(/\/top\?by=net&range=15m&host=hv1$/);
    await page.waitForFunction(() => {
      const r = Array.from(document.querySelectorAll("#top-table tr.top-row"));
      return r.length === 8 && r.every((x) => x.children[2].textContent === "hv1");
    });
    v = await values();
    assert(descending(v), "not descending: " + v.join(","));
    // The selection survives a reload (it is in the address).
    await page.reload();
    await page.waitForFunction(() => document.querySelectorAll("#top-table tr.top-row").length === 8);
    const sel = [await page.inputValue("#top-by"), await page.inputValue("#top-range"), await page.inputValue("#top-host")];
    assert(sel.join() === "net,15m,hv1", "after a reload: " + sel.join());
    await page.selectOption("#top-host", "");
    await page.waitForFunction(() => document.querySelectorAll("#top-table tr.top-row").length === 10);
  });
  await page.screenshot({ path: join(shots, "top.png"), fullPage: false });

  await check("VM page shows the name as text and charts with data", async () => {
    await page.goto(base + "/fleet");
    await page.waitForFunction(() => document.querySelectorAll("#fleet-table tr.vm-row").length === 16);
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
    assert(/embedded history/.test(await page.textContent("#source")), "no source on the VM page");
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
    const mode = await page.textContent("#agent-mode");
    assert(/collecting every/.test(mode), "agent says: " + mode);
  });
  await page.screenshot({ path: join(shots, "agent.png"), fullPage: true });

  await check("hosts page draws each host's CPU trend", async () => {
    await page.goto(base + "/");
    await page.waitForFunction(() => document.querySelectorAll("#hosts-table tr.host-row").length === 2);
    // The trend has 2-minute buckets; the first value needs the second bucket.
    await page.waitForFunction(() => Array.from(document.querySelectorAll("#hosts-table tr.host-row .spark"))
      .filter((s) => Number(s.dataset.points) > 0 && s.querySelector("polyline, circle")).length === 2, null, { timeout: 200000 });
    const label = await page.getAttribute("#hosts-table tr.host-row svg.spark", "aria-label");
    assert(/CPU over the last hour: .*%/.test(label), "trend label: " + label);
  });
  await page.screenshot({ path: join(shots, "hosts.png"), fullPage: false });

  await check("no script ran and no page error", async () => {
    assert(dialogs.length === 0, "dialogs opened: " + dialogs.join(","));
    assert(pageErrors.length === 0, "page errors: " + pageErrors.join(" | "));
  });
} finally {
  await close();
}
done();
