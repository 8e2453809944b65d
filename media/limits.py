"""Decoding limits shared by every media module. Pillow's decompression-bomb guard is set here, once,
so it does not depend on which module happens to be imported last."""

from typing import Final

from PIL import Image

# The most pixels any image is decoded at; uploads have their own, lower, configurable cap.
MAX_IMAGE_PIXELS: Final = 60_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

# Multi-frame media (animated GIF and WebP, video). A frame is decoded only after its dimensions are
# checked against the pixel cap; past these counts decoding stops, so a file that declares or holds
# endless frames costs a bounded amount of work.
MAX_ANIMATION_FRAMES: Final = 2_000  # frames of a GIF or WebP animation looked at
MAX_ANIMATION_PIXELS: Final = 400_000_000  # their pixels added up
MAX_VIDEO_PIXELS: Final = 8_300_000  # one video frame: 3840 x 2160
MAX_VIDEO_DECODED_FRAMES: Final = 3_000  # frames decoded to choose keyframes (a long video: its key frames)
MAX_VIDEO_SECONDS: Final = 20 * 60.0
# At most this many scene-change frames are fingerprinted per animation or video.
MAX_KEYFRAMES: Final = 8


def _register_heif() -> None:
    # HEIC/HEIF through libheif (pillow-heif); AVIF is Pillow's own. Registered once, here, like the guard.
    from pillow_heif import register_heif_opener

    register_heif_opener(thumbnails=False)


_register_heif()
