"""Real photographs for the catalog's tests (Debian's MATE wallpapers), as JPEG bytes."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps

from media.samples.images import ensure_images

SAMPLES = Path(__file__).resolve().parents[2] / "var" / "samples"


def photos() -> dict[str, Path]:
    """The wallpapers by name (Garden, LadyBird, Aqua, ...)."""
    return {path.stem: path for path in ensure_images(SAMPLES / "images", packages=["mate-backgrounds"])}


def jpeg(path: Path, *, mirror: bool = False) -> bytes:
    """The photograph at most 800 px a side, mirrored if asked, as a JPEG of quality 85."""
    with Image.open(path) as source:
        image = source.convert("RGB")
    image.thumbnail((800, 800))
    if mirror:
        image = ImageOps.mirror(image)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
