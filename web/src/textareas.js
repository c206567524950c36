// Multiline STRING widgets as real <textarea> elements laid over the canvas, following their node; the same
// layer carries the <audio> / <video> players of media.js (any widget with an `element`).

const AREA_HEIGHT = 90;

/** Owns the textarea overlays of one canvas; call `afterDraw()` once per frame. */
export class TextAreaLayer {
  constructor(canvasEl, getCanvas) {
    this.canvasEl = canvasEl;
    this.getCanvas = getCanvas;
    this.frame = 0;
    this.entries = new Set();
    this.host = document.createElement("div");
    this.host.className = "loom-textarea-layer";
    canvasEl.parentElement.appendChild(this.host);
  }

  /** Adds a multiline text widget to `node`, backed by a textarea. */
  addTextArea(node, name, value, placeholder) {
    const el = document.createElement("textarea");
    el.className = "loom-textarea";
    el.placeholder = placeholder;
    el.value = value;
    el.dataset.node = "";
    el.dataset.input = name;
    el.spellcheck = false;
    const layer = this;
    const widget = {
      type: "customtext",
      name,
      options: { multiline: true },
      y: 0,
      element: el,
      lastFrame: -1,
      get value() { return el.value; },
      set value(v) { el.value = v == null ? "" : String(v); },
      computeSize(width) { return [width ?? 200, AREA_HEIGHT]; },
      draw(ctx, drawnNode, width, y) {
        widget.lastFrame = layer.frame;
        layer.place(widget, drawnNode, width, y);
      },
    };
    el.addEventListener("input", () => { node.graph?.change?.(); });
    // Keep canvas shortcuts (delete, ctrl+c) away from the textarea.
    el.addEventListener("keydown", (e) => e.stopPropagation());
    this.attach(node, widget);
    return node.addCustomWidget(widget);
  }

  /** Lays `widget.element` over the canvas while `widget` is drawn (its draw() calls place()); removed with
   * its node. Call before node.addCustomWidget(widget). */
  attach(node, widget) {
    const layer = this;
    const entry = { widget, node };
    this.entries.add(entry);
    this.host.appendChild(widget.element);
    const onRemoved = node.onRemoved;
    node.onRemoved = function (...args) {
      widget.element.remove();
      layer.entries.delete(entry);
      return onRemoved?.apply(this, args);
    };
  }

  /** Takes `widget` (attached to `node`) off the node and the layer. */
  detach(node, widget) {
    widget.element.remove();
    for (const entry of this.entries) if (entry.widget.element === widget.element) this.entries.delete(entry);
    const i = node.widgets?.findIndex((w) => w.element === widget.element) ?? -1;
    if (i >= 0) node.widgets.splice(i, 1);
  }

  place(widget, node, width, y) {
    const canvas = this.getCanvas();
    const el = widget.element;
    el.dataset.node = String(node.id);
    const scale = canvas.ds.scale;
    const [ox, oy] = canvas.ds.offset;
    const margin = 10;
    const height = (widget.computedHeight ?? widget.computeSize?.(width)[1] ?? AREA_HEIGHT) - 6;
    const left = (node.pos[0] + margin + ox) * scale;
    const top = (node.pos[1] + y + oy) * scale;
    el.style.transform = `translate(${left}px, ${top}px) scale(${scale})`;
    el.style.width = `${width - 2 * margin}px`;
    el.style.height = `${Math.max(height, 24)}px`;
    if (el.tagName !== "TEXTAREA") return;
    const linked = node.getSlotFromWidget?.(widget)?.link != null;
    el.disabled = linked;
    el.style.opacity = linked ? "0.4" : "1";
  }

  /** Hides textareas whose node was not drawn this frame (off screen, collapsed, removed). */
  afterDraw() {
    for (const { widget, node } of this.entries) {
      const visible = widget.lastFrame === this.frame && node.graph && !node.flags?.collapsed;
      widget.element.style.display = visible ? "block" : "none";
    }
    this.frame += 1;
  }

  /** Removes every overlay (graph cleared). */
  clear() {
    for (const { widget } of this.entries) widget.element.remove();
    this.entries.clear();
  }
}
