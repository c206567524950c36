// ComfyUI's scripts/app.js for pack web extensions in Loom's editor: `app` is the editor's extension facade
// (registerExtension, graph, canvas, api, ...; see src/extensions.js). Served at /scripts/app.js.
const host = globalThis.loomExtensionHost;
if (!host) throw new Error("scripts/app.js is for extensions loaded by Loom's editor (no editor on this page)");
export const app = host.facade;
export default app;
