"""engine.video: real mp4 / webm files written and read back through PyAV (frames, rate, count, audio, tags)."""
from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from engine.errors import VideoError
from engine.video import VideoComponents, VideoFromComponents, VideoFromFile, codec

# measured on these inputs (libx264 crf 23 / libvpx-vp9 defaults, yuv420p): mean |error| 0.024 (mp4) and 0.018
# (webm), max 0.17-0.21; solid colours come back within 0.01
MEAN_TOL, MAX_TOL, FLAT_TOL = 0.035, 0.3, 0.012


def _frames(t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(t, 3, h // 8, w // 8, generator=gen)
    up = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    return up.permute(0, 2, 3, 1).contiguous()


def _assert_close_frames(decoded: torch.Tensor, source: torch.Tensor) -> None:
    assert decoded.shape == source.shape and decoded.dtype == torch.float32
    err = (decoded - source).abs()
    assert err.mean() < MEAN_TOL and err.max() < MAX_TOL, (float(err.mean()), float(err.max()))
    # every decoded frame is nearest to its own source frame: order and content survive, not just statistics
    dist = ((decoded[:, None] - source[None]) ** 2).mean(dim=(2, 3, 4))
    assert dist.argmin(dim=1).tolist() == list(range(source.shape[0]))


@pytest.mark.parametrize(("size", "container", "vcodec"), [((64, 96), "mp4", "h264"), ((48, 80), "mp4", "h264"),
                                                           ((64, 96), "webm", "vp9")])
def test_round_trip_frames_rate_and_count(tmp_path: Path, size: tuple[int, int], container: str,
                                          vcodec: str) -> None:
    frames = _frames(12, *size)
    path = tmp_path / f"clip.{container}"
    codec.encode(path, frames, 24, container=container, codec=vcodec)
    info = codec.probe(path)
    assert (info.width, info.height) == (size[1], size[0])
    assert info.frame_count == 12 and info.frame_rate == 24 and info.duration == pytest.approx(0.5, abs=1e-3)
    assert info.video_codec == vcodec and info.audio_codec is None
    decoded = codec.decode(path)
    assert decoded.frame_rate == 24 and decoded.audio is None
    _assert_close_frames(decoded.images, frames)


def test_solid_colours_come_back_in_rgb_order(tmp_path: Path) -> None:
    colours = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.5, 0.25, 0.75]])
    frames = colours[:, None, None, :].expand(4, 32, 48, 3).contiguous()
    codec.encode(tmp_path / "flat.mp4", frames, 8)
    decoded = codec.decode(tmp_path / "flat.mp4").images
    assert (decoded - frames).abs().max() < FLAT_TOL


def test_fractional_rate_is_kept_to_a_thousandth() -> None:
    buffer = io.BytesIO()
    codec.encode(buffer, _frames(5, 32, 32), Fraction(30000, 1001))
    info = codec.probe(buffer)
    assert info.frame_rate == Fraction(2997, 100) and info.frame_count == 5


def test_metadata_tags_as_comfyui_writes_them(tmp_path: Path) -> None:
    prompt = {"1": {"class_type": "CreateVideo", "inputs": {"fps": 24}}}
    workflow = {"nodes": [{"id": 1}], "links": []}
    video = VideoFromComponents(VideoComponents(images=_frames(3, 32, 32), frame_rate=Fraction(24)))
    video.save_to(str(tmp_path / "tagged.mp4"), metadata={"workflow": workflow, "prompt": prompt})
    tags = VideoFromFile(str(tmp_path / "tagged.mp4")).get_components().metadata
    assert tags is not None
    assert json.loads(tags["prompt"]) == prompt and json.loads(tags["workflow"]) == workflow
    # re-saving a file copies its streams and keeps its tags, the caller's overlaid
    VideoFromFile(str(tmp_path / "tagged.mp4")).save_to(str(tmp_path / "copy.mp4"), metadata={"prompt": {"x": 1}})
    copied = codec.probe(tmp_path / "copy.mp4").metadata
    assert json.loads(copied["workflow"]) == workflow and json.loads(copied["prompt"]) == {"x": 1}
    assert codec.decode(tmp_path / "copy.mp4").images.equal(codec.decode(tmp_path / "tagged.mp4").images)


