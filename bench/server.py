"""Server benchmark: start-up time, and 100 concurrent loopback clients submitting and polling prompts.

    python bench/server.py [--clients 100] [--seconds 20] [--node-seconds 0]

Starts `server.py` as a subprocess on a free port with a throw-away base directory and a one-node pack
(an output node that returns at once, or sleeps `--node-seconds`), measures the time from process start to the
first accepted POST /prompt, then runs the clients for a bounded time: each submits a prompt, polls
/history/{id} until it is done, and repeats. Prints /prompt latency p50 / p99 / max and checks that every
accepted prompt finished successfully. Exit status 1 if one did not (or the p99 target is missed with --strict).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import aiohttp
import psutil

REPO = Path(__file__).resolve().parents[1]
PACK = textwrap.dedent('''
    import time

    class BenchEcho:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("INT", {"default": 0, "min": 0, "max": 2**31}),
                                 "seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 10.0})}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True
        CATEGORY = "bench"

        def run(self, value, seconds):
            if seconds:
                time.sleep(seconds)
            return {"ui": {"text": [str(value)]}}

    NODE_CLASS_MAPPINGS = {"BenchEcho": BenchEcho}
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


async def first_prompt(url: str, proc: subprocess.Popen[bytes], t0: float) -> float:
    """Seconds from process start to the first 200 on POST /prompt."""
    body = {"prompt": {"1": {"class_type": "BenchEcho", "inputs": {"value": 0, "seconds": 0.0}}}}
    async with aiohttp.ClientSession() as s:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with status {proc.returncode}")
            try:
                async with s.post(url + "/prompt", json=body) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.02)


def server_ms(resp: aiohttp.ClientResponse) -> float | None:
    raw = resp.headers.get("Server-Timing", "")
    if "dur=" not in raw:
        return None
    return float(raw.split("dur=")[1].split(";")[0].split(",")[0])


async def client(url: str, n: int, stop_at: float, node_seconds: float, poll: float, think: float,
                 latencies: list[float], server_side: list[float], accepted: list[str], errors: list[str],
                 seen_done: list[str]) -> None:
    async with aiohttp.ClientSession() as s:
        i = 0
        if think:
            await asyncio.sleep(think * n / 100)  # spread the clients' first submissions over `think`
        while time.perf_counter() < stop_at:
            body = {"prompt": {"1": {"class_type": "BenchEcho",
                                     "inputs": {"value": n * 100000 + i, "seconds": node_seconds}}},
                    "client_id": f"bench-{n}"}
            t = time.perf_counter()
            async with s.post(url + "/prompt", json=body) as r:
                data = await r.json()
            latencies.append(time.perf_counter() - t)
            ms = server_ms(r)
            if ms is not None:
                server_side.append(ms / 1000)
            if r.status != 200:
                errors.append(f"POST /prompt {r.status}: {data}")
                continue
            pid = data["prompt_id"]
            accepted.append(pid)
            i += 1
            while time.perf_counter() < stop_at:
                async with s.get(f"{url}/history/{pid}") as r:
                    entry = (await r.json()).get(pid)
                    if entry is not None:
                        if entry["status"]["status_str"] != "success":
                            errors.append(f"prompt {pid}: {entry['status']}")
                        seen_done.append(pid)
                        break
                await asyncio.sleep(poll)
            if think:
                await asyncio.sleep(think)


async def run(args: argparse.Namespace) -> int:
    base = Path(tempfile.mkdtemp(prefix="loom-bench-"))
    (base / "custom_nodes" / "bench_pack").mkdir(parents=True)
    (base / "custom_nodes" / "bench_pack" / "__init__.py").write_text(PACK)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    prefix = [sys.executable, "-m", "cProfile", "-o", args.profile] if args.profile else [sys.executable]
    proc = subprocess.Popen([*prefix, str(REPO / "server.py"), "--port", str(port), "--cpu",
                             "--base-directory", str(base), "--verbose", "WARNING"], cwd=str(base),
                            stdout=open(base / "server.log", "wb"), stderr=subprocess.STDOUT)
    try:
        startup = await asyncio.wait_for(first_prompt(url, proc, t0), 120)
        latencies: list[float] = []
        server_side: list[float] = []
        accepted: list[str] = []
        errors: list[str] = []
        seen_done: list[str] = []  # the clients saw these finish (history keeps only the last 10,000 entries)
        ps = psutil.Process(proc.pid)
        cpu0 = sum(ps.cpu_times()[:2])
        own0 = time.process_time()
        load0 = time.perf_counter()
        stop_at = time.perf_counter() + args.seconds
        await asyncio.gather(*(client(url, n, stop_at, args.node_seconds, args.poll, args.think, latencies, server_side,
                                      accepted, errors, seen_done)
                               for n in range(args.clients)))
        server_cpu = sum(ps.cpu_times()[:2]) - cpu0
        client_cpu = time.process_time() - own0
        load_wall = time.perf_counter() - load0
        # every accepted prompt must finish (bounded wait for the tail of the queue)
        deadline = time.perf_counter() + args.drain_seconds
        async with aiohttp.ClientSession() as s:
            while time.perf_counter() < deadline:
                async with s.get(url + "/prompt") as r:
                    if (await r.json())["exec_info"]["queue_remaining"] == 0:
                        break
                await asyncio.sleep(0.2)
            async with s.get(url + "/history") as r:
                history = await r.json()
        done = set(seen_done)
        missing = [p for p in accepted if p not in history and p not in done]
        failed = [p for p in accepted if p in history and history[p]["status"]["status_str"] != "success"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    rows = [
        ("server start -> first accepted /prompt", f"{startup * 1000:.0f} ms"),
        ("clients / duration / poll / think", f"{args.clients} / {args.seconds:.0f} s / {args.poll * 1000:.0f} ms"
                                              f" / {args.think * 1000:.0f} ms"),
        ("prompts accepted", f"{len(accepted)} ({len(accepted) / args.seconds:.1f}/s)"),
        ("/prompt latency p50", f"{pct(latencies, 50) * 1000:.1f} ms"),
        ("/prompt latency p99", f"{pct(latencies, 99) * 1000:.1f} ms"),
        ("/prompt latency max", f"{max(latencies) * 1000:.1f} ms"),
        ("/prompt latency mean", f"{statistics.fmean(latencies) * 1000:.1f} ms"),
        ("/prompt handler time p50 (Server-Timing)", f"{pct(server_side, 50) * 1000:.2f} ms"),
        ("/prompt handler time p99 (Server-Timing)", f"{pct(server_side, 99) * 1000:.2f} ms"),
        ("server CPU during load (share of one core)", f"{server_cpu:.1f} s ({server_cpu / load_wall:.0%})"),
        ("bench clients' CPU during load", f"{client_cpu:.1f} s ({client_cpu / load_wall:.0%})"),
        ("server CPU per prompt (POST + polls + run)", f"{server_cpu / max(1, len(accepted)) * 1000:.2f} ms"),
        ("machine load average (1 min) / cores", f"{os.getloadavg()[0]:.1f} / {os.cpu_count()}"),
        ("rejected /prompt or finished with an error (seen by the clients)", str(len(errors))),
        ("accepted but not finished", str(len(missing))),
        ("finished with an error", str(len(failed))),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'metric'.ljust(width)} | value\n{'-' * width}-|------")
    for name, value in rows:
        print(f"{name.ljust(width)} | {value}")
    if errors:
        print("first rejection:", errors[0])
    ok = not missing and not failed and not errors
    if args.strict and pct(latencies, 99) > 0.1:
        ok = False
        print("p99 above the 100 ms target")
    print("OK" if ok else "FAILED")
    print(json.dumps({"startup_s": startup, "p50_ms": pct(latencies, 50) * 1000,
                      "p99_ms": pct(latencies, 99) * 1000, "accepted": len(accepted)}))
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--node-seconds", type=float, default=0.0, help="time each prompt's node sleeps")
    p.add_argument("--poll", type=float, default=0.25, help="seconds between a client's /history polls")
    p.add_argument("--think", type=float, default=0.0,
                   help="seconds a client waits after its prompt finished before the next (0: saturate)")
    p.add_argument("--drain-seconds", type=float, default=120.0, help="bound on waiting for the queue to empty")
    p.add_argument("--profile", metavar="FILE", help="run the server under cProfile, stats written to FILE")
    p.add_argument("--strict", action="store_true", help="also fail when p99 > 100 ms")
    return asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
