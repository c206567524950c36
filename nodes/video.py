"""ComfyUI's core video nodes (comfy_extras/nodes_video.py): CreateVideo, SaveVideo, LoadVideo, GetVideoComponents,
SaveWEBM, Video Slice, as thin adapters over `engine.video` (PyAV). The VIDEO value is `engine.video.VideoInput`."""
from __future__ import annotations

import os
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from engine.errors import VideoError
from engine.media_types import media_kind
from engine.paths import PathError
from engine.png import metadata_text
from engine.video import (
    VideoCodec,
    VideoComponents,
    VideoContainer,
    VideoFromComponents,
    VideoFromFile,
    VideoInput,
)
from nodes._base import BuiltinNode, InputTypes, input_error, save_target

if TYPE_CHECKING:
    import torch

__all__ = ["CreateVideo", "SaveVideo", "LoadVideo", "GetVideoComponents", "SaveWEBM", "VideoSlice", "video_files"]

_CATEGORY = "image/video"
_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
_PREFIX_TOOLTIP = ("The prefix for the file to save. This may include formatting information such as "
                   "%date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.")
_WEBM_CODECS = ("vp9", "av1")


def video_files(names: list[str]) -> list[str]:
    """The names whose guessed MIME type is video/* (ComfyUI's `filter_files_content_types(files, ["video"])`)."""
    return [n for n in names if media_kind(n) == "video"]


def _check_images(node: str, images: Any) -> torch.Tensor:
    import torch

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
        raise input_error(node, "images", "expected a non-empty IMAGE batch [B,H,W,C], got "
                          f"{getattr(images, 'shape', type(images).__name__)}")
    return images


def _save_target(node: BuiltinNode, prefix: str, width: int, height: int, extension: str) -> tuple[str, dict[str, str]]:
    """The output path and its `{filename, subfolder, type}` entry (ComfyUI's numbering)."""
    services = node._services()
    target = save_target(type(node).__name__, services, prefix, width=width, height=height)
    file = f"{target.filename}_{target.counter:05}_.{extension}"
    return os.path.join(target.full_output_folder, file), {"filename": file, "subfolder": target.subfolder,
                                                             "type": "output"}


def _preview(entry: dict[str, str]) -> dict[str, Any]:
    # ComfyUI's ui.PreviewVideo: the file under "images", flagged animated so the frontend plays it
    return {"ui": {"images": [entry], "animated": (True,)}}


class CreateVideo(BuiltinNode):
    """Create a video from images."""

    DISPLAY_NAME = "Create Video"
    CATEGORY = _CATEGORY
    DESCRIPTION = "Create a video from images."
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "create_video"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to create a video from."}),
                "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0, "step": 1.0}),
            },
            "optional": {"audio": ("AUDIO", {"tooltip": "The audio to add to the video."})},
        }

    def create_video(self, images: torch.Tensor, fps: float, audio: dict[str, Any] | None = None
                     ) -> tuple[VideoInput]:
        _check_images("CreateVideo", images)
        return (VideoFromComponents(VideoComponents(images=images, audio=audio, frame_rate=Fraction(fps))),)


class SaveVideo(BuiltinNode):
    """Saves the input images to your ComfyUI output directory."""

    DISPLAY_NAME = "Save Video"
    CATEGORY = _CATEGORY
    DESCRIPTION = "Saves the input images to your ComfyUI output directory."
    RETURN_TYPES = ()
    FUNCTION = "save_video"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "video": ("VIDEO", {"tooltip": "The video to save."}),
                "filename_prefix": ("STRING", {"default": "video/ComfyUI", "tooltip": _PREFIX_TOOLTIP}),
                "format": (VideoContainer.as_input(), {"default": "auto", "tooltip": "The format to save the video as."}),
                "codec": (VideoCodec.as_input(), {"default": "auto", "tooltip": "The codec to use for the video."}),
            },
            "hidden": dict(_HIDDEN),
        }

    def save_video(self, video: VideoInput, filename_prefix: str, format: str, codec: str, prompt: Any = None,
                   extra_pnginfo: dict[str, Any] | None = None) -> dict[str, Any]:
        if not isinstance(video, VideoInput):
            raise input_error("SaveVideo", "video", f"expected a VIDEO, got {type(video).__name__}")
        try:
            width, height = video.get_dimensions()
            path, entry = _save_target(self, filename_prefix, width, height, VideoContainer.get_extension(format))
            metadata: dict[str, Any] = {}
            if not self._services().disable_metadata:
                metadata.update(extra_pnginfo or {})
                if prompt is not None:
                    metadata["prompt"] = prompt
            video.save_to(path, format=VideoContainer(format), codec=codec, metadata=metadata or None)
        except VideoError as exc:
            raise input_error("SaveVideo", "video", str(exc)) from exc
        return _preview(entry)


