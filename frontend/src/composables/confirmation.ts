// How the owner confirms a sensitive change (delete the account, change the email, set up or turn
// off the authenticator app, new recovery codes, remove a passkey): the API takes `password`, or, for
// an account without a usable password (`user.has_usable_password` false: made without one, or
// imported with a hasher the service cannot check), `passkey`: an answer to this session's
// POST /user/passkeys/reauth/options (user verification required, used once).
//
// With a password, the form shows the password field (OwnerConfirmation.vue) and sends what was typed.
// Without, it shows no field and its button reads "Confirm with a passkey": proof() asks the service
// for options and the browser for the passkey, just before the change is sent.
import { computed, ref } from "vue";

import { api, ok } from "@/api/client";
import { ApiError } from "@/api/problem";
import { auth } from "@/auth/session";
import { reloadUser } from "@/auth/user";
import { passkeysSupported, usePasskey } from "@/auth/webauthn";

export type Proof = { password: string } | { passkey: Record<string, unknown> };

export const PASSKEY_LABEL = "Confirm with a passkey";

/** True when the signed-in account confirms changes with a passkey (it has no usable password). */
export const confirmsWithPasskey = computed(() => auth.user?.has_usable_password === false);

export function useConfirmation() {
  const password = ref("");
  const withPasskey = confirmsWithPasskey;

  /** The submit button's label: the action's own with a password, "Confirm with a passkey" without. */
  function label(action: string): string {
    return withPasskey.value ? PASSKEY_LABEL : action;
  }

  function busyLabel(working: string): string {
    return withPasskey.value ? "Waiting for the passkey…" : working;
  }

  /** What goes into the change's body: `{password}`, or `{passkey}` from the browser's prompt. */
  async function proof(): Promise<Proof> {
    if (!withPasskey.value) return { password: password.value };
    if (!passkeysSupported()) {
      throw new Error("This browser cannot use passkeys. Use another browser, or set a password with the “Forgot your password” link.");
    }
    let options: Record<string, unknown>;
    try {
      options = await ok(api.POST("/user/passkeys/reauth/options"));
    } catch (error) {
      if (error instanceof ApiError && error.code === "no_passkey") {
        throw new ApiError({
          ...error.problem,
          detail: "This account has neither a password nor a passkey. Set a password with the “Forgot your password” link first.",
        });
      }
      throw error;
    }
    return { passkey: await usePasskey(options) };
  }

  /**
   * After a refused confirmation (a wrong password, or a passkey from an account that has a password):
   * the account may have changed since this page had its copy (a password set, or made unusable), so
   * take its current state; the form switches if it did.
   */
  async function recheck(error: unknown): Promise<void> {
    if (!(error instanceof ApiError) || error.status !== 422) return;
    if (error.fieldErrors.some((e) => e.field === "password" || e.field === "passkey")) {
      await reloadUser().catch(() => undefined);
    }
  }

  /** Run `change` with the proof; on failure, recheck the account's state, then let the form show the error. */
  async function confirm<T>(change: (proof: Proof) => Promise<T>): Promise<T> {
    try {
      const result = await change(await proof());
      password.value = "";
      return result;
    } catch (error) {
      await recheck(error);
      throw error;
    }
  }

  return { password, withPasskey, label, busyLabel, confirm };
}

export type Confirmation = ReturnType<typeof useConfirmation>;
