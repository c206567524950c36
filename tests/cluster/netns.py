"""Two "hosts" on one machine: Linux network namespaces joined by one veth, each running its own Ray
daemons (`ray start`), for the lost-host test and bench/cluster.py. Needs root (`ip netns add`); every
process started in a namespace is found again with `ip netns pids` and killed by pid; `close` removes the
namespaces (the veth goes with them) and the temp folders, whatever happened before.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.cluster.connect import health_check_env

__all__ = ["TwoHosts", "netns_unavailable", "RAY"]

RAY = str(Path(sys.executable).with_name("ray"))
GCS_PORT = 6379


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def netns_unavailable() -> str | None:
    """Why two namespaces cannot be built here, or None."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"loomprobe{os.getpid()}"
    try:
        r = _ip("netns", "add", probe, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns add` failed: {exc}"
    if r.returncode != 0:
        return f"`ip netns add` is not permitted here (needs root / CAP_SYS_ADMIN): {r.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class TwoHosts:
    """Namespaces A (head) and B (a node), addresses 10.213.<k>.1 and .2 on a veth; Ray with token auth."""

    def __init__(self, tag: str | None = None) -> None:
        tag = tag or str(os.getpid() % 100000)
        k = int(tag) % 250 + 1
        self.ns = (f"loom{tag}a", f"loom{tag}b")
        self.ips = (f"10.213.{k}.1", f"10.213.{k}.2")
        self.veth = (f"lm{tag}a", f"lm{tag}b")
        self.temp = (Path(f"/tmp/lr{tag}a"), Path(f"/tmp/lr{tag}b"))  # short: Ray's socket paths <= 107 bytes
        self.token = secrets.token_hex(16)
        self.address = f"{self.ips[0]}:{GCS_PORT}"

    def env(self) -> dict[str, str]:
        """The environment of every Ray process and of the Loom server: token auth, fast health checks."""
        return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "OMP_NUM_THREADS": "1",
                "RAY_USAGE_STATS_ENABLED": "0", **health_check_env()}

    def up(self) -> None:
        a, b = self.ns
        for ns in self.ns:
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", self.veth[0], "netns", a, "type", "veth", "peer", "name", self.veth[1], "netns", b)
        for ns, dev, ip in zip(self.ns, self.veth, self.ips, strict=True):
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")

    def exec_args(self, host: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns[host]]

    def start_ray(self, host: int, timeout: float = 180) -> None:
        """`ray start` on host 0 (the head) or 1 (a node joining it), one CPU, no dashboard."""
        common = ["--num-cpus", "1", "--node-ip-address", self.ips[host], "--disable-usage-stats",
                  "--object-store-memory", str(100 * 1024 * 1024), "--temp-dir", str(self.temp[host])]
        role = ["--head", "--port", str(GCS_PORT), "--include-dashboard=false"] if host == 0 else \
            ["--address", self.address]
        r = subprocess.run([*self.exec_args(host), RAY, "start", *role, *common], env=self.env(),
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"ray start on {self.ns[host]} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")

    def pids(self, host: int) -> list[int]:
        r = _ip("netns", "pids", self.ns[host], check=False)
        return [int(p) for p in r.stdout.split()]

    def kill_host(self, host: int) -> list[int]:
        """SIGKILL every process in the host's namespace (its raylet, workers, agents)."""
        pids = self.pids(host)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def close(self) -> None:
        """Kill every process in both namespaces, delete them, remove the temp folders."""
        for host in (1, 0):
            deadline = time.monotonic() + 10
            while self.pids(host) and time.monotonic() < deadline:
                self.kill_host(host)
                time.sleep(0.2)
        for ns in self.ns:
            _ip("netns", "del", ns, check=False)
        for t in self.temp:
            shutil.rmtree(t, ignore_errors=True)
