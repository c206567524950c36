// The page chrome: toolbar, status + progress bar, side panel (queue / history / gallery), toasts, dialogs.

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "className") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

/** Builds and updates the DOM around the canvas. `actions` holds the toolbar callbacks. */
export class EditorUi {
  constructor(app, actions) {
    this.app = app;
    this.actions = actions;
    this.gallery = [];
    const btn = (id, label, title, fn) => el("button", { id, title, onclick: fn }, label);
    this.statusEl = el("span", { id: "loom-status" }, "Connecting…");
    this.queueSizeEl = el("span", { id: "loom-queue-size" }, "queue: 0");
    this.progressBar = el("div", { id: "loom-progress-fill" });
    this.progressText = el("span", { id: "loom-progress-text" });
    this.fileInput = el("input", { type: "file", accept: ".json,.png,application/json,image/png", style: "display:none" });
    this.fileInput.addEventListener("change", () => {
      const file = this.fileInput.files?.[0];
      if (file) actions.openFile(file);
      this.fileInput.value = "";
    });
    this.toolbar = el("div", { id: "loom-toolbar" },
      el("span", { className: "loom-brand" }, "Loom"),
      btn("loom-queue", "Queue", "Queue the graph (Ctrl+Enter)", () => actions.queue(false)),
      btn("loom-queue-front", "Queue front", "Queue ahead of pending items", () => actions.queue(true)),
      btn("loom-interrupt", "Interrupt", "Interrupt the running prompt", () => actions.interrupt()),
      el("span", { className: "sep" }),
      btn("loom-load", "Load", "Open a workflow .json or a PNG", () => this.fileInput.click()),
      btn("loom-save", "Save", "Save the workflow (UI format)", () => actions.save()),
      btn("loom-export-api", "Export API", "Download the API-format prompt", () => actions.exportApi()),
      btn("loom-default", "Default graph", "Load the default txt2img graph", () => actions.loadDefault()),
      btn("loom-clear", "Clear", "Remove every node", () => actions.clear()),
      btn("loom-refresh", "Refresh", "Reload node definitions and model lists from the server", () => actions.refresh()),
      this.previewSelect(),
      el("span", { className: "sep" }),
      this.statusEl, this.queueSizeEl,
      el("div", { id: "loom-progress" }, this.progressBar, this.progressText),
      this.fileInput,
    );
    this.tabs = {};
    this.panelBody = el("div", { id: "loom-panel-body" });
    const tabBar = el("div", { id: "loom-tabs" });
    for (const [key, label] of [["queue", "Queue"], ["history", "History"], ["gallery", "Gallery"],
      ["templates", "Templates"], ["extensions", "Extensions"]]) {
      const tab = el("button", { id: `loom-tab-${key}`, onclick: () => this.showTab(key) }, label);
      tabBar.append(tab);
      this.tabs[key] = tab;
    }
    this.livePreview = el("img", { id: "loom-live-preview", alt: "" });
    this.panel = el("div", { id: "loom-panel" }, tabBar, this.panelBody, this.livePreview);
    this.toastHost = el("div", { id: "loom-toasts" });
    document.body.append(this.toolbar, this.panel, this.toastHost);
    this.activeTab = "queue";
    this.showTab("queue");
  }

  /** Live preview method sent with each prompt (`extra_data.preview_method`), kept in local storage. */
  previewSelect() {
    const select = el("select", { id: "loom-preview-method", title: "Live previews while sampling" });
    for (const value of ["default", "none", "latent2rgb", "taesd", "auto"]) {
      select.append(el("option", { value }, value === "default" ? "previews: server default" : `previews: ${value}`));
    }
    select.value = localStorage.getItem("loom.previewMethod") ?? "default";
    select.addEventListener("change", () => localStorage.setItem("loom.previewMethod", select.value));
    this.previewMethodEl = select;
    return select;
  }

  get previewMethod() { return this.previewMethodEl.value; }

