"""/upload/image takes audio files into input/ (or temp/ for recordings) as ComfyUI does; /view serves them with an
audio Content-Type on any host."""
from __future__ import annotations

import io
import wave
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData

from app.loom import Loom


def wav_bytes(frames: int = 800) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(range(256)) * (frames * 2 // 256) + b"\0" * (frames * 2 % 256))
    return buf.getvalue()


def flac_bytes(tmp_path: Path) -> bytes:
    import torch

    from engine import audio

    audio.encode_file(torch.zeros(2, 480), 48000, tmp_path / "a.flac", "flac")
    return (tmp_path / "a.flac").read_bytes()


def form(data: bytes, filename: str, content_type: str, **fields: str) -> FormData:
    f = FormData()
    f.add_field("image", data, filename=filename, content_type=content_type)
    for k, v in fields.items():
        f.add_field(k, v)
    return f


async def test_upload_audio_into_input_and_view_it(client: Any, loom: Loom, tmp_path: Path) -> None:
    resp = await client.post("/upload/image", data=form(wav_bytes(), "voice.wav", "audio/wav"))
    assert resp.status == 200 and await resp.json() == {"name": "voice.wav", "subfolder": "", "type": "input"}
    assert (loom.config.input_dir / "voice.wav").read_bytes() == wav_bytes()
    resp = await client.post("/upload/image", data=form(flac_bytes(tmp_path), "song.flac", "audio/flac"))
    assert resp.status == 200
    for name, ctype in (("voice.wav", "audio/wav"), ("song.flac", "audio/flac")):
        view = await client.get("/view", params={"filename": name, "type": "input"})
        assert view.status == 200 and view.content_type == ctype
        assert await view.read() == (loom.config.input_dir / name).read_bytes()


async def test_recording_upload_to_temp(client: Any, loom: Loom) -> None:
    """What the frontend's RecordAudio widget sends: subfolder "audio", type "temp"."""
    data = form(wav_bytes(), "recording-1712345678901.wav", "audio/wav", subfolder="audio", type="temp")
    resp = await client.post("/upload/image", data=data)
    assert await resp.json() == {"name": "recording-1712345678901.wav", "subfolder": "audio", "type": "temp"}
    assert (loom.config.temp_dir / "audio" / "recording-1712345678901.wav").is_file()


@pytest.mark.parametrize("name, ctype", [("a.mp3", "audio/mpeg"), ("a.opus", "audio/ogg"), ("a.ogg", "audio/ogg"),
                                         ("a.m4a", "audio/mp4"), ("a.flac", "audio/flac"), ("a.wav", "audio/wav")])
async def test_view_audio_content_types(client: Any, loom: Loom, name: str, ctype: str) -> None:
    (loom.config.output_dir / "audio").mkdir()
    (loom.config.output_dir / "audio" / name).write_bytes(b"data")
    resp = await client.get("/view", params={"filename": name, "subfolder": "audio", "type": "output"})
    assert resp.status == 200 and resp.content_type == ctype


async def test_upload_refuses_a_fake_audio_file(client: Any, loom: Loom) -> None:
    resp = await client.post("/upload/image", data=form(b"#!/bin/sh\necho hi\n" * 20, "x.mp3", "audio/mpeg"))
    assert resp.status == 400 and (await resp.json())["error"]["type"] == "invalid_audio"
    assert "x.mp3" in (await resp.json())["error"]["message"]
    assert not (loom.config.input_dir / "x.mp3").exists()
