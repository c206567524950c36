"""The pack suite's editor check: which pack web extensions Loom's own editor loads, and why it skips the rest.

Opens the running server's editor (web/dist, built with `node build.mjs`) in Debian's Chromium through Playwright
and reads the editor's extension report (`loom.extensions.report`, see web/src/extensions.js). Needs the
`playwright` Python package and /usr/bin/chromium; `available()` says why not when they are missing.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync"]


def available() -> str | None:
    """None when the check can run, else what is missing."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    return None


def editor_report(url: str, timeout_ms: int = 120_000) -> dict[str, list[dict[str, Any]]]:
    """{pack name: [{url, status, reason}, ...]} as Loom's editor at `url` reports its pack extensions."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector("body[data-ready]", timeout=timeout_ms)
            rows = page.evaluate("(window.loom?.extensions?.report ?? []).map(e => [e.pack, e.url, e.status, e.reason])")
        finally:
            browser.close()
    out: dict[str, list[dict[str, Any]]] = {}
    for pack, file_url, status, reason in rows:
        out.setdefault(pack, []).append({"url": file_url, "status": status, "reason": reason})
    return out
