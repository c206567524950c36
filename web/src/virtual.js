// Frontend-only node types (never sent to the server): Reroute, PrimitiveNode, Note, MarkdownNote.
import { LGraphNode, LiteGraph } from "@comfyorg/litegraph";
import { orderedInputs } from "./nodedefs.js";
import { addInputWidget } from "./widgets.js";

/** Registers the virtual node types; `ctx.textAreas` backs the multiline widgets. */
export function registerVirtualNodes(ctx) {
  class Reroute extends LGraphNode {
    static title = "Reroute";
    constructor(title) {
      super(title);
      this.isVirtualNode = true;
      this.addInput("", "*");
      this.addOutput("", "*");
      this.size = [75, 26];
      this.properties = { showOutputText: false, horizontal: false };
    }
    onConnectionsChange() {
      // Adopt the upstream type so downstream checks stay typed.
      const link = this.graph?.getLink(this.inputs[0]?.link);
      const type = link?.type && link.type !== "*" ? link.type : "*";
      this.outputs[0].type = type;
      this.outputs[0].name = type === "*" ? "" : type;
    }
  }

  class PrimitiveNode extends LGraphNode {
    static title = "Primitive";
    constructor(title) {
      super(title);
      this.isVirtualNode = true;
      this.serialize_widgets = true;
      this.addOutput("connect to widget input", "*");
      this.properties = { "Run widget replace on values": false };
      this.size = [240, 60];
    }
    onConfigure(info) {
      this.pendingValues = info.widgets_values;
    }
    onAfterGraphConfigured() {
      this.adoptTarget(this.pendingValues);
      this.pendingValues = null;
    }
    onConnectOutput(slot, type, input) {
      // As ComfyUI: a Primitive only feeds widget inputs, and all its targets share one type.
      if (!input?.widget && !input?.loomConvertedWidget) return false;
      const current = this.outputs[0].type;
      return current === "*" || current === input.type;
    }
    onConnectionsChange() {
      if (!this.graph || this.graph._configuring) return;
      if (!this.widgets?.length) this.adoptTarget(null);
    }
    /** Copies the widget of the first connected widget input (type, options, value). */
    adoptTarget(values) {
      const linkId = this.outputs[0]?.links?.[0];
      const link = this.graph?.getLink(linkId);
      const target = link && this.graph.getNodeById(link.target_id);
      const slot = target?.inputs?.[link.target_slot];
      const def = target?.constructor?.nodeDef;
      if (!slot || !def) return;
      const entry = orderedInputs(def).find((e) => e.name === (slot.widget?.name ?? slot.name));
      if (!entry) return;
      this.widgets = [];
      const created = addInputWidget(this, "value", entry.spec, ctx.textAreas);
      const source = target.widgets?.find((w) => w.name === entry.name);
      if (values) created.forEach((w, i) => { if (values[i] !== undefined) w.value = values[i]; });
      else if (source && created[0]) created[0].value = source.value;
      this.outputs[0].type = entry.spec.type;
      this.outputs[0].name = entry.spec.type;
      this.outputs[0].widget = { name: entry.name };
      this.title = entry.name;
      this.setSize([Math.max(this.size[0], 240), this.computeSize()[1]]);
    }
  }

  class Note extends LGraphNode {
    static title = "Note";
    constructor(title) {
      super(title);
      this.isVirtualNode = true;
      this.serialize_widgets = true;
      this.color = "#432";
      this.bgcolor = "#653";
      ctx.textAreas.addTextArea(this, "text", "", "Note");
      this.size = [400, 120];
    }
  }
  class MarkdownNote extends Note {
    static title = "Markdown Note";
  }

  for (const [name, cls, category] of [
    ["Reroute", Reroute, "utils"],
    ["PrimitiveNode", PrimitiveNode, "utils"],
    ["Note", Note, "utils"],
    ["MarkdownNote", MarkdownNote, "utils"],
  ]) {
    LiteGraph.registerNodeType(name, cls);
    cls.category = category;
  }
}

/** Calls onAfterGraphConfigured on every node once a workflow is fully loaded (primitives need links). */
export function afterGraphConfigured(graph) {
  for (const node of graph._nodes) node.onAfterGraphConfigured?.();
}