  setStatus(text) { this.statusEl.textContent = text; }
  setQueueSize(n) {
    this.queueSizeEl.textContent = `queue: ${n}`;
    if (this.activeTab === "queue") this.refreshQueue();
  }
  setProgress(value, max) {
    const frac = max > 0 ? value / max : 0;
    this.progressBar.style.width = `${Math.round(frac * 100)}%`;
    this.progressText.textContent = max > 0 ? `${value}/${max}` : "";
  }
  showLivePreview(url) {
    const old = this.livePreview.src;
    this.livePreview.src = url;
    this.livePreview.style.display = "block";
    if (old.startsWith("blob:")) setTimeout(() => URL.revokeObjectURL(old), 2000);
  }

  toast(message, kind = "info") {
    const node = el("div", { className: `loom-toast ${kind}` }, message);
    this.toastHost.append(node);
    setTimeout(() => node.remove(), kind === "error" ? 12000 : 5000);
  }

  /** A dismissable dialog listing an error (title + lines). */
  showError(title, details) {
    document.getElementById("loom-error-dialog")?.remove();
    const lines = Array.isArray(details) ? details : [details];
    const dialog = el("div", { id: "loom-error-dialog", role: "alertdialog" },
      el("h3", {}, title),
      el("pre", {}, lines.join("\n")),
      el("button", { onclick: () => dialog.remove() }, "Close"));
    document.body.append(dialog);
  }

  showTab(key) {
    this.activeTab = key;
    for (const [k, tab] of Object.entries(this.tabs)) tab.classList.toggle("active", k === key);
    if (key === "queue") this.refreshQueue();
    if (key === "history") this.refreshHistory();
    if (key === "gallery") this.renderGallery();
    if (key === "templates") this.refreshTemplates();
    if (key === "extensions") this.renderExtensions();
  }

  /** Pack web extensions: loaded, or skipped with the reason (app.extensions.report). */
  renderExtensions() {
    const report = this.app.extensions?.report ?? [];
    const rows = report.map((e) => el("div", { className: `loom-ext ${e.status}`, "data-url": e.url },
      el("b", {}, `${e.status}: `), e.url, e.reason ? el("div", { className: "loom-ext-reason" }, e.reason) : null));
    const skipped = report.filter((e) => e.status === "skipped").length;
    const summary = el("div", { className: "loom-empty", id: "loom-ext-summary" },
      `${report.length - skipped} extension file(s) loaded, ${skipped} skipped`);
    this.panelBody.replaceChildren(summary, el("div", { className: "loom-list", id: "loom-ext-list" }, ...rows));
  }

  /** The template browser: workflows/ and the templates package, each marked with what this server lacks. */
  async refreshTemplates() {
    let data;
    try { data = await this.app.api.getTemplates(); } catch (err) {
      this.panelBody.replaceChildren(el("div", { className: "loom-empty" }, `Templates unavailable: ${err.message}`));
      return;
    }
    if (this.activeTab !== "templates") return;
    const search = el("input", { id: "loom-template-search", type: "search", placeholder: "Filter templates" });
    const onlyReady = el("input", { id: "loom-template-ready", type: "checkbox" });
    const list = el("div", { className: "loom-list", id: "loom-template-list" });
    const render = () => {
      const needle = search.value.trim().toLowerCase();
      const rows = data.templates.filter((t) => (!onlyReady.checked || t.available)
        && `${t.title} ${t.category} ${t.name}`.toLowerCase().includes(needle));
      list.replaceChildren(...rows.slice(0, 300).map((t) => this.templateRow(t)));
      if (!rows.length) list.append(el("div", { className: "loom-empty" }, "No template matches"));
      else if (rows.length > 300) list.append(el("div", { className: "loom-empty" }, `${rows.length - 300} more: filter to see them`));
    };
    search.addEventListener("input", render);
    onlyReady.addEventListener("change", render);
    const note = data.package ? null
      : el("div", { className: "loom-empty" }, "ComfyUI's templates are not installed (pip install comfyui-workflow-templates)");
    render();
    this.panelBody.replaceChildren(el("div", { className: "loom-template-tools" }, search,
      el("label", {}, onlyReady, " runnable only")), note, list);
  }

