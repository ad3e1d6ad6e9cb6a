// End to end, by hand or in CI: the built SPA (dist/, served with the production CSP by serve.mjs)
// against a live API (uvicorn on a fresh SQLite file, mails to its stdout), in Debian's Chromium
// driven by playwright-core (never a downloaded browser). Screenshots go to screenshots/.
//
//   npm run build && npm run e2e
//
// Environment: CHROMIUM (default /usr/bin/chromium), PYTHON (default ../.venv/bin/python),
// WEB_PORT (4173), API_PORT (8765), HEADED=1 to watch.
import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { chromiumOptions } from "./chromium.mjs";
import { serve } from "./serve.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const frontend = resolve(here, "..");
const repo = resolve(frontend, "..");
const shots = join(frontend, "screenshots");
const WEB_PORT = Number(process.env.WEB_PORT ?? 4173);
const API_PORT = Number(process.env.API_PORT ?? 8765);
const ORIGIN = `http://localhost:${WEB_PORT}`;
const ACCESS_TOKEN_LIFETIME = 30; // the shortest the API allows: the run crosses refreshes
const DEADLINE_MS = 300_000;

const results = [];
let failed = 0;
function check(name, condition, detail = "") {
  results.push(`${condition ? "ok  " : "FAIL"} ${name}${detail ? `: ${detail}` : ""}`);
  console.log(results.at(-1));
  if (!condition) failed++;
  observe(name); // after every step: what the browser holds now, for the leak check at the end
}

// --- the API -----------------------------------------------------------------------------------
if (!existsSync(join(frontend, "dist/index.html"))) {
  console.error("no dist/: run npm run build first");
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), "spa-e2e-"));
const python = process.env.PYTHON ?? join(repo, ".venv/bin/python");
const apiEnv = {
  ...process.env,
  DEBUG: "true",
  SECRET_KEY: randomBytes(32).toString("hex"),
  // E2E_DATABASE_URL: a fresh PostgreSQL database (.ci/run makes one); else a new SQLite file
  DATABASE_URL: process.env.E2E_DATABASE_URL || `sqlite://${join(work, "db.sqlite3")}`,
  EMAIL_BACKEND: "console",
  FRONTEND_URL: ORIGIN,
  CORS_ALLOWED_ORIGINS: ORIGIN,
  ACCESS_TOKEN_LIFETIME: String(ACCESS_TOKEN_LIFETIME),
  THROTTLE_LOGIN_ACCOUNT: "off",
  THROTTLE_LOGIN_IP: "off",
  THROTTLE_REGISTER_IP: "off",
  THROTTLE_PASSWORD_RESET: "off",
  THROTTLE_MFA: "off",
  PYTHONUNBUFFERED: "1",
};
const run = (args) =>
  new Promise((ok, fail) => {
    const child = spawn(python, args, { cwd: repo, env: apiEnv, stdio: "inherit" });
    child.on("exit", (code) => (code === 0 ? ok() : fail(new Error(`${args.join(" ")}: exit ${code}`))));
  });
await run(["manage.py", "migrate"]);
const api = spawn(python, ["-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", String(API_PORT)], {
  cwd: repo,
  env: apiEnv,
  stdio: ["ignore", "pipe", "pipe"],
});
let apiOut = "";
api.stdout.on("data", (chunk) => (apiOut += chunk));
api.stderr.on("data", (chunk) => (apiOut += chunk));

let browser;
let web;
let elsewhere;
async function stop(code) {
  await browser?.close().catch(() => {});
  web?.close();
  elsewhere?.close();
  api.kill("SIGTERM");
  rmSync(work, { recursive: true, force: true });
  process.exit(code);
}
const timer = setTimeout(() => {
  console.error(`gave up after ${DEADLINE_MS} ms`);
  void stop(3);
}, DEADLINE_MS);

for (let i = 0; ; i++) {
  try {
    if ((await fetch(`http://127.0.0.1:${API_PORT}/health`)).ok) break;
  } catch {
    /* not up yet */
  }
  if (i > 100) throw new Error(`the API did not start:\n${apiOut}`);
  await new Promise((r) => setTimeout(r, 200));
}
web = await serve({ port: WEB_PORT, api: `http://127.0.0.1:${API_PORT}` });

// What reached the refresh route, as the server saw it (serve.mjs runs in this process): the Origin,
// whether the refresh cookie came along, and the status answered. The browser's side is not enough:
// a request whose answer the browser hides from a page (CORS) may still have spent the token.
const REFRESH_URL = `${ORIGIN}/user/refresh-token`;
const refreshLog = [];
web.on("request", (request, response) => {
  if (new URL(request.url, "http://x").pathname !== "/user/refresh-token") return;
  const entry = {
    method: request.method,
    origin: request.headers.origin ?? "",
    cookie: /(?:^|;\s*)(?:__Secure-)?refresh_token=/.test(request.headers.cookie ?? ""),
    status: 0,
  };
  refreshLog.push(entry);
  response.on("finish", () => (entry.status = response.statusCode));
});

