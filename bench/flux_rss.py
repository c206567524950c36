"""Peak RSS of loading a full-size Flux.1-dev layout (bf16, ~23.8 GB) with UNETLoader's engine path.

Run: ``.venv/bin/python bench/flux_rss.py [--dir /tmp]``. Writes a *sparse* safetensors file with the key names and
shapes of ``flux1-dev.safetensors`` (taken from Loom's own network built on the meta device; the data section is a
hole, so it takes no disk space and reads as zeros), then loads it with ``engine.loading.load_unet`` in a fresh
subprocess and reports RSS growth (peak sampled every 2 ms, and after the load) against the file size. Matrices
stay memory-mapped in bf16 (untouched pages cost nothing); only biases and norm gains are widened to fp32.
Pass ``--forward`` to also run one 16x16-latent model call (reads every matrix once; slow on a CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def write_sparse(path: Path) -> int:
    import torch

    from engine.meta_build import meta_build
    from engine.networks.configs import FluxConfig
    from engine.networks.flux import Flux

    net = meta_build(Flux, FluxConfig())
    header: dict[str, object] = {}
    offset = 0
    for key, t in net.state_dict().items():
        size = t.numel() * 2
        header[key] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    del torch
    return 8 + len(raw) + offset


def child(path: str, forward: bool) -> None:
    import torch

    from engine.device import DevicePolicy
    from engine.loading import load_unet
    from engine.model_management import ModelManager

    torch.set_num_threads(1)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    base = _rss()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    model = load_unet(path, ModelManager(DevicePolicy.cpu()))
    load_s = time.perf_counter() - t0
    after = _rss()
    dtypes = sorted({str(p.dtype) for p in model.diffusion_model.parameters() if p.ndim >= 2})
    result = {"load_s": load_s, "rss_after_load": after - base, "matrix_dtypes": dtypes,
              "params": sum(p.numel() for p in model.diffusion_model.parameters())}
    if forward:
        x = torch.zeros(1, 16, 16, 16)
        y = torch.zeros(1, 769)
        t0 = time.perf_counter()
        model.apply_model(x, torch.tensor([0.5]), torch.zeros(1, 16, 4096), y=y)
        result["forward_s"] = time.perf_counter() - t0
    done.set()
    thread.join()
    result["peak_rss_growth"] = max(peak[0], _rss()) - base
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--forward", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.forward)
        return
    path = Path(a.dir) / "loom-flux1-dev-layout.sparse.safetensors"
    size = write_sparse(path)
    try:
        out = subprocess.run([sys.executable, __file__, "--child", str(path)] + (["--forward"] if a.forward else []),
                             capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        result = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        path.unlink(missing_ok=True)
    gib = 1024 ** 3
    print(f"file {size / gib:.2f} GiB (sparse), {result['params'] / 1e9:.2f} B params, matrices {result['matrix_dtypes']}")
    print(f"load {result['load_s']:.2f} s; RSS growth after load {result['rss_after_load'] / gib:.3f} GiB, "
          f"peak {result['peak_rss_growth'] / gib:.3f} GiB"
          + (f"; one forward {result['forward_s']:.1f} s" if "forward_s" in result else ""))


if __name__ == "__main__":
    main()
