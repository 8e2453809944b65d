"""Previews: what anyone may see or hear of a work without a licence. Pure: no Django.

An image preview is at most PREVIEW_IMAGE_PX on its longer side, JPEG, with a visible mark drawn across
it; an audio preview is the first PREVIEW_AUDIO_S seconds, mono, resampled to PREVIEW_AUDIO_RATE Hz and
encoded as Ogg Vorbis at a low quality (about 30-45 kbit/s). Neither can stand in for the original.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from math import gcd
from typing import BinaryIO

import numpy as np
import soundfile
from PIL import Image, ImageDraw, ImageFont, ImageOps
from scipy.signal import resample_poly

from media.containers import decode_audio
from media.validation import CONTAINER_FORMATS, sniff

PREVIEW_IMAGE_PX = 512
PREVIEW_AUDIO_S = 30
PREVIEW_AUDIO_RATE = 16_000
# libsndfile's Vorbis "compression level": 0 is the best quality, 1 the smallest file.
_VORBIS_COMPRESSION = 0.9
MARK_TEXT = "PREVIEW"


@dataclass(frozen=True)
class Preview:
    data: bytes
    media_type: str
    extension: str


def image_preview(source: BinaryIO) -> Preview:
    """A marked JPEG no larger than PREVIEW_IMAGE_PX on either side."""
    with Image.open(source) as original:
        original.draft("RGB", (PREVIEW_IMAGE_PX, PREVIEW_IMAGE_PX))  # JPEG: decode at a reduced size
        image = ImageOps.exif_transpose(original).convert("RGB")
    image.thumbnail((PREVIEW_IMAGE_PX, PREVIEW_IMAGE_PX), Image.Resampling.LANCZOS)
    _mark(image)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=70, optimize=True)
    return Preview(data=out.getvalue(), media_type="image/jpeg", extension="jpg")


def _mark(image: Image.Image) -> None:
    """A translucent band with the mark across the middle, and the mark repeated along the diagonal."""
    width, height = image.size
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    size = max(10, min(width, height) // 8)
    font = ImageFont.load_default(size=size)
    band_top, band_bottom = height // 2 - size, height // 2 + size
    draw.rectangle([0, band_top, width, band_bottom], fill=(0, 0, 0, 110))
    text_width = draw.textlength(MARK_TEXT, font=font)
    draw.text(
        ((width - text_width) / 2, height // 2 - size // 2), MARK_TEXT, font=font, fill=(255, 255, 255, 220)
    )
    small = ImageFont.load_default(size=max(8, size // 2))
    steps = 4
    for step in range(steps):
        x, y = width * step // steps, height * step // steps
        draw.text((x, y), MARK_TEXT, font=small, fill=(255, 255, 255, 120))
    image.paste(Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB"))


def audio_preview(source: BinaryIO) -> Preview:
    """The first PREVIEW_AUDIO_S seconds, mono, PREVIEW_AUDIO_RATE Hz, low-quality Ogg Vorbis."""
    head = source.read(16)
    source.seek(0)
    fmt = sniff(head)
    if fmt in CONTAINER_FORMATS:  # AAC/M4A, WebM: FFmpeg decodes them at the preview's rate
        rate = PREVIEW_AUDIO_RATE
        mono = decode_audio(source.read(), fmt, rate=rate, first_s=PREVIEW_AUDIO_S)
    else:
        with soundfile.SoundFile(source) as sound:
            rate = sound.samplerate
            samples = sound.read(frames=PREVIEW_AUDIO_S * rate, dtype="float32", always_2d=True)
        mono = samples.mean(axis=1)
    if rate != PREVIEW_AUDIO_RATE and mono.size:
        common = gcd(rate, PREVIEW_AUDIO_RATE)
        mono = resample_poly(mono, PREVIEW_AUDIO_RATE // common, rate // common).astype(np.float32)
    mono = np.clip(mono[: PREVIEW_AUDIO_S * PREVIEW_AUDIO_RATE], -1.0, 1.0)
    out = io.BytesIO()
    soundfile.write(
        out,
        mono,
        PREVIEW_AUDIO_RATE,
        format="OGG",
        subtype="VORBIS",
        compression_level=_VORBIS_COMPRESSION,
    )
    return Preview(data=out.getvalue(), media_type="audio/ogg", extension="ogg")


def preview(source: BinaryIO, kind: str) -> Preview:
    """The preview of a stored original of this media kind ("image" or "audio"), read from an open file
    (only what the preview needs is read: the first seconds of audio, a reduced decode of a JPEG)."""
    if kind == "image":
        return image_preview(source)
    if kind == "audio":
        return audio_preview(source)
    raise ValueError(f"no preview for media of kind {kind!r}")
