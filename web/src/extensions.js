// Custom node packs' web extensions (the `/extensions` list) in Loom's editor, through ComfyUI's
// `app.registerExtension` contract, for the hooks this editor can honour.
//
// Before importing a file the loader reads its source and the pack files it imports: a file that imports a
// ComfyUI frontend module Loom does not provide (anything under scripts/ but app.js and api.js, ComfyUI's own
// extensions/core/, or a bare package name) is skipped with that reason. An extension that registers a hook this editor does not run
// (custom widget types, settings, commands, ...) is listed as skipped and none of its hooks run. Each file's
// outcome is in `LoomApp.extensions.report` (the Extensions tab shows it; skipped ones are logged with
// console.warn). ComfyUI's own frontend (`--front-end-root`) loads every extension itself, untouched.

import { LGraph, LGraphCanvas, LGraphNode, LiteGraph } from "@comfyorg/litegraph";
import { graphToPrompt } from "./prompt.js";

/** Frontend modules Loom serves for extensions (web/scripts/, copied to dist/scripts/ by build.mjs). */
export const PROVIDED_MODULES = ["scripts/app.js", "scripts/api.js"];

/** Hooks run by this editor: init, setup, per node type and per node, and menu entries. */
export const HONOURED_HOOKS = ["init", "setup", "beforeRegisterNodeDef", "nodeCreated", "loadedGraphNode",
  "getCanvasMenuItems", "getNodeMenuItems"];
const IGNORED_KEYS = new Set(["name"]);

const IMPORT_RE = /(?<![.\w$"'`])(?:import|export)\s*(?:[\w$*{}\s,]+?\s*from\s*)?["']([^"'\n]+)["']|(?<![.\w$"'`])import\s*\(\s*["']([^"'\n]+)["']\s*\)/g;
// what a module specifier can look like: a path or URL, or a package name ("vue", "@scope/pkg/sub.js")
const SPECIFIER_RE = /^(\.{0,2}\/|https?:)\S*$|^@?[\w-][\w@./-]*$/;

/** Module specifiers a JavaScript source imports (static and literal dynamic imports). */
export function importSpecifiers(source) {
  const text = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:\\])\/\/.*$/gm, "$1");
  const out = [];
  for (const m of text.matchAll(IMPORT_RE)) {
    const spec = m[1] ?? m[2];
    if (SPECIFIER_RE.test(spec)) out.push(spec);
  }
  return out;
}

