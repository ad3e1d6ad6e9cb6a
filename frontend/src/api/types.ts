// Names for the generated schemas (schema.d.ts, from the service's OpenAPI document).
import type { components } from "./schema";

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
 * A token response in the cookie transport (BrowserTokenOut on the server): no refresh token, that
 * one is an HttpOnly cookie. The OpenAPI document names TokenPairOut (refresh_token required) for
 * every token route whatever the transport, so the answers are narrowed to this here.
 */
export type BrowserTokens = Omit<Schemas["TokenPairOut"], "refresh_token">;

export function needsSecondFactor(answer: object): answer is SecondFactorRequired {
  return "mfa_token" in answer;
}
