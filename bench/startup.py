"""Server start to the first accepted POST /prompt carrying the real txt2img workflow (tiny checkpoint).

Run: ``.venv/bin/python bench/startup.py [--runs 3] [--compare DIR]``. Each run starts ``server.py --cpu`` on a
free port with a throw-away base directory holding the tiny checkpoint, polls POST /prompt with
workflows/txt2img.json until it is accepted (validation included: the built-in nodes' checks read the
checkpoint header), and also records when the worker finished that prompt. The same-run reference is a fresh
``python -c "import torch"`` (what any prompt needs at least); ``--compare DIR`` also starts DIR's server.py
(another checkout, e.g. ``git worktree add /tmp/base HEAD~1``), alternating run by run. bench/server.py
measures the same start-up with a one-node pack prompt (no built-in node involved) plus throughput.

``--idle S``: instead, wait until the server answers, leave it idle for S seconds (its start-up preload
finishes), then time the first prompt (POST -> in /history) and a second one with a new seed (the same work
with everything loaded): "first after idle" minus "second" is what the first prompt still pays for.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._timing import Row, print_table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "fixtures" / "tiny-sd15" / "tiny-sd15.safetensors"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def import_torch_seconds() -> float:
    """Wall time of a fresh ``python -c "import torch"`` (the same-run reference)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, cwd=str(REPO))
    return time.perf_counter() - t0


def until_done(url: str, prompt: dict[str, Any]) -> float:
    """Seconds from POST /prompt to the prompt appearing in /history."""
    t0 = time.perf_counter()
    status, data = _post(url + "/prompt", {"prompt": prompt, "client_id": "bench"})
    if status != 200:
        raise SystemExit(f"POST /prompt {status}: {data}")
    pid = data["prompt_id"]
    while True:
        with urllib.request.urlopen(f"{url}/history/{pid}", timeout=30) as r:
            if pid in json.loads(r.read()):
                return time.perf_counter() - t0
        time.sleep(0.02)


@contextlib.contextmanager
def server(repo: Path, checkpoint: Path = TINY,
           flags: tuple[str, ...] = ()) -> Iterator[tuple[str, subprocess.Popen[bytes], float]]:
    """A `server.py --cpu [flags]` on a free port over a throw-away base directory holding `checkpoint`:
    (url, process, start time); stopped and cleaned up on exit."""
    base = Path(tempfile.mkdtemp(prefix="loom-bench-start-"))
    (base / "models" / "checkpoints").mkdir(parents=True)
    (base / "models" / "checkpoints" / checkpoint.name).symlink_to(checkpoint.resolve())
    port = _free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(repo / "server.py"), "--port", str(port), "--cpu", *flags,
                             "--base-directory", str(base), "--verbose", "WARNING"], cwd=str(base),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}", proc, t0
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(base, ignore_errors=True)


def alive(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        raise SystemExit(f"server exited with {proc.returncode}; see a manual run of server.py")


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    """Until the server answers GET /system_stats."""
    while True:
        alive(proc)
        try:
            urllib.request.urlopen(url + "/system_stats", timeout=5).read()
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)


def idle_run(prompt: dict[str, Any], idle: float, repo: Path = REPO) -> tuple[float, float]:
    """(first prompt after `idle` seconds of an idle start, a second prompt with a new seed), in seconds."""
    with server(repo) as (url, proc, _):
        wait_ready(url, proc)
        time.sleep(idle)
        first = until_done(url, prompt)
        prompt = json.loads(json.dumps(prompt))
        prompt["3"]["inputs"]["seed"] += 1
        return first, until_done(url, prompt)


def one_run(prompt: dict[str, Any], repo: Path = REPO) -> tuple[float, float]:
    """(seconds to the first accepted /prompt, seconds until that prompt finished) for one server start."""
    with server(repo) as (url, proc, t0):
        while True:
            alive(proc)
            try:
                status, data = _post(url + "/prompt", {"prompt": prompt, "client_id": "bench"})
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.02)
                continue
            if status != 200:
                raise SystemExit(f"POST /prompt {status}: {data}")
            accepted = time.perf_counter() - t0
            break
        pid = data["prompt_id"]
        while True:
            with urllib.request.urlopen(f"{url}/history/{pid}", timeout=30) as r:
                if pid in json.loads(r.read()):
                    return accepted, time.perf_counter() - t0
            time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--compare", type=Path, default=None, metavar="DIR",
                    help="also start DIR/server.py (another checkout), alternating with this one")
    ap.add_argument("--idle", type=float, default=None, metavar="S",
                    help="time the first prompt after S idle seconds and a second one instead")
    args = ap.parse_args()
    prompt = json.loads((REPO / "workflows" / "txt2img.json").read_text())
    prompt["4"]["inputs"]["ckpt_name"] = TINY.name
    prompt["3"]["inputs"]["steps"] = args.steps
    repos = [REPO] + ([args.compare.resolve()] if args.compare else [])
    if args.idle is not None:
        rows: list[Row] = []
        results = [[idle_run(prompt, args.idle, repo) for repo in repos] for _ in range(args.runs)]
        for i, repo in enumerate(repos):
            tag = "" if repo == REPO else f" [{repo}]"
            rows += [Row(f"first prompt after {args.idle:g} s idle{tag}", [r[i][0] for r in results]),
                     Row(f"second prompt, new seed{tag}", [r[i][1] for r in results]),
                     Row(f"first minus second{tag}", [r[i][0] - r[i][1] for r in results])]
        print(f"server.py --cpu, txt2img {args.steps} steps on the tiny checkpoint, {args.runs} runs")
        print_table("first prompt after an idle start", rows, reference=None, unit="s")
        return
    accepted: list[list[float]] = [[] for _ in repos]
    done: list[list[float]] = [[] for _ in repos]
    torch_s: list[float] = []
    for _ in range(args.runs):
        torch_s.append(import_torch_seconds())
        for i, repo in enumerate(repos):
            a, d = one_run(prompt, repo)
            accepted[i].append(a)
            done[i].append(d)
    print(f"server.py --cpu start-up, txt2img {args.steps} steps on the tiny checkpoint, {args.runs} runs")
    ref = Row("python -c 'import torch' (reference)", torch_s)
    rows = [ref]
    for i, repo in enumerate(repos):
        tag = "" if repo == REPO else f" [{repo}]"
        rows += [Row(f"start -> first accepted /prompt{tag}", accepted[i]),
                 Row(f"start -> that prompt in /history{tag}", done[i])]
    print_table("start-up", rows, reference=ref, unit="s")


if __name__ == "__main__":
    main()
