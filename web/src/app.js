// The editor application: graph + canvas, node definitions from the server, queueing, files.
import { LGraph, LGraphCanvas, LiteGraph } from "@comfyorg/litegraph";
import { ApiError, LoomApi } from "./api.js";
import { applyNodeErrors, clearNodeErrors } from "./errors.js";
import { ExecutionTracker } from "./execution.js";
import { ExtensionHost } from "./extensions.js";
import { registerNodeDefs } from "./nodedefs.js";
import { convertToInput, convertToWidget, nodeMenuOptions } from "./nodemenu.js";
import { GraphError, graphToPrompt } from "./prompt.js";
import { TextAreaLayer } from "./textareas.js";
import { TYPE_COLORS } from "./types.js";
import { UndoHistory } from "./undo.js";
import { download, EditorUi } from "./ui.js";
import { addUploadWidget, fileFits, showComboFile } from "./upload.js";
import { registerVirtualNodes } from "./virtual.js";
import { applyControlAfterGenerate } from "./widgets.js";
import {
  buildDefaultGraph, isApiPrompt, loadApiPrompt, loadUiWorkflow, readWorkflowFile, WorkflowError,
} from "./workflow.js";

const AUTOSAVE_KEY = "loom.workflow";

export class LoomApp {
  constructor() {
    this.api = new LoomApi();
    this.defs = {};
    this.ui = new EditorUi(this, {
      queue: (front) => this.queue({ front }),
      interrupt: (id) => this.api.interrupt(id).then(() => this.ui.toast("Interrupt requested")),
      cancel: (id) => this.api.deleteQueueItem(id).then(() => this.ui.refreshQueue()),
      clearQueue: () => this.api.clearQueue().then(() => this.ui.refreshQueue()),
      clearHistory: () => this.api.clearHistory().then(() => this.ui.refreshHistory()),
      loadHistory: (entry) => this.loadHistoryEntry(entry),
      save: () => this.save(),
      exportApi: () => this.exportApi(),
      loadDefault: () => this.loadDefault(),
      clear: () => { this.textAreas.clear(); this.graph.clear(); this.canvas.setDirty(true, true); },
      refresh: () => this.refresh(),
      openFile: (file) => this.openFile(file),
      openTemplate: (entry) => this.openTemplate(entry),
    });
    const host = document.createElement("div");
    host.id = "loom-canvas-host";
    this.canvasEl = document.createElement("canvas");
    this.canvasEl.id = "loom-canvas";
    this.canvasEl.tabIndex = 1;
    host.append(this.canvasEl);
    document.body.append(host);
    this.textAreas = new TextAreaLayer(this.canvasEl, () => this.canvas);
    this.graph = new LGraph();
    this.canvas = new LGraphCanvas(this.canvasEl, this.graph);
    Object.assign(LGraphCanvas.link_type_colors, TYPE_COLORS);
    Object.assign(this.canvas.default_connection_color_byType, TYPE_COLORS);
    this.canvas.onDrawForeground = () => this.textAreas.afterDraw();
    this.canvas.show_info = false;
    this.canvas.render_canvas_border = false;
    // Dropping a link on empty canvas offers matching nodes (Shift: the search box), as ComfyUI.
    LiteGraph.release_link_on_empty_shows_menu = true;
    this.extensions = new ExtensionHost(this);
    this.canvas.getExtraMenuOptions = () => [
      null,
      { content: "Queue", callback: () => this.queue() },
      { content: "Load default graph", callback: () => this.loadDefault() },
      ...this.extensions.menuItems("getCanvasMenuItems", this.canvas),
    ];
    this.tracker = new ExecutionTracker(this);
    this.nodeContext = {
      textAreas: this.textAreas,
      addUploadWidget: (node, combo, kind) => addUploadWidget(this, node, combo, kind),
      nodeMenu: (node, options) => this.nodeMenu(node, options),
      onNodeConfigured: (node) => {
        if (node.loomUploadCombo) showComboFile(this, node, node.loomUploadCombo);
        this.extensions.invokeSync("loadedGraphNode", node);
      },
      beforeRegisterNodeDef: (cls, def) => this.extensions.invokeSync("beforeRegisterNodeDef", cls, def),
      nodeCreated: (node) => this.extensions.invokeSync("nodeCreated", node),
      openImage: (url) => this.ui.openImage(url),
    };
    window.addEventListener("resize", () => this.resize());
    this.resize();
  }

