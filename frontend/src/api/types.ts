// Names for the generated schemas (schema.d.ts, from the service's OpenAPI document).
import type { components, operations } from "./schema";

type Schemas = components["schemas"];

export type User = Schemas["UserOut"];
export type Problem = Schemas["ValidationProblem"];
export type FieldError = Schemas["FieldError"];
export type SecondFactorRequired = Schemas["SecondFactorRequiredOut"];
export type SessionInfo = Schemas["SessionOut"];
export type AccountEvent = Schemas["EventOut"];
export type Passkey = Schemas["PasskeyOut"];
export type TOTPSetup = Schemas["TOTPSetupOut"];

/**
 * A token answer in the cookie transport (`X-Token-Transport: cookie`): no refresh token in the body,
 * that one is an HttpOnly cookie. The token routes answer `TokenPairOut | BrowserTokenOut`; every
 * one of them is assignable to this.
 */
export type BrowserTokens = Schemas["BrowserTokenOut"];
/** The cookie transport's refresh body: `{}` (the token is the cookie). */
export type CookieRefresh = Schemas["CookieRefreshIn"];
/** The request headers of the routes that answer tokens (the transport's header). */
export type TokenRouteHeaders = NonNullable<operations["refresh_token"]["parameters"]["header"]>;

export function needsSecondFactor(answer: object): answer is SecondFactorRequired {
  return "mfa_token" in answer;
}
