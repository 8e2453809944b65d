"""Errors raised by the media package for input it cannot or will not process.

Each class carries a stable ``code`` that APIs can return to clients and that
tests can assert on; the message is for people and may change.
"""

from __future__ import annotations


class MediaError(ValueError):
    """Base class: the uploaded media cannot be processed."""

    code = "media_error"


class UnsupportedMedia(MediaError):
    """The bytes are not in a format we accept (e.g. an HTML page renamed .png)."""

    code = "unsupported_media"


class CorruptMedia(MediaError):
    """The format is recognised but the content is damaged or truncated."""

    code = "corrupt_media"


class MediaTooLarge(MediaError):
    """The media exceeds a size limit (dimensions, pixels, bytes or duration)."""

    code = "media_too_large"
