"""Restyle the fan's photo with a creator's artwork, offline, with OpenCV and numpy.

1. Colour: the photo's Lab statistics are moved to the artwork's (mean and spread per channel, Reinhard's
   transfer), so the photo takes the artwork's light and colour cast.
2. Palette: the artwork's dominant colours (k-means in Lab) pull each pixel part of the way towards the
   nearest of them, the flat-colour look of a painted palette.
3. Texture: the artwork's own detail layer (its luminance less a blurred copy of itself), laid over the
   whole frame, so its brush strokes, grain and structure show through the photo; this is also what keeps
   the artwork traceable in the result by its image fingerprint.
4. Edges: the photo's contours are inked in the artwork's darkest palette colour.

Needs the `style` use (the artwork's look) and `derivative` (the result is a new work).
"""

from __future__ import annotations

import io
import warnings
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

import media.limits  # noqa: F401 (Pillow's decompression-bomb guard)
from media.fingerprint import image as fingerprint
from media.generators.base import (
    DERIVATIVE,
    STYLE,
    GeneratedMedia,
    GenerationFailed,
    GenerationRequest,
    InputSpec,
    Progress,
)

Pixels = npt.NDArray[np.float32]

OUTPUT_MAX_SIDE: Final = 1600
_STATS_SIDE: Final = 384
PALETTE_COLOURS: Final = 6
COLOUR_STRENGTH: Final = 0.85
PALETTE_STRENGTH: Final = 0.3
# (share of the artwork's large forms blended into the photo's luminance, gain on the artwork's detail
# layer): tried in order until the artwork's fingerprint finds it in the result.
PRESENCE_LEVELS: Final = ((0.22, 1.1), (0.32, 1.5), (0.42, 1.9), (0.55, 2.4))
TRACEABLE_CONFIDENCE: Final = 0.95
EDGE_STRENGTH: Final = 0.45
JPEG_QUALITY: Final = 92
_SEED: Final = 7


class ImageRestyle:
    name = "image-restyle"
    title = "Restyle a photo"
    description = (
        "Your photo in the artwork's colours, palette and texture: a colour transfer in Lab space, the "
        "artwork's dominant colours, its brush or grain texture laid over the frame, and inked contours."
    )
    parent_kind = "image"
    output_kind = "image"
    inputs = (
        InputSpec(
            name="photo",
            kind="image",
            label="Your photo",
            help="PNG, JPEG or WebP; it is resized to at most 1600 px on its longest side.",
        ),
    )
    use_classes = frozenset({DERIVATIVE, STYLE})

    def run(self, request: GenerationRequest, progress: Progress) -> GeneratedMedia:
        if not request.parents:
            raise GenerationFailed("The restyle needs the licensed artwork.", code="missing_parent")
        photo_bytes = request.inputs.get("photo")
        if not isinstance(photo_bytes, bytes):
            raise GenerationFailed("Upload your photo to restyle.", code="missing_input")
        progress(5, "Reading the photo and the artwork")
        photo = _decode(photo_bytes, "your photo", OUTPUT_MAX_SIDE)
        artwork = _decode(request.parents[0].data, "the artwork", OUTPUT_MAX_SIDE)
        photo_lab = _to_lab(photo)
        art_lab = _to_lab(artwork)

        progress(20, "Moving the photo's colours to the artwork's")
        art_small = _to_lab(_fit(artwork, _STATS_SIDE))
        result = _colour_transfer(photo_lab, art_small, COLOUR_STRENGTH)

        progress(40, "Finding the artwork's palette")
        palette = _palette(art_small, PALETTE_COLOURS)
        result = _pull_to_palette(result, palette, PALETTE_STRENGTH)

        progress(55, "Laying the artwork's texture over the frame")
        height, width = result.shape[:2]
        detail, form = _detail_and_form(_cover(art_lab[:, :, 0], width, height))
        ink = palette[int(np.argmin(palette[:, 0]))]
        edges = _edge_mask(photo)
        reference = fingerprint.compute(request.parents[0].data, include_mirror=False)
        # The artwork must stay traceable in the result: each pass that its fingerprint does not find
        # lays the artwork's texture and forms more strongly.
        for attempt, (form_blend, texture_gain) in enumerate(PRESENCE_LEVELS, start=1):
            layered = result.copy()
            layered[:, :, 0] = (1 - form_blend) * result[:, :, 0] + form_blend * form + texture_gain * detail
            inked = _ink(layered, edges, ink, EDGE_STRENGTH)
            buffer = io.BytesIO()
            Image.fromarray(_to_rgb(inked)).save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
            found = fingerprint.compare(fingerprint.compute(buffer.getvalue()), reference)
            progress(min(95, 60 + 10 * attempt), "Checking that the artwork is traceable in the result")
            if found.confidence >= TRACEABLE_CONFIDENCE:
                break
        progress(100, "Done")
        return GeneratedMedia(
            data=buffer.getvalue(),
            media_type="image/jpeg",
            extension="jpeg",
            details={
                "width": width,
                "height": height,
                "palette_lab": [[round(float(v), 1) for v in colour] for colour in palette],
                "colour_strength": COLOUR_STRENGTH,
                "form_blend": form_blend,
                "texture_gain": texture_gain,
                "artwork_match_confidence": round(found.confidence, 4),
            },
        )


