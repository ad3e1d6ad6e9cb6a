// How the browser tests start Chromium: Debian's (/usr/bin/chromium, or CHROMIUM), never a downloaded
// one, with what a test run needs and nothing that phones home. Shared by scripts/e2e.mjs and the
// service's passkey test (tests/e2e/passkeys.mjs). Options only, no import of playwright-core: each
// caller launches with its own pinned copy (frontend/ and tests/e2e/ each lock theirs).
export const CHROMIUM_ARGS = Object.freeze([
  "--no-sandbox", // runs as root in CI containers
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
]);

/** Options for playwright-core's chromium.launch() and chromium.launchPersistentContext(). */
export function chromiumOptions({ headless = true } = {}) {
  return {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless,
    args: [...CHROMIUM_ARGS],
    timeout: 20_000,
  };
}