  resize() {
    const host = this.canvasEl.parentElement;
    this.canvas.resize(host.clientWidth, host.clientHeight);
  }

  async start() {
    this.dropTokenFromAddress();
    this.api.addEventListener("unauthorized", () => this.ui.setStatus("Not signed in"));
    this.api.addEventListener("reconnected", () => this.ui.setStatus("Connected"));
    this.api.addEventListener("disconnected", () => this.ui.setStatus("Reconnecting…"));
    try {
      this.defs = await this.api.getObjectInfo();
    } catch (err) {
      this.ui.showError("Cannot load node definitions", [String(err.message),
        err.status === 401 ? "Open the editor with ?token=<your token> or sign in first." : "Is the Loom server running?"]);
      this.ui.setStatus("Offline");
      return;
    }
    await this.extensions.load();  // pack web extensions: those this editor can run (see extensions.js)
    await this.extensions.invoke("init");
    registerVirtualNodes(this.nodeContext);
    registerNodeDefs(this.defs, this.nodeContext);
    this.installDropHandler();
    this.installShortcuts();
    this.api.connect();
    if (!this.restoreAutosave()) this.loadDefault();
    await this.extensions.invoke("setup");
    this.history = new UndoHistory(this.graph, (data) => {
      this.undoing = true;
      try { this.loadWorkflow(data, { quiet: true, keepView: true }); } finally { this.undoing = false; }
    });
    // Snapshot after every gesture; cheap enough for graphs of a few hundred nodes.
    let pending = 0;
    const schedule = () => {
      clearTimeout(pending);
      pending = setTimeout(() => this.history.check(), 300);  // debounced: off the double-click path
    };
    for (const type of ["pointerup", "keyup"]) window.addEventListener(type, schedule);
    setInterval(() => this.autosave(), 2000);
    // Handles for scripting and tests (the editor object and the graph library).
    window.loom = this;
    window.loomLiteGraph = LiteGraph;
    document.body.dataset.ready = "true";
  }