def _decode(data: bytes, what: str, max_side: int) -> npt.NDArray[np.uint8]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                opened.draft("RGB", (max_side, max_side))
                image = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
        raise GenerationFailed(f"{what.capitalize()} cannot be decoded as an image: {exc}") from None
    except Image.DecompressionBombError:
        raise GenerationFailed(f"{what.capitalize()} is too large to decode.") from None
    if min(image.size) < 32:
        raise GenerationFailed(
            f"{what.capitalize()} is too small (at least 32 x 32 pixels).", code="too_small"
        )
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def _fit(rgb: npt.NDArray[np.uint8], side: int) -> npt.NDArray[np.uint8]:
    height, width = rgb.shape[:2]
    scale = min(1.0, side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _to_lab(rgb: npt.NDArray[np.uint8]) -> Pixels:
    return np.asarray(cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab), dtype=np.float32)


def _to_rgb(lab: Pixels) -> npt.NDArray[np.uint8]:
    lab = lab.copy()
    lab[:, :, 0] = np.clip(lab[:, :, 0], 0, 100)
    lab[:, :, 1:] = np.clip(lab[:, :, 1:], -127, 127)
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return np.asarray(np.clip(rgb * 255.0 + 0.5, 0, 255), dtype=np.uint8)


def _colour_transfer(photo: Pixels, art: Pixels, strength: float) -> Pixels:
    source = photo.reshape(-1, 3)
    target = art.reshape(-1, 3)
    mean_s, std_s = source.mean(axis=0), source.std(axis=0) + 1e-3
    mean_t, std_t = target.mean(axis=0), target.std(axis=0) + 1e-3
    moved = (photo - mean_s) * (std_t / std_s) + mean_t
    return np.asarray((1 - strength) * photo + strength * moved, dtype=np.float32)


def _palette(art: Pixels, colours: int) -> Pixels:
    samples = art.reshape(-1, 3)
    rng = np.random.default_rng(_SEED)
    if len(samples) > 20_000:
        samples = samples[rng.choice(len(samples), 20_000, replace=False)]
    cv2.setRNGSeed(_SEED)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.5)
    data = np.ascontiguousarray(samples, dtype=np.float32)
    labels = np.zeros((len(data), 1), dtype=np.int32)
    _, _, centres = cv2.kmeans(data, colours, labels, criteria, 3, cv2.KMEANS_PP_CENTERS)
    return np.asarray(centres, dtype=np.float32)


def _pull_to_palette(lab: Pixels, palette: Pixels, strength: float) -> Pixels:
    flat = lab.reshape(-1, 3)
    # Nearest palette colour by chroma mostly: lightness keeps the photo's shapes.
    weights = np.array([0.5, 1.0, 1.0], dtype=np.float32)
    nearest = np.empty(len(flat), dtype=np.int64)
    for start in range(0, len(flat), 262_144):
        block = flat[start : start + 262_144]
        distances = (((block[:, None, :] - palette[None, :, :]) * weights) ** 2).sum(axis=2)
        nearest[start : start + len(block)] = np.argmin(distances, axis=1)
    target = palette[nearest].reshape(lab.shape)
    pulled = lab + strength * (target - lab)
    pulled[:, :, 0] = lab[:, :, 0] + 0.5 * strength * (target[:, :, 0] - lab[:, :, 0])
    return np.asarray(pulled, dtype=np.float32)


def _cover(channel: Pixels, width: int, height: int) -> Pixels:
    """Scale the artwork to cover the frame (keeping its proportions) and crop the middle."""
    art_height, art_width = channel.shape
    scale = max(width / art_width, height / art_height)
    size = (max(width, round(art_width * scale)), max(height, round(art_height * scale)))
    resized = cv2.resize(channel, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    left = (size[0] - width) // 2
    top = (size[1] - height) // 2
    return np.asarray(resized[top : top + height, left : left + width], dtype=np.float32)


def _detail_and_form(lightness: Pixels) -> tuple[Pixels, Pixels]:
    sigma = max(1.5, 0.012 * max(lightness.shape))
    blurred = cv2.GaussianBlur(lightness, (0, 0), sigma)
    return np.asarray(lightness - blurred, dtype=np.float32), np.asarray(blurred, dtype=np.float32)


def _edge_mask(photo: npt.NDArray[np.uint8]) -> Pixels:
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    grey = cv2.bilateralFilter(grey, 7, 40, 7)
    median = float(np.median(grey))
    edges = cv2.Canny(grey, max(10.0, 0.66 * median), min(255.0, 1.33 * median + 20))
    mask = cv2.GaussianBlur(edges.astype(np.float32) / 255.0, (0, 0), 1.0)
    return np.asarray(np.clip(mask * 2.0, 0, 1), dtype=np.float32)


def _ink(lab: Pixels, edges: Pixels, ink: Pixels, strength: float) -> Pixels:
    mask = edges[:, :, None] * strength
    return np.asarray(lab * (1 - mask) + ink[None, None, :] * mask, dtype=np.float32)
