"""ComfyUI's official frontend (PyPI `comfyui-frontend-package`) served by Loom with --front-end-root (issue 21).

Boots the frontend, cancels a pending job from its queue panel and interrupts the running one with its button,
runs the SD1.5 graph on the tiny checkpoint, reads the jobs history the way the queue panel does, and asserts that no Loom API route answered 4xx/5xx except where ComfyUI
answers the same (a missing user.css; /templates/... when the optional templates package is not installed).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser

# Answered 404 by ComfyUI too, on a fresh user directory: the optional user stylesheet and template settings
# file, listings of user folders that do not exist yet; and the template files when ComfyUI's templates package
# is absent (an optional dependency of Loom).
EXPECTED_404 = ["/api/userdata/user.css", "/api/userdata/comfy.templates.json", "/api/userdata?dir=workflows&",
                "/api/userdata?dir=subgraphs&"]
TEMPLATES_INSTALLED = importlib.util.find_spec("comfyui_workflow_templates_core") is not None
# Thumbnails live in the package's media bundles (several hundred MB); the core + json bundles give the workflows.
MEDIA_INSTALLED = all(importlib.util.find_spec(f"comfyui_workflow_templates_media_{b}") is not None
                      for b in ("api", "video", "image", "other"))
if not TEMPLATES_INSTALLED:
    EXPECTED_404.append("/templates/")
REPO = Path(__file__).resolve().parents[2]
SD15_GRAPH = REPO / "workflows" / "txt2img.ui.json"  # the classic SD1.5 default graph (1.58's default is not SD1.5)


def _api_route(path: str) -> bool:
    return not path.startswith(("/assets/", "/scripts/", "/fonts/", "/cursor/")) and not path.endswith(
        (".js", ".css", ".woff2", ".svg", ".png", ".ico", ".webp", ".json.map")) or path.startswith(
        ("/api/", "/templates/"))


def wait_status(page: Any, job_id: str, wanted: tuple[str, ...], seconds: int = 180) -> str | None:
    """Poll GET /api/jobs/{id} from the page until its status is one of `wanted`."""
    status = None
    for _ in range(seconds * 2):
        status = page.evaluate("async (id) => { const r = await app.api.fetchApi(`/jobs/${id}`);"
                               " return r.ok ? (await r.json()).status : null; }", job_id)
        if status in wanted:
            break
        page.wait_for_timeout(500)
    return status


def test_official_frontend_boots_runs_cancels_and_lists_jobs(page: Any, comfy_frontend_server: Any) -> None:
    seen: list[tuple[int, str, str]] = []

    def record(r: Any) -> None:
        url = urlparse(r.url)
        seen.append((r.status, r.request.method, url.path + (f"?{url.query}" if url.query else "")))

    page.on("response", record)
    page.goto(comfy_frontend_server.url)
    page.wait_for_function("() => !!(window.app?.graph && window.app?.api?.socket)", timeout=120000)
    page.wait_for_timeout(3000)  # the first-run boot requests (settings, jobs, templates, ...) settle
    page.keyboard.press("Escape")  # a new user gets the template dialog and an empty graph
    page.evaluate("async (g) => { await app.loadGraphData(g); }", json.loads(SD15_GRAPH.read_text()))
    page.wait_for_function("() => (app.graph.nodes ?? app.graph._nodes).length === 7", timeout=30000)
    queue = """async (steps) => {
        const g = app.graph, nodes = g.nodes ?? g._nodes;
        const set = (type, name, value) => { for (const n of nodes.filter(n => n.type === type)) {
            const w = n.widgets.find(w => w.name === name); if (w) w.value = value; } };
        set('CheckpointLoaderSimple', 'ckpt_name', 'tiny-sd15.safetensors');
        set('EmptyLatentImage', 'width', 64); set('EmptyLatentImage', 'height', 64);
        set('KSampler', 'steps', steps);
        return (await app.api.queuePrompt(0, await app.graphToPrompt())).prompt_id;
    }"""
    slow = page.evaluate(queue, 400)  # runs long enough for the next one to wait behind it
    pending = page.evaluate(queue, 400)
    wait_status(page, slow, ("in_progress",))
    # cancel the pending job from the queue panel, as a user does: expand the job queue, hover, Cancel
    page.get_by_role("button", name="Expand job queue").click()
    row = page.locator(f"[data-job-id='{pending}']")
    row.hover()
    row.get_by_role("button", name="Cancel").click()
    for _ in range(30):  # dequeued, as in ComfyUI (a cancelled pending job leaves no history)
        listed = page.evaluate("async () => (await (await app.api.fetchApi("
                               "'/jobs?status=in_progress,pending&limit=200&offset=0')).json()).jobs.map(j => j.id)")
        if pending not in listed:
            break
        page.wait_for_timeout(500)
    assert listed == [slow] and (200, "POST", f"/api/jobs/{pending}/cancel") in seen  # the panel's own call
    assert wait_status(page, slow, ("in_progress",)) == "in_progress"
    page.get_by_role("button", name="Cancel current run").click()  # interrupts the running job
    assert wait_status(page, slow, ("completed", "failed", "cancelled")) == "cancelled"
    first = page.evaluate(queue, 2)
    assert wait_status(page, first, ("completed", "failed", "cancelled")) == "completed"
    history = page.evaluate("""async () => {
        const r = await app.api.fetchApi('/jobs?status=completed,failed,cancelled&limit=64&offset=0');
        return [r.status, await r.json()];
    }""")
    assert history[0] == 200
    done = next(j for j in history[1]["jobs"] if j["id"] == first)
    assert done["outputs_count"] == 1 and done["preview_output"]["mediaType"] == "images"
    assert {j["id"]: j["status"] for j in history[1]["jobs"]} == {slow: "cancelled", first: "completed"}
    detail = page.evaluate("async (id) => (await app.api.fetchApi(`/jobs/${id}`)).json()", first)
    assert detail["workflow"]["prompt"] and detail["outputs"]
    page.wait_for_timeout(2000)  # let the queue panel's own polling run once more
    bad = [(s, m, p) for s, m, p in seen if s >= 400 and _api_route(urlparse(p).path)
           and not p.startswith(tuple(EXPECTED_404))
           and not (p.startswith("/templates/") and not p.endswith(".json") and not MEDIA_INSTALLED)]
    if TEMPLATES_INSTALLED:
        assert (200, "GET", "/templates/index.json") in seen  # the frontend's template browser got its index
    artifacts = REPO / "test-artifacts" / "browser"
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "comfy_frontend_requests.json").write_text(json.dumps(seen, indent=1))
    assert not bad, f"Loom refused requests of ComfyUI's frontend: {bad}"
