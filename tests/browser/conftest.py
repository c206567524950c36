"""Fixtures for the editor's browser tests: a built web/dist, a server subprocess, Debian's Chromium."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason="Debian's Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def web_dist() -> Path:
    """web/dist built from the sources (rebuilt when a source is newer than the bundle)."""
    bundle = WEB / "dist" / "loom.js"
    sources = [*(WEB / "src").rglob("*"), *(WEB / "scripts").rglob("*"), WEB / "index.html", WEB / "build.mjs"]
    newest = max(p.stat().st_mtime for p in sources if p.is_file())
    if not bundle.exists() or bundle.stat().st_mtime < newest:
        if not (WEB / "node_modules").is_dir():
            pytest.fail("web/node_modules is missing: run `cd web && npm ci` (scripts/bootstrap.sh does it)")
        node = shutil.which("node")
        if node is None:
            pytest.fail("Node.js is needed to build the editor (web/build.mjs)")
        subprocess.run([node, "build.mjs"], cwd=WEB, check=True, timeout=120)
    return bundle.parent


@dataclass
class Server:
    url: str
    root: Path
    token: str


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # answering (401 with a token)
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not answer within {timeout}s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _start_fake(tmp: Path, token: str = "") -> Iterator[Server]:
    (tmp / "models" / "checkpoints").mkdir(parents=True)
    (tmp / "models" / "checkpoints" / "tiny-sd15.safetensors").write_bytes(b"")
    (tmp / "input").mkdir()
    shutil.copy(REPO / "tests" / "fixtures" / "tiny-sd15" / "init_128x64.png", tmp / "input" / "init_128x64.png")
    port = free_port()
    log = tmp / "server.log"
    cmd = [sys.executable, str(Path(__file__).with_name("editor_fake_server.py")), "--port", str(port), "--root", str(tmp)]
    if token:
        cmd += ["--token", token]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parent)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url + "object_info", proc, log)
        yield Server(url=url, root=tmp, token=token)
    finally:
        _stop(proc)


def _start_real(tmp: Path, token: str = "") -> Iterator[Server]:
    """Loom's own server.py on a temp base directory holding the tiny SD1.5 checkpoint and example inputs."""
    ckpts = tmp / "models" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "tiny-sd15.safetensors").symlink_to(REPO / "tests" / "fixtures" / "tiny-sd15" / "tiny-sd15.safetensors")
    (tmp / "input").mkdir()
    for image in (REPO / "workflows" / "inputs").glob("*.png"):
        shutil.copy(image, tmp / "input" / image.name)
    port = free_port()
    log = tmp / "server.log"
    cmd = [sys.executable, str(REPO / "server.py"), "--port", str(port), "--cpu", "--base-directory", str(tmp),
           "--disable-all-custom-nodes", "--preview-method", "latent2rgb"]
    if token:
        cmd += ["--auth-token", token]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url + "object_info", proc, log, timeout=90)
        yield Server(url=url, root=tmp, token=token)
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def real_server(web_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server for the module, behind an auth token (every test signs in with ?token=)."""
    yield from _start_real(tmp_path_factory.mktemp("real"), token="loom-test-token-1234")


@pytest.fixture(scope="module")
def fake_server(web_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _start_fake(tmp_path_factory.mktemp("fake"))


@pytest.fixture(scope="module")
def token_server(web_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _start_fake(tmp_path_factory.mktemp("fake_auth"), token="s3cret-token")


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in the main thread while
# it is alive, which would break every later asyncio-based test module in the same pytest session.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser: object, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh page (own storage) that fails the test on uncaught page errors; screenshots at the end."""
    context = browser.new_context(viewport={"width": 1600, "height": 900}, accept_downloads=True)  # type: ignore[attr-defined]
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    except Exception:  # noqa: BLE001 - a screenshot is best effort
        pass
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture(scope="module")
def comfy_frontend_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Loom's server.py serving ComfyUI's official frontend (PyPI comfyui-frontend-package) with --front-end-root."""
    frontend = pytest.importorskip("comfyui_frontend_package",
                                   reason="pip install comfyui-frontend-package (ComfyUI's official frontend)")
    static = Path(frontend.__file__).parent / "static"
    tmp = tmp_path_factory.mktemp("comfy_frontend")
    ckpts = tmp / "models" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "tiny-sd15.safetensors").symlink_to(REPO / "tests" / "fixtures" / "tiny-sd15" / "tiny-sd15.safetensors")
    port = free_port()
    log = tmp / "server.log"
    cmd = [sys.executable, str(REPO / "server.py"), "--port", str(port), "--cpu", "--base-directory", str(tmp),
           "--disable-all-custom-nodes", "--front-end-root", str(static)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url + "object_info", proc, log, timeout=90)
        yield Server(url=url, root=tmp, token="")
    finally:
        _stop(proc)