def _tone(seconds: float, rate: int) -> dict[str, object]:
    t = torch.arange(int(seconds * rate)) / rate
    wave = torch.stack([torch.sin(2 * torch.pi * 440 * t), 0.5 * torch.sin(2 * torch.pi * 220 * t)])
    return {"waveform": wave[None].float(), "sample_rate": rate}


@pytest.mark.parametrize(("container", "audio_codec", "out_rate"), [("mp4", "aac", 44100), ("webm", "opus", 48000)])
def test_audio_is_muxed_and_cut_to_the_video(tmp_path: Path, container: str, audio_codec: str, out_rate: int) -> None:
    path = tmp_path / f"av.{container}"
    # 2 s of audio, 1 s of video: ComfyUI keeps ceil(rate / fps * frames) samples
    codec.encode(path, _frames(12, 32, 32), 12, container=container, codec="h264" if container == "mp4" else "vp9",
                 audio=_tone(2.0, 44100))
    info = codec.probe(path)
    assert info.audio_codec == audio_codec and info.frame_count == 12
    audio = codec.decode(path).audio
    assert audio is not None and audio["sample_rate"] == out_rate
    waveform = audio["waveform"]
    assert waveform.shape[:2] == (1, 2)
    # the encoders pad to whole frames (AAC 1024, Opus 960 samples + pre-skip): within 0.1 s of one second
    assert abs(waveform.shape[2] / out_rate - 1.0) < 0.1
    rms = waveform[0].pow(2).mean(dim=1).sqrt()  # 0.707 and 0.354 written: the channels stay apart
    assert rms[0] == pytest.approx(0.707, rel=0.1) and rms[1] == pytest.approx(0.354, rel=0.1)


def test_odd_size_h264_is_refused_naming_size_and_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"odd.mp4.*even dimensions, got 17x15"):
        codec.encode(tmp_path / "odd.mp4", torch.zeros(2, 15, 17, 3), 10)
    assert not (tmp_path / "odd.mp4").exists()
    codec.encode(tmp_path / "odd.webm", torch.zeros(2, 15, 17, 3), 10, container="webm", codec="vp9")
    assert codec.probe(tmp_path / "odd.webm").width == 17


def test_missing_and_corrupt_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="nope.mp4.*does not exist"):
        VideoFromFile(str(tmp_path / "nope.mp4")).get_dimensions()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    with pytest.raises(VideoError, match="bad.mp4.*not a readable video"):
        VideoFromFile(str(bad)).get_components()
    with pytest.raises(VideoError, match="expected an IMAGE batch"):
        codec.encode(tmp_path / "x.mp4", torch.zeros(0, 8, 8, 3), 10)
    with pytest.raises(VideoError, match="format 'avi' is not one of"):
        VideoFromComponents(VideoComponents(images=torch.zeros(1, 8, 8, 3), frame_rate=Fraction(1))).save_to(
            str(tmp_path / "y.avi"), format="avi")


def test_file_answers_from_headers_and_transcodes_to_webm(tmp_path: Path) -> None:
    frames = _frames(10, 32, 64)
    codec.encode(tmp_path / "src.mp4", frames, 10)
    video = VideoFromFile(str(tmp_path / "src.mp4"))
    assert video.get_dimensions() == (64, 32) and video.get_frame_count() == 10
    assert video.get_frame_rate() == 10 and video.get_duration() == pytest.approx(1.0, abs=1e-3)
    assert "mp4" in video.get_container_format()
    video.save_to(str(tmp_path / "out.webm"))  # h264 cannot go into webm: re-encoded as VP9
    out = codec.probe(tmp_path / "out.webm")
    assert out.video_codec == "vp9" and out.frame_count == 10 and out.frame_rate == 10


