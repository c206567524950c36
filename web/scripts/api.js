// ComfyUI's scripts/api.js for pack web extensions in Loom's editor: `api` is the editor's API client
// (fetchApi, addEventListener for the websocket events, ...). Served at /scripts/api.js.
const host = globalThis.loomExtensionHost;
if (!host) throw new Error("scripts/api.js is for extensions loaded by Loom's editor (no editor on this page)");
export const api = host.app.api;
export default api;
