"""Runs inside host A's namespace (`ip netns exec`): starts a Loom server on the Ray cluster, posts prompts,
optionally kills every process of host B mid-run, and prints one JSON line with what it saw.

    python tests/cluster/netns_driver.py --ray-address IP:6379 --base DIR --run-dir DIR [--kill-ns NS
        --kill-ip IP] [--prompts N] [--late N] [--steps N] [--port P] [--workers N]

The result: per prompt its history status, the node that ran it (history `node_ip`), how many
`execution_start` / `execution_success` / `execution_restart` frames it had; the kill and rerun times;
the slowest /system_stats call. It asserts nothing (the test and bench/cluster.py read it).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--ray-address", required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--kill-ns", default=None)
    p.add_argument("--kill-ip", default=None)
    p.add_argument("--cut-dev", default=None, help="cut the link (this veth in --kill-ns down) instead of killing")
    p.add_argument("--prompts", type=int, default=6)
    p.add_argument("--late", type=int, default=2, help="prompts posted after the kill")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--port", type=int, default=8231)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--warmup", type=int, default=0, help="prompts run (and waited for) before timing")
    p.add_argument("--ready-timeout", type=float, default=300)
    p.add_argument("--timeout", type=float, default=300)
    return p.parse_args(argv)


def _start_server(a: argparse.Namespace) -> subprocess.Popen[bytes]:
    run = Path(a.run_dir)
    cmd = [sys.executable, str(REPO / "server.py"), "--backend", "ray", "--ray-address", a.ray_address,
           "--ray-workers", str(a.workers), "--cpu", "--listen", "127.0.0.1", "--port", str(a.port),
           "--base-directory", a.base, "--output-directory", str(run / "output"),
           "--user-directory", str(run / "user"), "--temp-directory", str(run / "temp"),
           "--preview-method", "none", "--disable-all-custom-nodes"]
    log = open(run / "server.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))


async def _drive(a: argparse.Namespace, out: dict[str, Any]) -> None:
    import aiohttp
    from cluster_helpers import txt2img

    url = f"http://127.0.0.1:{a.port}"
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as http:
        while True:  # the server up and every worker ready
            try:
                async with http.get(url + "/system_stats") as r:
                    stats = await r.json()
                if stats["cluster"]["workers_ready"] >= a.workers:
                    break
            except aiohttp.ClientError:
                pass
            if time.monotonic() - t0 > a.ready_timeout:
                raise TimeoutError(f"workers not ready after {a.ready_timeout}s")
            await asyncio.sleep(0.5)
        out["ready_s"] = round(time.monotonic() - t0, 1)
        out["workers"] = [{k: w.get(k) for k in ("name", "node_ip", "state")} for w in stats["workers"]]
        ws = await http.ws_connect(url + "/ws?clientId=drv")
        frames: list[tuple[float, str, dict[str, Any]]] = []
        ids: list[str] = []
        answers: list[dict[str, Any]] = []

        async def post(seed: int) -> None:
            async with http.post(url + "/prompt", json={"prompt": txt2img(seed, steps=a.steps),
                                                       "client_id": "drv"}) as r:
                body = await r.json()
            answers.append(body)
            ids.append(body["prompt_id"])

        async def read() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    m = json.loads(msg.data)
                    frames.append((time.monotonic(), m["type"], m.get("data") or {}))

        stats_ms: list[float] = []

        async def poll_stats() -> None:
            while True:
                t = time.perf_counter()
                async with http.get(url + "/system_stats") as r:
                    await r.read()
                stats_ms.append((time.perf_counter() - t) * 1000)
                await asyncio.sleep(0.25)

        def finished() -> set[str]:
            return {d.get("prompt_id") for _, t, d in frames if t == "executing" and d.get("node") is None}

        reader, poller = asyncio.create_task(read()), asyncio.create_task(poll_stats())
        for i in range(a.warmup):  # every worker loads the checkpoint before the clock starts
            await post(500 + i)
        while not set(ids) <= finished() and time.monotonic() - t0 < a.ready_timeout:
            await asyncio.sleep(0.1)
        del ids[:], answers[:]
        t_start = time.monotonic()
        for i in range(a.prompts):
            await post(1000 + i)

        victim = None
        if a.kill_ns:
            while victim is None and time.monotonic() - t_start < a.timeout:
                started = [(t, d) for t, k, d in frames if k == "execution_start" and d.get("node_ip") == a.kill_ip
                           and d.get("prompt_id") not in finished()]
                if started and time.monotonic() - started[0][0] > 0.5:
                    victim = started[0][1]["prompt_id"]
                await asyncio.sleep(0.05)
            if victim is None:
                raise TimeoutError(f"no prompt started on {a.kill_ip}")
            pids = subprocess.run(["ip", "netns", "pids", a.kill_ns], capture_output=True, text=True).stdout.split()
            t_kill = time.monotonic()
            if a.cut_dev:  # the host stays up, unreachable: only Ray's health checks can tell
                subprocess.run(["ip", "-n", a.kill_ns, "link", "set", a.cut_dev, "down"], check=True, timeout=30)
                pids = []
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            out["killed_pids"] = len(pids)
            out["victim"] = victim
            for i in range(a.late):
                await post(2000 + i)
        while not set(ids) <= finished() and time.monotonic() - t_start < a.timeout:
            await asyncio.sleep(0.1)
        out["elapsed_s"] = round(time.monotonic() - t_start, 2)
        out["prompts_per_min"] = round(len(ids) / (time.monotonic() - t_start) * 60, 1)
        poller.cancel()
        await ws.close()
        reader.cancel()
        async with http.get(url + "/history") as r:
            history = await r.json()
        out["prompts"] = {}
        for pid in ids:
            kinds = [k for _, k, d in frames if d.get("prompt_id") == pid]
            entry = history.get(pid) or {}
            out["prompts"][pid] = {"status": (entry.get("status") or {}).get("status_str"),
                                   "node_ip": entry.get("node_ip"), "worker": entry.get("worker"),
                                   "starts": kinds.count("execution_start"),
                                   "successes": kinds.count("execution_success"),
                                   "restarts": kinds.count("execution_restart")}
        out["late_warnings"] = [b.get("warning") for b in answers[a.prompts:]]
        out["stats_ms_max"] = round(max(stats_ms), 1) if stats_ms else None
        out["stats_ms_median"] = round(sorted(stats_ms)[len(stats_ms) // 2], 1) if stats_ms else None
        out["stats_calls"] = len(stats_ms)
        if victim is not None:
            restart = [t for t, k, d in frames if k == "execution_restart" and d.get("prompt_id") == victim]
            rerun = [t for t, k, d in frames if k == "execution_start" and d.get("prompt_id") == victim
                     and t > t_kill]
            out["kill_to_restart_event_s"] = round(restart[0] - t_kill, 2) if restart else None
            out["kill_to_rerun_start_s"] = round(rerun[0] - t_kill, 2) if rerun else None
            # the survivor may be busy with its own prompt: the rerun waits for it to finish, then goes first
            if rerun and restart:
                freed = [t for t, k, d in frames if k == "executing" and d.get("node") is None and t <= rerun[0]]
                out["free_to_rerun_start_s"] = round(rerun[0] - max([restart[0], *freed]), 2)
            late = [t for t, k, d in frames if k == "execution_start" and d.get("prompt_id") in ids[a.prompts:]]
            out["kill_to_first_late_start_s"] = round(min(late) - t_kill, 2) if late else None


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    Path(a.run_dir).mkdir(parents=True, exist_ok=True)
    server = _start_server(a)
    out: dict[str, Any] = {}
    try:
        asyncio.run(_drive(a, out))
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
    print("RESULT " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
