// Bundle web/src into src/workshop_backend/static (or --outdir DIR).
//
// Output: index.html (served at / with no-cache) and content-hashed
// app-HASH.js / app-HASH.css (long cache: the server matches
// -[A-Za-z0-9]{8,}\.(js|css|woff2?|svg|png)$). Stale hashed files are removed;
// __init__.py and anything that is not ours stays. The build is deterministic:
// build-check compares a fresh build with the committed one.
import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, copyFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const outIndex = args.indexOf("--outdir");
const outdir = outIndex >= 0 ? resolve(args[outIndex + 1]) : resolve(here, "..", "src", "workshop_backend", "static");
const HASHED = /-[A-Za-z0-9]{8,}\.(js|css|woff2?|svg|png)$/;

const stage = mkdtempSync(join(tmpdir(), "workshop-ui-"));
try {
  const result = await esbuild.build({
    absWorkingDir: here,
    entryPoints: ["src/app.ts", "src/app.css"],
    bundle: true,
    minify: true,
    format: "iife",
    target: ["es2020", "chrome100", "firefox100", "safari15"],
    entryNames: "[name]-[hash]",
    assetNames: "[name]-[hash]",
    outdir: stage,
    metafile: true,
    legalComments: "eof",
    sourcemap: false,
    charset: "utf8",
    logLevel: "warning",
    loader: { ".woff2": "file", ".svg": "file" },
  });
  const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
  const js = outputs.find((n) => /^app-.*\.js$/.test(n));
  const css = outputs.find((n) => /^app-.*\.css$/.test(n));
  if (!js || !css) throw new Error(`unexpected esbuild outputs: ${outputs.join(", ")}`);
  for (const name of outputs) {
    if (!HASHED.test(name)) throw new Error(`output ${name} is not content-hashed`);
  }
  const favicon = readFileSync(join(here, "src", "favicon.svg"));
  const faviconName = `favicon-${createHash("sha256").update(favicon).digest("hex").slice(0, 10)}.svg`;
  writeFileSync(join(stage, faviconName), favicon);
  const html = readFileSync(join(here, "src", "index.html"), "utf8")
    .replace("{{FAVICON}}", `/static/${faviconName}`)
    .replace("{{CSS}}", `/static/${css}`)
    .replace("{{JS}}", `/static/${js}`);
  writeFileSync(join(stage, "index.html"), html);

  mkdirSync(outdir, { recursive: true });
  for (const name of readdirSync(outdir)) {
    if (HASHED.test(name) || name === "index.html") rmSync(join(outdir, name));
  }
  const written = [];
  for (const name of readdirSync(stage).sort()) {
    copyFileSync(join(stage, name), join(outdir, name));
    written.push(`${name} ${readFileSync(join(stage, name)).length} bytes`);
  }
  console.log(`built into ${outdir}:\n  ${written.join("\n  ")}`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
