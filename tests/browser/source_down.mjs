// The dashboard of a `vmtel serve` whose InfluxDB 3 does not answer, in Debian's headless
// Chromium with playwright-core.
//
//   node tests/browser/source_down.mjs BASE_URL SCREENSHOT_DIR
//
// Every data page (hosts, fleet, problems, top) must say in its error box that InfluxDB 3 does
// not answer, name the source, mark the source indicator unhealthy and explain its empty table;
// the agent page must say that this process collects nothing. Saves a screenshot of the hosts
// page. Prints one line per check and "N passed, N failed"; exits 1 if any check failed.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launch, checker, assert } from "./lib.mjs";

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error("usage: node tests/browser/source_down.mjs BASE_URL SCREENSHOT_DIR");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const { check, done } = checker();
const { context, close } = await launch();
const pageErrors = [];
try {
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.setDefaultTimeout(30000);

  for (const [path, empty] of [["/", "#hosts-empty"], ["/fleet", "#fleet-empty"], ["/problems", "#problems-empty"], ["/top", "#top-empty"]]) {
    await check(`${path}: says InfluxDB 3 does not answer and marks the source unhealthy`, async () => {
      await page.goto(base + path);
      await page.waitForSelector("#error");
      await page.waitForFunction(() => document.querySelector("#source").dataset.health === "bad");
      const err = await page.textContent("#error");
      assert(/InfluxDB 3 at http:\/\/127\.0\.0\.1:\d+ does not answer/.test(err), "error box says: " + err);
      assert(/Source: InfluxDB 3 http:\/\/127\.0\.0\.1:\d+ database vmtel/.test(err) && /HTTP 503/.test(err), "error box says: " + err);
      const src = await page.textContent("#source");
      assert(/InfluxDB 3 http:\/\/127\.0\.0\.1:\d+ database vmtel/.test(src) && /unavailable/.test(src), "source indicator: " + src);
      await page.waitForFunction((sel) => /did not answer/.test(document.querySelector(sel).textContent), empty);
      const rows = await page.$$eval("main table:not([hidden]) tbody tr", (r) => r.length);
      assert(rows === 0, rows + " table rows shown");
      assert(/failed/.test(await page.textContent("#status")), "status: " + await page.textContent("#status"));
    });
    if (path === "/") await page.screenshot({ path: join(shots, "source-down.png"), fullPage: false });
  }

  await check("agent page: this process collects nothing, and its source does not answer", async () => {
    await page.goto(base + "/agent");
    await page.waitForSelector("#agent-mode");
    const mode = await page.textContent("#agent-mode");
    assert(/collects nothing/.test(mode) && /InfluxDB 3 http:\/\/127\.0\.0\.1:\d+ database vmtel/.test(mode), "agent says: " + mode);
    await page.waitForFunction(() => document.querySelector("#source").dataset.health === "bad");
    const err = await page.textContent("#error");
    assert(/does not answer/.test(err), "error box says: " + err);
    assert(await page.$("#agent-sources") === null, "a sources table under vmtel serve");
  });

  await check("no page error", async () => {
    assert(pageErrors.length === 0, "page errors: " + pageErrors.join(" | "));
  });
} finally {
  await close();
}
done();
