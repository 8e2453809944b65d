"""The frames of multi-frame media worth fingerprinting: animated GIF and WebP, and video. Pure: no Django.

An animation or a video is matched by a few of its frames, chosen by scene change: the first frame, then
each frame that differs enough from the last one kept, at most MAX_KEYFRAMES of them (the most
different ones when there are more). A frame is compared on a 16 x 16 grey thumbnail, so choosing costs
little beside decoding.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageSequence

from media.containers import video_frames
from media.errors import CorruptMedia, MediaTooLarge
from media.limits import MAX_ANIMATION_FRAMES, MAX_ANIMATION_PIXELS, MAX_IMAGE_PIXELS, MAX_KEYFRAMES
from media.validation import sniff

# Mean absolute difference of two 16 x 16 grey thumbnails (0-255) above which a frame is a new scene.
SCENE_CHANGE = 12.0
_THUMB = 16
VIDEO_FORMATS = frozenset({"mp4", "m4a", "mov", "webm"})
ANIMATED_FORMATS = frozenset({"gif", "webp"})


@dataclass(frozen=True)
class Keyframe:
    time_s: float
    image: Image.Image


def _thumbnail(image: Image.Image) -> npt.NDArray[np.float32]:
    grey = image.convert("L").resize((_THUMB, _THUMB), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.float32)


def choose(frames: Iterable[tuple[float, Image.Image]], *, limit: int = MAX_KEYFRAMES) -> list[Keyframe]:
    """The scene-change frames among `frames`, in time order: at most `limit`, the first always. A frame
    is kept when it differs from every frame kept so far (a scene that comes back is not kept twice)."""
    kept: list[tuple[float, Keyframe]] = []  # (how much it changed the scene, frame)
    thumbs: list[npt.NDArray[np.float32]] = []
    for time_s, image in frames:
        thumb = _thumbnail(image)
        change = min((float(np.mean(np.abs(thumb - seen))) for seen in thumbs), default=float("inf"))
        if change >= SCENE_CHANGE:
            kept.append((change, Keyframe(time_s, image.copy())))
            thumbs.append(thumb)
            if len(kept) > limit:
                # Keep the first frame and the strongest changes; drop the mildest change.
                weakest = min(range(1, len(kept)), key=lambda i: kept[i][0])
                del kept[weakest]
                del thumbs[weakest]
    return [frame for _, frame in kept]


def _animation_frames(data: bytes) -> Iterator[tuple[float, Image.Image]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=["GIF", "WEBP"]) as image:
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise MediaTooLarge(f"The image is {image.width} x {image.height} pixels.")
                time_ms = 0.0
                area = image.width * image.height
                for count, frame in enumerate(ImageSequence.Iterator(image), start=1):
                    if count > MAX_ANIMATION_FRAMES or count * area > MAX_ANIMATION_PIXELS:
                        return  # the frames looked at so far stand for the animation
                    yield time_ms / 1000, frame.convert("RGB")
                    time_ms += float(frame.info.get("duration") or 100)
        except MediaTooLarge:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise MediaTooLarge(f"The animation is too large to decode safely: {exc}") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise CorruptMedia(f"The animation is damaged: {exc}") from None


def keyframes(data: bytes, fmt: str) -> list[Keyframe]:
    """The scene-change frames of an animation (GIF, WebP) or a video (MP4, MOV, WebM); raises
    MediaError for media that does not decode or is over the caps."""
    frames = video_frames(data, fmt) if fmt in VIDEO_FORMATS else _animation_frames(data)
    chosen = choose(frames)
    if not chosen:
        raise CorruptMedia("The media has no decodable frames.")
    return chosen


# A registered animation or video stores the fingerprints of its keyframes in one row: this magic, a
# count, then each fingerprint's length and bytes.
_BUNDLE_MAGIC = b"FRM1"
_COUNT = struct.Struct("<4sH")
_LENGTH = struct.Struct("<I")


def bundle(parts: list[bytes]) -> bytes:
    """Several serialised fingerprints as one payload."""
    out = [_COUNT.pack(_BUNDLE_MAGIC, len(parts))]
    for part in parts:
        out += [_LENGTH.pack(len(part)), part]
    return b"".join(out)


def unbundle(payload: bytes) -> list[bytes]:
    """The fingerprints of a bundle, or the payload itself when it is a single fingerprint."""
    if not payload.startswith(_BUNDLE_MAGIC):
        return [payload]
    _, count = _COUNT.unpack_from(payload)
    position, parts = _COUNT.size, []
    for _ in range(count):
        (length,) = _LENGTH.unpack_from(payload, position)
        position += _LENGTH.size
        parts.append(payload[position : position + length])
        position += length
    if position != len(payload):
        raise ValueError("a fingerprint bundle's length does not add up")
    return parts


def multiframe_format(data: bytes) -> str | None:
    """The sniffed format when the media is matched frame by frame (a video container, or a GIF or WebP
    with more than one frame), else None. Reads no further than the second frame of an animation."""
    fmt = sniff(data[:16])
    if fmt in VIDEO_FORMATS:
        return fmt
    if fmt not in ANIMATED_FORMATS:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(data), formats=["GIF", "WEBP"]) as image:
                return fmt if getattr(image, "is_animated", False) else None
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
            return None  # the still-image decoder reports what is wrong with it
