// What the browser scripts share: Debian's headless Chromium through playwright-core (from
// web/node_modules), and one line per check with a closing "N passed, N failed".

import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "../../web/package.json"));
const { chromium } = require("playwright-core");

// Starts Chromium with a fresh profile; `close()` stops it and removes the profile.
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "vmtel-chromium-"));
  // A fresh profile directory is Chromium's --user-data-dir (playwright passes it as such).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1366, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

// Runs named checks, printing "ok - NAME" or "not ok - NAME: why"; `done()` prints the totals
// and exits 1 if any check failed.
export function checker() {
  let passed = 0;
  let failed = 0;
  return {
    async check(name, fn) {
      try {
        await fn();
        passed++;
        console.log("ok - " + name);
      } catch (e) {
        failed++;
        console.log("not ok - " + name + ": " + (e && e.message ? e.message.split("\n")[0] : e));
      }
    },
    done() {
      console.log(`browser: ${passed} passed, ${failed} failed`);
      process.exit(failed === 0 ? 0 : 1);
    },
  };
}

export function assert(cond, msg) { if (!cond) throw new Error(msg); }
