import "@/styles/base.css";
import "@/styles/layout.css";
import "@/styles/forms.css";

import { createApp } from "vue";

import { onSignedOut, restore } from "@/auth/session";
import App from "@/App.vue";
import { router, whenRestored } from "@/router";

whenRestored(restore);

// Signed out in another tab, or the session ended under us: leave pages that need an account.
onSignedOut((byThisTab) => {
  const route = router.currentRoute.value;
  if (route.meta.access === "user") {
    void router.push({ name: "login", query: byThisTab ? {} : { next: route.fullPath, ended: "1" } });
  }
});

createApp(App).use(router).mount("#app");