@pytest.mark.parametrize("size", [(10, 16), (2, 2), (20, 40)])
def test_small_and_unaligned_frames_decode(tmp_path: Path, size: tuple[int, int]) -> None:
    # widths off the 32 grid go through the padded conversion; FFmpeg refuses its smear border on frames this
    # small, which then convert directly
    colour = torch.tensor([0.2, 0.6, 0.9])
    frames = colour.expand(3, *size, 3).contiguous()
    codec.encode(tmp_path / "small.mp4", frames, 5)
    decoded = codec.decode(tmp_path / "small.mp4").images
    assert decoded.shape == frames.shape and (decoded - frames).abs().max() < FLAT_TOL


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the ISOBMFF boxes between start and end."""
    out, pos, end = [], start, len(data) if end is None else end
    while pos + 8 <= end:
        size, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        if size < 8:
            raise AssertionError(f"box {kind!r} at {pos} has size {size}")
        out.append((kind, pos + 8, pos + size))
        pos += size
    return out


def test_mp4_tags_sit_where_comfyui_frontend_reads_them(tmp_path: Path) -> None:
    """moov (with udta/meta keys `mdta<name>` + ilst data) ahead of mdat (faststart), as ComfyUI's mp4s are laid
    out: the editor reads the first megabytes of a dropped file for the `workflow` key."""
    workflow = {"nodes": [{"id": 7}], "links": []}
    VideoFromComponents(VideoComponents(images=_frames(3, 32, 32), frame_rate=Fraction(8))).save_to(
        str(tmp_path / "w.mp4"), metadata={"workflow": workflow, "prompt": {"7": {}}})
    data = (tmp_path / "w.mp4").read_bytes()
    top = [kind for kind, _, _ in _boxes(data)]
    assert top[0] == b"ftyp" and top.index(b"moov") < top.index(b"mdat")
    _, moov_start, moov_end = next(b for b in _boxes(data) if b[0] == b"moov")
    _, udta_start, udta_end = next(b for b in _boxes(data, moov_start, moov_end) if b[0] == b"udta")
    _, meta_start, meta_end = next(b for b in _boxes(data, udta_start, udta_end) if b[0] == b"meta")
    # meta is a full box: its children follow 4 bytes of version and flags
    inner = {kind: data[s:e] for kind, s, e in _boxes(data, meta_start + 4, meta_end)}
    assert b"mdtaworkflow" in inner[b"keys"] and b"mdtaprompt" in inner[b"keys"]
    assert json.dumps(workflow).encode() in inner[b"ilst"]


def test_trimmed_file_window_frames_audio_and_save(tmp_path: Path) -> None:
    frames = _frames(12, 32, 32)
    path = tmp_path / "twelve.mp4"
    codec.encode(path, frames, 12, audio={"waveform": torch.rand(1, 1, 8000) - 0.5, "sample_rate": 8000})
    whole = codec.decode(path)
    video = VideoFromFile(str(path))
    part = video.as_trimmed(0.25, 0.5)
    assert isinstance(part, VideoFromFile)
    assert part.get_frame_count() == 6 and part.get_duration() == pytest.approx(0.5)
    parts = part.get_components()
    assert torch.equal(parts.images, whole.images[3:9])  # frames at 3/12 .. 8/12 s, decoded alike
    assert parts.audio is not None and parts.audio["waveform"].shape[-1] == 4000
    tail = video.as_trimmed(-0.25)
    assert tail is not None and torch.equal(tail.get_components().images, whole.images[9:])
    inner = part.as_trimmed(0.25)  # nested: 0.5 s .. the end of the outer window (0.75 s)
    assert inner is not None and torch.equal(inner.get_components().images, whole.images[6:9])
    assert video.as_trimmed(0.5, 2.0, strict_duration=True) is None
    assert part.as_trimmed(0.0, 0.75, strict_duration=True) is None
    part.save_to(str(tmp_path / "part.mp4"))  # a window cannot be stream-copied: re-encoded
    assert codec.probe(tmp_path / "part.mp4").frame_count == 6


def test_trimmed_components_are_sliced_without_encoding() -> None:
    frames = _frames(10, 16, 16)
    audio = {"waveform": torch.arange(1000.0)[None, None], "sample_rate": 100}
    video = VideoFromComponents(VideoComponents(images=frames, frame_rate=Fraction(5), audio=audio))
    part = video.as_trimmed(0.4, 1.0)
    assert part is not None
    got = part.get_components()
    assert torch.equal(got.images, frames[2:7]) and got.audio is not None
    assert torch.equal(got.audio["waveform"][0, 0], torch.arange(40.0, 140.0))
    assert video.as_trimmed(1.5, 1.0, strict_duration=True) is None
    end = video.as_trimmed(-0.6)
    assert end is not None and torch.equal(end.get_components().images, frames[7:])
