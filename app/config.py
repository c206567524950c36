"""Command line flags (ComfyUI's names, see spec 8.4) parsed into a frozen `Config`."""
from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["Config", "ConfigError", "add_precision_flags", "build_parser", "parse_args", "precision_fields",
           "is_loopback"]

PREVIEW_METHODS = ("none", "auto", "latent2rgb", "taesd")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class ConfigError(ValueError):
    """A flag combination that cannot work; the message says which flag to change."""


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Config:
    """Everything the server needs from the command line; directories resolved to absolute paths."""

    listen: tuple[str, ...] = ("127.0.0.1",)
    port: int = 8188
    cpu: bool = False
    base_directory: Path = field(default_factory=lambda: Path.cwd())
    output_directory: Path | None = None
    input_directory: Path | None = None
    temp_directory: Path | None = None
    user_directory: Path | None = None
    cache: str = "classic"  # classic | lru | none | ram
    cache_lru: int = 0
    cache_ram: float = 4.0
    preview_method: str = "none"
    preview_size: int = 512
    front_end_root: Path | None = None
    extra_model_paths_config: tuple[Path, ...] = ()
    disable_all_custom_nodes: bool = False
    allow_pack_installs: bool = False  # let packs run pip install while they are imported (off: blocked, reported)
    disable_metadata: bool = False
    verbose: str = "INFO"
    auth_token: str | None = None
    max_upload_size_mb: float = 100.0
    custom_node_dirs: tuple[Path, ...] = ()
    backend: str = "local"  # local | ray (issue 11: app/cluster)
    ray_address: str | None = None  # None: start a local Ray instance; "auto" or host:port: join a cluster
    ray_workers: int = 0  # 0: one per GPU in the cluster, else one per CPU slot (at most 2)
    # precision (ComfyUI's flags; resolved per device in engine.precision): None = the device default
    unet_precision: str | None = None  # fp32 | fp64 | bf16 | fp16 | fp8_e4m3fn | fp8_e5m2
    vae_precision: str | None = None  # fp32 | bf16 | fp16
    text_enc_precision: str | None = None  # fp32 | bf16 | fp16
    cpu_vae: bool = False
    force_fp32: bool = False
    force_fp16: bool = False

    @property
    def output_dir(self) -> Path:
        return (self.output_directory or self.base_directory / "output").resolve()

    @property
    def input_dir(self) -> Path:
        return (self.input_directory or self.base_directory / "input").resolve()

    @property
    def temp_dir(self) -> Path:
        # ComfyUI: `--temp-directory D` means D/temp.
        if self.temp_directory is not None:
            return (self.temp_directory / "temp").resolve()
        return (self.base_directory / "temp").resolve()

    @property
    def user_dir(self) -> Path:
        return (self.user_directory or self.base_directory / "user").resolve()

    @property
    def models_dir(self) -> Path:
        return (self.base_directory / "models").resolve()

    @property
    def custom_nodes_dirs(self) -> tuple[Path, ...]:
        return self.custom_node_dirs or ((self.base_directory / "custom_nodes").resolve(),)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_size_mb * 1024 * 1024)

    @property
    def loopback_only(self) -> bool:
        return all(is_loopback(h) for h in self.listen)

    @property
    def auth_required(self) -> bool:
        """A token is enforced when one was given or when listening beyond loopback."""
        return self.auth_token is not None

    def with_changes(self, **changes: object) -> Config:
        """A copy with some fields replaced (tests and the headless runner use it)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for `python server.py`."""
    p = argparse.ArgumentParser(prog="server.py", description="Loom: a ComfyUI-compatible workflow server")
    p.add_argument("--listen", nargs="?", const="0.0.0.0,::", default="127.0.0.1", metavar="IP[,IP]",
                   help="address(es) to bind; bare flag = all interfaces (needs an auth token)")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--cpu", action="store_true", help="run everything on the CPU")
    p.add_argument("--base-directory", type=Path, default=None)
    p.add_argument("--output-directory", type=Path, default=None)
    p.add_argument("--input-directory", type=Path, default=None)
    p.add_argument("--temp-directory", type=Path, default=None)
    p.add_argument("--user-directory", type=Path, default=None)
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--cache-classic", action="store_true")
    cache.add_argument("--cache-lru", type=int, default=0, metavar="N")
    cache.add_argument("--cache-none", action="store_true")
    cache.add_argument("--cache-ram", nargs="?", type=float, const=4.0, default=None, metavar="GB")
    p.add_argument("--preview-method", choices=PREVIEW_METHODS, default="none")
    p.add_argument("--preview-size", type=int, default=512)
    p.add_argument("--front-end-root", type=Path, default=None, metavar="DIR")
    p.add_argument("--extra-model-paths-config", type=Path, nargs="+", action="append", default=None)
    p.add_argument("--disable-all-custom-nodes", action="store_true")
    p.add_argument("--allow-pack-installs", action="store_true",
                   help="let custom node packs install packages while they are imported (blocked by default)")
    p.add_argument("--disable-metadata", action="store_true", help="write no prompt/workflow into saved PNGs")
    p.add_argument("--verbose", nargs="?", const="DEBUG", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    p.add_argument("--auth-token", default=None,
                   help="token required on every request (Bearer header, ?token= or cookie)")
    p.add_argument("--max-upload-size", type=float, default=100.0, metavar="MB")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where prompts run: this process (local) or worker actors in a Ray cluster (ray)")
    p.add_argument("--ray-address", default=None, metavar="ADDR|auto",
                   help="Ray cluster to join (with --backend ray); default: start a local one")
    p.add_argument("--ray-workers", type=int, default=0, metavar="N",
                   help="worker actors to run (with --backend ray); default: one per GPU")
    add_precision_flags(p)
    return p


UNET_PRECISIONS = ("fp32", "fp64", "bf16", "fp16", "fp8_e4m3fn", "fp8_e5m2")
VAE_PRECISIONS = ("fp16", "fp32", "bf16")
TEXT_ENC_PRECISIONS = ("fp16", "fp32", "bf16")


def add_precision_flags(p: argparse.ArgumentParser) -> None:
    """ComfyUI's precision flags: one choice per network (mutually exclusive groups), stored as names."""
    fp = p.add_mutually_exclusive_group()
    fp.add_argument("--force-fp32", action="store_true", help="every network in fp32 unless a flag below says")
    fp.add_argument("--force-fp16", action="store_true", help="the diffusion model in fp16 (GPU: text encoders too)")
    unet = p.add_mutually_exclusive_group()
    for name in (*UNET_PRECISIONS, "fp8_e8m0fnu"):
        unet.add_argument(f"--{name}-unet", dest="unet_precision", action="store_const", const=name,
                          help=f"diffusion model weights in {name} (on the CPU: see docs/performance.md)")
    vae = p.add_mutually_exclusive_group()
    for name in VAE_PRECISIONS:
        vae.add_argument(f"--{name}-vae", dest="vae_precision", action="store_const", const=name,
                         help=f"run the VAE in {name}")
    p.add_argument("--cpu-vae", action="store_true", help="run the VAE on the CPU")
    te = p.add_mutually_exclusive_group()
    for name in ("fp8_e4m3fn", "fp8_e5m2", *TEXT_ENC_PRECISIONS):
        te.add_argument(f"--{name}-text-enc", dest="text_enc_precision", action="store_const", const=name,
                        help=f"text encoder weights in {name}")


def precision_fields(ns: argparse.Namespace) -> dict[str, Any]:
    """The Config fields of the precision flags in a parsed namespace (`add_precision_flags`); raises
    ConfigError for ComfyUI flags Loom does not support."""
    if ns.unet_precision == "fp8_e8m0fnu":
        raise ConfigError("--fp8_e8m0fnu-unet is not supported by Loom; use --fp8_e4m3fn-unet or --fp8_e5m2-unet")
    if ns.text_enc_precision in ("fp8_e4m3fn", "fp8_e5m2"):
        raise ConfigError(f"--{ns.text_enc_precision}-text-enc is not supported by Loom yet (the text encoders have "
                          "no per-layer cast); use --fp16-text-enc or --bf16-text-enc")
    return {"unet_precision": ns.unet_precision, "vae_precision": ns.vae_precision,
            "text_enc_precision": ns.text_enc_precision, "cpu_vae": ns.cpu_vae, "force_fp32": ns.force_fp32,
            "force_fp16": ns.force_fp16}


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Parse `argv` (not sys.argv implicitly: pass `sys.argv[1:]`) into a Config."""
    ns = build_parser().parse_args(list(argv) if argv is not None else [])
    listen = tuple(h.strip() for h in ns.listen.split(",") if h.strip()) or ("127.0.0.1",)
    if not 0 <= ns.port <= 65535:
        raise ConfigError(f"--port {ns.port} is not a TCP port; use 1-65535 (0 picks a free one)")
    if ns.preview_size < 16:
        raise ConfigError(f"--preview-size {ns.preview_size} is too small; use 16 or more (default 512)")
    if ns.max_upload_size <= 0:
        raise ConfigError("--max-upload-size must be a positive number of MB (default 100)")
    if ns.cache_lru < 0:
        raise ConfigError("--cache-lru N needs N >= 0")
    if ns.ray_workers < 0:
        raise ConfigError("--ray-workers N needs N >= 0 (0: one per GPU in the cluster)")
    if ns.backend != "ray" and (ns.ray_address is not None or ns.ray_workers):
        raise ConfigError("--ray-address / --ray-workers only apply with --backend ray")
    if ns.cache_none:
        cache = "none"
    elif ns.cache_lru:
        cache = "lru"
    elif ns.cache_ram is not None:
        cache = "ram"
    else:
        cache = "classic"
    base = (ns.base_directory or Path.cwd()).resolve()
    extra = tuple(Path(x) for group in (ns.extra_model_paths_config or []) for x in group)
    token = ns.auth_token if ns.auth_token else None
    return Config(
        listen=listen, port=ns.port, cpu=ns.cpu, base_directory=base,
        output_directory=ns.output_directory, input_directory=ns.input_directory,
        temp_directory=ns.temp_directory, user_directory=ns.user_directory,
        cache=cache, cache_lru=ns.cache_lru, cache_ram=ns.cache_ram if ns.cache_ram is not None else 4.0,
        preview_method=ns.preview_method, preview_size=ns.preview_size, front_end_root=ns.front_end_root,
        extra_model_paths_config=extra, disable_all_custom_nodes=ns.disable_all_custom_nodes,
        allow_pack_installs=ns.allow_pack_installs, disable_metadata=ns.disable_metadata,
        verbose=ns.verbose, auth_token=token, max_upload_size_mb=ns.max_upload_size,
        backend=ns.backend, ray_address=ns.ray_address, ray_workers=ns.ray_workers,
        **precision_fields(ns),
    )
