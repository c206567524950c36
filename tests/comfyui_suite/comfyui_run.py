"""Run one file of ComfyUI's execution suite against Loom's server and count the results per cache setting."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

LOOM_ROOT = Path(__file__).resolve().parents[2]
REDIRECT = Path(__file__).with_name("redirect_conftest.py")
# A suite's server-fixture parameters in test ids: `_server0` (v0.3.64), `server1` (later versions).
SERVER_PARAM = re.compile(r"^_?server\d+$")


@dataclass
class FileResult:
    """Outcomes of one suite file: test id -> 'passed' / 'failed' / 'error' / 'skipped', plus messages."""

    outcomes: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)  # test id -> the cache flags of its server
    log_tail: str = ""

    def counts(self) -> dict[str, tuple[int, int]]:
        """Cache setting -> (passed, run)."""
        table: dict[str, tuple[int, int]] = {}
        for test_id, outcome in self.outcomes.items():
            setting = self.settings.get(test_id, "no server started")
            passed, run = table.get(setting, (0, 0))
            table[setting] = (passed + (outcome == "passed"), run + 1)
        return table

    def failed(self) -> dict[str, str]:
        """Test id -> first line of its failure, for the tests that did not pass."""
        return {t: self.messages.get(t, o) for t, o in self.outcomes.items() if o != "passed"}


def base_name(test_id: str) -> str:
    """A test id without its server parameter (`test_x[_server1-5-True]` -> `test_x[5-True]`)."""
    name, _, params = test_id.partition("[")
    kept = [p for p in params.rstrip("]").split("-") if p and not SERVER_PARAM.match(p)]
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
        for prop in case.iter("property"):
            if prop.get("name") == "loom_cache_flags":
                result.settings[test_id] = prop.get("value", "")
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
