/** The API's origin when it is not the SPA's own; "" (same origin, the normal case) otherwise. */
export const API_BASE: string = import.meta.env.VITE_API_URL ?? "";
