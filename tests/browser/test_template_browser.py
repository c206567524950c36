"""The editor's template browser against Loom's real server: workflows/ listed, missing models marked, open."""
from __future__ import annotations

from typing import Any

import pytest
from editor_helpers import DEFAULT_TYPES, node_types, open_editor

pytestmark = pytest.mark.browser


def test_template_browser_lists_marks_and_opens(page: Any, real_server: Any) -> None:
    open_editor(page, f"{real_server.url}?token={real_server.token}")
    page.click("#loom-tab-templates")
    row = page.wait_for_selector("[data-template='workflows/txt2img.ui.json']", timeout=15000)
    # the demo checkpoint is not installed on the test server (it has tiny-sd15 only): marked, not hidden
    assert "missing" in (row.get_attribute("class") or "")
    assert "loom-demo-shapes.safetensors" in row.inner_text()
    page.fill("#loom-template-search", "inpaint")
    page.wait_for_function("() => !document.querySelector(\"[data-template='workflows/txt2img.ui.json']\")")
    assert page.query_selector("[data-template='workflows/inpaint.ui.json']") is not None
    page.check("#loom-template-ready")  # runnable only: nothing here is, as the demo model is absent
    page.wait_for_selector("#loom-template-list .loom-empty")
    page.uncheck("#loom-template-ready")
    page.fill("#loom-template-search", "txt2img (editor)")
    page.click("[data-template='workflows/txt2img.ui.json'] button")
    page.wait_for_function("() => loom.graph._nodes.length === 7")
    assert node_types(page) == sorted(DEFAULT_TYPES)
    page.wait_for_selector(".loom-toast.error")  # the missing checkpoint is named in a warning
