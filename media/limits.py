"""Decoding limits shared by every media module. Pillow's decompression-bomb guard is set here, once,
so it does not depend on which module happens to be imported last."""

from typing import Final

from PIL import Image

# The most pixels any image is decoded at; uploads have their own, lower, configurable cap.
MAX_IMAGE_PIXELS: Final = 60_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
