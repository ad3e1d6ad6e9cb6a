// Passkeys end to end in a real browser: Debian's Chromium, driven by playwright-core, with a CDP
// virtual authenticator (CTAP2, internal, resident keys, user verification) standing in for a
// platform authenticator. The page (passkeys.html) does what an SPA does; this script only drives it
// and prints what happened as one JSON object for the pytest test (tests/system/test_passkeys_browser.py),
// which asserts on it.
//
// Environment: PAGE_URL (the page, on a WEBAUTHN_ORIGINS origin, with ?api=<the API's base URL>),
// CHROMIUM (default /usr/bin/chromium), PROFILE_DIR (a fresh directory for --user-data-dir).
import { chromium } from "playwright-core";

// the launch flags the SPA's browser suite uses too (one list for both)
import { chromiumOptions } from "../../frontend/scripts/chromium.mjs";

const DEADLINE_MS = 50_000;
const timer = setTimeout(() => {
  console.error(`gave up after ${DEADLINE_MS} ms`);
  process.exit(3);
}, DEADLINE_MS);

const pageUrl = process.env.PAGE_URL;
const profileDir = process.env.PROFILE_DIR;
if (!pageUrl || !profileDir) {
  console.error("PAGE_URL and PROFILE_DIR are required");
  process.exit(2);
}

const context = await chromium.launchPersistentContext(profileDir, chromiumOptions());
let exitCode = 0;
try {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(15_000);
  const console_ = [];
  page.on("console", (message) => console_.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => console_.push(`pageerror: ${error.message}`));

  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable", { enableUI: false });
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });

  await page.goto(pageUrl);
  await page.waitForFunction(() => document.title === "ready");

  const suffix = Math.random().toString(36).slice(2, 10);
  const account = { username: `pk${suffix}`, email: `pk${suffix}@example.com`, password: "Corr3ct-Horse-Battery" };
  const steps = {};
  const run = (fn, ...args) => page.evaluate(([fn, args]) => window.e2e[fn](...args), [fn, args]);

  steps.registered = await run("register", account.username, account.email, account.password);
  steps.added = await run("addPasskey", steps.registered.access_token, "Virtual authenticator");
  steps.listed = await run("listPasskeys", steps.registered.access_token);
  steps.authenticator = (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials.map(
    (c) => ({ resident: c.isResidentCredential, rp_id: c.rpId, sign_count: c.signCount })
  );
  steps.passwordless = await run("passwordless");
  steps.second_factor = await run("secondFactor", account.email, account.password);
  steps.replay = await run("replay");
  steps.sign_count = (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials[0].signCount;
  steps.console = console_;
  console.log(JSON.stringify({ account, steps }));
} catch (error) {
  console.error(error && error.stack ? error.stack : String(error));
  exitCode = 1;
} finally {
  await context.close();
  clearTimeout(timer);
}
process.exit(exitCode);
