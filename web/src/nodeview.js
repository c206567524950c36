// Per-node drawing: running highlight, progress bar, validation error outline, output/preview images.
import { LiteGraph } from "@comfyorg/litegraph";

const RUNNING_COLOR = "#0f0";
const ERROR_COLOR = "#f33";

/** Adds the drawing hooks to a node class. */
export function decorateNodeClass(cls, ctx) {
  const proto = cls.prototype;

  proto.onDrawForeground = function (g) {
    const state = this.loom;
    if (!state) return;
    const titleH = LiteGraph.NODE_TITLE_HEIGHT;
    if (this.mode === 2 || this.mode === 4) {
      // Muted nodes are greyed out, bypassed ones tinted purple (ComfyUI's cues).
      g.save();
      g.fillStyle = this.mode === 4 ? "rgba(160, 60, 200, 0.35)" : "rgba(20, 20, 20, 0.55)";
      g.fillRect(0, -titleH, this.size[0], this.size[1] + titleH);
      g.restore();
    }
    if (state.running || state.errors) {
      g.save();
      g.lineWidth = state.running ? 3 : 2;
      g.strokeStyle = state.running ? RUNNING_COLOR : ERROR_COLOR;
      g.beginPath();
      g.roundRect(-4, -titleH - 4, this.size[0] + 8, this.size[1] + titleH + 8, 10);
      g.stroke();
      g.restore();
    }
    if (state.progress && state.progress.max > 0) {
      const frac = Math.max(0, Math.min(1, state.progress.value / state.progress.max));
      g.save();
      g.fillStyle = "rgba(40,220,40,0.85)";
      g.fillRect(0, -6, this.size[0] * frac, 6);
      g.restore();
    }
    if (state.text && !state.errors) {
      g.save();
      g.font = "12px sans-serif";
      g.fillStyle = "#9cf";
      state.text.split("\n").slice(0, 6).forEach((line, i) => g.fillText(line.slice(0, 80), 0, this.size[1] + 16 + i * 15));
      g.restore();
    }
    if (state.errors) {
      g.save();
      g.font = "12px sans-serif";
      g.fillStyle = ERROR_COLOR;
      const lines = state.errors.slice(0, 3);
      lines.forEach((line, i) => g.fillText(line, 0, this.size[1] + 16 + i * 15));
      g.restore();
    }
    if (this.inputs && state.inputErrors) {
      g.save();
      g.fillStyle = ERROR_COLOR;
      for (const [i, slot] of this.inputs.entries()) {
        if (!state.inputErrors.has(slot.name)) continue;
        const widget = this.widgets?.find((w) => w.name === slot.name);
        const y = widget && !widget.hidden ? widget.y + 10 : slot.pos?.[1] ?? (i + 0.7) * LiteGraph.NODE_SLOT_HEIGHT;
        g.beginPath();
        g.arc(4, y, 5, 0, Math.PI * 2);
        g.fill();
      }
      g.restore();
    }
  };

  proto.onDrawBackground = function (g) {
    const imgs = this.loom?.preview ? [this.loom.preview] : this.loom?.imageElements;
    if (!imgs?.length || this.flags?.collapsed) return;
    const top = imagesTop(this);
    const h = this.size[1] - top - 4;
    const w = this.size[0] - 8;
    if (h < 20) return;
    const img = imgs[Math.min(this.loom.imageIndex ?? 0, imgs.length - 1)];
    if (!img.complete || !img.naturalWidth) return;
    const scale = Math.min(w / img.naturalWidth, h / img.naturalHeight);
    const dw = img.naturalWidth * scale;
    const dh = img.naturalHeight * scale;
    g.drawImage(img, 4 + (w - dw) / 2, top + (h - dh) / 2, dw, dh);
    if (imgs.length > 1) {
      g.fillStyle = "#ddd";
      g.font = "12px sans-serif";
      g.fillText(`${(this.loom.imageIndex ?? 0) + 1} / ${imgs.length}`, 8, this.size[1] - 8);
    }
  };

  const onMouseDown = proto.onMouseDown;
  proto.onMouseDown = function (e, pos, canvas) {
    const imgs = this.loom?.imageElements;
    if (imgs?.length > 1 && pos[1] > imagesTop(this)) {
      this.loom.imageIndex = ((this.loom.imageIndex ?? 0) + 1) % imgs.length;
      this.setDirtyCanvas(true, false);
      return true;
    }
    return onMouseDown?.call(this, e, pos, canvas);
  };

  const onDblClick = proto.onDblClick;
  proto.onDblClick = function (e, pos, canvas) {
    const imgs = this.loom?.imageElements;
    if (imgs?.length && pos[1] > imagesTop(this)) {
      ctx.openImage?.(imgs[this.loom.imageIndex ?? 0].src);
      return true;
    }
    return onDblClick?.call(this, e, pos, canvas);
  };
}

function imagesTop(node) {
  let y = Math.max(node.inputs?.filter((s) => !s.widget).length ?? 0, node.outputs?.length ?? 0) * LiteGraph.NODE_SLOT_HEIGHT + 6;
  for (const w of node.widgets ?? []) {
    if (w.hidden) continue;
    y = Math.max(y, (w.y ?? 0) + (w.computedHeight ?? LiteGraph.NODE_WIDGET_HEIGHT + 4));
  }
  return y + 4;
}

/** Sets the images shown on a node (list of URLs) and grows the node so they fit. */
export function setNodeImages(node, urls) {
  node.loom ??= {};
  node.loom.imageElements = urls.map((src) => {
    const img = new Image();
    img.onload = () => node.setDirtyCanvas(true, true);
    img.src = src;
    img.dataset.src = src;
    return img;
  });
  node.loom.imageIndex = 0;
  node.loom.preview = null;
  const minH = imagesTop(node) + 200;
  if (node.size[1] < minH) node.setSize([Math.max(node.size[0], 240), minH]);
  node.setDirtyCanvas(true, true);
}
