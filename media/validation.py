"""Decide what uploaded bytes are, by their content, and refuse what we will not store.

The file name and the client's content type are never trusted: the format comes from the leading bytes,
then the media is opened with its decoder to check that it is whole and within the caps on bytes, pixels
and duration. Pure: no Django.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

import media.limits  # noqa: F401 (sets Pillow's decompression-bomb guard)
from media.errors import CorruptMedia, MediaError, MediaTooLarge, UnsupportedMedia

# Importing media.limits sets Pillow's own bomb guard explicitly; our pixel cap (checked from the header
# before decoding) is normally lower.

ALLOWED_FORMATS = (
    "PNG, JPEG, WebP, GIF, AVIF, HEIC/HEIF, BMP, TIFF images; WAV, FLAC, MP3, OGG/Opus, AIFF, AAC/M4A, "
    "WebM audio; MP4, MOV, WebM video"
)


@dataclass(frozen=True)
class MediaInfo:
    kind: str  # "image", "audio" or "video"
    media_type: str
    extension: str
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None
    # An image with more than one frame (GIF or WebP animation): matched by its keyframes.
    animated: bool = False


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_audio_seconds: float = 20 * 60


_IMAGE_SIGNATURES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "avif": "image/avif",
    "heic": "image/heic",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
}
# The name Pillow gives each format once opened.
_PILLOW_NAMES = {"heic": "heif"}
# Read by libsndfile (soundfile).
_AUDIO_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "aiff": "audio/aiff",
}
AUDIO_FORMATS = frozenset(_AUDIO_TYPES)
# Read by FFmpeg (media.containers): audio when they hold no video stream.
_CONTAINER_TYPES = {
    "mp4": ("video/mp4", "audio/mp4"),
    "m4a": ("video/mp4", "audio/mp4"),
    "mov": ("video/quicktime", "audio/mp4"),
    "webm": ("video/webm", "audio/webm"),
}
CONTAINER_FORMATS = frozenset(_CONTAINER_TYPES)
# ISO base media brands (the `ftyp` box) of still images; any other brand is audio or video.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


def sniff(head: bytes) -> str | None:
    """The format name from the first bytes, or None for anything we do not accept."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:2] == b"BM" and len(head) >= 14:
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AVIF_BRANDS:
            return "avif"
        if brand in _HEIF_BRANDS:
            return "heic"
        if brand in (b"M4A ", b"M4B "):
            return "m4a"
        return "mov" if brand == b"qt  " else "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: WebM and Matroska
        return "webm"
    if head.startswith(b"ID3"):
        return "mp3"
    # A bare MPEG audio frame: 11 sync bits, a valid version and layer III.
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) == 0x02:
        return "mp3"
    return None


def inspect(data: bytes, limits: Limits | None = None) -> MediaInfo:
    """Validate uploaded bytes and describe them. Raises a MediaError subclass for anything refused."""
    limits = limits or Limits()
    if len(data) == 0:
        raise CorruptMedia("The file is empty.")
    if len(data) > limits.max_bytes:
        raise MediaTooLarge(f"The file is {len(data)} bytes; the limit is {limits.max_bytes} bytes.")
    fmt = sniff(data[:16])
    if fmt is None:
        raise UnsupportedMedia(f"The content is not an accepted format ({ALLOWED_FORMATS}).")
    if fmt in _IMAGE_SIGNATURES:
        return _inspect_image(data, fmt, limits)
    if fmt in _CONTAINER_TYPES:
        return _inspect_container(data, fmt, limits)
    return _inspect_audio(data, fmt, limits)


def _inspect_image(data: bytes, fmt: str, limits: Limits) -> MediaInfo:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if image.format is None or image.format.lower() != _PILLOW_NAMES.get(fmt, fmt):
                    raise UnsupportedMedia(f"The content looks like {fmt.upper()} but does not decode as it.")
                if width <= 0 or height <= 0:
                    raise CorruptMedia("The image has no pixels.")
                if width * height > limits.max_pixels:
                    raise MediaTooLarge(
                        f"The image is {width} x {height} pixels; the limit is {limits.max_pixels} pixels."
                    )
                if fmt == "jpeg":
                    # Decode at reduced scale: the whole stream is still read (so truncation shows) for a
                    # fraction of the memory.
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                image.load()
                # Pillow looks only as far as the second frame to say so.
                animated = bool(getattr(image, "is_animated", False))
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaTooLarge(f"The image is too large to decode safely: {exc}") from None
    except UnidentifiedImageError:
        raise CorruptMedia(f"The {fmt.upper()} image cannot be decoded.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptMedia(f"The {fmt.upper()} image is damaged or truncated: {exc}") from None
    return MediaInfo(
        kind="image",
        media_type=_IMAGE_SIGNATURES[fmt],
        extension=fmt,
        width=width,
        height=height,
        animated=animated,
    )


def _inspect_container(data: bytes, fmt: str, limits: Limits) -> MediaInfo:
    from media.containers import probe

    found = probe(data, fmt, max_duration_s=limits.max_audio_seconds)
    video_type, audio_type = _CONTAINER_TYPES[fmt]
    extension = "m4a" if fmt == "mp4" and not found.has_video else fmt
    if found.has_video:
        return MediaInfo(
            kind="video",
            media_type=video_type,
            extension=extension,
            width=found.width,
            height=found.height,
            duration_s=found.duration_s,
        )
    return MediaInfo(kind="audio", media_type=audio_type, extension=extension, duration_s=found.duration_s)


def _inspect_audio(data: bytes, fmt: str, limits: Limits) -> MediaInfo:
    import soundfile

    try:
        info = soundfile.info(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise CorruptMedia(f"The {fmt.upper()} audio cannot be decoded: {exc}") from None
    if info.samplerate <= 0 or info.frames <= 0:
        raise CorruptMedia("The audio has no samples.")
    duration_s = info.frames / info.samplerate
    if duration_s > limits.max_audio_seconds:
        raise MediaTooLarge(
            f"The audio lasts {duration_s:.0f} s; the limit is {limits.max_audio_seconds:.0f} s."
        )
    # Read the first second to catch files whose header is fine but whose data is not.
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as handle:
            block = handle.read(frames=min(info.frames, info.samplerate), dtype="float32")
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        raise CorruptMedia(f"The {fmt.upper()} audio is damaged: {exc}") from None
    if len(block) == 0:
        raise CorruptMedia("The audio has no decodable samples.")
    return MediaInfo(kind="audio", media_type=_AUDIO_TYPES[fmt], extension=fmt, duration_s=duration_s)
