// Regenerate src/api/schema.d.ts from the service's OpenAPI document.
//
//   npm run gen:api                                  # from the Python code next door (../.venv)
//   OPENAPI_URL=http://localhost:8000/openapi.json npm run gen:api   # from a running server
//
// The document itself is not committed: the Python code is its source, schema.d.ts is what the
// app compiles against (commit it after regenerating, so a change of contract shows in review).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const frontend = resolve(here, "..");
const repo = resolve(frontend, "..");
const out = join(frontend, "src/api/schema.d.ts");

let document;
if (process.env.OPENAPI_URL) {
  const response = await fetch(process.env.OPENAPI_URL);
  if (!response.ok) throw new Error(`${process.env.OPENAPI_URL}: HTTP ${response.status}`);
  document = await response.text();
} else {
  const python = process.env.PYTHON || join(repo, ".venv/bin/python");
  if (!existsSync(python)) throw new Error(`no Python at ${python}: set PYTHON or OPENAPI_URL`);
  document = execFileSync(python, [join(here, "openapi.py")], {
    cwd: repo,
    env: {
      ...process.env,
      PYTHONPATH: repo,
      DEBUG: "true",
      API_DOCS: "true",
      // the app refuses to start without one; this one signs nothing
      SECRET_KEY: process.env.SECRET_KEY || randomBytes(32).toString("hex"),
    },
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
}

// The document leaves `"default": null` off optional request fields, so `{ email, password }` and
// `{ username, password }` both type-check as a login body, and says a passkey credential is an
// object with any members (apps/core/openapi.py, apps/user/schemas.py). --default-non-nullable false
// keeps fields that responses fill with a default (Problem.errors, detail) optional here, as the
// app builds such objects itself (src/api/problem.ts).
const FLAGS = ["--default-non-nullable", "false"];
const dir = mkdtempSync(join(tmpdir(), "openapi-"));
try {
  const input = join(dir, "openapi.json");
  writeFileSync(input, JSON.stringify(JSON.parse(document), null, 2));
  execFileSync(join(frontend, "node_modules/.bin/openapi-typescript"), [input, "--output", out, ...FLAGS], {
    stdio: "inherit",
  });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
