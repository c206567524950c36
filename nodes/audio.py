"""Audio file nodes (ComfyUI's comfy_extras/nodes_audio.py): LoadAudio and RecordAudio read a file into AUDIO;
SaveAudioAdvanced and the deprecated SaveAudio / SaveAudioMP3 / SaveAudioOpus write each clip of the batch to
output/ as ``<prefix>_<counter:05>.<format>`` with prompt / workflow tags; PreviewAudio writes FLAC to temp/. Each
save node shows its files in the node's audio player (``ui: {"audio": [{filename, subfolder, type}]}``) and passes
the AUDIO on. Decoding and encoding live in `engine.audio`."""
from __future__ import annotations

import hashlib
import os
import random
from typing import TYPE_CHECKING, Any

from engine import audio as audio_files
from engine.audio import Audio, AudioFileError
from engine.media_types import media_kind
from engine.paths import PathError
from nodes._base import BuiltinNode, InputTypes, input_error, save_target

if TYPE_CHECKING:
    from nodes.services import NodeServices

__all__ = ["LoadAudio", "RecordAudio", "SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "SaveAudioAdvanced",
           "PreviewAudio"]

_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
_PREFIX = ("STRING", {"default": "audio/ComfyUI"})
_MP3_QUALITY = (list(audio_files.MP3_QUALITIES), {"default": "V0"})
_OPUS_QUALITY = (list(audio_files.OPUS_QUALITIES), {"default": "128k"})


def _read(cls_name: str, input_name: str, name: str, services: NodeServices) -> Audio:
    """The AUDIO of an (annotated) input / temp file; errors name the node, the input and the file."""
    try:
        path = services.paths.get_annotated_filepath(name)
    except PathError as exc:
        raise input_error(cls_name, input_name, str(exc)) from exc
    if not os.path.isfile(path):
        raise input_error(cls_name, input_name, f"file {name!r} not found ({path}); upload it or pick another")
    try:
        return audio_files.decode_file(path)
    except AudioFileError as exc:
        raise input_error(cls_name, input_name, f"file {name!r} cannot be loaded as audio: {exc}") from exc


def _file_sha256(services: NodeServices, name: str) -> str:
    try:
        with open(services.paths.get_annotated_filepath(name), "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except (OSError, PathError):
        return f"missing:{name}"


class LoadAudio(BuiltinNode):
    """Load the audio of a file in input/ (any audio file, or a video's sound track) as AUDIO."""

    DISPLAY_NAME = "Load Audio"
    CATEGORY = "audio"
    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        files = [f for f in cls._services().paths.list_input_files() if media_kind(f) in ("audio", "video")]
        return {"required": {"audio": (files, {"audio_upload": True})}}

    def load(self, audio: str) -> tuple[Audio]:
        return (_read("LoadAudio", "audio", audio, self._services()),)

    @classmethod
    def IS_CHANGED(cls, audio: str) -> str:
        return _file_sha256(cls._services(), audio)

    @classmethod
    def VALIDATE_INPUTS(cls, audio: str) -> bool | str:
        if not cls._services().paths.exists_annotated_filepath(audio):
            return f"Invalid audio file: {audio}"
        return True


class RecordAudio(BuiltinNode):
    """Load a microphone recording: the frontend uploads it to temp/audio/ and sends ``audio/<name>.wav [temp]``."""

    DISPLAY_NAME = "Record Audio"
    CATEGORY = "audio"
    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"audio": ("AUDIO_RECORD", {})}}

    def load(self, audio: str) -> tuple[Audio]:
        if not isinstance(audio, str) or not audio:
            raise input_error("RecordAudio", "audio", "no recording was sent; record something first")
        return (_read("RecordAudio", "audio", audio, self._services()),)


def save_clips(node: BuiltinNode, audio: Any, filename_prefix: str, folder: str, format: str,
               quality: str | None, prompt: Any, extra_pnginfo: Any) -> list[dict[str, str]]:
    """Write each clip of `audio` to output/ or temp/ (`folder`); the `{filename, subfolder, type}` of each file."""
    name = type(node).__name__
    try:
        value = audio_files.as_audio(audio, "AUDIO")
    except ValueError as exc:
        raise input_error(name, "audio", str(exc)) from exc
    services = node._services()
    base = str(services.paths.output_dir if folder == "output" else services.paths.temp_dir)
    target = save_target(name, services, filename_prefix, base)
    tags = {} if services.disable_metadata else audio_files.metadata_tags(prompt, extra_pnginfo)
    results = []
    counter = target.counter
    for batch_number, clip in enumerate(value["waveform"].cpu()):
        file = f"{target.filename.replace('%batch_num%', str(batch_number))}_{counter:05}.{format}"
        try:
            audio_files.encode_file(clip, value["sample_rate"], os.path.join(target.full_output_folder, file),
                                    format, quality, tags)
        except AudioFileError as exc:
            raise input_error(name, "audio", f"{file}: {exc}") from exc
        results.append({"filename": file, "subfolder": target.subfolder, "type": folder})
        counter += 1
    return results


