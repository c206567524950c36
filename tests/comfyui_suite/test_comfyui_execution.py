"""ComfyUI's own execution suite run unchanged against Loom's server (issue 24).

ComfyUI's `tests/execution` (test_execution.py, test_async_nodes.py, test_progress_isolation.py and the
`testing_nodes/testing-pack` they load) is read from a ComfyUI checkout on this machine (see
`comfyui_checkout.py`; never vendored), extracted into a scratch folder and run by pytest in a subprocess.
The only change is `redirect_conftest.py`: the suite's `python main.py ...` starts Loom's `server.py` with
the same flags. The suite itself runs every test under each of its cache settings (classic, `--cache-lru 0`,
`--cache-lru 100`), all of which Loom accepts.

Skips, saying why, where no checkout or no `websocket-client` is present. About 3 minutes per ComfyUI
version on a 2-core machine, hence `slow`. Set LOOM_COMFYUI_REPORT=<file.json> to keep the counts, and
LOOM_COMFYUI_SKIP_TIMING=1 to pass the suite's own --skip-timing-checks on a loaded machine.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from comfyui_checkout import PINNED, SUITE_FILES, Version, extract, find_source, suite_tree, versions
from comfyui_run import FileResult, base_name, run_file

pytestmark = pytest.mark.slow

# Tests Loom fails on purpose (a ComfyUI behaviour that would hurt users): base test name -> reason.
EXPECTED_FAILURES: dict[str, str] = {}
FILE_TIMEOUT_S = 900.0


def _source_or_skip() -> Path:
    if importlib.util.find_spec("websocket") is None:
        pytest.skip("ComfyUI's execution suite needs the websocket-client package (pip install websocket-client)")
    try:
        source, _ = find_source()
    except LookupError as exc:
        if os.environ.get("LOOM_COMFYUI_DIR"):  # asked for a checkout that is not there: say so loudly
            pytest.fail(str(exc))
        pytest.skip(f"ComfyUI's execution suite not run: {exc}")
    return source


def _version(which: str) -> Version:
    found = versions(_source_or_skip())
    if which == "pinned":
        pinned = [v for v in found if v.commit == PINNED[1]]
        if not pinned:
            pytest.skip(f"the ComfyUI checkout does not hold the pinned {PINNED[0]} ({PINNED[1][:8]})")
        return pinned[0]
    newest = [v for v in found if v.commit != PINNED[1]]
    if not newest:
        pytest.skip(f"the checkout's newest commit is the pinned {PINNED[0]}; its run is the 'pinned' one")
    if len(found) > 1 and suite_tree(newest[0]) == suite_tree(found[0]):
        pytest.skip(f"{newest[0].label} has the same tests/execution tree as {PINNED[0]} "
                    f"({suite_tree(newest[0])[:10]}): the pinned run covers it")
    return newest[0]


def _record(version: Version, test_file: str, result: FileResult) -> None:
    path = os.environ.get("LOOM_COMFYUI_REPORT")
    if not path:
        return
    report = Path(path)
    data = json.loads(report.read_text()) if report.exists() else {}
    data.setdefault(version.label, {"commit": version.commit, "suite_tree": suite_tree(version)})[test_file] = {
        "counts": {k: list(v) for k, v in result.counts().items()},
        "outcomes": result.outcomes,
        "failed": result.failed(),
    }
    report.write_text(json.dumps(data, indent=1, sort_keys=True))


@pytest.mark.parametrize("test_file", SUITE_FILES)
@pytest.mark.parametrize("which", ["pinned", "newest"])
def test_comfyui_execution_suite(which: str, test_file: str, tmp_path: Path) -> None:
    version = _version(which)
    suite = extract(version, tmp_path / "comfyui")
    if not (suite / "tests" / "execution" / test_file).exists():
        pytest.skip(f"{version.label} has no tests/execution/{test_file}")
    extra = ("--skip-timing-checks",) if os.environ.get("LOOM_COMFYUI_SKIP_TIMING") == "1" else ()
    result = run_file(suite, test_file, FILE_TIMEOUT_S, extra)
    _record(version, test_file, result)
    assert result.outcomes, f"the suite ran no test; its output ended with:\n{result.log_tail}"
    counts = ", ".join(f"{setting}: {p}/{n}" for setting, (p, n) in result.counts().items())
    print(f"\n{version.label} {test_file}: {counts}")
    unexpected = {t: m for t, m in result.failed().items() if base_name(t) not in EXPECTED_FAILURES}
    assert not unexpected, f"{version.label} {test_file}: {counts}; failed:\n" + "\n".join(
        f"  {t}: {m}" for t, m in sorted(unexpected.items()))
    passing_on_purpose = {base_name(t) for t, o in result.outcomes.items() if o == "passed"} & set(EXPECTED_FAILURES)
    assert not passing_on_purpose, f"listed as failing on purpose but passed: {sorted(passing_on_purpose)}"
