// ComfyUI's dynamic inputs in Loom's editor (the server side is executor/dynamic_inputs.py):
// - an Autogrow group ("COMFY_AUTOGROW_V3") shows its first `min` members plus one free socket, named
//   "<group>.<member>"; connecting the last one adds the next (up to the template's names / max);
// - a DynamicCombo ("COMFY_DYNAMICCOMBO_V3") is a combo of option keys; the chosen option's inputs follow it
//   as "<combo>.<input>" widgets or sockets, rebuilt when the choice changes.
import { isWidgetInput, parseInputSpec } from "./types.js";
import { addInputWidget } from "./widgets.js";

export const AUTOGROW = "COMFY_AUTOGROW_V3";
export const DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3";
const MATCHTYPE = "COMFY_MATCHTYPE_V3";

export function isDynamic(spec) {
  return spec.type === AUTOGROW || spec.type === DYNAMIC_COMBO;
}

function firstSpec(sections) {
  for (const group of ["required", "optional"]) {
    for (const spec of Object.values(sections?.[group] ?? {})) return parseInputSpec(spec);
  }
  return parseInputSpec(["*"]);
}

/** The socket type of a spec: a MatchType input accepts its template's allowed types. */
export function socketType(spec) {
  return spec.type === MATCHTYPE ? (spec.options.template?.allowed_types || "*") : spec.type;
}

function memberNames(spec) {
  const template = spec.options.template ?? {};
  if (Array.isArray(template.names)) return template.names.map(String);
  return Array.from({ length: template.max ?? 10 }, (_, i) => `${template.prefix ?? ""}${i}`);
}

function memberSlots(node, group) {
  return (node.inputs ?? []).filter((s) => s.name.startsWith(`${group}.`));
}

/** Adds an Autogrow group's first sockets: `min` members (at least one) and one free socket. */
export function addAutogrow(node, group, spec) {
  const names = memberNames(spec);
  const min = Math.max(1, spec.options.template?.min ?? 1);
  const type = socketType(firstSpec(spec.options.template?.input));
  for (const [i, member] of names.slice(0, Math.min(names.length, min + 1)).entries()) {
    node.addInput(`${group}.${member}`, type, { label: member, ...(i >= min ? { shape: 7 } : {}) });
  }
}

/** Keeps one free socket after the last connected member (and none beyond), within the template's names. */
export function growAutogrow(node, group, spec) {
  const names = memberNames(spec);
  const min = Math.max(1, spec.options.template?.min ?? 1);
  let slots = memberSlots(node, group);
  while (slots.length > min && slots.at(-1).link == null && slots.at(-2)?.link == null) {
    node.removeInput(node.inputs.indexOf(slots.at(-1)));
    slots = memberSlots(node, group);
  }
  if (slots.length < names.length && slots.every((s) => s.link != null)) {
    const used = new Set(slots.map((s) => s.name.slice(group.length + 1)));
    const next = names.find((n) => !used.has(n));
    const type = socketType(firstSpec(spec.options.template?.input));
    if (next !== undefined) node.addInput(`${group}.${next}`, type, { label: next, shape: 7 });
  }
}

function optionInputs(spec, key) {
  const option = (spec.options.options ?? []).find((o) => String(o.key) === String(key));
  const out = [];
  for (const group of ["required", "optional"]) {
    for (const [name, raw] of Object.entries(option?.inputs?.[group] ?? {})) {
      out.push({ name, spec: parseInputSpec(raw), optional: group === "optional" });
    }
  }
  return out;
}

/** Adds a DynamicCombo: its combo widget, then the chosen option's inputs. */
export function addDynamicCombo(node, name, spec, ctx) {
  const keys = (spec.options.options ?? []).map((o) => String(o.key));
  const parsed = { type: "COMBO", options: { default: spec.options.default, tooltip: spec.options.tooltip },
    isCombo: true, values: keys };
  const [combo] = addInputWidget(node, name, parsed, ctx.textAreas);
  combo.callback = (value) => setDynamicOption(node, name, spec, value, ctx, { slots: true });
  setDynamicOption(node, name, spec, combo.value, ctx, { slots: true });
}

/**
 * Shows the inputs of option `key` after the combo `name`: widgets "<name>.<input>" placed right after it
 * (the order ComfyUI saves widgets_values in) and sockets for non-widget inputs. With `slots: false`
 * (loading a saved node, whose sockets are authoritative) only the widgets are rebuilt.
 */
export function setDynamicOption(node, name, spec, key, ctx, { slots }) {
  const prefix = `${name}.`;
  node.widgets = (node.widgets ?? []).filter((w) => !w.name?.startsWith(prefix));
  const wanted = optionInputs(spec, key);
  if (slots) {
    for (let i = (node.inputs?.length ?? 0) - 1; i >= 0; i--) {
      if (node.inputs[i].name.startsWith(prefix) || node.inputs[i].widget?.name?.startsWith(prefix)) node.removeInput(i);
    }
  }
  let at = node.widgets.findIndex((w) => w.name === name) + 1;
  for (const { name: inner, spec: innerSpec, optional } of wanted) {
    const full = `${prefix}${inner}`;
    if (!isWidgetInput(innerSpec)) {
      if (slots) node.addInput(full, socketType(innerSpec), { label: inner, ...(optional ? { shape: 7 } : {}) });
      continue;
    }
    const added = addInputWidget(node, full, innerSpec, ctx.textAreas);
    for (const w of added) {
      node.widgets.splice(node.widgets.indexOf(w), 1);
      node.widgets.splice(at++, 0, w);
      if (w.name === full) w.label = inner;
    }
    if (slots && added.length) node.addInput(full, innerSpec.type, { label: inner, widget: { name: full } });
  }
  node.setSize?.(node.computeSize());
}

/** After loading a saved node: rebuild each DynamicCombo's widgets for its saved choice, then re-apply the values. */
export function configureDynamic(node, inputs, info, ctx) {
  const values = Array.isArray(info.widgets_values) ? info.widgets_values : null;
  let rebuilt = false;
  for (const { name, spec } of inputs) {
    if (spec.type !== DYNAMIC_COMBO) continue;
    const index = node.widgets?.findIndex((w) => w.name === name) ?? -1;
    if (index < 0) continue;
    const chosen = values ? values[node.widgets.filter((w) => w.serialize !== false).indexOf(node.widgets[index])]
      : node.widgets[index].value;
    node.widgets[index].value = chosen ?? node.widgets[index].value;
    setDynamicOption(node, name, spec, node.widgets[index].value, ctx, { slots: false });
    rebuilt = true;
  }
  if (rebuilt && values) {
    const serialized = node.widgets.filter((w) => w.serialize !== false);
    values.forEach((v, i) => { if (serialized[i] && v !== undefined) serialized[i].value = v; });
  }
}

/** The prompt input names of one node: static inputs as declared, dynamic ones as the node shows them. */
export function promptInputNames(node, inputs) {
  const names = [];
  for (const { name, spec } of inputs) {
    if (spec.type === AUTOGROW) {
      names.push(...memberSlots(node, name).map((s) => s.name));
    } else if (spec.type === DYNAMIC_COMBO) {
      names.push(name);
      const prefix = `${name}.`;
      for (const w of node.widgets ?? []) if (w.name?.startsWith(prefix) && !w.isControl) names.push(w.name);
      for (const s of node.inputs ?? []) {
        if (s.name.startsWith(prefix) && !names.includes(s.name)) names.push(s.name);
      }
    } else {
      names.push(name);
    }
  }
  return names;
}
