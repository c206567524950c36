// Mask editor: paint the inpaint mask over a LoadImage picture; saved through /upload/mask as the
// image's alpha channel (painted = transparent = MASK 1.0, as ComfyUI).
import { showComboImage } from "./upload.js";

function refFromValue(value) {
  const annotated = /\s\[(input|output|temp)\]$/.exec(value);
  const type = annotated ? annotated[1] : "input";
  const clean = annotated ? value.slice(0, annotated.index) : value;
  const slash = clean.lastIndexOf("/");
  return { filename: clean.slice(slash + 1), subfolder: slash >= 0 ? clean.slice(0, slash) : "", type };
}

/** Opens the mask editor for a LoadImage node's current image. */
export async function openMaskEditor(app, node) {
  const combo = node.loomImageCombo;
  if (!combo?.value) {
    app.ui.toast("Choose or upload an image on this node first.", "error");
    return;
  }
  const ref = refFromValue(String(combo.value));
  const img = new Image();
  img.src = app.api.viewUrl(ref, `&rand=${Date.now()}`);
  await img.decode().catch(() => { throw new Error(`cannot load ${combo.value} for masking`); });

  const overlay = document.createElement("div");
  overlay.id = "loom-mask-editor";
  const base = document.createElement("canvas");
  const paint = document.createElement("canvas");
  for (const c of [base, paint]) { c.width = img.naturalWidth; c.height = img.naturalHeight; }
  base.getContext("2d").drawImage(img, 0, 0);
  // Start from the image's existing mask (transparent pixels).
  const pctx = paint.getContext("2d");
  const src = base.getContext("2d").getImageData(0, 0, base.width, base.height);
  const existing = pctx.createImageData(base.width, base.height);
  for (let i = 0; i < src.data.length; i += 4) {
    if (src.data[i + 3] < 255) { existing.data[i + 3] = 255 - src.data[i + 3]; existing.data[i] = 255; existing.data[i + 1] = 255; existing.data[i + 2] = 255; }
  }
  pctx.putImageData(existing, 0, 0);
  const stage = document.createElement("div");
  stage.className = "loom-mask-stage";
  stage.append(base, paint);
  const brush = Object.assign(document.createElement("input"), { type: "range", min: 1, max: 200, value: 24, id: "loom-mask-brush" });
  const erase = Object.assign(document.createElement("input"), { type: "checkbox", id: "loom-mask-erase" });
  const bar = document.createElement("div");
  bar.className = "loom-mask-bar";
  const mk = (label, fn, id) => Object.assign(document.createElement("button"), { textContent: label, onclick: fn, id });
  const eraseLabel = document.createElement("label");
  eraseLabel.append(erase, " erase");
  bar.append("Brush ", brush, eraseLabel,
    mk("Clear", () => pctx.clearRect(0, 0, paint.width, paint.height), "loom-mask-clear"),
    mk("Cancel", () => overlay.remove(), "loom-mask-cancel"),
    mk("Save", () => save().catch((e) => app.ui.toast(`Mask upload failed: ${e.message}`, "error")), "loom-mask-save"));
  overlay.append(bar, stage);
  document.body.append(overlay);

  let drawing = false;
  const strokeAt = (e) => {
    const rect = paint.getBoundingClientRect();
    const x = (e.clientX - rect.left) * (paint.width / rect.width);
    const y = (e.clientY - rect.top) * (paint.height / rect.height);
    const r = Number(brush.value) * (paint.width / rect.width) / 2;
    pctx.globalCompositeOperation = erase.checked ? "destination-out" : "source-over";
    pctx.fillStyle = "#fff";
    pctx.beginPath();
    pctx.arc(x, y, r, 0, Math.PI * 2);
    pctx.fill();
  };
  paint.addEventListener("pointerdown", (e) => { drawing = true; paint.setPointerCapture(e.pointerId); strokeAt(e); });
  paint.addEventListener("pointermove", (e) => { if (drawing) strokeAt(e); });
  paint.addEventListener("pointerup", () => { drawing = false; });

  async function save() {
    // The uploaded mask's alpha replaces the image's alpha: painted pixels get alpha 0.
    const out = document.createElement("canvas");
    out.width = paint.width; out.height = paint.height;
    const octx = out.getContext("2d");
    const painted = pctx.getImageData(0, 0, paint.width, paint.height);
    const result = octx.createImageData(paint.width, paint.height);
    for (let i = 0; i < painted.data.length; i += 4) result.data[i + 3] = 255 - painted.data[i + 3];
    octx.putImageData(result, 0, 0);
    const blob = await new Promise((resolve) => out.toBlob(resolve, "image/png"));
    const file = new File([blob], `clipspace-mask-${Date.now()}.png`, { type: "image/png" });
    const res = await app.api.upload("upload/mask", file, {
      type: "input", subfolder: "clipspace", original_ref: JSON.stringify(ref),
    });
    const name = `${res.subfolder ? `${res.subfolder}/` : ""}${res.name} [${res.type ?? "input"}]`;
    if (!combo.options.values.includes(name)) combo.options.values = [...combo.options.values, name];
    combo.value = name;
    showComboImage(app, node, combo);
    overlay.remove();
    app.ui.toast("Mask saved");
  }
}
