"""`comfy_api.latest.ui`: output helpers for V3 nodes (image and audio previews saved to temp/, saved audio, text)."""
from __future__ import annotations

import os
import random
from typing import Any


class _UIOutput:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)


class SavedResult(dict[str, str]):
    """One file reference `{"filename", "subfolder", "type"}`."""

    def __init__(self, filename: str, subfolder: str, type: str) -> None:
        super().__init__(filename=filename, subfolder=subfolder, type=type)


class SavedImages(_UIOutput):
    def __init__(self, results: list[SavedResult], is_animated: bool = False) -> None:
        values: dict[str, Any] = {"images": list(results)}
        if is_animated:
            values["animated"] = (True,)
        super().__init__(values)


def _save_images(images: Any, folder_type: str, prefix: str) -> list[SavedResult]:
    import folder_paths
    import numpy as np
    from PIL import Image

    base = folder_paths.get_temp_directory() if folder_type == "temp" else folder_paths.get_output_directory()
    if folder_type == "temp":
        prefix += "_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
    h, w = int(images.shape[1]), int(images.shape[2])
    folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, base, w, h)
    results = []
    for batch_number, image in enumerate(images):
        arr = np.clip(image.cpu().numpy() * 255.0, 0, 255).astype(np.uint8)
        name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
        Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr).save(os.path.join(folder, name),
                                                                              compress_level=1)
        results.append(SavedResult(name, subfolder, folder_type))
        counter += 1
    return results


class PreviewImage(SavedImages):
    """Saves an IMAGE batch to temp/ and shows it on the node."""

    def __init__(self, image: Any, animated: bool = False, cls: Any = None, **kwargs: Any) -> None:
        super().__init__(_save_images(image, "temp", "ComfyUI"), is_animated=animated)


class PreviewMask(PreviewImage):
    """Shows a MASK as a greyscale image."""

    def __init__(self, mask: Any, animated: bool = False, cls: Any = None, **kwargs: Any) -> None:
        image = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1).expand(-1, -1, -1, 3)
        super().__init__(image, animated, cls)


class PreviewVideo(_UIOutput):
    """Shows saved video files on the node: ComfyUI lists them under "images", flagged animated."""

    def __init__(self, values: list[SavedResult | dict[str, str]], **kwargs: Any) -> None:
        super().__init__({"images": list(values), "animated": (True,)})


class PreviewText(_UIOutput):
    """Shows text on the node."""

    def __init__(self, value: str, **kwargs: Any) -> None:
        super().__init__({"text": (value,)})


class SavedAudios(_UIOutput):
    """Audio files shown in the node's player (`{"audio": [results]}`)."""

    def __init__(self, results: list[SavedResult]) -> None:
        super().__init__({"audio": list(results)})


class AudioSaveHelper:
    """ComfyUI's audio writer for V3 nodes: each clip of an AUDIO batch to one FLAC / MP3 / Opus file."""

    @staticmethod
    def save_audio(audio: Any, filename_prefix: str, folder_type: Any, cls: Any = None, format: str = "flac",
                   quality: str = "128k") -> list[SavedResult]:
        """Write each clip to output/ or temp/ (`folder_type`) with the node's prompt / workflow tags."""
        import folder_paths
        from comfy.cli_args import args

        from engine import audio as audio_files

        if format not in ("flac", "mp3", "opus"):
            raise ValueError(f"Unsupported audio format: {format!r}; use flac, mp3 or opus")
        kind = getattr(folder_type, "value", folder_type)
        base = folder_paths.get_temp_directory() if kind == "temp" else folder_paths.get_output_directory()
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, base)
        hidden = getattr(cls, "hidden", None)
        tags = {} if args.disable_metadata or hidden is None else audio_files.metadata_tags(
            hidden.prompt, hidden.extra_pnginfo)
        choices = {"mp3": audio_files.MP3_QUALITIES, "opus": audio_files.OPUS_QUALITIES}.get(format, ())
        results = []
        for batch_number, clip in enumerate(audio["waveform"].cpu()):
            name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}.{format}"
            audio_files.encode_file(clip, int(audio["sample_rate"]), os.path.join(folder, name), format,
                                    quality if quality in choices else None, tags)
            results.append(SavedResult(name, subfolder, str(kind)))
            counter += 1
        return results

    @staticmethod
    def get_save_audio_ui(audio: Any, filename_prefix: str, cls: Any = None, format: str = "flac",
                          quality: str = "128k") -> SavedAudios:
        """Save to output/ and wrap the files for the node's `ui`."""
        return SavedAudios(AudioSaveHelper.save_audio(audio, filename_prefix, "output", cls, format, quality))


class PreviewAudio(_UIOutput):
    """Writes the AUDIO as FLAC to temp/ and plays it on the node."""

    def __init__(self, audio: Any, cls: Any = None, **kwargs: Any) -> None:
        prefix = "ComfyUI_temp_" + "".join(random.choice("0123456789abcdef") for _ in range(5))
        super().__init__({"audio": AudioSaveHelper.save_audio(audio, prefix, "temp", cls, "flac")})
