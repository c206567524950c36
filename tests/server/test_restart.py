"""A real server process: queue 10 slow prompts, kill -9 mid-run, restart, nothing lost."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, whatever *_proxy says

SLEEP_PACK = textwrap.dedent('''
    import time

    class TestSleep:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("INT", {"default": 0, "min": 0, "max": 1000}),
                                 "seconds": ("FLOAT", {"default": 0.3, "min": 0.0, "max": 30.0})}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True
        CATEGORY = "test"

        def run(self, value, seconds):
            time.sleep(seconds)
            return {"ui": {"text": [str(value)]}}

    NODE_CLASS_MAPPINGS = {"TestSleep": TestSleep}
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(port: int, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    with NO_PROXY.open(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def start(base: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(REPO / "server.py"), "--port", str(port), "--cpu",
                             "--base-directory", str(base)], cwd=str(base), env=env,
                            stdout=open(base / f"server-{port}-{time.time()}.log", "wb"),
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            call(port, "/prompt")
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not start within 90 s")


def wait_for(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_kill9_and_restart_loses_nothing(tmp_path: Path) -> None:
    pack = tmp_path / "custom_nodes" / "sleep_pack"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(SLEEP_PACK)
    port = free_port()
    proc = start(tmp_path, port)
    try:
        assert "TestSleep" in call(port, "/object_info/TestSleep")
        ids = []
        for i in range(10):
            prompt = {"1": {"class_type": "TestSleep", "inputs": {"value": i, "seconds": 0.8}}}
            pid = f"00000000-0000-4000-8000-{i:012d}"  # a client-chosen id must be a UUID (ComfyUI v0.47)
            ids.append(call(port, "/prompt", {"prompt": prompt, "prompt_id": pid})["prompt_id"])
        wait_for(lambda: len(call(port, "/history")) >= 2 and call(port, "/queue")["queue_running"], 30,
                 "two prompts done and a third running")
        running = call(port, "/queue")["queue_running"][0][1]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    port2 = free_port()
    proc2 = start(tmp_path, port2)
    try:
        history = call(port2, f"/history/{running}")[running]
        assert history["status"]["status_str"] == "error" and history["status"]["completed"] is False
        msg = history["status"]["messages"][-1]
        assert msg[0] == "execution_interrupted" and "killed or crashed" in msg[1]["exception_message"]
        wait_for(lambda: len(call(port2, "/history")) == 10, 60, "all prompts in history")
        full = call(port2, "/history")
        assert set(full) == set(ids)
        done_order = [pid for pid in full if pid != running]
        assert done_order == [pid for pid in ids if pid != running]  # same order across the crash
        for pid in done_order:
            assert full[pid]["status"]["status_str"] == "success"
            assert full[pid]["outputs"]["1"]["text"] == [str(int(pid[-12:]))]
        assert call(port2, "/queue") == {"queue_running": [], "queue_pending": []}
        jobs = call(port2, "/api/jobs?status=completed,failed,cancelled&limit=64&offset=0")
        assert {j["id"]: j["status"] for j in jobs["jobs"]} == {
            pid: "cancelled" if pid == running else "completed" for pid in ids}
    finally:
        proc2.terminate()
        try:
            proc2.wait(15)
        except subprocess.TimeoutExpired:
            proc2.kill()
