// The typed API client: openapi-fetch over the generated `paths`, with the session's access token
// added and, on a 401, one refresh and one retry.
import createClient from "openapi-fetch";

import { currentToken, refresh, TRANSPORT_HEADERS } from "@/auth/session";

import { API_BASE } from "./base";
import { ApiError, networkError, problemOf } from "./problem";
import type { paths } from "./schema";

/** Routes that answer or end tokens: they take the cookie transport. */
const COOKIE_ROUTES = new Set([
  "/user/register",
  "/user/login",
  "/user/login/mfa",
  "/user/login/passkey",
  "/user/refresh-token",
  "/user/logout",
  "/user/logout-all",
]);

/**
 * Routes anyone may call: no Authorization header, since a stale access token on them would be
 * refused (401) before the view runs.
 */
const PUBLIC_ROUTE = /^\/user\/(register|login(\/.*)?|refresh-token|password\/reset(\/confirm)?|email\/verify)$/;

async function send(request: Request, path: string, token: string | null): Promise<Response> {
  if (token) request.headers.set("Authorization", `Bearer ${token}`);
  if (COOKIE_ROUTES.has(path)) {
    for (const [name, value] of Object.entries(TRANSPORT_HEADERS)) request.headers.set(name, value);
  }
  try {
    return await fetch(request);
  } catch {
    throw networkError();
  }
}

/**
 * A 401 about the access token itself (RFC 6750's error="invalid_token"), not one about what the
 * request said: a wrong TOTP code is 401 `invalid_code` too, and must not be sent twice.
 */
function tokenRefused(response: Response): boolean {
  return response.status === 401 && /error="invalid_token"/.test(response.headers.get("WWW-Authenticate") ?? "");
}

async function authFetch(request: Request): Promise<Response> {
  const path = new URL(request.url).pathname;
  if (PUBLIC_ROUTE.test(path)) return send(request, path, null);
  const retry = request.clone();
  const token = await currentToken();
  const response = await send(request, path, token);
  if (token === null || !tokenRefused(response)) return response;
  // expired early, or revoked: one refresh (shared with every other caller), one retry
  const again = await refresh();
  return again ? send(retry, path, again) : response;
}

export const api = createClient<paths>({
  baseUrl: API_BASE,
  credentials: "include",
  fetch: authFetch,
});

type Answer<D> = { data?: D; error?: unknown; response: Response };

/** The data of a successful answer; an ApiError (problem details) for anything else. */
export async function ok<D>(call: Promise<Answer<D>>): Promise<D> {
  let answer: Answer<D>;
  try {
    answer = await call;
  } catch (error) {
    if (error instanceof ApiError) throw error;
    throw networkError();
  }
  if (answer.response.ok) return answer.data as D;
  throw problemOf(answer.error, answer.response);
}
