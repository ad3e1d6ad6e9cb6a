// The signed-in state of this tab, and how tabs share it.
//
// The access token lives in this module's memory only (never localStorage or sessionStorage: a script
// injected into the page could read those long after the tab closed). The refresh token is an HttpOnly
// cookie the API sets with `X-Token-Transport: cookie`; no script here can read it, and the browser
// sends it to POST /user/refresh-token only.
//
// Tabs share one cookie, so they must not refresh at once with it in hand: a spent refresh token
// presented again ends the whole session (theft detection). The service forgives a repeat within 10 s,
// but the client single-flights anyway:
// - in a tab: one refresh at a time, every caller awaits the same promise;
// - across tabs: the Web Locks API (`auth-refresh`). A tab that got the lock after another tab held it
//   finds, in localStorage, that a refresh happened after it asked, and takes the new access token
//   from the BroadcastChannel instead of spending the cookie again;
// - without Web Locks (old browsers): in-tab single flight only, and the service's grace covers the rest.
import { reactive } from "vue";

import { API_BASE } from "@/api/base";
import { ApiError, networkError, problemOf } from "@/api/problem";
import type { BrowserTokens, CookieRefresh, SecondFactorRequired, TokenRouteHeaders, User } from "@/api/types";

const LOCK = "auth-refresh";
const CHANNEL = "auth";
/** localStorage: "1" while this browser probably holds a refresh cookie. A hint, never a secret. */
const HINT = "auth:signed-in";
/** localStorage: when a tab of this browser last refreshed (ms since the epoch). */
const REFRESHED_AT = "auth:refreshed-at";
/** Refresh this long before the access token expires (a fifth of a short lifetime), so no request carries a dying token. */
const MARGIN_MS = 30_000;
/** How long a tab that waited on the lock waits for the other tab's token before refreshing itself. */
const HANDOVER_MS = 2_000;

/** The header that asks the token routes for the cookie transport (declared by the API's document). */
export const TRANSPORT_HEADERS = { "X-Token-Transport": "cookie" } as const satisfies Required<TokenRouteHeaders>;

/** "signed-out": someone chose to (logout, logout-all, deletion, a reset); "ended": the service refused the session. */
export type SignOutReason = "signed-out" | "ended";

type Message =
  | { type: "tokens"; tokens: BrowserTokens }
  | { type: "user"; user: User }
  | { type: "signed-out"; reason: SignOutReason };

export const auth = reactive({
  user: null as User | null,
  /** False until the first restore() has answered: guards wait for it. */
  ready: false,
  /** The first step of a login that needs a second factor (in memory, never in the address bar). */
  pending: null as (SecondFactorRequired & { at: number }) | null,
});

let accessToken: string | null = null;
let expiresAt = 0;
let margin = MARGIN_MS;
let inflight: Promise<string | null> | null = null;
const signedOutListeners: Array<(reason: SignOutReason, inThisTab: boolean) => void> = [];
const tokenWaiters: Array<() => void> = [];

const channel = typeof BroadcastChannel === "function" ? new BroadcastChannel(CHANNEL) : null;
channel?.addEventListener("message", (event: MessageEvent<Message>) => {
  const message = event.data;
  if (message.type === "tokens") {
    take(message.tokens);
  } else if (message.type === "user") {
    if (auth.user && auth.user.id === message.user.id) auth.user = message.user;
  } else if (message.type === "signed-out") {
    drop(message.reason, false);
  }
});

function storage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled: no hint, every load tries a refresh
  }
}

function take(tokens: BrowserTokens): void {
  accessToken = tokens.access_token;
  expiresAt = Date.now() + tokens.expires_in * 1000;
  margin = Math.min(MARGIN_MS, (tokens.expires_in * 1000) / 5);
  auth.user = tokens.user;
  auth.pending = null;
  storage()?.setItem(HINT, "1");
  tokenWaiters.splice(0).forEach((wake) => wake());
}

function drop(reason: SignOutReason, inThisTab: boolean): void {
  const wasSignedIn = accessToken !== null || auth.user !== null;
  accessToken = null;
  expiresAt = 0;
  auth.user = null;
  auth.pending = null;
  storage()?.removeItem(HINT);
  tokenWaiters.splice(0).forEach((wake) => wake());
  if (wasSignedIn) signedOutListeners.forEach((listener) => listener(reason, inThisTab));
}

