"""The engine's exception tree.

EngineError
  CheckpointError            a model file cannot be read (names the file and how to fix)
    UnsafeCheckpointError    a pickle that needs code execution to load
    UnknownModelError        the key layout matches no supported family
  VideoError                 a video file cannot be read or written (names the file; also a ValueError)
"""
from __future__ import annotations

__all__ = ["EngineError", "CheckpointError", "UnsafeCheckpointError", "UnknownModelError", "VideoError"]


class EngineError(Exception):
    """Base of all engine errors."""


class CheckpointError(EngineError):
    """A model file is missing, corrupt, truncated or of an unexpected layout."""


class UnsafeCheckpointError(CheckpointError):
    """A pickled checkpoint that would run code when loaded; refused."""


class UnknownModelError(CheckpointError):
    """The file's tensors match no model family Loom knows."""


class VideoError(EngineError, ValueError):
    """A video file is missing, unreadable, has no video stream, or cannot be encoded as asked."""
