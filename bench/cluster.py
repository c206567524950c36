"""Cluster benchmark: the in-process worker against Ray backends with 1 and 2 workers on this machine.

    python bench/cluster.py [--prompts 10] [--steps 4] [--size 64] [--workers 1,2] [--ray-address ADDR]

Serves Loom in-process (aiohttp test server, real routes and websocket) on a throw-away base directory with
the tiny checkpoint (tests/fixtures) or `--base DIR` (its models/), and for each backend:

- throughput: after one warm-up prompt per worker, N txt2img prompts (distinct seeds) posted at once; prompts
  per minute from the first POST to the last `executing {node: null}`;
- first executing: time from POST /prompt to the prompt's first `executing` frame on an idle server,
  median over `--runs` single prompts;
- dispatch overhead: end-to-end time of a prompt whose every node is cached (the executor does no work),
  minus the same on the in-process worker: what Ray adds per prompt (claim, actor call, streaming, history);
- one batch prompt: end-to-end time of one prompt with `--batch` images (split across idle workers).

Prints a Markdown table. A benchmark prints numbers; it never fails on a slow machine.

    python bench/cluster.py --two-hosts [--prompts 8] [--steps 8]      (root: `ip netns`)

Two hosts as network namespaces joined by a veth (tests/cluster/netns.py), Ray with token auth and the
documented health-check settings, one CPU slot per host, the server on the first: prompts per minute with
one host (one worker) and with two (after one warm-up prompt per worker), then the fault run (every process of the second host SIGKILLed while it
runs a prompt): kill -> `execution_restart`, kill -> the prompt running on the first host, and the wait for
that host to be free -> the rerun starting. Everything is removed at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "cluster"))
TINY = REPO / "tests" / "fixtures" / "tiny-sd15" / "tiny-sd15.safetensors"


def _prompt(seed: int, steps: int, size: int, text: str = "a photo of a cat", batch: int = 1) -> dict[str, Any]:
    from cluster_helpers import txt2img

    p = txt2img(seed, steps=steps, size=size, prefix="bench", batch=batch)
    p["6"]["inputs"]["text"] = text
    return p


async def _run(client: Any, ws: Any, prompts: list[dict[str, Any]]) -> tuple[float, list[float], list[float]]:
    """Post all prompts; (wall seconds, POST->first executing per prompt, POST->done per prompt)."""
    posted: dict[str, float] = {}
    first: dict[str, float] = {}
    done: dict[str, float] = {}
    t0 = time.perf_counter()
    for p in prompts:
        sent = time.perf_counter()  # before the request: the worker may start before the response arrives
        resp = await client.post("/prompt", json={"prompt": p, "client_id": "bench"})
        body = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"POST /prompt failed: {body}")
        posted[body["prompt_id"]] = sent
    while len(done) < len(posted):
        msg = await ws.receive(timeout=600)
        if isinstance(msg.data, bytes):
            continue
        frame = json.loads(msg.data)
        if frame.get("type") != "executing":
            continue
        pid, now = frame["data"].get("prompt_id"), time.perf_counter()
        if pid in posted:
            if frame["data"].get("node") is None:
                done[pid] = now
            else:
                first.setdefault(pid, now)
    wall = max(done.values()) - t0
    return wall, [first[p] - posted[p] for p in first], [done[p] - posted[p] for p in done]


async def _bench(loom: Any, args: argparse.Namespace, workers: int) -> dict[str, float]:
    from aiohttp.test_utils import TestClient, TestServer

    from server import create_app

    client = TestClient(TestServer(create_app(loom, web_root=None, load_custom_nodes=False)))
    await client.start_server()
    try:
        wait_ready = getattr(loom.backend, "wait_ready", None)
        if callable(wait_ready):
            await asyncio.get_running_loop().run_in_executor(None, wait_ready, 600.0)
        ws = await client.ws_connect("/ws?clientId=bench")
        await _run(client, ws, [_prompt(10_000 + i, args.steps, args.size) for i in range(workers)])  # warm-up
        wall, _, _ = await _run(client, ws, [_prompt(i, args.steps, args.size) for i in range(args.prompts)])
        first: list[float] = []
        for i in range(args.runs):  # one at a time on an idle server: POST -> first `executing`
            first += (await _run(client, ws, [_prompt(20_000 + i, args.steps, args.size)]))[1]
        cached = _prompt(20_000, args.steps, args.size)
        lat: list[float] = []
        for _ in range(args.runs):  # a prompt just run again: every node comes from the cache
            lat += (await _run(client, ws, [cached]))[2]
        batch: list[float] = []
        for i in range(args.runs):  # one prompt with a batch: split across idle workers when there are 2+
            batch += (await _run(client, ws, [_prompt(30_000 + i, args.steps, args.size, batch=args.batch)]))[2]
        await ws.close()
        return {"ppm": args.prompts / wall * 60.0, "first_ms": statistics.median(first) * 1000,
                "cached_ms": statistics.median(lat) * 1000, "batch_s": statistics.median(batch)}
    finally:
        await client.close()


def _loom(base: Path, run: Path, backend: str, workers: int, address: str | None) -> Any:
    from app.config import Config
    from app.loom import build_loom

    cfg = Config(base_directory=base, cpu=True, output_directory=run / "output", user_directory=run / "user",
                 temp_directory=run, custom_node_dirs=(base / "custom_nodes",), backend=backend,
                 ray_workers=workers, ray_address=address)
    return build_loom(cfg)


def _two_hosts(args: argparse.Namespace) -> int:
    """The --two-hosts runs (see the module docstring)."""
    from netns import TwoHosts, netns_unavailable

    reason = netns_unavailable()
    if reason is not None:
        print(f"--two-hosts: {reason}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="loom-bench-"))
    base = tmp / "base"
    (base / "models" / "checkpoints").mkdir(parents=True)
    shutil.copyfile(TINY, base / "models" / "checkpoints" / TINY.name)
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, hosts_n, kill in (("one host", 1, False), ("two hosts", 2, False), ("two hosts, B killed", 2, True)):
            hosts = TwoHosts()
            try:
                hosts.up()
                for h in range(hosts_n):
                    hosts.start_ray(h)
                cmd = [*hosts.exec_args(0), sys.executable, str(REPO / "tests" / "cluster" / "netns_driver.py"),
                       "--ray-address", hosts.address, "--base", str(base), "--run-dir", str(tmp / f"run{len(results)}"),
                       "--prompts", str(args.prompts), "--steps", str(args.steps), "--workers", str(hosts_n),
                       "--late", "0", "--warmup", str(hosts_n)]
                if kill:
                    cmd += ["--kill-ns", hosts.ns[1], "--kill-ip", hosts.ips[1]]
                r = subprocess.run(cmd, env=hosts.env(), capture_output=True, text=True, timeout=900)
                line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), "RESULT {}")
                results[name] = json.loads(line[len("RESULT "):])
                print(f"# {name}: {results[name]}", file=sys.stderr, flush=True)
            finally:
                hosts.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{args.prompts} txt2img prompts, 64x64, {args.steps} steps, tiny checkpoint, 1 CPU slot per host\n")
    print("| run | prompts/min | /system_stats median / max | kill -> execution_restart | kill -> rerun starts "
          "| survivor free -> rerun starts |")
    print("|---|---|---|---|---|---|")
    for name, o in results.items():
        print(f"| {name} | {o.get('prompts_per_min', '-')} | {o.get('stats_ms_median', '-')} / "
              f"{o.get('stats_ms_max', '-')} ms | {o.get('kill_to_restart_event_s', '-')} s | "
              f"{o.get('kill_to_rerun_start_s', '-')} s | {o.get('free_to_rerun_start_s', '-')} s |")
    one, two = results.get("one host", {}), results.get("two hosts", {})
    if one.get("prompts_per_min") and two.get("prompts_per_min"):
        print(f"\ntwo hosts / one host: {two['prompts_per_min'] / one['prompts_per_min']:.2f}x")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=10)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--workers", default="1,2", help="Ray worker counts to measure, comma separated")
    ap.add_argument("--runs", type=int, default=5, help="single-prompt runs for the latency columns")
    ap.add_argument("--batch", type=int, default=4, help="batch size of the data-parallel column")
    ap.add_argument("--ray-address", default=None, help="join this cluster instead of starting a local one")
    ap.add_argument("--base", type=Path, default=None, help="Loom base directory with models/ (default: tiny)")
    ap.add_argument("--two-hosts", action="store_true", help="two network namespaces (root): hosts and faults")
    args = ap.parse_args()
    if args.two_hosts:
        return _two_hosts(args)
    import torch

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="loom-bench-"))
    base = args.base
    if base is None:
        base = tmp / "base"
        (base / "models" / "checkpoints").mkdir(parents=True)
        shutil.copyfile(TINY, base / "models" / "checkpoints" / TINY.name)
    rows: list[tuple[str, dict[str, float]]] = []
    try:
        local = _loom(base, tmp / "local", "local", 0, None)
        rows.append(("in-process worker", asyncio.run(_bench(local, args, 1))))
        local.close()
        for n in [int(x) for x in args.workers.split(",") if x.strip()]:
            loom = _loom(base, tmp / f"ray{n}", "ray", n, args.ray_address)
            rows.append((f"ray, {n} worker{'s' if n > 1 else ''}", asyncio.run(_bench(loom, args, n))))
            loom.close()
            print(f"# done: ray x{n}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base_cached = rows[0][1]["cached_ms"]
    print(f"\n{args.prompts} txt2img prompts, {args.size}x{args.size}, {args.steps} steps, tiny checkpoint, "
          f"CPU (torch threads per process: 1)\n")
    print("| backend | prompts/min | POST -> first executing (idle, median) | fully cached prompt (median) "
          f"| dispatch overhead / prompt | one batch-{args.batch} prompt |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        over = "-" if name.startswith("in-process") else f"{r['cached_ms'] - base_cached:.1f} ms"
        print(f"| {name} | {r['ppm']:.1f} | {r['first_ms']:.0f} ms | {r['cached_ms']:.1f} ms | {over} "
              f"| {r['batch_s']:.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
