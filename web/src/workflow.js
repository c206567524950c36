// Workflow documents: the default txt2img graph, loading UI-format (0.4 / 1) and API-format JSON,
// opening dropped .json / .png files.
import { LiteGraph } from "@comfyorg/litegraph";
import { readPngText } from "./png.js";
import { afterGraphConfigured } from "./virtual.js";

/** Thrown for a file or document that cannot be opened; the message says why and what to do. */
export class WorkflowError extends Error {}

function setWidget(node, name, value) {
  const w = node.widgets?.find((x) => x.name === name);
  if (!w) return;
  if (w.type === "combo" && !w.options.values.includes(value)) w.options.values = [...w.options.values, value];
  w.value = value;
}

/** Builds the default txt2img graph (ids 3-9 as ComfyUI's default, sized and worded for the demo model). */
export function buildDefaultGraph(graph) {
  graph.clear();
  const specs = [
    [4, "CheckpointLoaderSimple", [26, 474]],
    [6, "CLIPTextEncode", [415, 186], { text: "a red circle on a blue background" }],
    [7, "CLIPTextEncode", [413, 389], { text: "blurry" }],
    [5, "EmptyLatentImage", [473, 609], { width: 128, height: 128, batch_size: 1 }],
    [3, "KSampler", [863, 186], { seed: 156680208700286, steps: 20, cfg: 7.5, sampler_name: "euler", scheduler: "normal", denoise: 1 }],
    [8, "VAEDecode", [1209, 188]],
    [9, "SaveImage", [1451, 189], { filename_prefix: "loom" }],
  ];
  const nodes = {};
  for (const [id, type, pos, values] of specs) {
    const node = LiteGraph.createNode(type);
    if (!node) throw new WorkflowError(`The server does not offer node "${type}", needed by the default graph.`);
    node.id = id;
    node.pos = pos;
    graph.add(node);
    for (const [k, v] of Object.entries(values ?? {})) {
      const w = node.widgets?.find((x) => x.name === k);
      if (w && (w.type !== "combo" || w.options.values.includes(v))) w.value = v;
    }
    nodes[id] = node;
  }
  const inputIndex = (node, name) => node.inputs.findIndex((s) => s.name === name);
  const wire = (from, slot, to, name) => nodes[from].connect(slot, nodes[to], inputIndex(nodes[to], name));
  wire(4, 0, 3, "model");
  wire(4, 1, 6, "clip");
  wire(4, 1, 7, "clip");
  wire(6, 0, 3, "positive");
  wire(7, 0, 3, "negative");
  wire(5, 0, 3, "latent_image");
  wire(3, 0, 8, "samples");
  wire(4, 2, 8, "vae");
  wire(8, 0, 9, "images");
  nodes[6].title = "CLIP Text Encode (Prompt)";
  nodes[7].title = "CLIP Text Encode (Prompt)";
  graph.state.lastNodeId = Math.max(graph.state.lastNodeId ?? 0, 9);
}

/** Loads a UI-format workflow; returns the list of node types the server does not know. */
export function loadUiWorkflow(graph, data) {
  if (!data || !Array.isArray(data.nodes)) {
    throw new WorkflowError("This JSON is not a workflow: it has no `nodes` array (UI format) nor API-format nodes.");
  }
  const missing = [...new Set(data.nodes.map((n) => String(n.type)).filter((t) => !LiteGraph.registered_node_types[t]))];
  graph.configure(structuredClone(data));
  afterGraphConfigured(graph);
  return missing;
}

/** True for an API-format prompt: an object of {class_type, inputs} entries. */
export function isApiPrompt(data) {
  if (!data || typeof data !== "object" || Array.isArray(data) || "nodes" in data) return false;
  const values = Object.values(data);
  return values.length > 0 && values.every((v) => v && typeof v === "object" && typeof v.class_type === "string");
}

/** Builds a graph from an API-format prompt, laying nodes out by depth. Returns missing node types. */
export function loadApiPrompt(graph, prompt) {
  graph.clear();
  const missing = [];
  const nodes = new Map();
  for (const [id, entry] of Object.entries(prompt)) {
    const node = LiteGraph.createNode(entry.class_type);
    if (!node) { missing.push(entry.class_type); continue; }
    node.id = Number(id);
    if (entry._meta?.title) node.title = entry._meta.title;
    graph.add(node);
    nodes.set(id, node);
    for (const [name, value] of Object.entries(entry.inputs ?? {})) {
      if (!Array.isArray(value)) setWidget(node, name, value?.__value__ ?? value);
    }
  }
  const depth = new Map();
  const depthOf = (id, guard = 0) => {
    if (depth.has(id)) return depth.get(id);
    let d = 0;
    for (const value of Object.values(prompt[id]?.inputs ?? {})) {
      if (Array.isArray(value) && prompt[value[0]] && guard < 200) d = Math.max(d, depthOf(String(value[0]), guard + 1) + 1);
    }
    depth.set(id, d);
    return d;
  };
  const rows = new Map();
  for (const [id, node] of nodes) {
    const d = depthOf(id);
    const row = rows.get(d) ?? 0;
    rows.set(d, row + 1);
    node.pos = [40 + d * 340, 60 + row * 300];
    for (const [name, value] of Object.entries(prompt[id].inputs ?? {})) {
      if (!Array.isArray(value)) continue;
      const source = nodes.get(String(value[0]));
      const slot = node.inputs?.findIndex((s) => s.name === name);
      if (source && slot >= 0) source.connect(Number(value[1]), node, slot);
    }
  }
  return missing;
}

/** Reads a dropped/opened file: .json (UI or API format) or .png with `workflow` / `prompt` chunks. */
export async function readWorkflowFile(file) {
  const name = file.name ?? "file";
  if (file.type === "image/png" || name.toLowerCase().endsWith(".png")) {
    const chunks = await readPngText(await file.arrayBuffer());
    if (chunks.workflow) return { kind: "ui", data: parseJson(chunks.workflow, `${name} (workflow chunk)`) };
    if (chunks.prompt) return { kind: "api", data: parseJson(chunks.prompt, `${name} (prompt chunk)`) };
    throw new WorkflowError(`${name} holds no "workflow" or "prompt" text chunk: only PNGs saved by SaveImage carry a graph.`);
  }
  if (file.type === "application/json" || name.toLowerCase().endsWith(".json")) {
    const data = parseJson(await file.text(), name);
    return { kind: isApiPrompt(data) ? "api" : "ui", data };
  }
  throw new WorkflowError(`Cannot open ${name}: drop a workflow .json or a PNG saved by Loom / ComfyUI.`);
}

function parseJson(text, where) {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new WorkflowError(`${where} is not valid JSON: ${err.message}`);
  }
}
