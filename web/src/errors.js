// Shows POST /prompt validation errors (400 with node_errors) on the offending nodes and inputs.

/** Clears every node's error marks. */
export function clearNodeErrors(graph) {
  for (const node of graph._nodes) {
    if (!node.loom) continue;
    node.loom.errors = null;
    node.loom.inputErrors = null;
  }
}

/** Marks nodes from a /prompt error body; returns text lines for a summary dialog. */
export function applyNodeErrors(graph, body) {
  clearNodeErrors(graph);
  const lines = [];
  const top = body?.error;
  if (typeof top === "string") lines.push(top);
  else if (top) lines.push(`${top.message ?? top.type}${top.details ? `: ${top.details}` : ""}`);
  for (const [id, info] of Object.entries(body?.node_errors ?? {})) {
    const node = graph.getNodeById(Number(id)) ?? graph.getNodeById(id);
    const messages = (info.errors ?? []).map((e) => `${e.message}${e.details ? `: ${e.details}` : ""}`);
    lines.push(`#${id} ${info.class_type ?? node?.type ?? ""}`);
    for (const m of messages) lines.push(`  - ${m}`);
    if (!node) continue;
    node.loom ??= {};
    node.loom.errors = messages;
    node.loom.inputErrors = new Set((info.errors ?? []).map((e) => e.extra_info?.input_name).filter(Boolean));
  }
  return lines;
}
