// Compiled by `npm run typecheck` (vue-tsc), never bundled: request bodies as users write them must
// type-check against the client generated from the service's OpenAPI document (issue 11, point 4).
import type { components } from "./schema";

type Schemas = components["schemas"];

export const loginByEmail: Schemas["LoginIn"] = { email: "ann@example.com", password: "correct horse battery" };
export const loginByUsername: Schemas["LoginIn"] = { username: "ann", password: "correct horse battery" };
export const secondStepByCode: Schemas["SecondFactorIn"] = { mfa_token: "t", code: "123456" };
export const secondStepByRecoveryCode: Schemas["SecondFactorIn"] = { mfa_token: "t", recovery_code: "abcde-fghjk" };
export const deleteWithPassword: Schemas["AccountDeleteIn"] = { password: "correct horse battery" };
export const passkeyAnswer: Schemas["PasskeyLoginIn"] = { credential: { id: "x", rawId: "x", type: "public-key", response: {} } };
// an account without a usable password confirms with a passkey's answer to POST /user/passkeys/reauth/options
export const deleteWithPasskey: Schemas["AccountDeleteIn"] = { passkey: { id: "x", rawId: "x", type: "public-key", response: {} } };
export const codesWithPasskey: Schemas["PasswordAndCodeIn"] = { passkey: { id: "x", rawId: "x", type: "public-key", response: {} }, code: "123456" };
// the cookie transport's refresh: the token is the cookie
export const refreshByCookie: Schemas["CookieRefreshIn"] = {};
