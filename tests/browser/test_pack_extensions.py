"""Pack web extensions in Loom's editor: one that adds a widget and menu entries loads and works; one importing a
ComfyUI frontend module Loom does not provide, and one using a hook the editor does not run, are listed as skipped
with the reason (Extensions tab, console). Loom's real server.py serves the fixture packs."""
from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Server, _stop, _wait_until_up, free_port
from editor_helpers import open_editor

pytestmark = pytest.mark.browser
EXT_PACKS = Path(__file__).parent / "data" / "ext_packs"


def _serve(tmp: Path, *extra: str) -> Iterator[Server]:
    shutil.copytree(EXT_PACKS, tmp / "custom_nodes")
    port = free_port()
    log = tmp / "server.log"
    cmd = [sys.executable, str(REPO / "server.py"), "--port", str(port), "--cpu", "--base-directory", str(tmp), *extra]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url + "object_info", proc, log, timeout=90)
        yield Server(url=url, root=tmp, token="")
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def ext_server(web_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(tmp_path_factory.mktemp("ext_packs"))


@pytest.fixture(scope="module")
def comfy_ext_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    frontend = pytest.importorskip("comfyui_frontend_package",
                                   reason="pip install comfyui-frontend-package (ComfyUI's official frontend)")
    static = Path(frontend.__file__).parent / "static"
    yield from _serve(tmp_path_factory.mktemp("ext_packs_comfy"), "--front-end-root", str(static))


def _report(page: Any) -> dict[str, dict[str, str]]:
    rows = page.evaluate("loom.extensions.report.map(e => [e.url, e.status, e.reason])")
    return {url.rsplit("/", 2)[-2] + "/" + url.rsplit("/", 1)[-1]: {"status": s, "reason": r} for url, s, r in rows}


def test_extension_adds_widget_and_menu_entries(page: Any, ext_server: Server) -> None:
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    open_editor(page, ext_server.url)
    report = _report(page)
    assert report["loom_ext_ok/menu.js"] == {"status": "loaded", "reason": ""}
    assert report["loom_ext_ok/helper.js"]["status"] == "loaded"
    assert page.evaluate("window.extLog") == ["init", "setup:true:function"]
    assert page.evaluate("loom.extensions.extensions.map(e => e.name)") == ["loom.fixture.menu"]
    # nodeCreated added a working widget; beforeRegisterNodeDef patched the class first
    page.evaluate("""() => { const n = loomLiteGraph.createNode('ExtFixtureNode'); n.pos = [600, 400];
        loom.graph.add(n); window.fixtureNode = n; }""")
    assert page.evaluate("fixtureNode.fixturePatched") is True
    assert page.evaluate("fixtureNode.widgets.map(w => w.name)") == ["text", "Say hi"]
    page.evaluate("fixtureNode.widgets[1].callback()")
    assert page.evaluate("fixtureNode.title") == "hi from the extension"
    # the canvas menu entry, from a real right click on empty canvas
    page.mouse.click(80, 860, button="right")
    page.locator(".litecontextmenu .litemenu-entry", has_text="Fixture: count nodes").click()
    assert page.evaluate("window.extCount") == page.evaluate("loom.graph._nodes.length")
    entries = page.evaluate("loom.canvas.getNodeMenuOptions(fixtureNode).filter(Boolean).map(o => o.content)")
    assert "Fixture: mark node" in entries and "Convert text to input" in entries
    page.evaluate("""loom.canvas.getNodeMenuOptions(fixtureNode).find(o => o?.content === 'Fixture: mark node')
        .callback()""")
    assert page.evaluate("fixtureNode.title") == "marked"
    assert not any("loom_ext_ok" in w for w in warnings)


def test_extensions_skipped_with_the_reason(page: Any, ext_server: Server) -> None:
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    open_editor(page, ext_server.url)
    report = _report(page)
    ui = report["loom_ext_missing/uses_ui.js"]
    assert ui["status"] == "skipped" and "../../scripts/ui.js" in ui["reason"] and "does not provide" in ui["reason"]
    widgets = report["loom_ext_missing/widgets.js"]
    assert widgets["status"] == "skipped" and "getCustomWidgets" in widgets["reason"]
    assert page.evaluate("window.uiExtensionRan === undefined"), "a skipped file is never imported"
    assert page.evaluate("window.widgetModuleEvaluated") is True
    assert page.evaluate("window.widgetSetupRan === undefined"), "none of a skipped extension's hooks run"
    assert any("uses_ui.js skipped" in w for w in warnings) and any("widgets.js skipped" in w for w in warnings)
    page.click("#loom-tab-extensions")
    summary = page.locator("#loom-ext-summary").inner_text()
    assert summary == "2 extension file(s) loaded, 2 skipped"
    row = page.locator(".loom-ext.skipped", has_text="uses_ui.js").inner_text()
    assert "scripts/ui.js" in row
    # ComfyUI's frontend modules Loom does provide answer with the editor's objects
    assert page.evaluate("import('./scripts/app.js').then(m => m.app === loom.extensions.facade)") is True
    assert page.evaluate("import('./scripts/api.js').then(m => m.api === loom.api)") is True


def test_comfyui_frontend_still_loads_every_extension(page: Any, comfy_ext_server: Server) -> None:
    page.goto(comfy_ext_server.url)
    page.wait_for_function("() => !!(window.app?.graph && window.app?.api?.socket)", timeout=120000)
    page.wait_for_function("() => window.uiExtensionRan !== undefined && window.widgetSetupRan === true",
                           timeout=60000)
    assert page.evaluate("window.extLog[0]") == "init"
    assert page.evaluate("typeof window.uiExtensionRan") == "function", "scripts/ui.js is ComfyUI's own there"