// Another site's pages, on a free port, reached under two names: http://127.0.0.1:<port> is
// cross-site with the app on http://localhost (a site is the scheme and the registrable domain, or
// the IP address), so SameSite=Strict keeps the cookie off its requests; http://localhost:<port> is
// the same site on another origin (ports separate neither sites nor cookies), which the browser does
// send the cookie from, as it would from a sibling subdomain: there only the service's own checks
// (the X-Token-Transport header, the Origin, CORS) stand. /form auto-submits a form to the refresh
// route (text/plain: its name and value make the body the JSON object {"x":"="}); /blank is empty.
elsewhere = http.createServer((request, response) => {
  const url = new URL(request.url, "http://x");
  const enctype = url.searchParams.get("enctype") ?? "application/x-www-form-urlencoded";
  const field = enctype === "text/plain" ? `<input type="hidden" name='{"x":"' value='"}'>` : '<input type="hidden" name="x" value="1">';
  response.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
  response.end(
    url.pathname === "/form"
      ? `<!doctype html><title>elsewhere</title><form method="post" action="${REFRESH_URL}" enctype="${enctype}">${field}</form><script>document.forms[0].submit()</script>`
      : "<!doctype html><title>elsewhere</title>",
  );
});
await new Promise((ok) => elsewhere.listen(0, "127.0.0.1", ok));
const ELSEWHERE_PORT = elsewhere.address().port;

