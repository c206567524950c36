// Run feedback from websocket events: running node, per-node and per-step progress, live previews,
// output images on nodes and in the gallery, audio players and video previews on output nodes.
import { setNodeImages } from "./nodeview.js";
import { clearNodeVideo, isVideoOutput, setNodeAudio, setNodeVideo } from "./media.js";

/** Wires `api` events to the graph and the side panel. */
export class ExecutionTracker {
  constructor(app) {
    this.app = app;
    this.promptId = null;
    this.runningNode = null;
    const api = app.api;
    api.addEventListener("execution_start", (e) => this.onStart(e.detail));
    api.addEventListener("execution_cached", (e) => this.onCached(e.detail));
    api.addEventListener("executing", (e) => this.onExecuting(e.detail));
    api.addEventListener("progress", (e) => this.onProgress(e.detail));
    api.addEventListener("executed", (e) => this.onExecuted(e.detail));
    api.addEventListener("execution_error", (e) => this.onError(e.detail));
    api.addEventListener("execution_interrupted", (e) => this.onInterrupted(e.detail));
    api.addEventListener("execution_success", () => this.app.ui.setStatus("Finished"));
    api.addEventListener("b_preview", (e) => this.onPreview(e.detail));
    api.addEventListener("progress_text", (e) => this.onText(e.detail.nodeId, [e.detail.text]));
    api.addEventListener("status", (e) => this.app.ui.setQueueSize(e.detail?.status?.exec_info?.queue_remaining ?? 0));
  }

  node(id) {
    if (id == null) return null;
    const top = String(id).split(":")[0].split(".")[0];
    return this.app.graph.getNodeById(Number(top)) ?? this.app.graph.getNodeById(top);
  }

  clearRunning() {
    for (const node of this.app.graph._nodes) {
      if (!node.loom) continue;
      node.loom.running = false;
      node.loom.progress = null;
    }
    this.runningNode = null;
  }

  onStart({ prompt_id }) {
    this.promptId = prompt_id;
    this.outcome = null;
    this.clearRunning();
    this.app.ui.setStatus("Running");
    this.app.ui.setProgress(0, 1);
    this.app.ui.refreshQueue();
  }

  onCached({ nodes }) {
    this.app.ui.setStatus(`Running (${(nodes ?? []).length} cached)`);
  }

  onExecuting({ node, display_node, prompt_id }) {
    if (this.runningNode?.loom) {
      this.runningNode.loom.running = false;
      this.runningNode.loom.progress = null;
    }
    if (node == null) {
      this.clearRunning();
      this.app.ui.setStatus(this.outcome ?? "Idle");
      this.outcome = null;
      this.app.ui.setProgress(0, 0);
      this.app.ui.refreshQueue();
      this.app.ui.refreshHistory();
      this.app.canvas.setDirty(true, true);
      return;
    }
    this.promptId = prompt_id ?? this.promptId;
    const target = this.node(display_node ?? node);
    this.runningNode = target;
    if (target?.loom) {
      target.loom.running = true;
      target.loom.progress = null;
      this.app.ui.setStatus(`Running: ${target.title}`);
    }
    this.app.ui.setProgress(0, 0);
    this.app.canvas.setDirty(true, true);
  }

  onProgress({ value, max, node }) {
    const target = this.node(node) ?? this.runningNode;
    if (target?.loom) target.loom.progress = { value, max };
    this.app.ui.setProgress(value, max);
    this.app.canvas.setDirty(true, true);
  }

  onPreview({ blob, meta }) {
    const target = this.node(meta?.display_node_id ?? meta?.node_id) ?? this.runningNode;
    const url = URL.createObjectURL(blob);
    const img = new Image();
    img.onload = () => {
      if (target?.loom) {
        if (target.loom.preview?.src?.startsWith("blob:")) URL.revokeObjectURL(target.loom.preview.src);
        target.loom.preview = img;
        if (target.size[1] < 320) target.setSize([Math.max(target.size[0], 260), 420]);
        this.app.canvas.setDirty(true, true);
      }
      this.app.ui.showLivePreview(url);
    };
    img.src = url;
  }

  onText(nodeId, lines) {
    const target = this.node(nodeId);
    if (!target?.loom) return;
    target.loom.text = lines.map(String).join("\n").slice(0, 2000);
    this.app.canvas.setDirty(true, false);
  }

  onExecuted({ node, display_node, output }) {
    const target = this.node(display_node ?? node);
    if (Array.isArray(output?.text)) this.onText(display_node ?? node, output.text);
    const layer = this.app.textAreas;
    const audio = output?.audio ?? [];
    if (audio.length && target) setNodeAudio(layer, target, this.app.api.viewUrl(audio[0], `&rand=${Math.random()}`));
    const images = output?.images ?? [];
    if (!images.length) {
      this.app.canvas.setDirty(true, true);
      return;
    }
    const urls = images.map((im) => this.app.api.viewUrl(im, `&rand=${Math.random()}`));
    if (isVideoOutput(output, images[0])) {  // the gallery shows pictures only
      if (target) setNodeVideo(layer, target, urls[0]);
      this.app.canvas.setDirty(true, true);
      return;
    }
    if (target) {
      clearNodeVideo(layer, target);
      setNodeImages(target, urls);
    }
    this.app.ui.addToGallery(images.map((im, i) => ({ ...im, url: urls[i], nodeId: node })));
    this.app.canvas.setDirty(true, true);
  }

  onError(detail) {
    const target = this.node(detail.node_id);
    if (target?.loom) {
      target.loom.errors = [`${detail.exception_type}: ${detail.exception_message}`.slice(0, 200)];
    }
    this.clearRunning();
    this.outcome = `Error in node #${detail.node_id}`;
    this.app.ui.setStatus(this.outcome);
    this.app.ui.showError(`Node #${detail.node_id} ${detail.node_type} failed`, `${detail.exception_type}: ${detail.exception_message}`);
    this.app.canvas.setDirty(true, true);
  }

  onInterrupted(detail) {
    this.clearRunning();
    this.outcome = `Interrupted at node #${detail.node_id ?? "?"}`;
    this.app.ui.setStatus(this.outcome);
    this.app.canvas.setDirty(true, true);
  }
}
