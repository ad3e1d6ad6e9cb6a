// The pages mail links land on ({FRONTEND_URL}/verify-email?token=..., /reset-password?token=...):
// the token is read once and taken out of the address bar at once, before anything else can see it
// (history, a screenshot, the Referer of a later request, though index.html says no-referrer too).
import { useRoute } from "vue-router";

export function useLinkToken(): string | null {
  const route = useRoute();
  const token = typeof route.query.token === "string" && route.query.token ? route.query.token : null;
  if (route.query.token !== undefined) {
    const url = new URL(window.location.href);
    url.searchParams.delete("token");
    // replaceState on the router's own state, so the back button keeps working
    window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
  }
  return token;
}
