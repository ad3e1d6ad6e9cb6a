import { nextTick } from "vue";
import { createRouter, createWebHistory, type RouteLocationRaw } from "vue-router";

import { auth } from "@/auth/session";

declare module "vue-router" {
  interface RouteMeta {
    title: string;
    /** "user": signed-in only; "guest": signed-out only; absent: anyone. */
    access?: "user" | "guest";
  }
}

// Every path here must also be answered with index.html by the server (history mode); none may
// start with an API prefix (/user/, /admin/, /.well-known/, /health, /ready, /docs, /openapi.json).
export const router = createRouter({
  history: createWebHistory(import.meta.env.BASE_URL),
  routes: [
    { path: "/", name: "home", redirect: () => (auth.user ? { name: "profile" } : { name: "login" }), meta: { title: "" } },
    { path: "/login", name: "login", component: () => import("@/views/LoginView.vue"), meta: { title: "Sign in", access: "guest" } },
    {
      path: "/login/second-factor",
      name: "second-factor",
      component: () => import("@/views/SecondFactorView.vue"),
      meta: { title: "Second step", access: "guest" },
    },
    { path: "/register", name: "register", component: () => import("@/views/RegisterView.vue"), meta: { title: "Create an account", access: "guest" } },
    { path: "/forgot-password", name: "forgot-password", component: () => import("@/views/ForgotPasswordView.vue"), meta: { title: "Forgot your password" } },
    // The two pages mails link to (apps/user/mails.py: VERIFY_PATH, RESET_PATH).
    { path: "/reset-password", name: "reset-password", component: () => import("@/views/ResetPasswordView.vue"), meta: { title: "Choose a new password" } },
    { path: "/verify-email", name: "verify-email", component: () => import("@/views/VerifyEmailView.vue"), meta: { title: "Confirm your email address" } },
    {
      path: "/settings",
      component: () => import("@/views/settings/SettingsLayout.vue"),
      meta: { title: "Account", access: "user" },
      children: [
        { path: "", name: "profile", component: () => import("@/views/settings/ProfileView.vue"), meta: { title: "Profile", access: "user" } },
        { path: "email", name: "email", component: () => import("@/views/settings/EmailView.vue"), meta: { title: "Email address", access: "user" } },
        // /.well-known/change-password redirects here (W3C change-password URL)
        { path: "password", name: "password", component: () => import("@/views/settings/PasswordView.vue"), meta: { title: "Password", access: "user" } },
        { path: "security", name: "security", component: () => import("@/views/settings/SecurityView.vue"), meta: { title: "Two-step sign-in and passkeys", access: "user" } },
        { path: "sessions", name: "sessions", component: () => import("@/views/settings/SessionsView.vue"), meta: { title: "Sessions and devices", access: "user" } },
        { path: "history", name: "history", component: () => import("@/views/settings/HistoryView.vue"), meta: { title: "Account history", access: "user" } },
        { path: "delete", name: "delete", component: () => import("@/views/settings/DeleteView.vue"), meta: { title: "Delete the account", access: "user" } },
      ],
    },
    { path: "/:path(.*)*", name: "not-found", component: () => import("@/views/NotFoundView.vue"), meta: { title: "Page not found" } },
  ],
  scrollBehavior: (_to, _from, saved) => saved ?? { top: 0 },
});

/** A `next` query value to come back to after signing in: a path of this app only, never another site. */
export function safeNext(value: unknown): string {
  return typeof value === "string" && value.startsWith("/") && !value.startsWith("//") && !value.includes("\\")
    ? value
    : "/settings";
}

let restored: Promise<void> | null = null;
export function whenRestored(restore: () => Promise<void>): void {
  restored = restore();
}

router.beforeEach(async (to): Promise<RouteLocationRaw | true> => {
  await restored;
  if (to.meta.access === "user" && !auth.user) return { name: "login", query: { next: to.fullPath } };
  if (to.meta.access === "guest" && auth.user) return safeNext(to.query.next);
  return true;
});

const SITE = "Account";
let first = true;
router.afterEach((to, _from, failure) => {
  if (failure) return;
  document.title = to.meta.title ? `${to.meta.title} · ${SITE}` : SITE;
  // On navigation (not the first load), focus the new page's heading, so a screen reader reads where
  // one is and the next Tab starts from the page, not from the link that was followed.
  if (first) {
    first = false;
    return;
  }
  void nextTick(() => {
    document.querySelector<HTMLElement>("main h1")?.focus();
  });
});
