// Serve the built SPA (dist/) the way production will: the strict Content-Security-Policy on every
// page, index.html for every route of the app (history mode), hashed assets cached for ever, and the
// API's paths passed to the API with the Host kept (same origin, as behind nginx). For the e2e run
// and a look at the build; production serving is the service's (or nginx's) job.
//
//   node scripts/serve.mjs            # PORT=4173, API_URL=http://127.0.0.1:8000
import { createReadStream, existsSync, statSync } from "node:fs";
import http from "node:http";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".woff2": "font/woff2",
};
const API = /^\/(user|admin)\/|^\/\.well-known\/|^\/(health|ready|openapi\.json|docs)(\/|$)/;

export function serve({ port = 4173, api = "http://127.0.0.1:8000", root } = {}) {
  const dist = root ?? resolve(dirname(fileURLToPath(import.meta.url)), "../dist");
  const target = new URL(api);
  const server = http.createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url, "http://x").pathname);
    if (API.test(path)) {
      const upstream = http.request(
        { host: target.hostname, port: target.port, method: request.method, path: request.url, headers: request.headers },
        (answer) => {
          response.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(response);
        },
      );
      upstream.on("error", () => {
        response.writeHead(502, { "Content-Type": "text/plain" });
        response.end("API unreachable");
      });
      request.pipe(upstream);
      return;
    }
    const file = normalize(join(dist, path));
    const isAsset = file.startsWith(dist) && existsSync(file) && statSync(file).isFile();
    const chosen = isAsset ? file : join(dist, "index.html");
    const headers = {
      "Content-Type": TYPES[extname(chosen)] ?? "application/octet-stream",
      "Content-Security-Policy": CSP,
      "X-Content-Type-Options": "nosniff",
      "Referrer-Policy": "no-referrer",
      "Cache-Control": chosen.includes(`${join(dist, "assets")}`) ? "public, max-age=31536000, immutable" : "no-cache",
    };
    response.writeHead(200, headers);
    createReadStream(chosen).pipe(response);
  });
  return new Promise((ok) => server.listen(port, "127.0.0.1", () => ok(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const port = Number(process.env.PORT ?? 4173);
  await serve({ port, api: process.env.API_URL ?? "http://127.0.0.1:8000" });
  console.log(`dist/ on http://localhost:${port} (API: ${process.env.API_URL ?? "http://127.0.0.1:8000"})`);
}
