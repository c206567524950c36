"""The pack suite: popular ComfyUI custom node packs, unchanged, loaded by Loom's server and smoke-tested.

    python bench/packs.py [--packs NAME ...] [--json report.json] [--keep DIR]

Each pack pinned in `bench/pack_suite/packs.json` is copied at its commit (see `pack_sources.py` for where
sources come from) into a temporary `custom_nodes/` next to the suite's probe pack; one Loom server is
started on 127.0.0.1 with that folder, and per pack the suite reports: the loader's status (loaded /
partial / refused / failed, with the reason), nodes registered against the nodes the pack declares, its
JavaScript files served under /extensions, and its smoke graphs (graphs that need no model, ending in a
probe node whose text output is compared with the expected one). Packs whose source is not on the machine
are listed as skipped, and so are packs whose `requires` modules are not installed (a smoke graph with its own
`requires` is skipped, and named in the pack's warnings, when those are missing). A pack pinned with a
`gap` (a known Loom limitation) is expected to fail with that text in its reason. A node refused because another
pack of the run registered its id first is a conflict between two packs, listed but not a failure. Exit status: 0
when every pack is as pinned (fully working, or failing for exactly its known gap).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def _sibling(name: str) -> Any:
    """Import bench/<name>.py without putting bench/ on sys.path (its server.py would shadow Loom's)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_sources = _sibling("pack_sources")
PROBE_PACK, PackPin, load_manifest = _sources.PROBE_PACK, _sources.PackPin, _sources.load_manifest
missing_requirements, source_of, stage = _sources.missing_requirements, _sources.source_of, _sources.stage
ROOT = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = ROOT / "engine" / "demo" / "loom-demo-shapes.safetensors"


@dataclass
class PackResult:
    """One pack's line of the suite's table."""

    name: str
    repo: str
    commit: str
    status: str = "skipped"
    reason: str = ""
    nodes_loaded: int = 0
    nodes_declared: int | None = None
    js_served: int = 0
    js_total: int = 0
    js_editor: list[dict[str, Any]] | None = None  # Loom's editor: each extension file's status / reason
    smoke_passed: int = 0
    smoke_total: int = 0
    smoke_failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    missing_files: int = 0

    gap: str = ""

    @property
    def ok(self) -> bool:
        """Every node registered (or refused only because another pack of the run took its id: two packs of one
        `custom_nodes/` conflicting, not a Loom limitation) and every smoke graph passed."""
        conflicts_only = self.status == "partial" and all(_pack_conflict(x["reason"]) for x in self.refused)
        return (self.status == "loaded" or conflicts_only) and self.smoke_passed == self.smoke_total

    @property
    def as_expected(self) -> bool:
        """Fully working, or (for a pack pinned with a known `gap`) failing for exactly that reason."""
        if self.status == "skipped":
            return True
        if not self.gap:
            return self.ok
        return not self.ok and any(self.gap in text for text in [self.reason, *self.smoke_failures])


def _pack_conflict(reason: str) -> bool:
    """A refusal because another custom node pack registered the id first (the loader's collision message)."""
    return "collides with" in reason and "already registered by 'custom_nodes." in reason


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A Loom server subprocess on 127.0.0.1 with `base/custom_nodes`."""

    def __init__(self, base: Path, extra_args: list[str]) -> None:
        self.base = base
        self.port = _free_port()
        self.log = open(base / "server.log", "w", encoding="utf-8")  # noqa: SIM115 (closed in stop)
        # Loom first, then any folders the caller put on PYTHONPATH (e.g. a pack requirement installed elsewhere)
        python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONPATH": python_path}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "server.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--base-directory", str(base), *extra_args],
            cwd=str(base), env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url(path), timeout=60) as response:
            body = response.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        request = urllib.request.Request(self.url(path), data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return {"http_error": exc.code, **json.loads(exc.read() or b"{}")}

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.base / 'server.log'}")
            try:
                self.get("/system_stats")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise TimeoutError(f"server not ready after {timeout:.0f} s; see {self.base / 'server.log'}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def with_defaults(graph: dict[str, Any], object_info: dict[str, Any]) -> dict[str, Any]:
    """`graph` with every widget input it leaves out set to the node's default (first choice), as the
    editor sends them (optional widgets included)."""
    out = json.loads(json.dumps(graph))
    for node in out.values():
        inputs = object_info.get(node["class_type"], {}).get("input", {})
        spec = {**inputs.get("required", {}), **inputs.get("optional", {})}
        for name, entry in spec.items():
            if name in node["inputs"]:
                continue
            kind, options = entry[0], (entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {})
            if "default" in options:
                node["inputs"][name] = options["default"]
            elif isinstance(kind, list) and kind:
                node["inputs"][name] = kind[0]
    return out


def run_smoke(server: Server, smoke: dict[str, Any], object_info: dict[str, Any], timeout: float = 180.0
              ) -> str | None:
    """Run one smoke graph; None when its probe output matches, else why not."""
    graph = with_defaults(smoke["graph"], object_info)
    answer = server.post("/prompt", {"prompt": graph, "client_id": "pack-suite"})
    if "prompt_id" not in answer:
        return f"{smoke['name']}: refused: {json.dumps(answer)[:400]}"
    prompt_id = answer["prompt_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = server.get(f"/history/{prompt_id}")
        entry = history.get(prompt_id) if isinstance(history, dict) else None
        if entry and entry.get("status", {}).get("completed") is not None:
            break
        time.sleep(0.2)
    else:
        return f"{smoke['name']}: no result after {timeout:.0f} s"
    status = entry["status"]
    if status.get("status_str") != "success":
        errors = [m[1] for m in status.get("messages", []) if m[0] == "execution_error"]
        detail = errors[0] if errors else status
        return f"{smoke['name']}: failed: {json.dumps(detail)[:600]}"
    node = str(smoke.get("probe", "probe"))
    texts = entry.get("outputs", {}).get(node, {}).get("text", [])
    got = texts[0] if texts else None
    return _compare(smoke, got)


def _compare(smoke: dict[str, Any], got: str | None) -> str | None:
    expect = smoke["expect"]
    if got is None:
        return f"{smoke['name']}: the probe node produced no text"
    if "text" in expect and got != expect["text"]:
        return f"{smoke['name']}: expected {expect['text']!r}, got {got[:300]!r}"
    if "contains" in expect and expect["contains"] not in got:
        return f"{smoke['name']}: expected text containing {expect['contains']!r}, got {got[:300]!r}"
    if "regex" in expect and not re.fullmatch(expect["regex"], got, flags=re.S):
        return f"{smoke['name']}: expected text matching {expect['regex']!r}, got {got[:300]!r}"
    return None


def _declared(report: dict[str, Any]) -> int | None:
    if report["status"] == "failed":
        return None
    return len(report["nodes"]) + len(report["refused"])


def _js_check(server: Server, name: str, urls: list[str]) -> tuple[int, int]:
    mine = [u for u in urls if u.startswith(f"/extensions/{urllib.request.quote(name)}/")]
    served = 0
    for url in mine:
        try:
            with urllib.request.urlopen(server.url(url), timeout=30) as response:
                served += response.status == 200
        except urllib.error.URLError:
            pass
    return served, len(mine)


def _install_requirements(pin: PackPin, source: Path, scratch: Path) -> None:
    """`python -m app.packs install-requirements` on a copy of the pack (what a user runs)."""
    scratch.mkdir(parents=True, exist_ok=True)
    stage(pin, source, scratch)
    subprocess.run([sys.executable, "-m", "app.packs", "install-requirements", str(scratch / pin.name)],
                   cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    importlib.invalidate_caches()


def run_suite(pins: list[PackPin], workdir: Path, *, server_args: list[str], ready_timeout: float = 600.0,
              install: bool = False, editor: bool = False) -> list[PackResult]:
    """Stage every available pack, start one server, and return one result per pin (skipped ones too).

    With `install`, packs whose `requires` are missing get their requirements installed first (into this
    Python's environment, torch pinned; see app/packs.py). With `editor`, Loom's own editor is opened in
    Chromium and each pack's extension files are reported as it loaded or skipped them (bench/pack_editor.py)."""
    custom = workdir / "custom_nodes"
    custom.mkdir(parents=True, exist_ok=True)
    results: list[PackResult] = []
    for pin in pins:
        result = PackResult(pin.name, pin.repo, pin.commit[:12], smoke_total=len(pin.smoke), gap=pin.gap)
        source = source_of(pin)
        missing = missing_requirements(pin)
        if missing and source is not None and install:
            _install_requirements(pin, source, workdir / "requirements")
            missing = missing_requirements(pin)
        if missing:
            result.reason = (f"needs {', '.join(missing)}, not installed here: "
                             f"python -m app.packs install-requirements <custom_nodes>/{pin.name}")
        elif source is None:
            result.reason = (f"source not on this machine: set LOOM_PACKS_CACHE to a folder holding {pin.name}/ "
                             f"or LOOM_PACKS_MIRROR to a folder holding {pin.repo.replace('/', '+')}/repo "
                             f"with commit {pin.commit}")
        else:
            result.missing_files = len(stage(pin, source, custom))
            result.status = "staged"
        results.append(result)
    staged = [r for r in results if r.status == "staged"]
    if not staged:
        return results
    stage(PackPin("loom/loom_probe", "-"), PROBE_PACK, custom)
    checkpoints = workdir / "models" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    if not (checkpoints / DEMO_CHECKPOINT.name).exists():
        shutil.copy(DEMO_CHECKPOINT, checkpoints / DEMO_CHECKPOINT.name)  # smoke graphs that need a MODEL
    server = Server(workdir, server_args)
    try:
        server.wait_ready(ready_timeout)
        reports = {r["name"]: r for r in server.get("/loom/custom_nodes")["packs"]}
        urls = server.get("/extensions")
        object_info = server.get("/object_info")
        by_name = {pin.name: pin for pin in pins}
        for result in staged:
            _fill(result, reports.get(result.name), server, urls, object_info, by_name[result.name])
        if editor:
            in_editor = _sibling("pack_editor").editor_report(server.url("/"))
            for result in staged:
                result.js_editor = in_editor.get(result.name, [])
    finally:
        server.stop()
    return results


def _fill(result: PackResult, report: dict[str, Any] | None, server: Server, urls: list[str],
          object_info: dict[str, Any], pin: PackPin) -> None:
    if report is None:
        result.status, result.reason = "failed", "the server did not report this pack"
        return
    result.status = report["status"]
    result.reason = report.get("error") or ""
    result.nodes_loaded = len(report["nodes"])
    result.nodes_declared = _declared(report)
    result.refused = report["refused"]
    result.warnings = list(report.get("warnings") or [])
    result.js_served, result.js_total = _js_check(server, result.name, urls)
    if result.status == "failed":
        return
    for smoke in pin.smoke:
        # a smoke graph may need a module only some of the pack's nodes import (when they run): skipped without it
        missing = missing_requirements(PackPin(pin.repo, pin.commit, requires=tuple(smoke.get("requires", ()))))
        if missing:
            result.smoke_total -= 1
            result.warnings.append(f"smoke {smoke['name']} skipped: needs {', '.join(missing)} (not installed)")
            continue
        failure = run_smoke(server, smoke, object_info)
        if failure is None:
            result.smoke_passed += 1
        else:
            result.smoke_failures.append(failure)


def format_table(results: list[PackResult]) -> str:
    """The suite's Markdown table, then one line per failure reason."""
    editor = any(r.js_editor is not None for r in results)
    lines = ["| pack | commit | status | nodes loaded/declared | JS served | "
             + ("JS in Loom's editor (loaded/skipped) | " if editor else "") + "smoke passed |",
             "| --- | --- | --- | --- | --- | " + ("--- | " if editor else "") + "--- |"]
    for r in results:
        declared = "?" if r.nodes_declared is None else str(r.nodes_declared)
        js = f"{r.js_served}/{r.js_total}" if r.js_total else "-"
        shown = r.js_editor or []
        counts = f"{sum(e['status'] == 'loaded' for e in shown)}/{sum(e['status'] == 'skipped' for e in shown)}"
        in_editor = f"{counts if shown else '-'} | " if editor else ""
        lines.append(f"| {r.name} | {r.commit} | {r.status} | {r.nodes_loaded}/{declared} | {js} | {in_editor}"
                     f"{r.smoke_passed}/{r.smoke_total} |")
    notes = []
    for r in results:
        if r.reason:
            notes.append(f"- {r.name}: {r.reason[:400]}")
        notes += [f"- {r.name}: refused {x['node']}: {x['reason'][:300]}" for x in r.refused[:5]]
        notes += [f"- {r.name}: smoke {f}" for f in r.smoke_failures]
        notes += [f"- {r.name}: editor skipped {e['url'].rsplit('/', 1)[-1]}: {e['reason'][:200]}"
                  for e in (r.js_editor or []) if e["status"] == "skipped"]
    available = [r for r in results if r.status != "skipped"]
    ok = sum(r.ok for r in available)
    unexpected = [r.name for r in results if not r.as_expected]
    summary = (f"{ok}/{len(available)} available packs loaded fully with smoke graphs passing "
               f"({len(results) - len(available)} skipped); not as pinned: {unexpected or 'none'}")
    return "\n".join(lines + [""] + notes + ["", summary])


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packs", nargs="*", default=None, help="pack names (default: all pinned packs)")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    parser.add_argument("--server-arg", action="append", default=[], help="extra server flag (repeatable)")
    parser.add_argument("--editor", action="store_true",
                        help="also open Loom's editor in Chromium and report which pack extensions it loads")
    parser.add_argument("--install-requirements", action="store_true",
                        help="first pip-install missing pack requirements (python -m app.packs install-requirements)")
    args = parser.parse_args(argv)
    pins = [p for p in load_manifest() if args.packs is None or p.name in args.packs]
    with tempfile.TemporaryDirectory(prefix="loom-packs-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        results = run_suite(pins, workdir, server_args=args.server_arg, install=args.install_requirements,
                            editor=args.editor)
        print(format_table(results))
        print(f"suite time: {time.perf_counter() - started:.1f} s")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1), encoding="utf-8")
    return 0 if all(r.as_expected for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
