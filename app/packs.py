"""`python -m app.packs install-requirements PACK...`: install custom node packs' requirements safely.

ComfyUI-Manager installs a pack by running `pip install -r requirements.txt`. Loom does the same into its
own environment, with two rules no pack can break:
- the installed torch (and torchvision / torchaudio when present) is pinned as a pip constraint, so no
  requirement can replace it;
- nothing that would pull CUDA packages (`nvidia-*`, `triton`, `cuda-*`) or another torch is installed.

Each requirement line is first resolved alone with `pip install --dry-run --report` under the constraints;
a line whose resolution needs a forbidden package, or that pip cannot resolve, is refused with the reason,
and the accepted lines are then installed together. Direct URLs (`git+https://...`) and pip options inside
requirements.txt are refused: install those by hand if you trust them. The command prints what it installed
and what it refused (`--json` for a machine-readable report) and exits 1 when anything was refused.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["InstallReport", "forbidden_reason", "install_requirements", "main", "pinned_constraints"]

TORCH_FAMILY = ("torch", "torchvision", "torchaudio")
_CUDA = re.compile(r"^(nvidia-.*|triton|pytorch-triton.*|cuda-.*|cupy.*)$")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

# (requirement lines, constraints file) -> pip's JSON report of what would be installed
Resolver = Callable[[Sequence[str], Path], dict[str, Any]]
Installer = Callable[[Sequence[str], Path], None]


@dataclass
class InstallReport:
    """What `install-requirements` did for one pack."""

    pack: str
    requirements: str | None
    installed: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    dry_run: bool = False


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def forbidden_reason(name: str, version: str | None = None) -> str | None:
    """Why installing project `name` (at `version`) is not allowed, or None."""
    key = canonical(name)
    if _CUDA.match(key):
        return f"{name} is a CUDA package; Loom never lets a pack install CUDA libraries"
    if key in TORCH_FAMILY:
        installed = _installed_version(key)
        if installed is None:
            return f"{name} would be installed next to Loom's torch by a pack; install it yourself (see README)"
        if version is not None and version != installed:
            return f"{name} {version} would replace the installed {name} {installed}"
    return None


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def pinned_constraints() -> list[str]:
    """`name==version` of the installed torch family: the constraints every install runs under."""
    return [f"{name}=={v}" for name in TORCH_FAMILY if (v := _installed_version(name)) is not None]


def _line_problem(line: str) -> str | None:
    if line.startswith("-"):
        return "pip options in requirements.txt are not followed; run pip yourself if you trust them"
    if "://" in line or line.startswith("git+"):
        return "direct URL requirement (not from the package registry); install it yourself if you trust it"
    if _NAME.match(line) is None:
        return "not a requirement Loom can read"
    return None


def requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a requirements.txt (comments and blank lines dropped)."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def pip_resolver(lines: Sequence[str], constraints: Path) -> dict[str, Any]:
    """pip's `--dry-run --report` for `lines` under `constraints` (raises CalledProcessError on failure)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", "-c", str(constraints),
         *lines], capture_output=True, text=True, check=True)
    return dict(json.loads(result.stdout or "{}"))


def pip_installer(lines: Sequence[str], constraints: Path) -> None:
    """`pip install LINES -c CONSTRAINTS` into this Python's environment."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-c", str(constraints), *lines], check=True)


def _report_items(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(item["metadata"]["name"], item["metadata"]["version"]) for item in report.get("install", [])]


def install_requirements(pack: Path, *, resolver: Resolver = pip_resolver, installer: Installer = pip_installer,
                         dry_run: bool = False) -> InstallReport:
    """Install what `pack/requirements.txt` asks for, within the rules of this module's docstring."""
    requirements = pack / "requirements.txt"
    report = InstallReport(pack.name, str(requirements) if requirements.is_file() else None, dry_run=dry_run)
    if not requirements.is_file():
        return report
    accepted: list[str] = []
    planned: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="loom-pack-req-") as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("\n".join(pinned_constraints()) + "\n", encoding="utf-8")
        for line in requirement_lines(requirements):
            problem = _line_problem(line)
            if problem is None:
                problem = forbidden_reason(_NAME.match(line).group(1))  # type: ignore[union-attr]
            if problem is None:
                try:
                    items = _report_items(resolver([line], constraints))
                except subprocess.CalledProcessError as exc:
                    problem = f"pip cannot resolve it with torch pinned: {(exc.stderr or '').strip()[-300:]}"
                else:
                    problem = next((r for n, v in items if (r := forbidden_reason(n, v)) is not None), None)
                    if problem is None:
                        planned.update({canonical(n): f"{n}=={v}" for n, v in items})
            if problem is not None:
                report.refused.append({"requirement": line, "reason": problem})
            else:
                accepted.append(line)
        if accepted and not dry_run:
            installer(accepted, constraints)
    report.installed = sorted(planned.values())
    return report


def _pack_dirs(names: Sequence[str], custom_nodes: Path) -> list[Path]:
    dirs = []
    for name in names:
        path = Path(name)
        if not path.is_dir():
            path = custom_nodes / name
        if not path.is_dir():
            raise SystemExit(f"install-requirements: no pack folder {name!r} (nor {custom_nodes / name})")
        dirs.append(path)
    return dirs


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m app.packs", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install-requirements", help="pip-install packs' requirements.txt safely")
    install.add_argument("packs", nargs="+", help="pack folders, or pack names under --custom-nodes")
    install.add_argument("--custom-nodes", type=Path, default=Path("custom_nodes"))
    install.add_argument("--dry-run", action="store_true", help="resolve and report, install nothing")
    install.add_argument("--json", action="store_true", help="print the reports as JSON")
    args = parser.parse_args(argv)
    reports = [install_requirements(p, dry_run=args.dry_run) for p in _pack_dirs(args.packs, args.custom_nodes)]
    if args.json:
        print(json.dumps([asdict(r) for r in reports], indent=1))
    else:
        for r in reports:
            verb = "would install" if r.dry_run else "installed"
            print(f"{r.pack}: " + ("no requirements.txt" if r.requirements is None else
                                  f"{verb} {', '.join(r.installed) or 'nothing new'}"))
            for refused in r.refused:
                print(f"  refused {refused['requirement']}: {refused['reason']}")
    return 1 if any(r.refused for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
