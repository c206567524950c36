#!/usr/bin/env bash
# Creates (or reuses) .venv and installs Loom with what it needs. Sourced by scripts/run and scripts/test.
# torch comes first and pinned, so nothing later pulls a CUDA build; a working torch already present is kept.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LOOM_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
EXTRAS="${LOOM_EXTRAS:-}"  # set by the caller (scripts/test: "test"); never the caller's arguments

if [ ! -x "$PY" ]; then
    if python3 -c "import torch" >/dev/null 2>&1; then
        echo "[loom] reusing the system torch ($(python3 -c 'import torch; print(torch.__version__)'))"
        python3 -m venv --system-site-packages "$VENV"
    else
        python3 -m venv "$VENV"
    fi
fi

# LOOM_TORCHVISION=1 (opt-in): packs that import torchvision (or spandrel) need it, and there is no CPU
# torchvision for torch 2.13.0; torch 2.14.1 + torchvision 0.29.1 install together (a CUDA build of about
# 5.5 GB that also runs on the CPU). Never the default.
if [ "${LOOM_TORCHVISION:-0}" = "1" ]; then
    if ! "$PY" -c "import torchvision" >/dev/null 2>&1; then
        echo "[loom] LOOM_TORCHVISION=1: installing torch==2.14.1 torchvision==0.29.1 (about 5.5 GB)"
        "$PY" -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
    fi
elif ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "[loom] installing torch==2.13.0 (CPU wheel where one is on disk)"
    "$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
fi
TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"

# Reinstall only when the project's dependency list changed.
STAMP="$VENV/.loom-deps-$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)-torch$TORCH_VERSION${EXTRAS:+-$EXTRAS}"
if [ ! -f "$STAMP" ]; then
    CONSTRAINTS="$VENV/.torch-constraint.txt"
    "$PY" -c 'from importlib import metadata as m
for n in ("torch", "torchvision"):
    try: print(f"{n}=={m.version(n)}")
    except m.PackageNotFoundError: pass' > "$CONSTRAINTS"
    echo "[loom] installing dependencies${EXTRAS:+ [$EXTRAS]} (torch pinned at $TORCH_VERSION)"
    "$PY" -m pip install -q --disable-pip-version-check -c "$CONSTRAINTS" -e "$ROOT${EXTRAS:+[$EXTRAS]}"
    touch "$STAMP"
fi

# The editor's JavaScript dependencies, from the committed lockfile.
if [ -f "$ROOT/web/package-lock.json" ]; then
    LOCK_SUM="$(sha256sum "$ROOT/web/package-lock.json" | cut -c1-16)"
    if [ ! -f "$ROOT/web/node_modules/.loom-$LOCK_SUM" ]; then
        echo "[loom] npm ci (web/)"
        (cd "$ROOT/web" && npm ci --silent --no-audit --no-fund)
        touch "$ROOT/web/node_modules/.loom-$LOCK_SUM"
    fi
    if [ -f "$ROOT/web/build.mjs" ]; then
        (cd "$ROOT/web" && node build.mjs)
    fi
fi
