"""Page helpers shared by the editor's browser tests."""
from __future__ import annotations

import json
import urllib.request
from typing import Any

DEFAULT_TYPES = ["CheckpointLoaderSimple", "CLIPTextEncode", "CLIPTextEncode", "EmptyLatentImage", "KSampler",
                 "VAEDecode", "SaveImage"]


def open_editor(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='true']", timeout=60000)


def node_types(page: Any) -> list[str]:
    return sorted(page.evaluate("loom.graph._nodes.map(n => n.type)"))


def widget(page: Any, node_id: int, name: str) -> Any:
    return page.evaluate("([id, name]) => loom.graph.getNodeById(id).widgets.find(w => w.name === name).value",
                         [node_id, name])


def set_widget(page: Any, node_id: int, name: str, value: Any) -> None:
    page.evaluate("([id, name, v]) => { loom.graph.getNodeById(id).widgets.find(w => w.name === name).value = v; }",
                  [node_id, name, value])


def posted(server_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(server_url + "debug/posted") as r:
        return json.loads(r.read())


def wait_output_image(page: Any, node_id: int, timeout: int = 15000) -> str:
    """Waits until node `node_id` shows an output image and returns its URL."""
    page.wait_for_function(
        "id => { const n = loom.graph.getNodeById(id); const im = n?.loom?.imageElements?.[0];"
        " return im && im.complete && im.naturalWidth > 0; }", arg=node_id, timeout=timeout)
    return page.evaluate("id => loom.graph.getNodeById(id).loom.imageElements[0].src", node_id)


def drop_file(page: Any, data: bytes, name: str, mime: str, x: int = 500, y: int = 500) -> None:
    """Drops a file onto the canvas at (x, y) like a user dragging it from the desktop."""
    page.evaluate(
        """([bytes, name, mime, x, y]) => {
            const file = new File([new Uint8Array(bytes)], name, { type: mime });
            const dt = new DataTransfer();
            dt.items.add(file);
            const host = document.getElementById('loom-canvas-host');
            for (const type of ['dragenter', 'dragover', 'drop']) {
              host.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true, clientX: x, clientY: y }));
            }
        }""", [list(data), name, mime, x, y])
