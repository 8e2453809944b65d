"""Shared fixtures for the media tests (image fixtures are named image_*)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from media.samples.images import ensure_images

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE_CACHE_DIR = REPO_ROOT / "var" / "samples" / "images"
# Nature photos from mate-backgrounds (one 46 MB package, fetched once into the cache above).
IMAGE_SAMPLE_NAMES = ("Aqua", "Dune", "FreshFlower", "Garden", "LadyBird", "RainDrops", "TwoWings", "Wood")


@pytest.fixture(scope="session")
def image_sample_paths() -> dict[str, Path]:
    # Real media or nothing: without the sample package the tests fail and say why.
    paths = ensure_images(IMAGE_CACHE_DIR, packages=["mate-backgrounds"])
    by_name = {path.stem: path for path in paths if "/nature/" in path.as_posix()}
    return {name: by_name[name] for name in IMAGE_SAMPLE_NAMES}


@pytest.fixture(scope="session")
def image_samples(image_sample_paths: dict[str, Path]) -> dict[str, Image.Image]:
    """The sample photos decoded to RGB, longest side 1024 px (enough, and quick to transform)."""
    images = {}
    for name, path in image_sample_paths.items():
        with Image.open(path) as opened:
            opened.draft("RGB", (1024, 1024))
            image = opened.convert("RGB")
        image.thumbnail((1024, 1024))
        images[name] = image
    return images
