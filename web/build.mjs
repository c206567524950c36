// Bundles the editor (src/ + @comfyorg/litegraph from node_modules) into dist/ with esbuild.
// Usage: node build.mjs [--watch]
import { build, context } from "esbuild";
import { copyFile, mkdir, readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const outdir = join(root, "dist");

const options = {
  entryPoints: { loom: join(root, "src", "main.js") },
  bundle: true,
  format: "esm",
  target: "es2022",
  sourcemap: true,
  minify: true,
  outdir,
  logLevel: "warning",
  loader: { ".css": "css" },
};

await rm(outdir, { recursive: true, force: true });
await mkdir(outdir, { recursive: true });
await copyFile(join(root, "index.html"), join(outdir, "index.html"));
// ComfyUI frontend modules that pack extensions import (../../scripts/app.js): see src/extensions.js
await mkdir(join(outdir, "scripts"), { recursive: true });
for (const name of await readdir(join(root, "scripts"))) {
  await copyFile(join(root, "scripts", name), join(outdir, "scripts", name));
}
if (process.argv.includes("--watch")) {
  const ctx = await context(options);
  await ctx.watch();
  console.log("[loom web] watching src/ ...");
} else {
  const started = Date.now();
  await build(options);
  console.log(`[loom web] built dist/ in ${Date.now() - started} ms`);
}