/** A token answer of register, login, its second step or a passkey login: this tab and the others are signed in. */
export function signedIn(tokens: BrowserTokens): void {
  take(tokens);
  channel?.postMessage({ type: "tokens", tokens } satisfies Message);
}

/** The session is over (logout, logout-all, account deleted, refresh refused): here and in every tab. */
export function signedOut(reason: SignOutReason = "signed-out"): void {
  drop(reason, true);
  channel?.postMessage({ type: "signed-out", reason } satisfies Message);
}

/** The account changed (username, verified email): the other tabs show it too. */
export function userChanged(user: User): void {
  auth.user = user;
  channel?.postMessage({ type: "user", user } satisfies Message);
}

export function onSignedOut(listener: (reason: SignOutReason, inThisTab: boolean) => void): void {
  signedOutListeners.push(listener);
}

function refreshedAt(): number {
  return Number(storage()?.getItem(REFRESHED_AT) ?? 0);
}

function waitForToken(before: string | null, ms: number): Promise<void> {
  if (accessToken !== before) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    tokenWaiters.push(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

// A plain fetch, not the typed client (typed all the same, by the document's names): the client's
// every call goes through currentToken()/refresh() of this module, so the refresh itself must stay out
// of it (a call of the client from here that were not on its public list would wait on its own
// in-flight refresh for ever), and the client module imports this one.
async function spendCookie(): Promise<string | null> {
  let response: Response;
  try {
    response = await fetch(`${API_BASE}/user/refresh-token`, {
      method: "POST",
      credentials: "include",
      headers: { "Content-Type": "application/json", ...TRANSPORT_HEADERS },
      body: JSON.stringify({} satisfies CookieRefresh),
    });
  } catch {
    throw networkError();
  }
  const body: unknown = await response.json().catch(() => null);
  if (response.ok) {
    storage()?.setItem(REFRESHED_AT, String(Date.now()));
    signedIn(body as BrowserTokens); // 200 in the cookie transport: BrowserTokenOut
    return accessToken;
  }
  if (response.status === 401 || response.status === 403) {
    // no cookie, a spent or revoked one, or an ended session: signed out everywhere
    signedOut("ended");
    return null;
  }
  // 429, 5xx: the session may well be alive; keep it and let the caller show the problem
  throw problemOf(body, response);
}

/**
 * A new access token from the refresh cookie, or null when the session is over. One refresh at a
 * time in this tab and, where the Web Locks API exists, in this browser.
 *
 * Throws ApiError when the service could not answer (network, 429, 5xx): that ends no session.
 */
export function refresh(): Promise<string | null> {
  if (inflight) return inflight;
  const asked = Date.now();
  const before = accessToken;
  const underLock = async (): Promise<string | null> => {
    if (refreshedAt() >= asked) {
      // another tab refreshed while this one waited for the lock: its token is on the channel
      await waitForToken(before, HANDOVER_MS);
      if (accessToken !== null && accessToken !== before) return accessToken;
      if (auth.user === null && before !== null) return null; // it found the session over
    }
    return spendCookie();
  };
  const locks = typeof navigator !== "undefined" ? navigator.locks : undefined;
  // request()'s typing wraps the callback's promise once more; at run time it is the callback's result
  const run = locks ? (locks.request(LOCK, underLock) as unknown as Promise<string | null>) : underLock();
  const shared = run.finally(() => {
    inflight = null;
  });
  inflight = shared;
  return shared;
}

/** The access token to send now, refreshed first when it is about to expire; null when signed out. */
export async function currentToken(): Promise<string | null> {
  if (accessToken === null) return null;
  if (Date.now() < expiresAt - margin) return accessToken;
  return refresh();
}

/**
 * On page load: a browser that signed in before (the hint) asks for an access token with its
 * cookie. Errors leave the tab signed out but keep the hint, so a reload tries again.
 */
export async function restore(): Promise<void> {
  try {
    if (storage()?.getItem(HINT) === "1" || storage() === null) await refresh();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    console.warn("Could not restore the session:", error.problem.title);
  } finally {
    auth.ready = true;
  }
}
