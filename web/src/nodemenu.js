// Node context-menu entries: widget <-> input conversion and the mask editor.
import { openMaskEditor } from "./maskeditor.js";

/** The editor's entries, placed before the graph library's own `options`. */
export function nodeMenuOptions(app, node, options) {
  const extra = [];
  for (const w of node.widgets ?? []) {
    if (w.isControl || w.type === "button") continue;
    const slot = node.inputs?.find((s) => s.name === w.name);
    if (!slot) continue;
    if (!w.hidden) {
      extra.push({ content: `Convert ${w.name} to input`, callback: () => app.convertToInput(node, w, slot) });
    } else {
      extra.push({ content: `Convert ${w.name} to widget`, callback: () => app.convertToWidget(node, w, slot) });
    }
  }
  if (node.loomImageCombo) {
    extra.push({
      content: "Open in Mask Editor",
      callback: () => openMaskEditor(app, node).catch((e) => app.ui.toast(e.message, "error")),
    });
  }
  return [...extra, null, ...options];
}

/** Hides a widget and shows its input as a regular socket (ComfyUI's "convert to input"). */
export function convertToInput(node, widget, slot) {
  widget.hidden = true;
  slot.loomConvertedWidget = slot.widget;
  delete slot.widget;
  slot.pos = undefined;
  node.setSize(node.computeSize());
}

/** Shows the widget again; a link into the input is removed, as ComfyUI does. */
export function convertToWidget(node, widget, slot) {
  const index = node.inputs.indexOf(slot);
  if (slot.link != null) node.disconnectInput(index);
  widget.hidden = false;
  slot.widget = slot.loomConvertedWidget ?? { name: widget.name };
  delete slot.loomConvertedWidget;
  node.setSize([node.size[0], node.computeSize()[1]]);
}