  templateRow(t) {
    const missing = [...t.missing_nodes.map((n) => `node ${n}`), ...t.missing_models.map((m) => `model ${m}`)];
    const row = el("div", {
      className: `loom-item loom-template ${t.available ? "available" : "missing"}`,
      "data-template": `${t.source}/${t.name}`, title: t.description || t.title,
    },
    el("span", {}, `${t.available ? "✓" : "⚠"} ${t.title}`),
    el("span", { className: "loom-template-source" }, t.source === "workflows" ? "Loom" : t.category),
    el("button", { onclick: () => this.actions.openTemplate(t) }, "Open"));
    if (!t.readable) missing.push("not a readable workflow");
    if (missing.length) {
      row.append(el("div", { className: "loom-template-missing" }, `Missing: ${missing.slice(0, 6).join(", ")}`
        + (missing.length > 6 ? ` and ${missing.length - 6} more` : "")));
    }
    return row;
  }

  async refreshQueue() {
    if (this.activeTab !== "queue") return;
    let data;
    try { data = await this.app.api.getQueue(); } catch { return; }
    if (this.activeTab !== "queue") return;
    const list = el("div", { className: "loom-list", id: "loom-queue-list" });
    const running = data.queue_running ?? [];
    const pending = [...(data.queue_pending ?? [])].sort((a, b) => a[0] - b[0]);
    for (const item of running) {
      list.append(el("div", { className: "loom-item running", "data-prompt-id": item[1] },
        el("span", {}, `▶ #${item[0]} ${item[1].slice(0, 8)}`),
        el("button", { onclick: () => this.actions.interrupt(item[1]) }, "Interrupt")));
    }
    for (const item of pending) {
      list.append(el("div", { className: "loom-item pending", "data-prompt-id": item[1] },
        el("span", {}, `#${item[0]} ${item[1].slice(0, 8)}`),
        el("button", { className: "loom-cancel", onclick: () => this.actions.cancel(item[1]) }, "Cancel")));
    }
    if (!running.length && !pending.length) list.append(el("div", { className: "loom-empty" }, "Queue is empty"));
    if (pending.length) list.append(el("button", { onclick: () => this.actions.clearQueue() }, "Clear pending"));
    this.panelBody.replaceChildren(list);
  }

  async refreshHistory() {
    if (this.activeTab !== "history") return;
    let data;
    try { data = await this.app.api.getHistory(50); } catch { return; }
    if (this.activeTab !== "history") return;
    const list = el("div", { className: "loom-list", id: "loom-history-list" });
    for (const [id, entry] of Object.entries(data).reverse()) {
      const status = entry.status?.status_str ?? "?";
      const images = Object.values(entry.outputs ?? {}).flatMap((o) => o.images ?? []);
      const row = el("div", { className: `loom-item ${status}`, "data-prompt-id": id },
        el("span", {}, `${status === "success" ? "✓" : "✗"} ${id.slice(0, 8)} (${images.length} img)`),
        el("button", { onclick: () => this.actions.loadHistory(entry) }, "Load"));
      for (const im of images.slice(0, 4)) {
        row.append(el("img", { className: "loom-thumb", src: this.app.api.viewUrl(im), alt: im.filename }));
      }
      list.append(row);
    }
    if (!Object.keys(data).length) list.append(el("div", { className: "loom-empty" }, "No history yet"));
    else list.append(el("button", { onclick: () => this.actions.clearHistory() }, "Clear history"));
    this.panelBody.replaceChildren(list);
  }

  addToGallery(items) {
    this.gallery.unshift(...items);
    this.gallery.length = Math.min(this.gallery.length, 200);
    if (this.activeTab === "gallery") this.renderGallery();
  }

  renderGallery() {
    const grid = el("div", { id: "loom-gallery" });
    for (const item of this.gallery) {
      grid.append(el("img", { className: "loom-gallery-img", src: item.url, title: item.filename, alt: item.filename,
        onclick: () => this.openImage(item.url) }));
    }
    if (!this.gallery.length) grid.append(el("div", { className: "loom-empty" }, "Outputs of this session appear here"));
    this.panelBody.replaceChildren(grid);
  }

  openImage(url) {
    const overlay = el("div", { id: "loom-lightbox", onclick: () => overlay.remove() }, el("img", { src: url, alt: "" }));
    document.body.append(overlay);
  }
}

/** Triggers a download of `text` as `filename`. */
export function download(filename, text, type = "application/json") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
