// Widgets for /object_info inputs: INT / FLOAT / STRING / BOOLEAN / COMBO, the seed's
// "control after generate" companion, and the image upload button.

export const CONTROL_VALUES = ["fixed", "increment", "decrement", "randomize"];
const MAX_SAFE_SEED = Number.MAX_SAFE_INTEGER;

function roundTo(value, step, min = 0) {
  if (!step) return value;
  return Math.round((value - min) / step) * step + min;
}

function numberPrecision(step) {
  const text = String(step);
  const dot = text.indexOf(".");
  return dot < 0 ? 0 : Math.min(text.length - dot - 1, 6);
}

/** Adds the widget for one input to `node` and returns it (plus the control widget for seeds). */
export function addInputWidget(node, name, parsed, textAreas) {
  const opts = parsed.options;
  const added = [];
  if (parsed.isCombo) {
    const values = parsed.values;
    const value = opts.default !== undefined && values.includes(opts.default) ? opts.default : values[0] ?? "";
    added.push(node.addWidget("combo", name, value, () => {}, { values }));
    if (opts.control_after_generate) added.push(addControlWidget(node, name, "fixed"));
  } else if (parsed.type === "INT") {
    const min = opts.min ?? 0;
    const max = Math.min(opts.max ?? MAX_SAFE_SEED, MAX_SAFE_SEED);
    const step = opts.step ?? 1;
    const w = node.addWidget("number", name, Math.min(opts.default ?? min, max), function (v) {
      this.value = Math.max(min, Math.min(max, roundTo(Math.round(v), step, min)));
    }, { min: Math.max(min, -MAX_SAFE_SEED), max, step2: step, step: step * 10, precision: 0, round: step });
    added.push(w);
    if (opts.control_after_generate) added.push(addControlWidget(node, name, "randomize"));
  } else if (parsed.type === "FLOAT") {
    const min = opts.min ?? 0;
    const max = opts.max ?? 2048;
    const step = opts.step ?? 0.1;
    const round = opts.round === false ? 0 : (opts.round ?? Math.min(step, 0.01));
    const precision = Math.max(numberPrecision(round || step), 1);
    node.addWidget("number", name, opts.default ?? min, function (v) {
      const r = round ? Math.round(v / round) * round : v;
      this.value = Number(Math.max(min, Math.min(max, r)).toFixed(precision));
    }, { min, max, step2: step, step: step * 10, precision, round });
    added.push(node.widgets.at(-1));
  } else if (parsed.type === "BOOLEAN") {
    added.push(node.addWidget("toggle", name, Boolean(opts.default ?? false), () => {},
      { on: opts.label_on ?? "true", off: opts.label_off ?? "false" }));
  } else if (parsed.type === "STRING") {
    if (opts.multiline) {
      added.push(textAreas.addTextArea(node, name, String(opts.default ?? ""), opts.placeholder ?? name));
    } else {
      added.push(node.addWidget("text", name, String(opts.default ?? ""), () => {}, {}));
    }
  }
  for (const w of added) {
    if (opts.tooltip && w.name === name) w.tooltip = opts.tooltip;
  }
  if (parsed.type === "STRING" && opts.dynamicPrompts && added[0]) added[0].dynamicPrompts = true;
  return added;
}

function addControlWidget(node, target, initial) {
  const w = node.addWidget("combo", "control_after_generate", initial, () => {}, {
    values: CONTROL_VALUES,
    socketless: true,
  });
  w.linkedTo = target;
  w.isControl = true;
  return w;
}

/** Applies "control after generate" to every seed-like widget of the graph (after queueing, as ComfyUI). */
export function applyControlAfterGenerate(graph) {
  for (const node of graph._nodes) {
    if (!node.widgets || node.mode === 2 || node.mode === 4) continue;
    for (const control of node.widgets) {
      if (!control.isControl) continue;
      const target = node.widgets.find((w) => w.name === control.linkedTo);
      if (!target || node.getSlotFromWidget?.(target)?.link != null) continue;
      applyControl(target, control.value);
    }
  }
}

/** Changes one widget's value by a control mode (fixed / increment / decrement / randomize). */
export function applyControl(widget, mode) {
  if (widget.type === "combo") {
    const values = widget.options.values;
    const i = values.indexOf(widget.value);
    if (mode === "increment") widget.value = values[Math.min(i + 1, values.length - 1)];
    else if (mode === "decrement") widget.value = values[Math.max(i - 1, 0)];
    else if (mode === "randomize") widget.value = values[Math.floor(Math.random() * values.length)];
    return;
  }
  const { min = 0, max = MAX_SAFE_SEED } = widget.options;
  const step = widget.options.round || 1;
  if (mode === "increment") widget.value = Math.min(max, widget.value + step);
  else if (mode === "decrement") widget.value = Math.max(min, widget.value - step);
  else if (mode === "randomize") {
    const span = Math.min(max, MAX_SAFE_SEED) - Math.max(min, 0);
    widget.value = Math.max(min, 0) + Math.floor(Math.random() * (span / step)) * step;
  }
}