class _SaveAudio(BuiltinNode):
    CATEGORY = "audio"
    RETURN_TYPES = ("AUDIO",)
    OUTPUT_NODE = True
    _format = "flac"

    def _save(self, audio: Any, filename_prefix: str, quality: str | None, prompt: Any,
              extra_pnginfo: Any) -> dict[str, Any]:
        results = save_clips(self, audio, filename_prefix, "output", self._format, quality, prompt, extra_pnginfo)
        return {"ui": {"audio": results}, "result": (audio,)}


class SaveAudio(_SaveAudio):
    """Save each clip to output/ as FLAC (16 bit) with prompt / workflow tags (deprecated: SaveAudioAdvanced)."""

    DISPLAY_NAME = "Save Audio (FLAC) (DEPRECATED)"
    DEPRECATED = True
    FUNCTION = "save_flac"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"audio": ("AUDIO", {}), "filename_prefix": _PREFIX}, "hidden": dict(_HIDDEN)}

    def save_flac(self, audio: Audio, filename_prefix: str = "ComfyUI", prompt: Any = None,
                  extra_pnginfo: Any = None) -> dict[str, Any]:
        return self._save(audio, filename_prefix, None, prompt, extra_pnginfo)


class SaveAudioMP3(_SaveAudio):
    """Save each clip to output/ as MP3 (LAME V0, 128 or 320 kbit/s) (deprecated: SaveAudioAdvanced)."""

    DISPLAY_NAME = "Save Audio (MP3) (DEPRECATED)"
    DEPRECATED = True
    FUNCTION = "save_mp3"
    _format = "mp3"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"audio": ("AUDIO", {}), "filename_prefix": _PREFIX, "quality": _MP3_QUALITY},
                "hidden": dict(_HIDDEN)}

    def save_mp3(self, audio: Audio, filename_prefix: str = "ComfyUI", quality: str = "V0", prompt: Any = None,
                 extra_pnginfo: Any = None) -> dict[str, Any]:
        return self._save(audio, filename_prefix, quality, prompt, extra_pnginfo)


class SaveAudioOpus(_SaveAudio):
    """Save each clip to output/ as Ogg Opus at 64..320 kbit/s (deprecated: SaveAudioAdvanced)."""

    DISPLAY_NAME = "Save Audio (Opus) (DEPRECATED)"
    DEPRECATED = True
    FUNCTION = "save_opus"
    _format = "opus"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"audio": ("AUDIO", {}), "filename_prefix": _PREFIX, "quality": _OPUS_QUALITY},
                "hidden": dict(_HIDDEN)}

    def save_opus(self, audio: Audio, filename_prefix: str = "ComfyUI", quality: str = "128k", prompt: Any = None,
                  extra_pnginfo: Any = None) -> dict[str, Any]:
        return self._save(audio, filename_prefix, quality, prompt, extra_pnginfo)


class SaveAudioAdvanced(_SaveAudio):
    """Save each clip to output/ as FLAC, MP3 or Opus; the chosen format brings its own quality choice."""

    DISPLAY_NAME = "Save Audio (Advanced)"
    DESCRIPTION = "Saves the input audio to your ComfyUI output directory."
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        options = [{"key": "flac", "inputs": {"required": {}}},
                   {"key": "mp3", "inputs": {"required": {"quality": _MP3_QUALITY}}},
                   {"key": "opus", "inputs": {"required": {"quality": _OPUS_QUALITY}}}]
        return {"required": {
            "audio": ("AUDIO", {"tooltip": "The audio to save."}),
            "filename_prefix": ("STRING", {"default": "audio/ComfyUI", "tooltip": (
                "The prefix for the file to save. May include formatting tokens such as %date:yyyy-MM-dd%.")}),
            "format": ("COMFY_DYNAMICCOMBO_V3", {"options": options,
                                                 "tooltip": "The file format in which to save the audio."}),
        }, "hidden": dict(_HIDDEN)}

    def execute(self, audio: Audio, filename_prefix: str, format: dict[str, Any], prompt: Any = None,
                extra_pnginfo: Any = None) -> dict[str, Any]:
        choice = format if isinstance(format, dict) else {"format": format}
        chosen = choice.get("format")
        if chosen not in ("flac", "mp3", "opus"):
            raise input_error("SaveAudioAdvanced", "format", f"{chosen!r} is not one of flac, mp3, opus")
        results = save_clips(self, audio, filename_prefix, "output", str(chosen), choice.get("quality") or None,
                             prompt, extra_pnginfo)
        return {"ui": {"audio": results}, "result": (audio,)}


class PreviewAudio(_SaveAudio):
    """Play the audio on the node: FLAC files in temp/, not kept in output/."""

    DISPLAY_NAME = "Preview Audio"
    DESCRIPTION = "Preview the audio without saving it to the ComfyUI output directory."
    FUNCTION = "save_flac"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"audio": ("AUDIO", {})}, "hidden": dict(_HIDDEN)}

    def save_flac(self, audio: Audio, prompt: Any = None, extra_pnginfo: Any = None) -> dict[str, Any]:
        prefix = "ComfyUI_temp_" + "".join(random.choice("0123456789abcdef") for _ in range(5))
        results = save_clips(self, audio, prefix, "temp", "flac", None, prompt, extra_pnginfo)
        return {"ui": {"audio": results}, "result": (audio,)}


NODES = [SaveAudio, SaveAudioMP3, SaveAudioOpus, SaveAudioAdvanced, LoadAudio, PreviewAudio, RecordAudio]
