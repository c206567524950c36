"""/view, /upload/image, /upload/mask: behaviour and path confinement."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from PIL import Image, PngImagePlugin

from app.loom import Loom


def png_bytes(size: tuple[int, int] = (8, 4), color: Any = (10, 20, 30, 128), mode: str = "RGBA",
              text: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
    Image.new(mode, size, color).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def form(data: bytes, filename: str = "a.png", **fields: str) -> FormData:
    f = FormData()
    f.add_field("image", data, filename=filename, content_type="image/png")
    for k, v in fields.items():
        f.add_field(k, v)
    return f


async def test_view_serves_output_file(client: Any, loom: Loom) -> None:
    (loom.config.output_dir / "sub").mkdir()
    (loom.config.output_dir / "sub" / "x.png").write_bytes(png_bytes())
    resp = await client.get("/api/view", params={"filename": "x.png", "subfolder": "sub", "type": "output"})
    assert resp.status == 200 and resp.content_type == "image/png"
    assert await resp.read() == png_bytes()
    assert 'filename="x.png"' in resp.headers["Content-Disposition"]
    (loom.config.input_dir / "in.png").write_bytes(png_bytes())
    assert (await client.get("/view?filename=in.png [input]")).status == 200
    assert (await client.get("/view?filename=in.png&type=input")).status == 200


async def test_view_preview_and_channels(client: Any, loom: Loom) -> None:
    (loom.config.output_dir / "x.png").write_bytes(png_bytes(color=(200, 100, 50, 77)))
    resp = await client.get("/view?filename=x.png&preview=jpeg;80")
    assert resp.content_type == "image/jpeg" and Image.open(io.BytesIO(await resp.read())).format == "JPEG"
    resp = await client.get("/view?filename=x.png&preview=webp;90")
    assert resp.content_type == "image/webp"
    rgb = Image.open(io.BytesIO(await (await client.get("/view?filename=x.png&channel=rgb")).read()))
    assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == (200, 100, 50)
    a = Image.open(io.BytesIO(await (await client.get("/view?filename=x.png&channel=a")).read()))
    assert a.getpixel((0, 0)) == (0, 0, 0, 77)


async def test_view_html_is_not_served_as_html(client: Any, loom: Loom) -> None:
    (loom.config.output_dir / "evil.html").write_text("<script>alert(1)</script>")
    resp = await client.get("/view?filename=evil.html")
    assert resp.status == 200 and resp.content_type == "application/octet-stream"


@pytest.mark.parametrize("params, status", [
    ({}, 404),
    ({"filename": "x.png", "type": "models"}, 400),
    ({"filename": "../secret.txt"}, 400),
    ({"filename": "/etc/passwd"}, 400),
    ({"filename": "..%2Fsecret.txt"}, 400),
    ({"filename": "a/../../secret.txt"}, 400),
    ({"filename": "secret.txt", "subfolder": ".."}, 400),
    ({"filename": "secret.txt", "subfolder": "/tmp"}, 400),
    ({"filename": "secret.txt", "subfolder": "a/../.."}, 400),
    ({"filename": "secret.txt", "subfolder": "link"}, 403),
    ({"filename": "escape.txt"}, 403),
    ({"filename": "missing.png"}, 404),
])
async def test_view_traversal_refused(client: Any, loom: Loom, params: dict[str, str], status: int) -> None:
    secret = loom.config.base_directory / "secret.txt"
    secret.write_text("TOP SECRET")
    os.symlink(loom.config.base_directory, loom.config.output_dir / "link")
    os.symlink(secret, loom.config.output_dir / "escape.txt")
    resp = await client.get("/view", params=params)
    assert resp.status == status
    body = await resp.read()
    assert b"TOP SECRET" not in body and "error" in json.loads(body)


async def test_view_encoded_separator_in_raw_url(client: Any, loom: Loom) -> None:
    (loom.config.base_directory / "secret.txt").write_text("TOP SECRET")
    for raw in ("/view?filename=..%2Fsecret.txt", "/view?filename=%2E%2E%2Fsecret.txt",
                "/view?filename=secret.txt&subfolder=%2E%2E", "/view?filename=..%5Csecret.txt"):
        resp = await client.get(raw)
        assert resp.status in (400, 403), raw
        assert b"TOP SECRET" not in await resp.read()


async def test_upload_image_and_dedupe(client: Any, loom: Loom) -> None:
    resp = await client.post("/upload/image", data=form(png_bytes()))
    assert resp.status == 200
    assert await resp.json() == {"name": "a.png", "subfolder": "", "type": "input"}
    assert (loom.config.input_dir / "a.png").read_bytes() == png_bytes()
    # same content: duplicate, same name; different content: renamed
    assert (await (await client.post("/upload/image", data=form(png_bytes()))).json())["name"] == "a.png"
    other = png_bytes(color=(1, 2, 3, 4))
    assert (await (await client.post("/api/upload/image", data=form(other))).json())["name"] == "a (1).png"
    resp = await client.post("/upload/image", data=form(other, overwrite="true"))
    assert (await resp.json())["name"] == "a.png" and (loom.config.input_dir / "a.png").read_bytes() == other
    resp = await client.post("/upload/image", data=form(png_bytes(), subfolder="clip/space", type="temp"))
    assert await resp.json() == {"name": "a.png", "subfolder": "clip/space", "type": "temp"}
    assert (loom.config.temp_dir / "clip" / "space" / "a.png").is_file()


@pytest.mark.parametrize("fields, filename, status", [
    ({"subfolder": "../../x"}, "a.png", 400),
    ({"subfolder": "/abs"}, "a.png", 400),
    ({"subfolder": "link"}, "a.png", 403),
    ({"type": "models"}, "a.png", 400),
    ({}, "", 400),
])
async def test_upload_confined(client: Any, loom: Loom, fields: dict[str, str], filename: str,
                               status: int) -> None:
    os.symlink(loom.config.base_directory, loom.config.input_dir / "link")
    resp = await client.post("/upload/image", data=form(png_bytes(), filename=filename, **fields))
    assert resp.status == status
    assert "error" in await resp.json()
    assert not (loom.config.base_directory / "a.png").exists()


async def test_upload_filename_sanitized(client: Any, loom: Loom) -> None:
    for hostile in ("../../evil.png", "..\\..\\evil.png", "/abs/evil.png", " .evil.png. "):
        resp = await client.post("/upload/image", data=form(png_bytes(), filename=hostile))
        assert resp.status == 200, hostile
        assert (await resp.json())["name"] == "evil.png", hostile
    assert (loom.config.input_dir / "evil.png").is_file()
    assert not (loom.config.base_directory / "evil.png").exists()


async def test_upload_must_be_image(client: Any, loom: Loom) -> None:
    resp = await client.post("/upload/image", data=form(b"#!/bin/sh\nrm -rf /\n", filename="x.png"))
    assert resp.status == 400 and (await resp.json())["error"]["type"] == "invalid_image"
    assert not (loom.config.input_dir / "x.png").exists()
    resp = await client.post("/upload/image", data=b"not multipart")
    assert resp.status == 400


async def test_upload_decompression_bomb_refused(client: Any) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # A PNG header announcing 30000 x 30000 pixels (900 Mpx) with almost no data behind it.
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 1, 0, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    resp = await client.post("/upload/image", data=form(bomb, filename="bomb.png"))
    assert resp.status == 413 and (await resp.json())["error"]["type"] == "image_too_large"
    # just over Loom's own 64 Mpx limit but under PIL's bomb threshold: refused before decoding
    mid = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 9000, 8000, 1, 0, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    resp = await client.post("/upload/image", data=form(mid, filename="big.png"))
    assert resp.status == 413 and "pixel limit" in (await resp.json())["error"]["message"]


async def test_upload_size_limit(aiohttp_client: Any, make_loom: Any) -> None:
    from server import create_app

    c = await aiohttp_client(create_app(make_loom(max_upload_size_mb=0.01), web_root=None))
    resp = await c.post("/upload/image", data=form(os.urandom(20000), filename="big.png"))
    assert resp.status == 413 and "error" in await resp.json()


async def test_upload_mask_composites_alpha(client: Any, loom: Loom) -> None:
    original = png_bytes((8, 4), (200, 100, 50), mode="RGB", text={"prompt": "{}", "workflow": "{\"a\":1}"})
    (loom.config.output_dir / "orig.png").write_bytes(original)
    mask = png_bytes((8, 4), (0, 0, 0, 33))
    ref = json.dumps({"filename": "orig.png", "subfolder": "", "type": "output"})
    resp = await client.post("/upload/mask", data=form(mask, filename="m.png", original_ref=ref,
                                                       subfolder="clipspace"))
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"name": "m.png", "subfolder": "clipspace", "type": "input"}
    out = Image.open(Path(loom.config.input_dir / "clipspace" / "m.png"))
    assert out.mode == "RGBA" and out.getpixel((3, 2)) == (200, 100, 50, 33)
    assert out.text == {"prompt": "{}", "workflow": "{\"a\":1}"}


@pytest.mark.parametrize("ref, status", [
    ({"filename": "../secret.png", "type": "output"}, 400),
    ({"filename": "orig.png", "subfolder": "../..", "type": "output"}, 400),
    ({"filename": "orig.png", "type": "nope"}, 400),
    ({"filename": "missing.png", "type": "output"}, 404),
    ("not json", 400),
])
async def test_upload_mask_ref_confined(client: Any, ref: Any, status: int) -> None:
    raw = ref if isinstance(ref, str) else json.dumps(ref)
    resp = await client.post("/upload/mask", data=form(png_bytes(), filename="m.png", original_ref=raw))
    assert resp.status == status and "error" in await resp.json()


async def test_json_body_size_limit(aiohttp_client: Any, make_loom: Any) -> None:
    from server import create_app

    c = await aiohttp_client(create_app(make_loom(max_upload_size_mb=0.01), web_root=None))
    big = {"prompt": {"1": {"class_type": "Const", "inputs": {"value": 1, "pad": "x" * 20000}}}}
    resp = await c.post("/prompt", json=big)
    assert resp.status == 413 and (await resp.json())["error"]["type"] == "payload_too_large"
