// Builds the API ("prompt") format from the graph, as ComfyUI's frontend does (spec 3.1).
import { promptInputNames } from "./dynamic.js";
import { orderedInputs } from "./nodedefs.js";

const MODE_NEVER = 2;
const MODE_BYPASS = 4;

/** Thrown when the graph cannot be turned into a prompt; `nodeId` names the culprit when known. */
export class GraphError extends Error {
  constructor(message, nodeId = null) {
    super(message);
    this.nodeId = nodeId;
  }
}

/** Returns {output: api prompt, workflow: ui json}. Virtual, muted and bypassed nodes are resolved away. */
export function graphToPrompt(graph) {
  const workflow = graph.serialize({ sortNodes: true });
  const output = {};
  for (const node of [...graph._nodes].sort((a, b) => a.id - b.id)) {
    if (node.isVirtualNode || node.mode === MODE_NEVER || node.mode === MODE_BYPASS) continue;
    const def = node.constructor?.nodeDef;
    if (!def && node.subgraph) {
      throw new GraphError(`Node #${node.id} "${node.title}" is a subgraph, which Loom's editor cannot run yet: open it in ComfyUI and use "Unpack subgraph", or rebuild it from plain nodes.`, node.id);
    }
    if (!def) {
      throw new GraphError(`Node #${node.id} "${node.title || node.type}" has type "${node.type}", which the server does not know: install its node pack or remove the node.`, node.id);
    }
    const inputs = {};
    for (const name of promptInputNames(node, orderedInputs(def))) {
      const slot = node.inputs?.find((s) => (s.widget?.name ?? s.name) === name);
      if (slot?.link != null) {
        const resolved = resolveLink(graph, slot.link);
        if (resolved === undefined) continue;
        inputs[name] = resolved;
        continue;
      }
      const widget = node.widgets?.find((w) => w.name === name && !w.isControl);
      if (widget) inputs[name] = wrapValue(widget.dynamicPrompts ? expandDynamicPrompt(widget.value) : widget.value);
    }
    output[String(node.id)] = { inputs, class_type: node.comfyClass ?? node.type, _meta: { title: node.title } };
  }
  // Drop links to nodes that were not emitted (muted targets, etc.).
  for (const entry of Object.values(output)) {
    for (const [name, value] of Object.entries(entry.inputs)) {
      if (Array.isArray(value) && !(value[0] in output)) delete entry.inputs[name];
    }
  }
  return { output, workflow };
}

function wrapValue(value) {
  return Array.isArray(value) ? { __value__: value } : value;
}

/**
 * Follows a link upstream through Reroutes and bypassed nodes. Returns `[id, slot]`, a literal value
 * (PrimitiveNode) or undefined when the source is muted / missing.
 */
export function resolveLink(graph, linkId) {
  const seen = new Set();
  let link = graph.getLink(linkId);
  while (link && !seen.has(link.id)) {
    seen.add(link.id);
    const origin = graph.getNodeById(link.origin_id);
    if (!origin) return undefined;
    if (origin.type === "Reroute") {
      link = graph.getLink(origin.inputs?.[0]?.link);
      continue;
    }
    if (origin.type === "PrimitiveNode") {
      const w = origin.widgets?.[0];
      return w ? wrapValue(w.value) : undefined;
    }
    if (origin.mode === MODE_NEVER) return undefined;
    if (origin.mode === MODE_BYPASS) {
      link = graph.getLink(bypassInput(origin, link)?.link);
      continue;
    }
    if (origin.isVirtualNode) return undefined;
    return [String(origin.id), link.origin_slot];
  }
  return undefined;
}

/** The input a bypassed node passes through for one of its outputs: same index first, then by type. */
function bypassInput(node, link) {
  const outType = node.outputs?.[link.origin_slot]?.type ?? link.type;
  const inputs = node.inputs ?? [];
  const same = inputs[link.origin_slot];
  if (same && same.link != null && same.type === outType) return same;
  return inputs.find((s) => s.link != null && s.type === outType);
}

/**
 * ComfyUI's dynamic prompts for STRING inputs marked `dynamicPrompts`: comments (`// ...` lines and
 * `/* ... *\/`) are removed and every `{a|b|c}` (nestable) is replaced by one random option.
 */
export function expandDynamicPrompt(text, random = Math.random) {
  if (typeof text !== "string") return text;
  let out = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  for (let guard = 0; guard < 1000; guard++) {
    const match = /\{([^{}]*)\}/.exec(out);
    if (!match) break;
    const options = match[1].split("|");
    const pick = options[Math.floor(random() * options.length)];
    out = out.slice(0, match.index) + pick + out.slice(match.index + match[0].length);
  }
  return out;
}
