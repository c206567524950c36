// Turns /object_info node definitions into litegraph node classes (slots, widgets, menus).
import { LGraphNode, LiteGraph } from "@comfyorg/litegraph";
import { isWidgetInput, parseInputSpec } from "./types.js";
import { addInputWidget } from "./widgets.js";
import { convertToInput } from "./nodemenu.js";
import { uploadKind } from "./upload.js";
import { decorateNodeClass } from "./nodeview.js";
import { AUTOGROW, DYNAMIC_COMBO, addAutogrow, addDynamicCombo, configureDynamic, growAutogrow,
  socketType } from "./dynamic.js";

/** Ordered input names of a definition: input_order when given, else the keys of `input`. */
export function orderedInputs(def) {
  const out = [];
  for (const group of ["required", "optional"]) {
    const specs = def.input?.[group] ?? {};
    const order = def.input_order?.[group] ?? Object.keys(specs);
    for (const name of order) {
      if (name in specs) out.push({ name, spec: parseInputSpec(specs[name]), optional: group === "optional" });
    }
  }
  return out;
}

/** Registers one litegraph node type per definition; returns the set of registered class names. */
export function registerNodeDefs(defs, ctx) {
  const names = new Set();
  for (const [name, def] of Object.entries(defs)) {
    if (!def || typeof def !== "object") continue;
    const cls = makeNodeClass(name, def, ctx);
    ctx.beforeRegisterNodeDef?.(cls, def);  // pack extensions patch the class before it is registered
    LiteGraph.registerNodeType(name, cls);
    LiteGraph.registered_node_types[name].category = def.category || "sd";
    names.add(name);
  }
  return names;
}

function makeNodeClass(name, def, ctx) {
  const inputs = orderedInputs(def);
  class LoomNode extends LGraphNode {
    static comfyClass = name;
    static nodeDef = def;
    static title = def.display_name || name;
    static description = def.description || "";

    constructor(title) {
      super(title);
      this.comfyClass = name;
      this.serialize_widgets = true;
      this.isVirtualNode = false;
      this.properties ??= {};
      this.properties["Node name for S&R"] = name;
      this.loom = { images: [], progress: null, running: false, errors: null };
      buildSlots(this, def, inputs, ctx);
      ctx.nodeCreated?.(this);
    }

    onConfigure(info) {
      configureDynamic(this, inputs, info, ctx);
      ensureWidgetSlots(this, inputs);
      for (const slot of this.inputs ?? []) {
        const widget = slot.loom_converted && this.widgets?.find((w) => w.name === slot.widget?.name);
        delete slot.loom_converted;
        if (widget) convertToInput(this, widget, slot);
      }
      // Newer frontends may save widget values as {name: value} instead of an array.
      const values = info.widgets_values;
      if (values && typeof values === "object" && !Array.isArray(values)) {
        for (const w of this.widgets ?? []) if (w.name in values) w.value = values[w.name];
      }
      ctx.onNodeConfigured?.(this, info);
    }

    onSerialize(o) {
      o.widgets_values ??= [];
      // Inputs converted from widgets are plain sockets while editing; saved files keep the locator.
      // `loom_converted` (ignored by ComfyUI) brings the socket back as a socket on the next load.
      this.inputs?.forEach((slot, i) => {
        if (!slot.loomConvertedWidget || !o.inputs?.[i]) return;
        o.inputs[i].widget = { ...slot.loomConvertedWidget };
        o.inputs[i].loom_converted = true;
      });
    }

    onConnectionsChange(type) {
      if (type !== LiteGraph.INPUT || this.graph?._configuring) return;
      for (const { name, spec } of inputs) if (spec.type === AUTOGROW) growAutogrow(this, name, spec);
    }

    getExtraMenuOptions(canvas, options) {
      return ctx.nodeMenu?.(this, options) ?? options;
    }
  }
  decorateNodeClass(LoomNode, ctx);
  return LoomNode;
}

function buildSlots(node, def, inputs, ctx) {
  for (const { name, spec, optional } of inputs) {
    if (isWidgetInput(spec) || spec.type === DYNAMIC_COMBO) continue;
    if (spec.type === AUTOGROW) addAutogrow(node, name, spec);
    else node.addInput(name, socketType(spec), optional ? { shape: 7 } : undefined);
  }
  for (const { name, spec } of inputs) {
    if (spec.type === DYNAMIC_COMBO) addDynamicCombo(node, name, spec, ctx);
    if (!isWidgetInput(spec)) continue;
    const widgets = addInputWidget(node, name, spec, ctx.textAreas);
    if (!widgets.length) continue;
    node.addInput(name, spec.type, { widget: { name } });
    const upload = uploadKind(spec.options);
    if (upload) ctx.addUploadWidget?.(node, widgets[0], upload);
  }
  const outputs = def.output ?? [];
  outputs.forEach((type, i) => {
    // a MatchType output takes its type from what is connected: "*" links anywhere
    const outType = Array.isArray(type) ? "COMBO" : type === "COMFY_MATCHTYPE_V3" ? "*" : String(type);
    const label = def.output_name?.[i] ?? outType;
    node.addOutput(label, outType, def.output_is_list?.[i] ? { shape: 6 } : undefined);
  });
  const size = node.computeSize();
  size[0] = Math.max(size[0], 240);
  node.size = size;
}

/** After loading a saved node, adds the widget input slots it lacks (older saves list only linked ones). */
function ensureWidgetSlots(node, inputs) {
  node.inputs ??= [];
  for (const { name, spec } of inputs) {
    if (!isWidgetInput(spec)) continue;
    if (!node.widgets?.some((w) => w.name === name)) continue;
    const slot = node.inputs.find((s) => s.name === name);
    if (slot) {
      slot.widget ??= { name };
      continue;
    }
    node.addInput(name, spec.type, { widget: { name } });
  }
}
