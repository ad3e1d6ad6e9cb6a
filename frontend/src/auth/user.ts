// The account as the service sees it now (GET /user/me), shared with the other tabs. The copy a token
// answer carried may be old: another tab, another device, or a mail link changed it since.
import { api, ok } from "@/api/client";
import type { User } from "@/api/types";

import { userChanged } from "./session";

export async function reloadUser(): Promise<User> {
  const fresh = await ok(api.GET("/user/me"));
  userChanged(fresh);
  return fresh;
}
