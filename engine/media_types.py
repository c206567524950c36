"""Audio and video file kinds by extension, with the Content-Type each is served as.

Python's `mimetypes` answers from the host's /etc/mime.types as well as its own table, so ``.flac``, ``.ogg`` or
``.m4a`` are unknown on a bare host; this table is the host-independent answer the server and the file lists use.
"""
from __future__ import annotations

import mimetypes
import os
from collections.abc import Mapping

__all__ = ["MEDIA_TYPES", "media_type", "media_kind", "content_type"]

MEDIA_TYPES: Mapping[str, str] = {
    ".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".oga": "audio/ogg",
    ".opus": "audio/ogg", ".m4a": "audio/mp4", ".aac": "audio/aac", ".weba": "audio/webm",
    ".aif": "audio/aiff", ".aiff": "audio/aiff", ".mka": "audio/x-matroska", ".wma": "audio/x-ms-wma",
    ".ac3": "audio/ac3", ".amr": "audio/amr", ".caf": "audio/x-caf",
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".mkv": "video/x-matroska",
    ".mov": "video/quicktime", ".avi": "video/x-msvideo", ".mpeg": "video/mpeg", ".mpg": "video/mpeg",
    ".flv": "video/x-flv", ".wmv": "video/x-ms-wmv", ".3gp": "video/3gpp",
}


def media_type(name: str) -> str | None:
    """The Content-Type of an audio or video file name, or None for other files."""
    return MEDIA_TYPES.get(os.path.splitext(name)[1].lower())


def media_kind(name: str) -> str | None:
    """``"audio"`` or ``"video"`` for a file name of those kinds, else None."""
    found = media_type(name)
    return found.split("/", 1)[0] if found else None


def content_type(name: str) -> str | None:
    """The Content-Type of any file name: this table for audio and video, else Python's `mimetypes` guess."""
    return media_type(name) or mimetypes.guess_type(name)[0]