/** The newest link of a kind mailed to `to`, from the console backend's output. */
async function mailedLink(to, kind) {
  for (let i = 0; i < 50; i++) {
    const mails = apiOut.split(/-{30} mail \(console backend\) -{30}\n/).slice(1);
    for (const mail of mails.reverse()) {
      if (!mail.includes(`To: ${to}`)) continue;
      const link = mail.match(new RegExp(`${ORIGIN}/${kind}\\?token=\\S+`));
      if (link) return link[0];
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no ${kind} mail to ${to}`);
}

/** How many mails with a link of a kind went to `to` so far. */
function mailCount(to, kind) {
  return apiOut
    .split(/-{30} mail \(console backend\) -{30}\n/)
    .slice(1)
    .filter((mail) => mail.includes(`To: ${to}`) && mail.includes(`${ORIGIN}/${kind}?token=`)).length;
}

/**
 * Make an account's password unusable, as an account made without one or imported with a hasher the
 * service cannot check has it (Django's "!" marker): in the test's database (SQLite file or
 * E2E_DATABASE_URL), through the service's own ORM and settings, without its components (no mail
 * worker of this process may take the API's mails).
 */
async function makePasswordUnusable(email) {
  await run([
    "-c",
    [
      "import asyncio, secrets",
      "from tortoise import Tortoise",
      "import settings",
      "from apps.user.models import User",
      "async def main():",
      "    await Tortoise.init(config=settings.TORTOISE_ORM)",
      "    try:",
      `        changed = await User.filter(email=${JSON.stringify(email)}).update(password="!" + secrets.token_urlsafe(30))`,
      "        assert changed == 1, changed",
      "    finally:",
      "        await Tortoise.close_connections()",
      "asyncio.run(main())",
    ].join("\n"),
  ]);
}

/** RFC 6238 with the service's parameters (SHA-1, 6 digits, 30 s), for the step `offset` from now. */
function totp(secret, offset = 0) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const char of secret.replace(/[\s=]/g, "").toUpperCase()) bits += alphabet.indexOf(char).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30_000) + offset));
  const mac = createHmac("sha1", key).update(counter).digest();
  const at = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(at) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

// --- the browser -------------------------------------------------------------------------------
mkdirSync(shots, { recursive: true });
rmSync(join(shots, "failure.png"), { force: true });
browser = await chromium.launch(chromiumOptions({ headless: !process.env.HEADED }));

// The leak check: every refresh token the browser was ever given (the Set-Cookie headers of every
// response, rotations included) or held (its cookie jar, sampled after every step and every token
// answer), against every response body the pages received and every state of localStorage,
// sessionStorage and document.cookie of the app's pages (after every step and every token answer).
const REFRESH_COOKIE = /^(?:__Secure-)?refresh_token$/;
const TOKEN_PATHS = /^\/user\/(refresh-token|register|login|login\/mfa|login\/passkey)$/; // the routes that answer tokens
const leak = {
  tokens: new Set(),
  bodies: [],
  read: new Set(),
  evicted: [],
  unread: [],
  snapshots: [],
  tokenAnswers: 0,
};
const contexts = new Set();
const pending = new Set();
/** Run `work` in the background; settle() waits for all of it (nothing here may hang the run). */
function later(work) {
  const done = Promise.race([work, new Promise((r) => setTimeout(r, 5000))])
    .catch(() => {})
    .finally(() => pending.delete(done));
  pending.add(done);
}
async function settle() {
  while (pending.size) await Promise.all([...pending]);
}
async function refreshCookies(ctx) {
  const all = await ctx.cookies().catch(() => []);
  return all.filter((c) => REFRESH_COOKIE.test(c.name)).map((c) => c.value);
}
async function snapshot(page, label) {
  if (page.isClosed() || !page.url().startsWith(ORIGIN)) return;
  const text = await page
    .evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie)
    .catch(() => null);
  if (text !== null) leak.snapshots.push({ label, text });
}
function observe(label) {
  for (const ctx of contexts) {
    later(refreshCookies(ctx).then((values) => values.forEach((v) => v && leak.tokens.add(v))));
    for (const page of ctx.pages()) later(snapshot(page, label));
  }
}
function record(ctx) {
  contexts.add(ctx);
  ctx.on("close", () => contexts.delete(ctx));
  ctx.on("response", (response) =>
    later(
      (async () => {
        const status = response.status();
        // asked for at once: Chromium drops a body soon after its page moves on (a navigation, a
        // closed tab), and a body the check could not read counts as a failure
        const body =
          status < 300 || status >= 400
            ? response.text().then(
                (text) => ({ text }),
                (error) => ({ error }),
              )
            : null;
        let tokenAnswer = TOKEN_PATHS.test(new URL(response.url()).pathname);
        for (const header of await response.headerValues("set-cookie").catch(() => [])) {
          for (const line of header.split("\n")) {
            const [, name, value] = line.match(/^\s*([^=;\s]+)=([^;]*)/) ?? [];
            if (!REFRESH_COOKIE.test(name ?? "")) continue;
            tokenAnswer = true;
            if (value.replace(/"/g, "")) leak.tokens.add(value.replace(/"/g, ""));
          }
        }
        if (body) {
          const { text, error } = await body;
          const { pathname } = new URL(response.url());
          const shape = `${response.request().method()} ${status} ${pathname}`;
          if (error === undefined) {
            leak.bodies.push({ url: response.url(), text });
            leak.read.add(shape);
          } else if (pathname.startsWith("/user/") && status !== 204) {
            const why = error.message.split("\n")[0];
            // Chromium sometimes drops a body before it can be read, however soon it is asked for
            // (seen once in CI, on a GET /user/me 200): such a body still counts as checked when
            // another answer of the same method, status and path was read (checked at the end)
            if (/No resource with given identifier found/.test(why)) leak.evicted.push(shape);
            else leak.unread.push(`${status} ${response.url()} (${why})`);
          }
        }
        if (tokenAnswer) {
          // a refresh (or a sign-in): what the page keeps once it has handled the answer
          leak.tokenAnswers++;
          await new Promise((r) => setTimeout(r, 300));
          observe(`after ${new URL(response.url()).pathname}`);
        }
      })(),
    ),
  );
  return ctx;
}
function leaks() {
  const found = [];
  for (const token of leak.tokens) {
    for (const body of leak.bodies) if (body.text.includes(token)) found.push(`in the body of ${body.url}`);
    for (const state of leak.snapshots) if (state.text.includes(token)) found.push(`in the storage (${state.label})`);
  }
  return [...new Set(found)];
}

const context = record(await browser.newContext({ viewport: { width: 360, height: 780 }, deviceScaleFactor: 1 }));
const problems = [];
const refreshes = [];
function watch(page, name) {
  page.setDefaultTimeout(10_000);
  page.on("console", (m) => {
    if (m.type() === "error" || /Content Security Policy/i.test(m.text())) {
      // the API's 4xx answers the tests provoke show as console errors; CSP reports never should
      if (!/status of (401|409|422)/.test(m.text())) problems.push(`${name} console ${m.type()}: ${m.text()}`);
    }
  });
  page.on("pageerror", (e) => problems.push(`${name} pageerror: ${e.message}`));
  page.on("request", (r) => {
    if (r.url().endsWith("/user/refresh-token")) refreshes.push({ tab: name, at: Date.now() });
  });
  return page;
}
const a = watch(await context.newPage(), "A");
const shot = (page, file) => page.screenshot({ path: join(shots, file), fullPage: true });
const heading = (page) => page.locator("main h1").first().innerText();
const focused = (page) =>
  page.evaluate(() => {
    const el = document.activeElement;
    return el ? `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ""}${el.hasAttribute("data-alert") ? "[data-alert]" : ""}` : "";
  });
async function signOut(page) {
  await page.getByRole("button", { name: "Sign out" }).first().click();
  await page.waitForURL(/\/login/);
}

const suffix = randomBytes(4).toString("hex");
const user = { username: `ann${suffix}`, email: `ann${suffix}@example.com`, password: "Corr3ct-Horse-Battery" };

try {
  // CSP is really on
  const first = await fetch(`${ORIGIN}/login`);
  check("the page is served with the strict CSP", (first.headers.get("content-security-policy") ?? "").includes("script-src 'self'"));

  // anonymous: / goes to the login page; no refresh is tried without the hint
  await a.goto(`${ORIGIN}/`);
  await a.waitForURL(/\/login$/);
  check("anonymous / lands on Sign in", (await heading(a)) === "Sign in");
  check("no refresh attempt without a session", refreshes.length === 0, `${refreshes.length}`);
  await shot(a, "01-login-360.png");

  // registration: a field error is shown by its field and takes the focus
  await a.getByRole("link", { name: "Create an account" }).first().click();
  await a.waitForURL(/\/register$/);
  check("focus on the heading after navigation", (await focused(a)) === "h1#page-title");
  await a.getByLabel("Username").fill(user.username);
  await a.getByLabel("Email", { exact: true }).fill(user.email);
  await a.getByLabel("Password", { exact: true }).fill("password");
  await a.getByRole("button", { name: "Create the account" }).click();
  await a.locator("#new-password-error").waitFor();
  check("422: the password's error sits by the password", (await a.locator("#new-password-error").innerText()).length > 0, await a.locator("#new-password-error").innerText());
  check("422: focus moves to the field in error", (await focused(a)) === "input#new-password");
  check(
    "the error is tied to the field (aria-describedby)",
    ((await a.locator("#new-password").getAttribute("aria-describedby")) ?? "").includes("new-password-error"),
  );
  await shot(a, "02-register-error-360.png");
  await a.getByLabel("Password", { exact: true }).fill(user.password);
  await a.getByRole("button", { name: "Create the account" }).click();
  await a.waitForURL(/\/settings/);
  await a.getByText("Welcome!").waitFor();
  check("registered and signed in", (await heading(a)) === "Profile");
  await shot(a, "03-profile-360.png");

  // nothing of the session in storage a script could read
  const stored = await a.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
  check("no token in localStorage, sessionStorage or document.cookie", !/eyJ|refresh_token/.test(stored), stored);

  // the verification mail's link
  const verify = await mailedLink(user.email, "verify-email");
  await a.goto(verify);
  await a.getByText("is confirmed").waitFor();
  check("verify-email: the token left the address bar", !a.url().includes("token="), a.url());
  check("verify-email: the profile shows the address confirmed", (await a.locator("main").innerText()).includes("confirmed"));
  await shot(a, "04-verified-360.png");
  await a.goto(`${ORIGIN}/settings`);
  await a.getByText("Member since").waitFor();

  // Cross-site requests cannot spend the refresh cookie (issue 11, point 6). The cookie is HttpOnly,
  // SameSite=Strict and scoped to /user/refresh-token, and the route spends it only for a request that
  // carries `X-Token-Transport: cookie` (a form cannot set a header; a script needs a CORS preflight)
  // from the service's own or an allowed Origin. Another site's page, with this signed-in context,
  // auto-submits forms to the route and calls it with fetch. Each attempt must be refused by the
  // server (its own log: a request the browser sent but hid the answer of may have spent the token),
  // leave the browser's cookie as it was (a form's navigation would store a rotated one), and leave the
  // session alive (checked by the page's own refresh afterwards). From 127.0.0.1 (cross-site) the form
  // must also arrive without the cookie: that is SameSite=Strict at work. From localhost:<other port>
  // (same site) it arrives with the cookie, which proves the route does not take a cookie without
  // the header. A fetch with the header and credentials must be stopped by CORS (its preflight is
  // refused: the fetch rejects) or, had it got through, by the Origin check (403).
  const cookieNow = async () => (await refreshCookies(context))[0];
  const held = await cookieNow();
  check("signed in: the browser holds the refresh cookie", Boolean(held));
  const intruder = await context.newPage();
  intruder.setDefaultTimeout(10_000);
  for (const [site, from] of [
    ["cross-site", `http://127.0.0.1:${ELSEWHERE_PORT}`],
    ["same-site, other origin", `http://localhost:${ELSEWHERE_PORT}`],
  ]) {
    for (const enctype of ["text/plain", "application/x-www-form-urlencoded"]) {
      const before = await cookieNow();
      const logged = refreshLog.length;
      const [answer] = await Promise.all([
        intruder.waitForResponse((r) => r.url() === REFRESH_URL && r.request().method() === "POST"),
        intruder.goto(`${from}/form?enctype=${encodeURIComponent(enctype)}`, { waitUntil: "commit" }),
      ]);
      await answer.finished();
      await settle(); // its body read for the leak check before the next navigation drops it
      const posts = refreshLog.slice(logged).filter((e) => e.method === "POST" && e.origin === from);
      const withCookie = posts.some((e) => e.cookie);
      const unchanged = (await cookieNow()) === before;
      check(
        `${site} form post (${enctype}) to the refresh route: refused, cookie unchanged`,
        answer.status() !== 200 &&
          posts.length === 1 &&
          posts.every((e) => e.status !== 200) &&
          unchanged &&
          withCookie === (site !== "cross-site"),
        `HTTP ${answer.status()}, the cookie ${withCookie ? "sent" : "not sent"}, ${unchanged ? "unchanged" : "CHANGED"}`,
      );
    }
    await intruder.goto(`${from}/blank`);
    const before = await cookieNow();
    const logged = refreshLog.length;
    const outcome = await intruder.evaluate(async (url) => {
      try {
        const response = await fetch(url, {
          method: "POST",
          credentials: "include",
          headers: { "X-Token-Transport": "cookie", "Content-Type": "application/json" },
          body: "{}",
        });
        await response.text(); // read, as an attacker would (and so the leak check can read it too)
        return `HTTP ${response.status}`;
      } catch (error) {
        return `rejected (${error})`;
      }
    }, REFRESH_URL);
    await settle(); // an answer, if any, read before the page moves on
    const reached = refreshLog.slice(logged);
    const posts = reached.filter((e) => e.method === "POST" && e.origin === from);
    const preflight = reached.find((e) => e.method === "OPTIONS" && e.origin === from);
    const unchanged = (await cookieNow()) === before;
    check(
      `${site} fetch with credentials and the transport header: blocked, cookie unchanged`,
      (outcome.startsWith("rejected") || outcome === "HTTP 403") && posts.every((e) => e.status !== 200) && unchanged,
      `${outcome}, preflight ${preflight ? `HTTP ${preflight.status}` : "none"}, ${posts.length} POST(s) reached the API, ${unchanged ? "unchanged" : "CHANGED"}`,
    );
  }
  await intruder.close();
  {
    const before = await cookieNow();
    const logged = refreshLog.length;
    await a.reload();
    await a.getByText("Member since").waitFor();
    const own = refreshLog.slice(logged).filter((e) => e.method === "POST" && e.origin === ORIGIN);
    const now = await cookieNow();
    check(
      "after those attempts the session lives: the page's own refresh succeeds and rotates the cookie",
      (await heading(a)) === "Profile" && own.some((e) => e.status === 200) && Boolean(now) && now !== before,
      own.map((e) => `HTTP ${e.status}`).join(", "),
    );
  }

  // two tabs: the second finds the session through the cookie; both reloaded at once share one refresh
  const b = watch(await context.newPage(), "B");
  await b.goto(`${ORIGIN}/settings/sessions`);
  await b.getByText("this device").waitFor();
  check("tab B is signed in from the cookie", (await heading(b)) === "Sessions and devices");
  refreshes.length = 0;
  await Promise.all([a.reload(), b.reload()]);
  await Promise.all([a.locator("main h1").waitFor(), b.getByText("this device").waitFor()]);
  check("two tabs reloaded at once: both signed in", (await heading(a)) === "Profile" && (await heading(b)) === "Sessions and devices");
  check("two tabs reloaded at once: the refreshes were single-flighted", refreshes.length <= 2, `${refreshes.length} refresh request(s)`);
  console.log(`     refreshes on the double reload: ${refreshes.length}`);

  // both tokens stale at once (30 s lifetime): both tabs call the API at the same moment
  await a.goto(`${ORIGIN}/settings/sessions`);
  await a.getByText("this device").waitFor();
  await new Promise((r) => setTimeout(r, (ACCESS_TOKEN_LIFETIME - 4) * 1000));
  refreshes.length = 0;
  await Promise.all([
    a.getByRole("link", { name: "History" }).click(),
    b.getByRole("link", { name: "History" }).click(),
  ]);
  await Promise.all([a.locator("table").waitFor(), b.locator("table").waitFor()]);
  check("stale tokens in two tabs: one refresh for both", refreshes.length === 1, `${refreshes.length} refresh request(s)`);
  const history = await a.locator("table").innerText();
  check("no refresh reuse was detected", !/Reused session token/.test(history));
  await shot(a, "05-history-360.png");
  await a.getByRole("link", { name: "Sessions" }).click();
  await a.getByText("this device").waitFor();
  check("still one session", (await a.locator(".item-list > li").count()) === 1, `${await a.locator(".item-list > li").count()}`);
  await shot(a, "06-sessions-360.png");

  // the W3C change-password URL
  await a.goto(`${ORIGIN}/.well-known/change-password`);
  await a.waitForURL(/\/settings\/password$/);
  check("/.well-known/change-password opens the password page", (await heading(a)) === "Password");

  // TOTP: set up, scan (the secret), confirm with a code: ten recovery codes
  await a.getByRole("link", { name: "Two-step sign-in & passkeys" }).click();
  await a.getByText("Set up an authenticator app").click();
  await a.locator("#totp-setup-password").fill(user.password);
  await a.getByRole("button", { name: "Continue" }).click();
  await a.locator("img.qr").waitFor();
  await a.waitForFunction(() => document.querySelector("img.qr")?.complete);
  check("QR code rendered as an image", await a.locator("img.qr").evaluate((img) => img.naturalWidth > 0));
  await shot(a, "07-totp-setup-360.png");
  const secret = (await a.locator("code.secret").innerText()).replace(/\s+/g, "");
  await a.getByLabel("Code from the app").fill(totp(secret));
  await a.getByRole("button", { name: "Turn on" }).click();
  await a.getByText("Your recovery codes").waitFor();
  const codes = await a.locator("ol.codes code").allInnerTexts();
  check("ten recovery codes shown once", codes.length === 10);
  await shot(a, "08-recovery-codes-360.png");
  await a.getByRole("button", { name: "I have saved them" }).click();

  // sign out: tab B follows
  await signOut(a);
  await b.waitForURL(/\/login/, { timeout: 5000 }).catch(() => {});
  check("signing out in A signs out B", /\/login\?.*why=elsewhere/.test(b.url()), b.url());
  check("B says why", (await b.locator("main").innerText()).includes("You signed out in another tab"));
  await settle(); // B's answers read before it goes
  await b.close();

  // a wrong password, keyboard only: the alert takes the focus
  await a.goto(`${ORIGIN}/login`);
  await a.keyboard.press("Tab"); // skip link
  for (let i = 0; i < 8 && (await focused(a)) !== "input#identifier"; i++) await a.keyboard.press("Tab");
  check("keyboard: Tab reaches the identifier", (await focused(a)) === "input#identifier");
  await a.keyboard.type(user.email);
  await a.keyboard.press("Tab");
  await a.keyboard.type("wrong password");
  await a.keyboard.press("Enter");
  await a.locator("[data-alert]").first().waitFor();
  check("401: the alert says so and takes the focus", (await focused(a)) === "div[data-alert]", await a.locator("[data-alert]").first().innerText());
  await shot(a, "09-login-error-360.png");

  // sign in with the code of the next step (the one used to confirm cannot be replayed)
  await a.getByLabel("Email or username").fill(user.email);
  await a.getByLabel("Password").fill(user.password);
  await a.getByRole("button", { name: "Sign in", exact: true }).click();
  await a.waitForURL(/\/login\/second-factor/);
  await shot(a, "10-second-step-360.png");
  await a.getByLabel("Code from your authenticator app").fill(totp(secret, 1));
  await a.getByRole("button", { name: "Continue" }).click();
  await a.waitForURL(/\/settings$/);
  check("signed in with a TOTP code", (await heading(a)) === "Profile");

  // passkeys: a virtual authenticator stands in for the device
  const cdp = await context.newCDPSession(a);
  await cdp.send("WebAuthn.enable", { enableUI: false });
  await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: { protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  await a.getByRole("link", { name: "Two-step sign-in & passkeys" }).click();
  await a.getByLabel("Name (optional)").fill("Virtual authenticator");
  await a.getByRole("button", { name: "Add a passkey" }).click();
  await a.getByText("Passkey “Virtual authenticator” added").waitFor();
  check("passkey added", (await a.locator(".item__title").allInnerTexts()).includes("Virtual authenticator"));
  await shot(a, "11-security-360.png");

  // sign out, then in with the username and a recovery code
  await signOut(a);
  await a.getByLabel("Email or username").fill(user.username);
  await a.getByLabel("Password").fill(user.password);
  await a.getByRole("button", { name: "Sign in", exact: true }).click();
  await a.waitForURL(/\/login\/second-factor/);
  await a.getByLabel("Recovery code", { exact: true }).check();
  await a.locator("#recovery-code").waitFor();
  await a.locator("#recovery-code").fill(codes[0]);
  await a.getByRole("button", { name: "Continue" }).click();
  await a.waitForURL(/\/settings$/);
  check("signed in with the username and a recovery code", (await heading(a)) === "Profile");

  // passwordless
  await signOut(a);
  await a.getByRole("button", { name: "Sign in with a passkey" }).click();
  await a.waitForURL(/\/settings$/);
  check("signed in with a passkey, no password", (await heading(a)) === "Profile");

  // password reset by mail, then the second step by passkey
  await signOut(a);
  await a.getByRole("link", { name: "Forgot your password?" }).click();
  await a.waitForURL(/\/forgot-password$/);
  await a.getByLabel("Email", { exact: true }).fill(user.email);
  await a.getByRole("button", { name: "Send the link" }).click();
  await a.getByText("is on its way").waitFor();
  const reset = await mailedLink(user.email, "reset-password");
  await a.goto(reset);
  await a.locator("#new-password").waitFor();
  check("reset-password: the token left the address bar", !a.url().includes("token="), a.url());
  user.password = "An0ther-Horse-Battery";
  await a.getByLabel("New password", { exact: true }).fill(user.password);
  await a.getByRole("button", { name: "Set the password" }).click();
  await a.getByText("Your password is changed").waitFor();
  await a.getByRole("link", { name: "Sign in with the new password" }).click();
  await a.getByLabel("Email or username").fill(user.email);
  await a.getByLabel("Password").fill(user.password);
  await a.getByRole("button", { name: "Sign in", exact: true }).click();
  await a.waitForURL(/\/login\/second-factor/);
  await a.getByLabel("Passkey", { exact: true }).check();
  await a.getByRole("button", { name: "Use a passkey" }).click();
  await a.waitForURL(/\/settings$/);
  check("new password, second step by passkey", (await heading(a)) === "Profile");

  // profile: a new username
  await a.getByRole("link", { name: "Profile" }).click();
  await a.getByText("Member since").waitFor();
  // with an @ and unlike the address (Django allows @ in usernames): signing in with it is checked below
  user.username = `bea${suffix}@name.example`;
  await a.locator("#username").fill(user.username);
  await a.getByRole("button", { name: "Save" }).click();
  await a.getByText("Username saved.").waitFor();
  check("username changed, the header follows", (await a.locator(".site-nav").innerText()).includes(user.username));

  // email change: a link to the new address
  await a.getByRole("link", { name: "Email", exact: true }).click();
  await a.waitForURL(/\/settings\/email$/);
  const newEmail = `bea${suffix}@example.org`;
  await a.getByLabel("New email").fill(newEmail);
  await a.getByLabel("Your password").fill(user.password);
  await a.getByRole("button", { name: "Send the link", exact: true }).click();
  await a.getByText(`We sent a link to ${newEmail}`).waitFor();
  // the address waiting for its link, as the service says it (after a reload nothing of the form is left)
  await a.reload();
  const pendingNote = a.locator("[data-pending-email]");
  await pendingNote.waitFor({ timeout: 5000 }).catch(() => {});
  check(
    "the email page shows the address waiting for its link (pending_email)",
    (await pendingNote.count()) === 1 && (await pendingNote.innerText()).includes(`Waiting for confirmation: ${newEmail}`),
    (await pendingNote.count()) ? await pendingNote.innerText() : "not shown",
  );
  const mailsBefore = mailCount(newEmail, "verify-email");
  await a.getByRole("button", { name: "Send the link again" }).click();
  await a.getByText(`We sent the link to ${newEmail} again`).waitFor();
  for (let i = 0; i < 50 && mailCount(newEmail, "verify-email") === mailsBefore; i++) await new Promise((r) => setTimeout(r, 200));
  check(
    "send the link again: one more link to the pending address",
    mailsBefore === 1 && mailCount(newEmail, "verify-email") === 2,
    `${mailsBefore} then ${mailCount(newEmail, "verify-email")}`,
  );
  await a.getByRole("link", { name: "Profile" }).click();
  await a.getByText("Member since").waitFor();
  await a.getByText(`Waiting for confirmation: ${newEmail}`).waitFor({ timeout: 5000 }).catch(() => {});
  check("the profile shows the pending address too", (await a.locator(".facts").innerText()).includes(`Waiting for confirmation: ${newEmail}`));
  await a.goto(await mailedLink(newEmail, "verify-email"));
  await a.getByText(`${newEmail} is confirmed`).waitFor();
  user.email = newEmail;
  await a.goto(`${ORIGIN}/settings/email`);
  await a.getByText(`Now: ${newEmail}`).waitFor();
  check("email changed through the link; nothing pending any more", (await a.locator("[data-pending-email]").count()) === 0);

  // another device: ended from here, it is sent to the sign-in page and told why
  const other = record(await browser.newContext({ viewport: { width: 360, height: 780 } }));
  const c = watch(await other.newPage(), "C");
  await c.goto(`${ORIGIN}/login`);
  await c.getByLabel("Email or username").fill(user.username);
  await c.getByLabel("Password").fill(user.password);
  const [loginRequest] = await Promise.all([
    c.waitForRequest((r) => r.url() === `${ORIGIN}/user/login` && r.method() === "POST"),
    c.getByRole("button", { name: "Sign in", exact: true }).click(),
  ]);
  await c.waitForURL(/\/login\/second-factor/, { timeout: 5000 }).catch(() => {});
  const loginBody = loginRequest.postDataJSON();
  check(
    "a username with an @, not the address, signs in (sent as email; the service tries it as a username)",
    user.username.includes("@") &&
      user.username !== user.email &&
      loginBody.email === user.username &&
      !("username" in loginBody) &&
      /\/login\/second-factor/.test(c.url()),
    `sent ${Object.keys(loginBody).join(", ")}; at ${c.url()}`,
  );
  await c.getByLabel("Recovery code", { exact: true }).check();
  await c.locator("#recovery-code").fill(codes[1]);
  await c.getByRole("button", { name: "Continue" }).click();
  await c.waitForURL(/\/settings$/);
  await a.goto(`${ORIGIN}/settings/sessions`);
  await a.getByText("this device").waitFor();
  check("two sessions listed", (await a.locator(".item-list > li").count()) === 2);
  await a.getByRole("button", { name: /^End the session/ }).filter({ hasNotText: "Sign out" }).click();
  await a.getByText("has ended").waitFor();
  // the page says so before it reloads the list: wait for the list to follow
  await a.locator(".item-list > li").nth(1).waitFor({ state: "detached", timeout: 5000 }).catch(() => {});
  check("the other session ended", (await a.locator(".item-list > li").count()) === 1);
  await c.getByRole("link", { name: "History" }).click();
  await c.waitForURL(/\/login\?.*why=ended/);
  check("the ended device is told its session ended", (await c.locator("main").innerText()).includes("Your session has ended"));
  await settle(); // C's cookie jar and answers read before it goes
  await other.close();

  // password change: this session goes on
  await a.getByRole("link", { name: "Password" }).click();
  await a.waitForURL(/\/settings\/password$/);
  await a.getByLabel("Current password").fill(user.password);
  user.password = "Thr1rd-Horse-Battery";
  await a.getByLabel("New password", { exact: true }).fill(user.password);
  await a.getByRole("button", { name: "Change the password" }).click();
  await a.getByText("Password changed.").waitFor();
  check("password changed, still signed in", (await heading(a)) === "Password");

  // a wider screen, for the record
  await a.setViewportSize({ width: 1280, height: 900 });
  await a.getByRole("link", { name: "Two-step sign-in & passkeys" }).click();
  await a.locator("img.qr, #passkeys-title").first().waitFor();
  await shot(a, "12-security-1280.png");
  await a.setViewportSize({ width: 360, height: 780 });

  // delete the account
  await a.getByRole("link", { name: "Delete account" }).click();
  await a.waitForURL(/\/settings\/delete$/);
  await a.getByLabel("Your password").fill(user.password);
  await a.getByRole("button", { name: "Delete my account" }).click();
  await a.waitForURL(/\/login\?deleted=1/);
  check("account deleted, signed out", (await a.locator("main").innerText()).includes("Your account is deleted"));

  // An account without a usable password (made without one, or imported with a hasher the service
  // cannot check): made here with a password and a passkey (its own context and virtual authenticator,
  // so the passkey prompt has one account to offer), then its password made unusable in the database.
  // Every sensitive change then confirms with the passkey: no password field, "Confirm with a passkey".
  const lone = { username: `cy${suffix}`, email: `cy${suffix}@example.com`, password: "Corr3ct-Horse-Battery" };
  const third = record(await browser.newContext({ viewport: { width: 360, height: 780 } }));
  const d = watch(await third.newPage(), "D");
  const dCdp = await third.newCDPSession(d);
  await dCdp.send("WebAuthn.enable", { enableUI: false });
  await dCdp.send("WebAuthn.addVirtualAuthenticator", {
    options: { protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  await d.goto(`${ORIGIN}/register`);
  await d.getByLabel("Username").fill(lone.username);
  await d.getByLabel("Email", { exact: true }).fill(lone.email);
  await d.getByLabel("Password", { exact: true }).fill(lone.password);
  await d.getByRole("button", { name: "Create the account" }).click();
  await d.waitForURL(/\/settings/);
  await d.getByRole("link", { name: "Two-step sign-in & passkeys" }).click();
  await d.getByLabel("Name (optional)").fill("Only key");
  await d.getByRole("button", { name: "Add a passkey" }).click();
  await d.getByText("Passkey “Only key” added").waitFor();
  await d.getByRole("link", { name: "Delete account" }).click();
  await d.waitForURL(/\/settings\/delete$/);
  check(
    "with a password, a change asks for it (no passkey button)",
    (await d.locator("input#password[type=password]").count()) === 1 &&
      (await d.getByRole("button", { name: "Confirm with a passkey" }).count()) === 0,
  );
  await mailedLink(lone.email, "verify-email"); // its mail is out: nothing else of the API's output matters here
  await makePasswordUnusable(lone.email);
  await signOut(d);
  await d.getByRole("button", { name: "Sign in with a passkey" }).click();
  await d.waitForURL(/\/settings$/);
  check("no usable password: signed in with the passkey alone", (await heading(d)) === "Profile");

  await d.getByRole("link", { name: "Password" }).click();
  await d.waitForURL(/\/settings\/password$/);
  const passwordPage = await d.locator("main").innerText();
  check(
    "the Password page says how to set one (the reset link) and shows no form that needs the current one",
    passwordPage.includes("Your account has no password") &&
      (await d.getByRole("link", { name: "Forgot your password" }).count()) === 1 &&
      (await d.locator("#current-password").count()) === 0,
  );

  // the authenticator app, set up with the passkey as the confirmation
  await d.getByRole("link", { name: "Two-step sign-in & passkeys" }).click();
  await d.getByText("Set up an authenticator app").click();
  check(
    "TOTP setup: no password field, a passkey button",
    (await d.locator("#totp-setup-password").count()) === 0 &&
      (await d.locator("details[open]").getByRole("button", { name: "Confirm with a passkey" }).count()) === 1,
  );
  const reauths = [];
  d.on("request", (r) => {
    if (r.url() === `${ORIGIN}/user/passkeys/reauth/options`) reauths.push(r.url());
  });
  await d.locator("details[open]").getByRole("button", { name: "Confirm with a passkey" }).click();
  await d.locator("code.secret").waitFor();
  const loneSecret = (await d.locator("code.secret").innerText()).replace(/\s+/g, "");
  await d.getByLabel("Code from the app").fill(totp(loneSecret));
  await d.getByRole("button", { name: "Turn on" }).click();
  await d.getByText("Your recovery codes").waitFor();
  const loneCodes = await d.locator("ol.codes code").allInnerTexts();
  await d.getByRole("button", { name: "I have saved them" }).click();
  check("TOTP set up, confirmed with the passkey", loneCodes.length === 10 && reauths.length === 1, `${reauths.length} reauth option request(s)`);

  // new recovery codes: the passkey and a recovery code
  await d.getByText("Get new recovery codes").click();
  await d.locator("#codes-code").fill(loneCodes[0]);
  // (the request's body is not readable here: the client clones authenticated requests for a retry,
  // which makes it a stream; the answer tells enough: an unusable password confirms nothing)
  const [codesAnswer] = await Promise.all([
    d.waitForResponse((r) => r.url() === `${ORIGIN}/user/mfa/recovery-codes` && r.request().method() === "POST"),
    d.locator("details[open]").getByRole("button", { name: "Confirm with a passkey" }).click(),
  ]);
  await d.locator("ol.codes code").first().waitFor({ timeout: 5000 }).catch(() => {});
  const newLoneCodes = await d.locator("ol.codes code").allInnerTexts();
  check(
    "new recovery codes, confirmed with the passkey",
    codesAnswer.status() === 200 && newLoneCodes.length === 10 && !newLoneCodes.includes(loneCodes[1]) && reauths.length === 2,
    `HTTP ${codesAnswer.status()}; ${newLoneCodes.length} codes; ${reauths.length} reauth option request(s)`,
  );
  await d.getByRole("button", { name: "I have saved them" }).click().catch(() => {});

  // the account deleted, confirmed with the passkey
  await d.getByRole("link", { name: "Delete account" }).click();
  await d.waitForURL(/\/settings\/delete$/);
  check("delete: no password field", (await d.locator("input#password").count()) === 0);
  const [deleteAnswer] = await Promise.all([
    d.waitForResponse((r) => r.url() === `${ORIGIN}/user/me` && r.request().method() === "DELETE"),
    d.getByRole("button", { name: "Confirm with a passkey" }).click(),
  ]);
  await d.waitForURL(/\/login\?deleted=1/, { timeout: 5000 }).catch(() => {});
  check(
    "the account without a password deleted with its passkey",
    deleteAnswer.status() === 204 && /\/login\?deleted=1/.test(d.url()) && reauths.length === 3,
    `HTTP ${deleteAnswer.status()}; ${reauths.length} reauth option request(s); at ${d.url()}`,
  );
  await settle(); // D's answers read before it goes
  await third.close();

  const overflow = await a.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  check("no horizontal scrolling at 360 px", !overflow);
  check("no CSP violation, page error or unexpected console error", problems.length === 0, problems.join(" | "));
} catch (error) {
  failed++;
  console.error(error && error.stack ? error.stack : String(error));
  await shot(a, "failure.png").catch(() => {});
  console.error(`--- API output (last 3000 chars) ---\n${apiOut.slice(-3000)}`);
}
// The leak check, also after a failed run: every body and storage state against every token, so a
// token that showed anywhere at any step, even one rotated away since, is found.
try {
  observe("the end");
  await settle();
  const found = leaks();
  // a dropped body is checked only through a read one of the same shape
  for (const shape of leak.evicted) if (!leak.read.has(shape)) leak.unread.push(`${shape} (dropped by Chromium)`);
  check(
    "no refresh token the browser ever held appears in a response body, localStorage, sessionStorage or document.cookie",
    found.length === 0 && leak.unread.length === 0 && leak.tokens.size >= 5 && leak.tokenAnswers >= 5,
    found.length || leak.unread.length
      ? [...found, ...leak.unread.map((u) => `unread: ${u}`)]
          .map((line, i, all) => (i < 6 ? line : i === 6 ? `and ${all.length - 6} more` : ""))
          .filter(Boolean)
          .join(" | ")
      : `${leak.tokens.size} tokens, ${leak.bodies.length} bodies (${leak.evicted.length} dropped, each of a shape read elsewhere), ${leak.snapshots.length} storage states, ${leak.tokenAnswers} token answers`,
  );
} catch (error) {
  failed++;
  console.error(error && error.stack ? error.stack : String(error));
}
clearTimeout(timer);
console.log(`${results.filter((r) => r.startsWith("ok")).length} passed, ${failed} failed`);
await stop(failed ? 1 : 0);
