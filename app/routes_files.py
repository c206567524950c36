"""/view, /upload/image, /upload/mask (spec 1.7, 1.8), confined to input / output / temp.

/upload/image takes images and, by file extension, audio and video files (`engine.media_types`; ComfyUI's audio
and video widgets upload through it); /view serves those with their Content-Type from the same table."""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from app.errors import BadRequest, NotFound, PayloadTooLarge
from app.safe_paths import check_name, check_relative, confine, sanitize_filename
from app.state import loom_of
from engine.media_types import content_type, media_kind

__all__ = ["routes", "MAX_IMAGE_PIXELS", "decode_image", "check_media"]

DIR_TYPES = ("output", "input", "temp")
MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # refuse decompression bombs before decoding
UNSAFE_MIME = {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript", "text/css",
               "application/javascript", "image/svg+xml"}


def _root(request: web.Request, type_name: str) -> Path:
    cfg = loom_of(request).config
    return {"output": cfg.output_dir, "input": cfg.input_dir, "temp": cfg.temp_dir}[type_name]


def decode_image(data: bytes, what: str) -> Any:
    """Open and fully decode an image (PIL), refusing non-images and oversized pixel counts (400/413)."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > MAX_IMAGE_PIXELS:
            raise PayloadTooLarge(f"{what}: {w}x{h} pixels is over the {MAX_IMAGE_PIXELS} pixel limit",
                                  "upload a smaller image", type_="image_too_large")
        img.load()
        return img
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"{what}: refused as a decompression bomb", str(exc),
                              type_="image_too_large") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadRequest(f"{what} is not a readable image", str(exc), type_="invalid_image") from None


def check_media(data: bytes, kind: str, what: str) -> None:
    """Refuse (400, `invalid_<kind>`) an audio / video upload that FFmpeg cannot open or that holds no stream of its
    kind (a video needs a video stream; an audio file an audio stream)."""
    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            if not (container.streams.video if kind == "video" else container.streams.audio):
                raise BadRequest(f"{what} holds no {kind} stream", type_=f"invalid_{kind}")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise BadRequest(f"{what} is not a readable {kind} file", str(exc), type_=f"invalid_{kind}") from None


async def view(request: web.Request) -> web.StreamResponse:
    q = request.query
    filename = q.get("filename")
    if filename is None:
        raise NotFound("GET /view: query parameter 'filename' is missing", type_="file_not_found")
    type_name = q.get("type", "output") or "output"
    for t in DIR_TYPES:
        if filename.endswith(f" [{t}]"):
            filename, type_name = filename[: -len(t) - 3], t
            break
    if type_name not in DIR_TYPES:
        raise BadRequest(f"GET /view: type={type_name!r} is not one of output, input, temp", type_="bad_type")
    if not filename or filename.startswith("/") or ".." in filename:
        raise BadRequest(f"GET /view: filename {filename!r} is not allowed", "give a plain file name",
                         type_="bad_path")
    check_name(os.path.basename(filename.replace("\\", "/")), "GET /view: filename")
    subfolder = q.get("subfolder", "")
    folder = confine(_root(request, type_name), subfolder, what="GET /view: subfolder")
    name = os.path.basename(filename.replace("\\", "/"))
    path = confine(folder, name, what="GET /view: filename") if folder.is_dir() else folder / name
    if not path.is_file():
        raise NotFound(f"GET /view: {type_name}/{subfolder + '/' if subfolder else ''}{name} does not exist",
                       type_="file_not_found")
    preview = q.get("preview")
    channel = q.get("channel", "")
    if preview or channel in ("rgb", "a"):
        body, ctype = await asyncio.get_running_loop().run_in_executor(None, _transform, path, preview, channel)
        return web.Response(body=body, content_type=ctype,
                            headers={"Content-Disposition": f'filename="{_quote(name)}"'})
    ctype = content_type(name) or "application/octet-stream"
    if ctype in UNSAFE_MIME:
        ctype = "application/octet-stream"
    return web.FileResponse(path, headers={"Content-Disposition": f'filename="{_quote(name)}"',
                                           "Content-Type": ctype, "X-Content-Type-Options": "nosniff"})


def _quote(name: str) -> str:
    return name.replace('"', "").replace("\r", "").replace("\n", "")


def _transform(path: Path, preview: str | None, channel: str) -> tuple[bytes, str]:
    from PIL import Image

    try:
        img = Image.open(path)
        img.load()
    except Exception as exc:
        raise BadRequest(f"GET /view: {path.name} is not an image ({exc})", type_="invalid_image") from None
    buf = io.BytesIO()
    if preview:
        fmt, _, quality = preview.partition(";")
        q = int(quality) if quality.isdigit() and 1 <= int(quality) <= 100 else 90
        fmt = fmt.lower()
        if fmt not in ("webp", "jpeg") or "a" in channel:
            fmt = "webp"
        out = img.convert("RGBA" if fmt == "webp" and "a" in channel else "RGB")
        out.save(buf, format=fmt.upper(), quality=q)
        return buf.getvalue(), f"image/{fmt}"
    if channel == "rgb":
        img.convert("RGB").save(buf, format="PNG")
    else:  # "a": alpha as the only information, RGB black
        alpha = img.getchannel("A") if "A" in img.getbands() else Image.new("L", img.size, 255)
        out = Image.new("RGBA", img.size, (0, 0, 0, 255))
        out.putalpha(alpha)
        out.save(buf, format="PNG")
    return buf.getvalue(), "image/png"


async def _read_form(request: web.Request) -> tuple[dict[str, str], tuple[str, bytes] | None]:
    if not request.content_type.startswith("multipart/"):
        raise BadRequest(f"POST {request.path}: send multipart/form-data with an 'image' file part",
                         type_="bad_content_type")
    limit = loom_of(request).config.max_upload_bytes
    fields: dict[str, str] = {}
    upload: tuple[str, bytes] | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                continue
            data = bytearray()
            while chunk := await part.read_chunk(1 << 16):
                data += chunk
                if len(data) > limit:
                    raise PayloadTooLarge(f"POST {request.path}: upload over {limit} bytes",
                                          "raise --max-upload-size", type_="upload_too_large")
            if part.name == "image" and part.filename is not None:
                upload = (part.filename, bytes(data))
            elif part.name != "image":
                fields[part.name] = data.decode("utf-8", "replace")
    except (ValueError, AssertionError) as exc:
        raise BadRequest(f"POST {request.path}: malformed multipart body ({exc})", type_="bad_multipart") from None
    return fields, upload


def _target_dir(request: web.Request, fields: dict[str, str]) -> tuple[str, str, Path]:
    type_name = fields.get("type", "input") or "input"
    if type_name not in DIR_TYPES:
        raise BadRequest(f"POST {request.path}: type={type_name!r} is not one of input, temp, output",
                         type_="bad_type")
    subfolder = fields.get("subfolder", "")
    check_relative(subfolder, f"POST {request.path}: subfolder")
    folder = confine(_root(request, type_name), subfolder, what=f"POST {request.path}: subfolder")
    return type_name, subfolder, folder


def _free_name(folder: Path, name: str, data: bytes, overwrite: bool) -> tuple[str, bool]:
    """(final name, write needed): ComfyUI's duplicate detection by sha256, else `stem (n).ext`."""
    if overwrite or not (folder / name).exists():
        return name, True
    if (folder / name).is_file() and hashlib.sha256((folder / name).read_bytes()).digest() == \
            hashlib.sha256(data).digest():
        return name, False
    stem, ext = os.path.splitext(name)
    i = 1
    while (folder / f"{stem} ({i}){ext}").exists():
        i += 1
    return f"{stem} ({i}){ext}", True


