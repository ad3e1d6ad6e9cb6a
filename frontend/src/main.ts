import "@/styles/base.css";
import "@/styles/layout.css";
import "@/styles/forms.css";

import { createApp } from "vue";

import { onSignedOut, restore } from "@/auth/session";
import App from "@/App.vue";
import { router, whenRestored } from "@/router";

whenRestored(restore);

// Signed out in another tab, or the session ended under us: leave pages that need an account. (A
// sign-out chosen in this tab is followed by its own navigation.)
onSignedOut((reason, inThisTab) => {
  const route = router.currentRoute.value;
  if (route.meta.access !== "user" || (inThisTab && reason === "signed-out")) return;
  const why = reason === "ended" ? "ended" : "elsewhere";
  void router.push({ name: "login", query: { next: route.fullPath, why } });
});

createApp(App).use(router).mount("#app");
