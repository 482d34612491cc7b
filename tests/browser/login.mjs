// Signs in to a token-protected dashboard in Debian's headless Chromium with playwright-core.
//
//   node tests/browser/login.mjs BASE_URL TOKEN SCREENSHOT_DIR
//
// The hosts page sends the browser to /login; a wrong token is refused with a message; the right
// one opens the hosts page (and then the fleet page) through a session cookie that is HttpOnly,
// SameSite=Strict and not the token; the /login page forbids framing. Prints one line per check
// and "N passed, N failed"; exits 1 if any check failed.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launch, checker, assert } from "./lib.mjs";

const [base, token, shots] = process.argv.slice(2);
if (!base || !token || !shots) {
  console.error("usage: node tests/browser/login.mjs BASE_URL TOKEN SCREENSHOT_DIR");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const { check, done } = checker();
const { context, close } = await launch();
try {
  const page = await context.newPage();
  page.setDefaultTimeout(30000);

  await check("the dashboard sends a browser without a session to /login", async () => {
    const resp = await page.goto(base + "/");
    assert(new URL(page.url()).pathname === "/login", "landed on " + page.url());
    const csp = (await resp.allHeaders())["content-security-policy"] || "";
    assert(csp.includes("frame-ancestors 'none'"), "/login CSP: " + csp);
  });

  await check("a wrong token is refused with a message", async () => {
    await page.fill("input[name=token]", "not-the-token");
    await Promise.all([page.waitForLoadState(), page.click("button[type=submit]")]);
    const text = await page.textContent("main");
    assert(/not the configured one/.test(text), "page says: " + text);
    const cookies = await context.cookies();
    assert(cookies.length === 0, "cookies after a failure: " + cookies.map((c) => c.name).join(","));
  });
  await page.screenshot({ path: join(shots, "login.png"), fullPage: false });

  await check("the right token opens the hosts page", async () => {
    await page.fill("input[name=token]", token);
    await Promise.all([page.waitForURL((u) => new URL(u).pathname === "/"), page.click("button[type=submit]")]);
    await page.waitForFunction(() => document.querySelectorAll("#hosts-table tr.host-row").length === 2);
    await page.goto(base + "/fleet");
    await page.waitForFunction(() => document.querySelectorAll("#fleet-table tr.vm-row").length === 16);
  });

  await check("the session cookie is HttpOnly, SameSite=Strict and not the token", async () => {
    const cookies = await context.cookies();
    assert(cookies.length === 1, "cookies: " + cookies.map((c) => c.name).join(","));
    const c = cookies[0];
    assert(c.httpOnly, "not HttpOnly");
    assert(c.sameSite === "Strict", "SameSite " + c.sameSite);
    const hex = Buffer.from(token).toString("hex");
    assert(!c.value.includes(token) && !c.value.includes(hex), "the cookie carries the token");
    assert(c.expires > Date.now() / 1000, "no expiry: " + c.expires);
    const visible = await page.evaluate(() => document.cookie);
    assert(visible === "", "scripts can read the cookie: " + visible);
  });
} finally {
  await close();
}
done();