  /** `?token=` has become a cookie by now: keep it out of the address bar, history and bookmarks. */
  dropTokenFromAddress() {
    const url = new URL(location.href);
    if (!url.searchParams.has("token")) return;
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  loadDefault() {
    this.history?.check();
    this.textAreas.clear();
    try {
      buildDefaultGraph(this.graph);
    } catch (err) {
      this.ui.showError("Cannot build the default graph", String(err.message));
    }
    this.fitView();
  }

  /** Sets zoom and pan; the visible area is recomputed first so the background is not drawn stale. */
  setView(scale, x, y) {
    const ds = this.canvas.ds;
    ds.scale = scale;
    ds.offset[0] = x;
    ds.offset[1] = y;
    ds.computeVisibleArea(this.canvas.viewport);
    this.canvas.setDirty(true, true);
  }

  /** Zooms and pans so every node is visible (capped at 100 %). */
  fitView() {
    const nodes = this.graph._nodes;
    if (!nodes.length) return;
    const x0 = Math.min(...nodes.map((n) => n.pos[0]));
    const y0 = Math.min(...nodes.map((n) => n.pos[1])) - 40;
    const x1 = Math.max(...nodes.map((n) => n.pos[0] + n.size[0]));
    const y1 = Math.max(...nodes.map((n) => n.pos[1] + n.size[1]));
    const { width, height } = this.canvasEl;
    const margin = 40;
    const scale = Math.min(1, (width - 2 * margin) / (x1 - x0), (height - 2 * margin) / (y1 - y0));
    this.setView(scale, margin / scale - x0, margin / scale - y0);
  }

  restoreAutosave() {
    const text = localStorage.getItem(AUTOSAVE_KEY);
    if (!text) return false;
    try {
      this.loadWorkflow(JSON.parse(text), { quiet: true });
      return this.graph._nodes.length > 0;
    } catch {
      return false;
    }
  }

  autosave() {
    try { localStorage.setItem(AUTOSAVE_KEY, JSON.stringify(this.graph.serialize())); } catch { /* quota */ }
  }

  /** Loads a UI-format workflow or an API-format prompt object. */
  loadWorkflow(data, { quiet = false, api = false, keepView = false } = {}) {
    this.textAreas.clear();
    const missing = api ? loadApiPrompt(this.graph, data) : loadUiWorkflow(this.graph, data);
    if (!this.undoing) this.history?.reset();
    if (api && !keepView) this.fitView();
    else if (data?.extra?.ds && !keepView) {
      const [x, y] = data.extra.ds.offset ?? [0, 0];
      this.setView(data.extra.ds.scale ?? 1, x, y);
    }
    this.canvas.setDirty(true, true);
    if (missing.length && !quiet) {
      this.ui.showError("Missing node types", [`This workflow uses nodes the server does not offer:`, ...missing.map((t) => `  - ${t}`), "Install the node packs that provide them, then press Refresh."]);
    }
    return missing;
  }

  /** Opens a template-browser entry (an editor workflow or an API prompt), warning about what is missing. */
  async openTemplate(entry) {
    try {
      const data = await this.api.getJson(entry.url);
      this.loadWorkflow(data, { api: isApiPrompt(data) });
      this.ui.toast(`Opened ${entry.title}`);
      const missing = [...entry.missing_nodes, ...entry.missing_models];
      if (missing.length) this.ui.toast(`This server lacks: ${missing.join(", ")}`, "error");
    } catch (err) {
      const known = err instanceof WorkflowError;
      this.ui.showError(`Cannot open ${entry.title}`, known ? err.message : String(err));
    }
  }

  async openFile(file) {
    try {
      const { kind, data } = await readWorkflowFile(file);
      this.loadWorkflow(data, { api: kind === "api" });
      this.ui.toast(`Opened ${file.name}`);
    } catch (err) {
      const known = err instanceof WorkflowError;
      this.ui.showError(`Cannot open ${file.name}`, known ? err.message : String(err));
    }
  }

  installDropHandler() {
    const host = this.canvasEl.parentElement;
    host.addEventListener("dragover", (e) => { e.preventDefault(); });
    host.addEventListener("drop", async (e) => {
      e.preventDefault();
      const file = e.dataTransfer?.files?.[0];
      if (!file) return;
      this.canvas.adjustMouseEvent?.(e);
      const node = this.nodeAt(e.canvasX, e.canvasY);
      // audio / video onto LoadAudio / LoadVideo; images (not a workflow PNG) onto any node taking drops
      const media = node?.loomUploadKind !== "image" && fileFits(node?.loomUploadKind, file);
      if (node?.onDragDrop && (media || (file.type.startsWith("image/") && !(await this.isWorkflowPng(file))))) {
        await node.onDragDrop(e);
        return;
      }
      if (node?.loomUploadKind && /^(audio|video)\//.test(file.type)) {
        this.ui.toast(`${node.title} takes ${node.loomUploadKind} files, not ${file.name}`, "error");
        return;
      }
      await this.openFile(file);
    });
  }

  /** The top-most node under a graph position (from pos / size, so it is right before the next redraw). */
  nodeAt(x, y) {
    const title = LiteGraph.NODE_TITLE_HEIGHT;
    return [...this.graph._nodes].reverse().find((n) => x >= n.pos[0] && x <= n.pos[0] + n.size[0]
      && y >= n.pos[1] - title && y <= n.pos[1] + (n.flags?.collapsed ? 0 : n.size[1])) ?? null;
  }

  async isWorkflowPng(file) {
    if (file.type !== "image/png") return false;
    try { await readWorkflowFile(file); return true; } catch { return false; }
  }

  installShortcuts() {
    window.addEventListener("keydown", (e) => {
      const typing = ["TEXTAREA", "INPUT"].includes(document.activeElement?.tagName);
      const mod = e.ctrlKey || e.metaKey;
      if (mod && !typing && (e.key === "z" || e.key === "Z" || e.key === "y")) {
        e.preventDefault();
        if (e.key === "y" || e.shiftKey) this.history.redo();
        else this.history.undo();
        return;
      }
      if (mod && !typing && (e.key === "m" || e.key === "b")) {
        e.preventDefault();
        this.toggleMode(e.key === "m" ? 2 : 4);
        return;
      }
      if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
        e.preventDefault();
        this.queue({ front: e.shiftKey });
      }
      if ((e.ctrlKey || e.metaKey) && e.key === "s" && document.activeElement?.tagName !== "TEXTAREA") {
        e.preventDefault();
        this.save();
      }
    });
  }

