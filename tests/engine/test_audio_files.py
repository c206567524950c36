"""engine.audio: real files through PyAV (encode -> decode per format, files made by other encoders, tags, errors)
and engine.audio_dsp (resampling, EQ)."""
from __future__ import annotations

import json
import math
import wave
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

from engine import audio, audio_dsp

RATE = 44100


def tones(rate: int = RATE, seconds: float = 1.0, freqs: tuple[float, ...] = (440.0, 660.0)) -> torch.Tensor:
    """[C, S] sines, one per channel, amplitudes 0.5, 0.3, ..."""
    t = torch.arange(int(rate * seconds), dtype=torch.float64) / rate
    return torch.stack([(0.5 - 0.2 * i) * torch.sin(2 * math.pi * f * t) for i, f in enumerate(freqs)]).float()


def snr_db(ref: torch.Tensor, got: torch.Tensor) -> float:
    noise = (ref - got).pow(2).mean().item()
    return 10 * math.log10(ref.pow(2).mean().item() / max(noise, 1e-20))


def write_with_pyav(path: Path, fmt: str, codec: str, clip: torch.Tensor, rate: int, video: bool = False) -> None:
    """A file made by FFmpeg's encoders directly (not by engine.audio), optionally with a video track first."""
    layout = "mono" if clip.shape[0] == 1 else "stereo"
    with av.open(str(path), mode="w", format=fmt) as out:
        vstream = None
        if video:
            vstream = out.add_stream("mpeg4", rate=Fraction(10, 1))
            vstream.width, vstream.height, vstream.pix_fmt = 32, 32, "yuv420p"
        options = {"strict": "experimental"} if codec == "vorbis" else {}  # FFmpeg's own Vorbis encoder
        astream: Any = out.add_stream(codec, rate=rate, layout=layout, options=options)
        if vstream is not None:
            for i in range(10):
                picture = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 20, np.uint8), format="rgb24")
                picture.pts = i
                out.mux(vstream.encode(picture))
            out.mux(vstream.encode(None))
        frame = av.AudioFrame.from_ndarray(clip.T.reshape(1, -1).contiguous().numpy(), format="flt", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        out.mux(astream.encode(frame))
        out.mux(astream.encode(None))


def test_wav_from_the_standard_library_decodes_exactly(tmp_path: Path) -> None:
    """16-bit PCM written by Python's wave module: every sample comes back as int / 32768."""
    rng = np.random.default_rng(0)
    ints = rng.integers(-32768, 32767, size=(1000, 2), dtype=np.int16)
    path = tmp_path / "s16.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(ints.tobytes())
    got = audio.decode_file(path)
    assert got["sample_rate"] == 22050 and got["waveform"].dtype == torch.float32
    assert torch.equal(got["waveform"], torch.from_numpy(ints.T.astype(np.float32) / 32768.0)[None])


@pytest.mark.parametrize("codec, scale", [("pcm_u8", 128.0), ("pcm_s32le", 2.0 ** 31), ("pcm_f32le", None),
                                          ("pcm_f64le", None)])
def test_other_sample_formats_map_to_float(tmp_path: Path, codec: str, scale: float | None) -> None:
    clip = tones(8000, 0.25)
    path = tmp_path / f"{codec}.wav"
    write_with_pyav(path, "wav", codec, clip, 8000)
    got = audio.decode_file(path)["waveform"][0]
    assert got.shape == clip.shape
    tolerance = 1.0 / scale if scale else 1e-7
    assert (got - clip).abs().max().item() <= tolerance


@pytest.mark.parametrize("fmt", ["flac", "wav"])
def test_lossless_round_trip_is_exact_to_16_bits(tmp_path: Path, fmt: str) -> None:
    clip = tones(RATE, 0.5)
    path = tmp_path / f"a.{fmt}"
    audio.encode_file(clip, RATE, path, fmt)
    got = audio.decode_file(path)
    assert got["sample_rate"] == RATE and tuple(got["waveform"].shape) == (1, 2, clip.shape[1])
    assert (got["waveform"][0] - clip).abs().max().item() <= 0.5 / 32768 + 1e-9


@pytest.mark.parametrize("fmt, quality, rate, min_snr", [
    ("mp3", "V0", 44100, 30.0), ("mp3", "128k", 44100, 20.0), ("mp3", "320k", 48000, 30.0),
    ("opus", "128k", 48000, 20.0), ("opus", "64k", 24000, 15.0),
])
def test_lossy_round_trip_keeps_length_rate_channels(tmp_path: Path, fmt: str, quality: str, rate: int,
                                                     min_snr: float) -> None:
    clip = tones(rate, 1.0)
    path = tmp_path / f"a.{fmt}"
    audio.encode_file(clip, rate, path, fmt, quality)
    got = audio.decode_file(path)
    if fmt == "opus":  # FFmpeg's Opus decoder always answers at 48 kHz, whatever rate the file was made at
        clip = tones(48000, 1.0)
    assert got["sample_rate"] == (48000 if fmt == "opus" else rate)
    assert tuple(got["waveform"].shape) == (1, 2, clip.shape[1])
    assert snr_db(clip, got["waveform"][0]) >= min_snr


def test_mp3_quality_changes_the_bit_rate(tmp_path: Path) -> None:
    clip = tones(RATE, 2.0)
    sizes = {}
    for quality in audio.MP3_QUALITIES:
        path = tmp_path / f"{quality}.mp3"
        audio.encode_file(clip, RATE, path, "mp3", quality)
        sizes[quality] = path.stat().st_size
    assert sizes["128k"] < sizes["320k"]
    assert abs(sizes["320k"] - 320000 / 8 * 2) / (320000 / 8 * 2) < 0.1  # a constant 320 kbit/s for 2 s


def test_opus_resamples_to_its_rates(tmp_path: Path) -> None:
    assert [audio.opus_rate(r) for r in (8000, 11025, 22050, 44100, 48000, 96000)] == \
        [8000, 12000, 24000, 48000, 48000, 48000]
    clip = tones(RATE, 1.0, (440.0,))
    path = tmp_path / "a.opus"
    audio.encode_file(clip, RATE, path, "opus", "128k")
    got = audio.decode_file(path)
    assert got["sample_rate"] == 48000 and got["waveform"].shape[1:] == (1, 48000)
    assert snr_db(tones(48000, 1.0, (440.0,)), got["waveform"][0]) >= 20.0


@pytest.mark.parametrize("fmt", ["flac", "mp3", "opus"])
def test_tags_are_written_as_comfyui_writes_them(tmp_path: Path, fmt: str) -> None:
    prompt = {"1": {"class_type": "EmptyAudio", "inputs": {"duration": 1.0}}}
    workflow = {"nodes": [{"id": 1}], "links": []}
    tags = audio.metadata_tags(prompt, {"workflow": workflow})
    assert tags == {"prompt": json.dumps(prompt), "workflow": json.dumps(workflow)}
    path = tmp_path / f"a.{fmt}"
    audio.encode_file(tones(48000, 0.1), 48000, path, fmt, tags=tags)
    read = audio.read_tags(path)
    assert json.loads(read["prompt"]) == prompt and json.loads(read["workflow"]) == workflow


def peak_hz(clip: torch.Tensor, rate: int) -> list[float]:
    """The strongest frequency of each channel."""
    peaks: list[float] = (torch.fft.rfft(clip.double(), dim=-1).abs().argmax(dim=-1) * rate / clip.shape[-1]).tolist()
    return peaks


@pytest.mark.parametrize("fmt, codec, ext", [("ogg", "vorbis", "ogg"), ("ipod", "aac", "m4a"),
                                             ("mp3", "libmp3lame", "mp3")])
def test_files_from_other_encoders(tmp_path: Path, fmt: str, codec: str, ext: str) -> None:
    """Vorbis, AAC and MP3 made by FFmpeg's encoders directly: rate, channels, length within a codec frame, and
    each channel's tone and level (FFmpeg's Vorbis encoder is too coarse for a sample-wise comparison)."""
    clip = tones(RATE, 1.0)
    path = tmp_path / f"a.{ext}"
    write_with_pyav(path, fmt, codec, clip, RATE)
    got = audio.decode_file(path)
    assert got["sample_rate"] == RATE and got["waveform"].shape[:2] == (1, 2)
    assert 0 <= got["waveform"].shape[2] - clip.shape[1] <= 1024  # at most one frame of padding at the end
    wave = got["waveform"][0]
    assert peak_hz(wave, RATE) == pytest.approx([440.0, 660.0], abs=2.0)
    assert wave.pow(2).mean(-1).sqrt().tolist() == pytest.approx(clip.pow(2).mean(-1).sqrt().tolist(), rel=0.06)


def test_sound_track_of_a_video(tmp_path: Path) -> None:
    clip = tones(RATE, 1.0, (440.0,))
    path = tmp_path / "clip.mp4"
    write_with_pyav(path, "mp4", "aac", clip, RATE, video=True)
    got = audio.decode_file(path)
    assert got["sample_rate"] == RATE and got["waveform"].shape[1] == 1
    assert abs(got["waveform"].shape[2] - clip.shape[1]) <= 2048
    # energy of a 0.5-amplitude sine: mean square 0.125, whatever the codec delay
    assert got["waveform"].pow(2).mean().item() == pytest.approx(0.125, rel=0.1)


def test_unreadable_and_silent_files_are_named(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"this is not audio" * 50)
    with pytest.raises(audio.AudioFileError, match="junk.mp3 is not a readable audio file"):
        audio.decode_file(junk)
    with pytest.raises(audio.AudioFileError, match="gone.wav does not exist"):
        audio.decode_file(tmp_path / "gone.wav")
    video_only = tmp_path / "silent.mp4"
    with av.open(str(video_only), mode="w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=Fraction(10, 1))
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(audio.AudioFileError, match="silent.mp4 has no audio stream .*video"):
        audio.decode_file(video_only)


def test_encode_refusals(tmp_path: Path) -> None:
    with pytest.raises(audio.AudioFileError, match="cannot write audio as 'aiff'"):
        audio.encode_file(tones(), RATE, tmp_path / "a.aiff", "aiff")
    with pytest.raises(audio.AudioFileError, match="at most 2 channels"):
        audio.encode_file(torch.zeros(3, 100), RATE, tmp_path / "a.mp3", "mp3")
    with pytest.raises(audio.AudioFileError, match="quality '999k'"):
        audio.encode_file(tones(), RATE, tmp_path / "a.opus", "opus", "999k")
    assert not list(tmp_path.iterdir())


def test_as_audio_checks_the_shape() -> None:
    good = {"waveform": torch.zeros(1, 2, 10), "sample_rate": 8000}
    assert audio.as_audio(good, "x") == good
    for rate in (np.int64(8000), 8000.0):  # what packs hand over
        assert audio.as_audio({**good, "sample_rate": rate}, "x")["sample_rate"] == 8000
    for bad, match in ((torch.zeros(3), "AUDIO dict"), ({"waveform": torch.zeros(2, 10), "sample_rate": 1}, "batch"),
                       ({"waveform": torch.zeros(1, 1, 1), "sample_rate": 0}, "positive integer"),
                       ({"waveform": torch.zeros(1, 1, 1), "sample_rate": 8000.5}, "positive integer"),
                       ({"waveform": torch.zeros(1, 1, 1), "sample_rate": float("inf")}, "positive integer")):
        with pytest.raises(ValueError, match=match):
            audio.as_audio(bad, "x")


@pytest.mark.parametrize("orig, new", [(44100, 48000), (48000, 44100), (16000, 44100), (22050, 24000)])
def test_resample_keeps_a_sine(orig: int, new: int) -> None:
    n = orig // 2
    got = audio_dsp.resample(tones(orig, 0.5), orig, new)
    assert got.shape[-1] == audio_dsp.resampled_length(n, orig, new) == math.ceil(n * new / orig)
    want = tones(new, got.shape[-1] / new)
    edge = 64  # the filter's zero padding dims both ends
    assert (got[:, edge:-edge] - want[:, edge:-edge]).abs().max().item() < 2e-3


def test_resample_removes_what_the_new_rate_cannot_hold() -> None:
    tone = tones(48000, 0.5, (15000.0,))  # above 8 kHz, the Nyquist rate of 16 kHz
    down = audio_dsp.resample(tone, 48000, 16000)
    assert down[:, 64:-64].abs().max().item() < 0.01


def test_eq_gains_match_the_cookbook() -> None:
    def gain(out: torch.Tensor, ref: torch.Tensor) -> float:
        return 20 * math.log10(out[:, 4000:].pow(2).mean().sqrt().item() / ref[:, 4000:].pow(2).mean().sqrt().item())

    low, high = tones(RATE, 0.5, (40.0,)) * 0.2, tones(RATE, 0.5, (15000.0,)) * 0.2
    assert gain(audio_dsp.low_shelf(low, RATE, 6.0, 200.0), low) == pytest.approx(6.0, abs=0.2)
    assert gain(audio_dsp.low_shelf(high, RATE, 6.0, 200.0), high) == pytest.approx(0.0, abs=0.2)
    assert gain(audio_dsp.high_shelf(high, RATE, -6.0, 3000.0), high) == pytest.approx(-6.0, abs=0.2)
    assert gain(audio_dsp.high_shelf(low, RATE, -6.0, 3000.0), low) == pytest.approx(0.0, abs=0.2)
    mid = tones(RATE, 0.5, (1000.0,)) * 0.2
    assert gain(audio_dsp.peaking_eq(mid, RATE, 9.0, 1000.0, 0.707), mid) == pytest.approx(9.0, abs=0.1)
    assert audio_dsp.peaking_eq(tones(), RATE, 24.0, 1000.0, 1.0).abs().max().item() <= 1.0  # clamped


def test_media_types_do_not_depend_on_the_host() -> None:
    from engine.media_types import content_type, media_kind

    assert [content_type(n) for n in ("a.FLAC", "b.ogg", "c.m4a", "d.opus", "e.mp4", "f.png")] == \
        ["audio/flac", "audio/ogg", "audio/mp4", "audio/ogg", "video/mp4", "image/png"]
    assert [media_kind(n) for n in ("a.wav", "b.webm", "c.png", "noext")] == ["audio", "video", None, None]
