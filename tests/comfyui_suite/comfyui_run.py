"""Run one file of ComfyUI's execution suite against Loom's server and count the results per cache setting."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

LOOM_ROOT = Path(__file__).resolve().parents[2]
REDIRECT = Path(__file__).with_name("redirect_conftest.py")
# The suite's `_server` fixture params, in order: (use_lru, lru_size) -> the flag ComfyUI passes.
CACHE_SETTINGS = {"_server0": "classic (no flag)", "_server1": "--cache-lru 0", "_server2": "--cache-lru 100"}


@dataclass
class FileResult:
    """Outcomes of one suite file: test id -> 'passed' / 'failed' / 'error' / 'skipped', plus messages."""

    outcomes: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    log_tail: str = ""

    def counts(self) -> dict[str, tuple[int, int]]:
        """Cache setting -> (passed, run)."""
        table: dict[str, tuple[int, int]] = {}
        for test_id, outcome in self.outcomes.items():
            setting = cache_setting(test_id)
            passed, run = table.get(setting, (0, 0))
            table[setting] = (passed + (outcome == "passed"), run + 1)
        return table

    def failed(self) -> dict[str, str]:
        """Test id -> first line of its failure, for the tests that did not pass."""
        return {t: self.messages.get(t, o) for t, o in self.outcomes.items() if o != "passed"}


def cache_setting(test_id: str) -> str:
    """The cache setting a test id ran under (`test_x[_server1-5-True]` -> '--cache-lru 0')."""
    params = test_id.partition("[")[2].rstrip("]").split("-")
    for param in params:
        if param in CACHE_SETTINGS:
            return CACHE_SETTINGS[param]
    return "one server"


def base_name(test_id: str) -> str:
    """A test id without its cache-setting parameter (`test_x[_server1-5-True]` -> `test_x[5-True]`)."""
    name, _, params = test_id.partition("[")
    kept = [p for p in params.rstrip("]").split("-") if p and p not in CACHE_SETTINGS]
    return f"{name}[{'-'.join(kept)}]" if kept else name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_file(suite: Path, test_file: str, timeout: float, extra_args: tuple[str, ...] = ()) -> FileResult:
    """Run `tests/execution/<test_file>` of the suite extracted at `suite`; return its outcomes."""
    shutil.copy(REDIRECT, suite / "conftest.py")
    report = suite / f"{test_file}.xml"
    log = suite / f"{test_file}.log"
    cmd = [sys.executable, "-m", "pytest", f"tests/execution/{test_file}", "-p", "no:cacheprovider",
           "--port", str(_free_port()), "--output_dir", str(suite / "output"), f"--junitxml={report}",
           "-o", "junit_family=xunit1", *extra_args]
    env = {**os.environ, "LOOM_ROOT": str(LOOM_ROOT), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    with log.open("wb") as out:
        subprocess.run(cmd, cwd=suite, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                       check=False)
    result = FileResult(log_tail=log.read_text(errors="replace")[-4000:])
    if not report.exists():
        return result
    for case in ET.parse(report).getroot().iter("testcase"):
        test_id = case.get("name", "")
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
                message = (child.get("message") or "").strip().splitlines()[0:1]
                message = message[0][:300] if message else child.tag
        if outcome == "error" and test_id in result.outcomes:
            continue  # a teardown error after the test's own result
        result.outcomes[test_id] = outcome
        if message:
            result.messages[test_id] = message
    return result
