// HTTP + websocket client for the Loom / ComfyUI API. All URLs are relative to the page, so the editor
// works under a sub-path and behind the server's auth cookie.

/** Raised for a non-2xx answer; `body` holds the parsed JSON body when there is one. */
export class ApiError extends Error {
  constructor(route, status, body) {
    super(`${route} answered HTTP ${status}` + (body?.error?.message ? `: ${body.error.message}` : ""));
    this.route = route;
    this.status = status;
    this.body = body;
  }
}

function makeClientId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID().replaceAll("-", "");
  return Math.random().toString(16).slice(2) + Date.now().toString(16);
}

/** Talks to the server: fetch helpers plus a reconnecting websocket that dispatches events. */
export class LoomApi extends EventTarget {
  constructor(base = "") {
    super();
    this.base = base;
    this.clientId = sessionStorage.getItem("loom.clientId") || makeClientId();
    sessionStorage.setItem("loom.clientId", this.clientId);
    this.socket = null;
    this.connected = false;
    this.closed = false;
  }

  url(route) {
    return this.base + route.replace(/^\//, "");
  }

  async fetchApi(route, init = {}) {
    const res = await fetch(this.url(route), { credentials: "same-origin", ...init });
    if (res.status === 401 || res.status === 403) {
      this.dispatchEvent(new CustomEvent("unauthorized", { detail: { route, status: res.status } }));
    }
    return res;
  }

  async getJson(route) {
    const res = await this.fetchApi(route, { cache: "no-store" });
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new ApiError(route, res.status, body);
    return body;
  }

  async postJson(route, payload) {
    const res = await this.fetchApi(route, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload ?? {}),
    });
    const text = await res.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch { body = { error: { message: text } }; }
    if (!res.ok) throw new ApiError(route, res.status, body);
    return body;
  }

  getObjectInfo() { return this.getJson("object_info"); }
  getQueue() { return this.getJson("queue"); }
  getHistory(maxItems = 64) { return this.getJson(`history?max_items=${maxItems}`); }
  getTemplates() { return this.getJson("loom/templates"); }
  interrupt(promptId) { return this.postJson("interrupt", promptId ? { prompt_id: promptId } : {}); }
  deleteQueueItem(promptId) { return this.postJson("queue", { delete: [promptId] }); }
  clearQueue() { return this.postJson("queue", { clear: true }); }
  clearHistory() { return this.postJson("history", { clear: true }); }

  /** POST /prompt; throws ApiError whose body carries `node_errors` on a 400. */
  queuePrompt(prompt, workflow, { front = false, previewMethod = "default" } = {}) {
    const body = { prompt, client_id: this.clientId, extra_data: { extra_pnginfo: { workflow } } };
    if (previewMethod && previewMethod !== "default") body.extra_data.preview_method = previewMethod;
    if (front) body.front = true;
    return this.postJson("prompt", body);
  }

  /** URL of an output/input/temp file served by /view. */
  viewUrl({ filename, subfolder = "", type = "output" }, extra = "") {
    const q = new URLSearchParams({ filename, subfolder, type });
    return this.url(`view?${q}${extra}`);
  }

  /** Multipart upload to /upload/image or /upload/mask; returns {name, subfolder, type}. */
  async upload(route, file, fields = {}) {
    const form = new FormData();
    form.append("image", file, file.name ?? "upload.png");
    for (const [key, value] of Object.entries(fields)) form.append(key, value);
    const res = await this.fetchApi(route, { method: "POST", body: form });
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new ApiError(route, res.status, body);
    return body;
  }

  /** Opens /ws and keeps it open; events are re-dispatched as CustomEvents named by their type. */
  connect() {
    this.closed = false;
    const loc = new URL(this.url(`ws?clientId=${this.clientId}`), location.href);
    loc.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(loc.href);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.connected = true;
      socket.send(JSON.stringify({ type: "feature_flags", data: { supports_preview_metadata: true } }));
      this.dispatchEvent(new CustomEvent("reconnected"));
    });
    socket.addEventListener("message", (ev) => this.#onMessage(ev));
    socket.addEventListener("close", () => {
      this.connected = false;
      if (this.socket !== socket) return;
      this.dispatchEvent(new CustomEvent("disconnected"));
      if (!this.closed) setTimeout(() => this.connect(), 1000);
    });
  }

  close() {
    this.closed = true;
    this.socket?.close();
  }

  #onMessage(ev) {
    if (ev.data instanceof ArrayBuffer) {
      const frame = parseBinaryFrame(ev.data);
      if (frame) this.dispatchEvent(new CustomEvent(frame.kind, { detail: frame }));
      return;
    }
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    if (!msg || typeof msg.type !== "string") return;
    if (msg.type === "status" && msg.data?.sid) {
      this.clientId = msg.data.sid;
      sessionStorage.setItem("loom.clientId", this.clientId);
    }
    this.dispatchEvent(new CustomEvent(msg.type, { detail: msg.data }));
  }
}

/** Decodes a binary websocket frame (spec 2.3): previews (1, 4) and progress text (3). */
export function parseBinaryFrame(buffer) {
  if (buffer.byteLength < 4) return null;
  const view = new DataView(buffer);
  const eventId = view.getUint32(0);
  if (eventId === 1 && buffer.byteLength >= 8) {
    const format = view.getUint32(4);
    const type = format === 2 ? "image/png" : "image/jpeg";
    return { kind: "b_preview", blob: new Blob([buffer.slice(8)], { type }), meta: null };
  }
  if (eventId === 4 && buffer.byteLength >= 8) {
    const len = view.getUint32(4);
    const meta = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, len)));
    const type = meta.image_type || "image/jpeg";
    return { kind: "b_preview", blob: new Blob([buffer.slice(8 + len)], { type }), meta };
  }
  if (eventId === 3 && buffer.byteLength >= 8) {
    const len = view.getUint32(4);
    const nodeId = new TextDecoder().decode(new Uint8Array(buffer, 8, len));
    const text = new TextDecoder().decode(new Uint8Array(buffer, 8 + len));
    return { kind: "progress_text", nodeId, text };
  }
  return null;
}
