// Slot type helpers: widget-capable input specs, type colours and link compatibility (ComfyUI rules).

export const WIDGET_TYPES = new Set(["INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"]);

/** Colour per IO type (ComfyUI's dark palette), used for slots and links. */
export const TYPE_COLORS = {
  CLIP: "#FFD500",
  CLIP_VISION: "#A8DADC",
  CLIP_VISION_OUTPUT: "#ad7452",
  CONDITIONING: "#FFA931",
  CONTROL_NET: "#6EE7B7",
  IMAGE: "#64B5F6",
  LATENT: "#FF9CF9",
  MASK: "#81C784",
  MODEL: "#B39DDB",
  STYLE_MODEL: "#C2FFAE",
  VAE: "#FF6E6E",
  NOISE: "#B0B0B0",
  GUIDER: "#66FFFF",
  SAMPLER: "#ECB4B4",
  SIGMAS: "#CDFFCD",
  UPSCALE_MODEL: "#9ACD32",
  INT: "#7FB8D4",
  FLOAT: "#A3D37F",
  STRING: "#D4A37F",
  BOOLEAN: "#C89CD4",
  COMBO: "#9CA3D4",
};

/** Returns {type, options, isCombo, values} for an /object_info input spec `[type, options?]`. */
export function parseInputSpec(spec) {
  const raw = Array.isArray(spec) ? spec : [spec];
  const first = raw[0];
  const options = (raw[1] && typeof raw[1] === "object" && !Array.isArray(raw[1])) ? raw[1] : {};
  if (Array.isArray(first)) {
    return { type: "COMBO", options, isCombo: true, values: [...first] };
  }
  if (first === "COMBO") {
    return { type: "COMBO", options, isCombo: true, values: [...(options.options ?? [])] };
  }
  return { type: String(first ?? "*"), options, isCombo: false, values: null };
}

/** True when the input is shown as a widget (INT/FLOAT/STRING/BOOLEAN/COMBO without forceInput). */
export function isWidgetInput(parsed) {
  return WIDGET_TYPES.has(parsed.type) && !parsed.options.forceInput;
}

/** Link type check as ComfyUI: "*" matches anything, comma lists match when any member matches. */
export function typesCompatible(outputType, inputType) {
  const norm = (t) => (t === "" || t === "*" || t == null ? "*" : String(t).toUpperCase());
  const a = norm(outputType);
  const b = norm(inputType);
  if (a === "*" || b === "*" || a === b) return true;
  const as = a.split(",").map((s) => s.trim());
  const bs = b.split(",").map((s) => s.trim());
  return as.some((x) => bs.includes(x) || x === "*") || bs.includes("*");
}
