const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A timestamp of the API (ISO 8601) in the reader's words and time zone. */
export function when(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : dateTime.format(date);
}

/** "Firefox on Linux" rather than the whole User-Agent string; the string itself when unsure. */
export function device(userAgent: string): string {
  if (!userAgent) return "Unknown device";
  const browser =
    /Edg\//.test(userAgent) ? "Edge" :
    /OPR\//.test(userAgent) ? "Opera" :
    /Firefox\//.test(userAgent) ? "Firefox" :
    /Chrom(e|ium)\//.test(userAgent) ? "Chrome" :
    /Safari\//.test(userAgent) ? "Safari" :
    /curl\//.test(userAgent) ? "curl" : null;
  const system =
    /Android/.test(userAgent) ? "Android" :
    /iPhone|iPad/.test(userAgent) ? "iOS" :
    /Windows/.test(userAgent) ? "Windows" :
    /Mac OS X/.test(userAgent) ? "macOS" :
    /Linux/.test(userAgent) ? "Linux" : null;
  if (!browser) return userAgent.slice(0, 60);
  return system ? `${browser} on ${system}` : browser;
}

const EVENT_NAMES: Record<string, string> = {
  registered: "Account created",
  login: "Signed in",
  login_failed: "Failed sign-in",
  logout: "Signed out",
  refresh_reuse_detected: "Reused session token: session ended",
  password_changed: "Password changed",
  password_reset_requested: "Password reset asked for",
  password_reset: "Password reset",
  email_verified: "Email confirmed",
  email_change_requested: "Email change asked for",
  email_changed: "Email changed",
  session_revoked: "Session ended",
  account_deactivated: "Account deactivated",
  mfa_enabled: "Two-step sign-in turned on",
  mfa_disabled: "Two-step sign-in turned off",
  recovery_code_used: "Recovery code used",
  passkey_added: "Passkey added",
  passkey_removed: "Passkey removed",
};

export function eventName(type: string): string {
  return EVENT_NAMES[type] ?? type.replace(/_/g, " ");
}