  /** Mutes (2) or bypasses (4) the selected nodes, or sets them back to always (0) when all already are. */
  toggleMode(mode) {
    const nodes = Object.values(this.canvas.selected_nodes ?? {});
    if (!nodes.length) return;
    const target = nodes.every((n) => n.mode === mode) ? 0 : mode;
    for (const node of nodes) node.mode = target;
    this.history?.check();
    this.canvas.setDirty(true, true);
  }

  /** Builds the prompt, posts it, shows validation errors on nodes, then applies seed controls. */
  async queue({ front = false } = {}) {
    clearNodeErrors(this.graph);
    document.getElementById("loom-error-dialog")?.remove();
    let built;
    try {
      built = graphToPrompt(this.graph);
    } catch (err) {
      if (err instanceof GraphError) {
        const node = this.graph.getNodeById(err.nodeId);
        if (node?.loom) node.loom.errors = [err.message];
        this.ui.showError("Cannot queue this graph", err.message);
        this.canvas.setDirty(true, true);
        return null;
      }
      throw err;
    }
    try {
      const res = await this.api.queuePrompt(built.output, built.workflow, { front, previewMethod: this.ui.previewMethod });
      if (res?.node_errors && Object.keys(res.node_errors).length) {
        const lines = applyNodeErrors(this.graph, { node_errors: res.node_errors });
        this.ui.toast(`Some outputs were skipped: ${lines.join(" ")}`, "error");
      }
      applyControlAfterGenerate(this.graph);
      this.history?.check();
      // Events of a fast run can beat the HTTP answer: don't overwrite their status.
      if (this.tracker.promptId !== res?.prompt_id) this.ui.setStatus(`Queued ${res?.prompt_id?.slice(0, 8) ?? ""}`);
      this.ui.refreshQueue();
      this.canvas.setDirty(true, true);
      return res;
    } catch (err) {
      if (err instanceof ApiError && err.body) {
        const lines = applyNodeErrors(this.graph, err.body);
        this.ui.showError("Prompt rejected by the server", lines);
      } else {
        this.ui.showError("Cannot queue", String(err.message ?? err));
      }
      this.canvas.setDirty(true, true);
      return null;
    }
  }

  /** The API-format prompt of the current graph. */
  buildPrompt() {
    return graphToPrompt(this.graph).output;
  }

  save() {
    const name = prompt("Save workflow as", "workflow.json");
    if (!name) return;
    download(name.endsWith(".json") ? name : `${name}.json`, JSON.stringify(this.graph.serialize(), null, 2));
  }

  exportApi() {
    try {
      const { output } = graphToPrompt(this.graph);
      download("workflow_api.json", JSON.stringify(output, null, 2));
    } catch (err) {
      this.ui.showError("Cannot export", String(err.message));
    }
  }

  loadHistoryEntry(entry) {
    const workflow = entry.prompt?.[3]?.extra_pnginfo?.workflow;
    if (workflow) this.loadWorkflow(workflow);
    else if (entry.prompt?.[2]) this.loadWorkflow(entry.prompt[2], { api: true });
  }

  /** Reloads /object_info and refreshes every combo's options (model lists) in place. */
  async refresh() {
    try {
      this.defs = await this.api.getObjectInfo();
    } catch (err) {
      this.ui.showError("Refresh failed", String(err.message));
      return;
    }
    const saved = this.graph.serialize();
    registerNodeDefs(this.defs, this.nodeContext);
    for (const node of this.graph._nodes) {
      const def = this.defs[node.type];
      if (!def || !node.widgets) continue;
      for (const w of node.widgets) {
        if (w.type !== "combo" || w.isControl) continue;
        const spec = def.input?.required?.[w.name] ?? def.input?.optional?.[w.name];
        const values = Array.isArray(spec?.[0]) ? spec[0] : spec?.[1]?.options;
        if (Array.isArray(values)) w.options.values = values.map(String);
      }
    }
    const missingBefore = saved.nodes.filter((n) => !LiteGraph.registered_node_types[n.type]);
    if (missingBefore.length === 0) this.ui.toast("Node definitions and model lists refreshed");
    this.canvas.setDirty(true, true);
  }

  nodeMenu(node, options) {
    return [...this.extensions.menuItems("getNodeMenuItems", node), ...nodeMenuOptions(this, node, options)];
  }

  convertToInput(node, widget, slot) {
    convertToInput(node, widget, slot);
    this.canvas.setDirty(true, true);
  }

  convertToWidget(node, widget, slot) {
    convertToWidget(node, widget, slot);
    this.canvas.setDirty(true, true);
  }
}