async def upload_image(request: web.Request) -> web.Response:
    fields, upload = await _read_form(request)
    if upload is None or not upload[0]:
        raise BadRequest(f"POST {request.path}: the 'image' file part is missing", type_="no_image")
    filename = sanitize_filename(upload[0], f"POST {request.path}: filename")
    kind = media_kind(filename)
    if kind is None:
        decode_image(upload[1], f"POST {request.path}: {filename}")
    else:  # audio / video by extension, as the audio and video upload widgets send them
        check_media(upload[1], kind, f"POST {request.path}: {filename}")
    type_name, subfolder, folder = _target_dir(request, fields)
    overwrite = fields.get("overwrite", "").lower() in ("true", "1")
    folder.mkdir(parents=True, exist_ok=True)
    folder = confine(_root(request, type_name), subfolder, what=f"POST {request.path}: subfolder")
    name, write = _free_name(folder, filename, upload[1], overwrite)
    if write:
        target = confine(folder, name, what=f"POST {request.path}: filename")
        target.write_bytes(upload[1])
    return web.json_response({"name": name, "subfolder": subfolder, "type": type_name})


async def upload_mask(request: web.Request) -> web.Response:
    fields, upload = await _read_form(request)
    if upload is None or not upload[0]:
        raise BadRequest(f"POST {request.path}: the 'image' file part is missing", type_="no_image")
    try:
        ref = json.loads(fields.get("original_ref", ""))
        if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str):
            raise ValueError("not an object with a 'filename'")
    except ValueError as exc:
        raise BadRequest(f"POST {request.path}: original_ref must be JSON "
                         f'{{"filename", "subfolder", "type"}} ({exc})', type_="bad_original_ref") from None
    filename = sanitize_filename(upload[0], f"POST {request.path}: filename")
    mask = decode_image(upload[1], f"POST {request.path}: mask {filename}")
    type_name, subfolder, folder = _target_dir(request, fields)
    ref_type = ref.get("type") or "output"
    if ref_type not in DIR_TYPES:
        raise BadRequest(f"POST {request.path}: original_ref type {ref_type!r} is not one of "
                         "input, temp, output", type_="bad_original_ref")
    ref_name = check_name(str(ref["filename"]), f"POST {request.path}: original_ref filename")
    ref_path = confine(_root(request, ref_type), str(ref.get("subfolder") or ""), ref_name,
                       what=f"POST {request.path}: original_ref")
    if not ref_path.is_file():
        raise NotFound(f"POST {request.path}: original image {ref_type}/{ref.get('subfolder') or ''}"
                       f"/{ref_name} does not exist", type_="file_not_found")
    original = decode_image(ref_path.read_bytes(), f"POST {request.path}: original {ref_name}")
    folder.mkdir(parents=True, exist_ok=True)
    overwrite = fields.get("overwrite", "").lower() in ("true", "1")
    body = _composite(original, mask)
    name, write = _free_name(folder, filename, body, overwrite)
    if write:
        confine(folder, name, what=f"POST {request.path}: filename").write_bytes(body)
    return web.json_response({"name": name, "subfolder": subfolder, "type": type_name})


def _composite(original: Any, mask: Any) -> bytes:
    """The original as RGBA with the mask's alpha, PNG text chunks kept, compress level 4."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (getattr(original, "text", None) or {}).items():
        info.add_text(str(key), str(value))
    out = original.convert("RGBA")
    alpha = mask.convert("RGBA").getchannel("A")
    if alpha.size != out.size:
        alpha = alpha.resize(out.size)
    out.putalpha(alpha)
    buf = io.BytesIO()
    out.save(buf, format="PNG", pnginfo=info, compress_level=4)
    return buf.getvalue()


def routes() -> list[tuple[str, str, Any]]:
    return [("GET", "/view", view), ("POST", "/upload/image", upload_image), ("POST", "/upload/mask", upload_mask)]


