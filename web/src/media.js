// Audio and video players on nodes, as ComfyUI's frontend shows them: an <audio controls> widget for LoadAudio's
// chosen file and for `ui.audio` outputs (SaveAudio*, PreviewAudio), a muted, looping <video> for LoadVideo's
// chosen file and for animated outputs in a video container (SaveVideo, SaveWEBM). The elements are overlays of
// the canvas layer in textareas.js, placed where the widget is drawn.

const AUDIO_HEIGHT = 54;
const VIDEO_HEIGHT = 220;
/** Extensions an animated `images` output is played as <video> for; others (webp, png, gif) stay <img>. */
const VIDEO_FILE = /\.(mp4|webm|mov|mkv|m4v)$/i;

/** True for an `executed` output entry that is a video file flagged animated (ComfyUI's ui.PreviewVideo). */
export function isVideoOutput(output, image) {
  return Boolean(output?.animated?.[0]) && VIDEO_FILE.test(String(image?.filename ?? ""));
}

function mediaWidget(layer, name, type, element, height, serialize) {
  const widget = {
    type,
    name,
    y: 0,
    element,
    lastFrame: -1,
    serialize,
    options: { serialize },
    // ComfyUI saves the player widget's value as null (LoadAudio: [file, null, null]).
    get value() { return null; },
    set value(_v) {},
    computeSize(width) { return [width ?? 200, height]; },
    draw(ctx, node, width, y) {
      widget.lastFrame = layer.frame;
      layer.place(widget, node, width, y);
    },
  };
  return widget;
}

function findMedia(node, type) {
  return node.widgets?.find((w) => w.type === type && w.element) ?? null;
}

function grow(node, extra) {
  const size = node.computeSize();
  node.setSize([Math.max(node.size[0], size[0], 260), Math.max(node.size[1], size[1] + extra)]);
  node.setDirtyCanvas(true, true);
}

/** Adds the audio player widget (`audioUI`, ComfyUI's AUDIO_UI) to `node`; `serialize` keeps its null slot in
 * widgets_values, as LoadAudio has in ComfyUI's saved files. Returns the widget. */
export function addAudioWidget(layer, node, serialize) {
  const el = document.createElement("audio");
  el.controls = true;
  el.preload = "metadata";
  el.className = "loom-media loom-audio";
  const widget = mediaWidget(layer, "audioUI", "loom_audio", el, AUDIO_HEIGHT, serialize);
  layer.attach(node, widget);
  return node.addCustomWidget(widget);
}

/** Points the node's audio player at `url` (adding a player that is not saved when the node has none). */
export function setNodeAudio(layer, node, url) {
  const widget = findMedia(node, "loom_audio") ?? addAudioWidget(layer, node, false);
  widget.element.src = url;
  widget.element.dataset.node = String(node.id);
  grow(node, 0);
}

/** Shows `url` in the node's video preview (added on first use, never saved). */
export function setNodeVideo(layer, node, url) {
  let widget = findMedia(node, "loom_video");
  if (!widget) {
    const el = document.createElement("video");
    el.controls = true;
    el.muted = true;
    el.loop = true;
    el.autoplay = true;
    el.playsInline = true;
    el.className = "loom-media loom-video";
    const made = mediaWidget(layer, "videopreview", "loom_video", el, VIDEO_HEIGHT, false);
    layer.attach(node, made);
    widget = node.addCustomWidget(made);
  }
  widget.element.src = url;
  widget.element.dataset.node = String(node.id);
  if (node.loom) node.loom.imageElements = [];
  grow(node, 0);
}

/** Removes the node's video preview (the node shows images again). */
export function clearNodeVideo(layer, node) {
  const widget = findMedia(node, "loom_video");
  if (widget) layer.detach(node, widget);
}