/** The path of `url` relative to the editor's base (so a sub-path install still matches "scripts/app.js"). */
function basePath(url) {
  const base = new URL(".", document.baseURI).pathname;
  return url.pathname.startsWith(base) ? url.pathname.slice(base.length) : url.pathname.replace(/^\//, "");
}

export class ExtensionHost {
  constructor(app) {
    this.app = app;
    this.extensions = [];  // registered and accepted
    this.report = [];      // one entry per /extensions file: {url, pack, status, reason, names}
    this.current = null;   // the report entry of the file being imported
    this.sources = new Map();
    const host = this;
    // The `app` object extensions import from scripts/app.js (ComfyUI's names, over Loom's editor).
    this.facade = {
      registerExtension(ext) { host.register(ext); },
      get graph() { return app.graph; },
      get canvas() { return app.canvas; },
      get canvasEl() { return app.canvasEl; },
      get api() { return app.api; },
      get extensions() { return host.extensions; },
      get nodeDefs() { return app.defs; },
      queuePrompt: (number) => app.queue({ front: number === -1 }),
      graphToPrompt: async () => graphToPrompt(app.graph),
      loadGraphData: (data) => app.loadWorkflow(data),
    };
    globalThis.loomExtensionHost = this;
    // ComfyUI's frontend exposes the graph library as globals; older extensions use them without importing
    Object.assign(globalThis, { LiteGraph, LGraph, LGraphCanvas, LGraphNode });
  }

  /** Reads /extensions and imports every file that passes the checks; never throws. */
  async load() {
    let urls = [];
    try {
      urls = await this.app.api.getJson("extensions");
    } catch (err) {
      console.warn("[loom] cannot list extensions:", err);
      return;
    }
    for (const path of urls) {
      const url = new URL(String(path).replace(/^\//, ""), document.baseURI);
      const pack = decodeURIComponent(basePath(url).split("/")[1] ?? "");
      const entry = { url: url.pathname, pack, status: "loaded", reason: "", names: [] };
      this.report.push(entry);
      const missing = await this.missingImports(url, new Set());
      if (missing) {
        this.skip(entry, missing);
        continue;
      }
      this.current = entry;
      try {
        await import(/* @vite-ignore */ url.href);
      } catch (err) {
        // typically a ComfyUI app API the facade lacks (app.ui.settings, app.menu, ...) used at import time
        this.skip(entry, `failed to import: ${err?.message ?? err} (usually a ComfyUI app API Loom's editor ` +
          `lacks, e.g. app.ui, used at import)`);
      } finally {
        this.current = null;
      }
    }
  }

  skip(entry, reason) {
    entry.status = "skipped";
    entry.reason = reason;
    this.extensions = this.extensions.filter((ext) => !entry.names.includes(ext.name));
    console.warn(`[loom] extension ${entry.url} skipped: ${reason}`);
  }

  /** Why `url` (or a pack file it imports) cannot load here, or "" when every import is available. */
  async missingImports(url, seen) {
    if (seen.has(url.href)) return "";
    seen.add(url.href);
    let source = "";
    try {
      const res = await fetch(url, { credentials: "same-origin" });
      if (!res.ok) return `${basePath(url)} answered HTTP ${res.status}`;
      source = await res.text();
    } catch (err) {
      return `cannot read ${basePath(url)}: ${err?.message ?? err}`;
    }
    for (const spec of importSpecifiers(source)) {
      if (!/^(\.{0,2}\/|https?:)/.test(spec)) return `imports the package "${spec}", which Loom's editor does not provide`;
      const target = new URL(spec, url);
      const path = basePath(target);
      if (PROVIDED_MODULES.includes(path)) continue;
      if (target.origin === url.origin && !path.startsWith("scripts/") && !path.startsWith("extensions/core/")) {
        const why = await this.missingImports(target, seen);  // a pack's own module (or one its routes serve)
        if (why) return why;
        continue;
      }
      return `imports ${spec} (${path}), a ComfyUI frontend module Loom's editor does not provide`;
    }
    return "";
  }

  register(ext) {
    const entry = this.current;
    const name = String(ext?.name ?? "");
    if (entry) entry.names.push(name);
    if (!name) {
      if (entry) this.skip(entry, "registerExtension() called without a name");
      return;
    }
    if (this.extensions.some((e) => e.name === name)) {
      if (entry) this.skip(entry, `an extension named "${name}" is already registered`);
      return;
    }
    const unsupported = Object.keys(ext).filter((k) => !IGNORED_KEYS.has(k) && !HONOURED_HOOKS.includes(k));
    if (unsupported.length) {
      if (entry) this.skip(entry, `"${name}" uses ${unsupported.join(", ")}, which Loom's editor does not run ` +
        `(it runs ${HONOURED_HOOKS.join(", ")})`);
      return;
    }
    if (entry && entry.status === "skipped") return;
    this.extensions.push(ext);
  }

  /** Runs `hook` of every extension (awaiting promises); one that throws is logged, the others still run. */
  async invoke(hook, ...args) {
    const results = [];
    for (const ext of this.extensions) {
      if (typeof ext[hook] !== "function") continue;
      try {
        results.push(await ext[hook](...args, this.facade));
      } catch (err) {
        console.error(`[loom] extension "${ext.name}" ${hook} failed:`, err);
      }
    }
    return results;
  }

  /** The synchronous hooks (node creation, menus): same as `invoke`, without awaiting. */
  invokeSync(hook, ...args) {
    const results = [];
    for (const ext of this.extensions) {
      if (typeof ext[hook] !== "function") continue;
      try {
        results.push(ext[hook](...args, this.facade));
      } catch (err) {
        console.error(`[loom] extension "${ext.name}" ${hook} failed:`, err);
      }
    }
    return results;
  }

  /** Menu entries extensions add (`getCanvasMenuItems(canvas)` / `getNodeMenuItems(node)`). */
  menuItems(hook, target) {
    return this.invokeSync(hook, target).flatMap((items) => (Array.isArray(items) ? items : []));
  }
}