class LoadVideo(BuiltinNode):
    """A video file of input/ as VIDEO (decoded lazily, when a node asks for frames)."""

    DISPLAY_NAME = "Load Video"
    CATEGORY = _CATEGORY
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "load_video"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        files = video_files(cls._services().paths.list_input_files())
        return {"required": {"file": (sorted(files), {"video_upload": True})}}

    def load_video(self, file: str) -> tuple[VideoInput]:
        return (VideoFromFile(self._path(file)),)

    @classmethod
    def _path(cls, file: str) -> str:
        try:
            return cls._services().paths.get_annotated_filepath(file)
        except PathError as exc:
            raise input_error("LoadVideo", "file", str(exc)) from exc

    @classmethod
    def IS_CHANGED(cls, file: str) -> float:
        # the modification time, not a hash: videos are large (ComfyUI does the same)
        return os.path.getmtime(cls._path(file))

    @classmethod
    def VALIDATE_INPUTS(cls, file: str) -> bool | str:
        if not cls._services().paths.exists_annotated_filepath(file):
            return f"Invalid video file: {file}"
        try:
            VideoFromFile(cls._path(file)).get_dimensions()  # headers only: refuses a file PyAV cannot read
        except ValueError as exc:  # VideoError, or a name that escapes input/
            return f"Invalid video file: {file} ({exc})"
        return True


class GetVideoComponents(BuiltinNode):
    """Extracts all components from a video: frames, audio, and framerate."""

    DISPLAY_NAME = "Get Video Components"
    CATEGORY = _CATEGORY
    DESCRIPTION = "Extracts all components from a video: frames, audio, and framerate."
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT")
    RETURN_NAMES = ("images", "audio", "fps")
    FUNCTION = "get_components"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"video": ("VIDEO", {"tooltip": "The video to extract components from."})}}

    def get_components(self, video: VideoInput) -> tuple[torch.Tensor, dict[str, Any] | None, float]:
        if not isinstance(video, VideoInput):
            raise input_error("GetVideoComponents", "video", f"expected a VIDEO, got {type(video).__name__}")
        try:
            components = video.get_components()
        except VideoError as exc:
            raise input_error("GetVideoComponents", "video", str(exc)) from exc
        return components.images, components.audio, float(components.frame_rate)


class SaveWEBM(BuiltinNode):
    """Save the batch as one WebM (VP9 or AV1 at a constant quality), prompt and workflow as container tags."""

    CATEGORY = _CATEGORY
    EXPERIMENTAL = True
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "images": ("IMAGE",),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                "codec": (list(_WEBM_CODECS),),
                "fps": ("FLOAT", {"default": 24.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                "crf": ("FLOAT", {"default": 32.0, "min": 0, "max": 63.0, "step": 1,
                                  "tooltip": "Higher crf means lower quality with a smaller file size, lower crf "
                                             "means higher quality higher filesize."}),
            },
            "hidden": dict(_HIDDEN),
        }

    def save_images(self, images: torch.Tensor, codec: str, fps: float, filename_prefix: str, crf: float,
                    prompt: Any = None, extra_pnginfo: dict[str, Any] | None = None) -> dict[str, Any]:
        _check_images("SaveWEBM", images)
        if codec not in _WEBM_CODECS:
            raise input_error("SaveWEBM", "codec", f"{codec!r} is not one of {list(_WEBM_CODECS)}")
        path, entry = _save_target(self, filename_prefix, int(images.shape[2]), int(images.shape[1]), "webm")
        tags = {} if self._services().disable_metadata else metadata_text(prompt, extra_pnginfo)
        options = {"b": "0"} | ({"preset": "6"} if codec == "av1" else {})
        from engine.video.codec import encode

        try:
            encode(path, images, fps, container="webm", codec=codec, metadata=tags, crf=crf,
                   pix_fmt="yuv420p10le" if codec == "av1" else "yuv420p", options=options)
        except VideoError as exc:
            raise input_error("SaveWEBM", "images", str(exc)) from exc
        return _preview(entry)


class VideoSlice(BuiltinNode):
    """The part of a video from `start_time` (negative: from the end) lasting `duration` seconds (0: to the end);
    a file is not decoded here, only when a later node asks for frames."""

    DISPLAY_NAME = "Video Slice"
    CATEGORY = _CATEGORY
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "slice"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "video": ("VIDEO",),
                "start_time": ("FLOAT", {"default": 0.0, "min": -1e5, "max": 1e5, "step": 0.001,
                                         "tooltip": "Start time in seconds"}),
                "duration": ("FLOAT", {"default": 0.0, "min": 0.0, "step": 0.001,
                                       "tooltip": "Duration in seconds, or 0 for unlimited duration"}),
                "strict_duration": ("BOOLEAN", {"default": False, "tooltip": "If True, when the specified duration "
                                                                             "is not possible, an error will be raised."}),
            }
        }

    def slice(self, video: VideoInput, start_time: float, duration: float,
              strict_duration: bool) -> tuple[VideoInput]:
        if not isinstance(video, VideoInput):
            raise input_error("Video Slice", "video", f"expected a VIDEO, got {type(video).__name__}")
        try:
            trimmed = video.as_trimmed(start_time, duration, strict_duration=strict_duration)
            if trimmed is None:
                raise input_error("Video Slice", "duration", f"{duration} s from {start_time} s is longer than the "
                                  f"video ({video.get_duration():.3f} s); shorten it or turn strict_duration off")
        except VideoError as exc:
            raise input_error("Video Slice", "video", str(exc)) from exc
        return (trimmed,)


VideoSlice.__name__ = "Video Slice"  # ComfyUI's node id has a space; the registry keys on __name__

NODES = [SaveWEBM, SaveVideo, CreateVideo, GetVideoComponents, LoadVideo, VideoSlice]
