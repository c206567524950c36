// Upload widgets of the `image_upload` (LoadImage), `video_upload` (LoadVideo) and `audio_upload` (LoadAudio)
// inputs: a "choose file to upload" button, drag-and-drop of a file onto the node, a preview of the chosen file.
// Every kind uploads through /upload/image (the server takes audio and video files by extension), as ComfyUI.
import { setNodeImages } from "./nodeview.js";
import { addAudioWidget, clearNodeVideo, setNodeAudio, setNodeVideo } from "./media.js";

/** Per kind: the file chooser's filter, the upload button's saved value (ComfyUI's files: "image" for images and
 * videos, null for audio) and the file extensions a drop is recognised by when the browser gives no type. */
const KINDS = {
  image: { accept: "image/png,image/jpeg,image/webp", buttonValue: "image", ext: /\.(png|jpe?g|webp|gif|bmp)$/i },
  video: { accept: "video/webm,video/mp4,video/x-matroska,video/quicktime,video/*", buttonValue: "image",
    ext: /\.(mp4|webm|mkv|mov|m4v|avi)$/i },
  audio: { accept: "audio/*", buttonValue: null, ext: /\.(wav|flac|mp3|ogg|opus|m4a|aac|weba)$/i },
};

/** The upload kind of an input's options (`image_upload` / `video_upload` / `audio_upload`), or null. */
export function uploadKind(options) {
  if (options?.image_upload) return "image";
  if (options?.video_upload) return "video";
  if (options?.audio_upload) return "audio";
  return null;
}

/** True when `file` is of the `kind` a node uploads (by MIME type, else by extension). */
export function fileFits(kind, file) {
  if (!file || !KINDS[kind]) return false;
  return file.type ? file.type.startsWith(`${kind}/`) : KINDS[kind].ext.test(file.name ?? "");
}

/** Uploads `file` to /upload/image and selects it in the node's file combo. */
export async function uploadToCombo(app, node, comboWidget, file) {
  const res = await app.api.upload("upload/image", file, { type: "input", subfolder: "", overwrite: "false" });
  const name = res.subfolder ? `${res.subfolder}/${res.name}` : res.name;
  if (!comboWidget.options.values.includes(name)) comboWidget.options.values = [...comboWidget.options.values, name];
  comboWidget.value = name;
  showComboFile(app, node, comboWidget);
  return name;
}

/** `{filename, subfolder, type}` of a combo value such as `sub/a.png` or `clipspace/m.png [input]`. */
function comboRef(value) {
  const annotated = /\s\[(input|output|temp)\]$/.exec(value);
  const type = annotated ? annotated[1] : "input";
  const clean = annotated ? value.slice(0, annotated.index) : value;
  const slash = clean.lastIndexOf("/");
  return { filename: clean.slice(slash + 1), subfolder: slash >= 0 ? clean.slice(0, slash) : "", type };
}

/** Shows the image a LoadImage-like combo points at. */
export function showComboImage(app, node, comboWidget) {
  const value = String(comboWidget.value ?? "");
  if (!value) return;
  setNodeImages(node, [app.api.viewUrl(comboRef(value), `&rand=${Date.now()}`)]);
}

/** Shows the chosen file in the node's image preview, video preview or audio player, by the node's kind. */
export function showComboFile(app, node, comboWidget) {
  const kind = node.loomUploadKind ?? "image";
  if (kind === "image") return showComboImage(app, node, comboWidget);
  const value = String(comboWidget.value ?? "");
  if (!value) {
    if (kind === "video") clearNodeVideo(app.textAreas, node);
    return;
  }
  const url = app.api.viewUrl(comboRef(value));
  if (kind === "video") setNodeVideo(app.textAreas, node, url);
  else setNodeAudio(app.textAreas, node, url);
}

function pickFile(accept) {
  return new Promise((resolve) => {
    const input = document.createElement("input");
    input.type = "file";
    input.accept = accept;
    input.addEventListener("change", () => resolve(input.files?.[0] ?? null));
    input.click();
  });
}

/** Adds the "choose file to upload" button (LoadAudio: after its audio player, as ComfyUI lays it out), the
 * drop support and the preview of the chosen file to a node whose `comboWidget` lists files of `kind`. */
export function addUploadWidget(app, node, comboWidget, kind = "image") {
  const spec = KINDS[kind];
  node.loomUploadKind = kind;
  if (kind === "audio") addAudioWidget(app.textAreas, node, true);
  const upload = async (file) => {
    try {
      await uploadToCombo(app, node, comboWidget, file);
    } catch (e) {
      app.ui.toast(`Upload failed: ${e.message}`, "error");
    }
  };
  const button = node.addWidget("button", "upload", spec.buttonValue, async () => {
    const file = await pickFile(spec.accept);
    if (file) await upload(file);
  }, { socketless: true });
  button.label = "choose file to upload";
  button.serialize = true;
  const original = comboWidget.callback;
  comboWidget.callback = function (...args) {
    original?.apply(this, args);
    showComboFile(app, node, comboWidget);
  };
  node.onDragOver = (e) => Boolean(e.dataTransfer?.types?.includes("Files"));
  node.onDragDrop = async (e) => {
    const file = [...(e.dataTransfer?.files ?? [])].find((f) => fileFits(kind, f));
    if (!file) return false;
    await upload(file);
    return true;
  };
  if (kind === "image") node.loomImageCombo = comboWidget;  // the mask editor works on images only
  node.loomUploadCombo = comboWidget;
  setTimeout(() => showComboFile(app, node, comboWidget), 0);
}
