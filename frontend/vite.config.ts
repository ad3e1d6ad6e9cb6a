import vue from "@vitejs/plugin-vue";
import { fileURLToPath } from "node:url";

import { defineConfig } from "vite";

// The API on :8000 (uvicorn) behind the dev server's own origin, so the SPA and the API are
// same-origin in development as they are in production: the refresh cookie (SameSite=Strict,
// Path=/user/refresh-token) is first-party, and the Origin check of the cookie transport sees the
// service's own origin. The Host header is kept (no changeOrigin): the API builds that origin from it.
const api = process.env.API_URL || "http://localhost:8000";
const proxied = { target: api, changeOrigin: false, xfwd: false };

export default defineConfig({
  plugins: [vue()],
  resolve: { alias: { "@": fileURLToPath(new URL("./src", import.meta.url)) } },
  server: {
    port: 5173,
    strictPort: true,
    proxy: {
      "^/(user|admin)/": proxied,
      "/.well-known/": proxied,
      "/openapi.json": proxied,
      "/docs": proxied,
      "/health": proxied,
    },
  },
  build: {
    outDir: "dist",
    // Hashed names under /assets (Vite's default): the server may cache them for ever.
    assetsDir: "assets",
    sourcemap: false,
    // Everything as files: no data: URLs for small assets, no inline anything (strict CSP).
    assetsInlineLimit: 0,
  },
});
