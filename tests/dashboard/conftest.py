from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from media.samples.images import ensure_images

SAMPLES = Path(__file__).resolve().parents[2] / "var" / "samples"


@pytest.fixture(scope="session")
def photo() -> bytes:
    """A real photograph (Debian's MATE wallpapers), as a modest JPEG."""
    paths = {p.stem: p for p in ensure_images(SAMPLES / "images", packages=["mate-backgrounds"])}
    with Image.open(paths["Garden"]) as source:
        image = source.convert("RGB")
        image.thumbnail((800, 800))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=88)
        return buffer.getvalue()


def reencoded(data: bytes, quality: int = 70) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return buffer.getvalue()
