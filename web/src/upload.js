// LoadImage: upload button, drag-and-drop of an image onto the node, preview of the chosen image.
import { setNodeImages } from "./nodeview.js";

/** Uploads `file` to /upload/image and selects it in the node's image combo. */
export async function uploadToCombo(app, node, comboWidget, file) {
  const res = await app.api.upload("upload/image", file, { type: "input", subfolder: "", overwrite: "false" });
  const name = res.subfolder ? `${res.subfolder}/${res.name}` : res.name;
  if (!comboWidget.options.values.includes(name)) comboWidget.options.values = [...comboWidget.options.values, name];
  comboWidget.value = name;
  showComboImage(app, node, comboWidget);
  return name;
}

/** Shows the image a LoadImage-like combo points at. */
export function showComboImage(app, node, comboWidget) {
  const value = String(comboWidget.value ?? "");
  if (!value) return;
  const annotated = /\s\[(input|output|temp)\]$/.exec(value);
  const type = annotated ? annotated[1] : "input";
  const clean = annotated ? value.slice(0, annotated.index) : value;
  const slash = clean.lastIndexOf("/");
  const ref = { filename: clean.slice(slash + 1), subfolder: slash >= 0 ? clean.slice(0, slash) : "", type };
  setNodeImages(node, [app.api.viewUrl(ref, `&rand=${Date.now()}`)]);
}

function pickFile() {
  return new Promise((resolve) => {
    const input = document.createElement("input");
    input.type = "file";
    input.accept = "image/png,image/jpeg,image/webp";
    input.addEventListener("change", () => resolve(input.files?.[0] ?? null));
    input.click();
  });
}

/** Adds the "choose file to upload" button (value "image", as ComfyUI saves it) and drop support. */
export function addUploadWidget(app, node, comboWidget) {
  const button = node.addWidget("button", "upload", "image", async () => {
    const file = await pickFile();
    if (file) await uploadToCombo(app, node, comboWidget, file).catch((e) => app.ui.toast(`Upload failed: ${e.message}`, "error"));
  }, { socketless: true });
  button.label = "choose file to upload";
  button.serialize = true;
  const original = comboWidget.callback;
  comboWidget.callback = function (...args) {
    original?.apply(this, args);
    showComboImage(app, node, comboWidget);
  };
  node.onDragOver = (e) => Boolean(e.dataTransfer?.types?.includes("Files"));
  node.onDragDrop = async (e) => {
    const file = [...(e.dataTransfer?.files ?? [])].find((f) => f.type.startsWith("image/"));
    if (!file) return false;
    await uploadToCombo(app, node, comboWidget, file).catch((err) => app.ui.toast(`Upload failed: ${err.message}`, "error"));
    return true;
  };
  node.loomImageCombo = comboWidget;
  setTimeout(() => showComboImage(app, node, comboWidget), 0);
}
