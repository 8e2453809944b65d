"""Quality floors for dataset items. Pure: no Django, so it can be measured and reused alone.

An item is kept out, with the reason, when its file is corrupt, when an image is smaller than the floor
in either dimension, or when audio is shorter than the floor or quieter than the loudness floor. Loudness
is the RMS level of the whole file in dBFS (0 dBFS is a full-scale square wave; digital silence is
reported as -inf), measured over all channels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

from media.containers import decode_audio
from media.errors import MediaError
from media.validation import CONTAINER_FORMATS, MediaInfo, inspect, sniff


@dataclass(frozen=True)
class Floors:
    min_width: int = 256
    min_height: int = 256
    min_duration_ms: int = 3000
    min_loudness_dbfs: int = -50


@dataclass(frozen=True)
class Verdict:
    """`code` is empty when the file passes; otherwise it names the floor and `reason` says why."""

    code: str
    reason: str
    info: MediaInfo | None = None
    loudness_dbfs: float | None = None

    @property
    def passed(self) -> bool:
        return not self.code


def loudness_dbfs(data: bytes) -> float:
    """The RMS level of the whole recording in dBFS, read in blocks (bounded memory); a recording in an
    MP4, M4A or WebM container is decoded whole (mono, 16 kHz), within the duration cap."""
    import soundfile

    fmt = sniff(data[:16])
    if fmt in CONTAINER_FORMATS:
        mono = decode_audio(data, fmt, rate=16_000).astype(np.float64)
        power = float(np.square(mono).mean()) if mono.size else 0.0
        return -math.inf if power == 0.0 else 10.0 * math.log10(power)
    total = 0.0
    count = 0
    with soundfile.SoundFile(io.BytesIO(data)) as handle:
        for block in handle.blocks(blocksize=65_536, dtype="float32", always_2d=True):
            samples = np.asarray(block, dtype=np.float64)
            total += float(np.square(samples).sum())
            count += samples.size
    if count == 0 or total == 0.0:
        return -math.inf
    return 10.0 * math.log10(total / count)


def check(data: bytes, floors: Floors) -> Verdict:
    """Does the file meet the floors? Never raises for bad media: corrupt files are a verdict."""
    try:
        info = inspect(data)
    except MediaError as exc:
        return Verdict("corrupt_media", f"The file cannot be read: {exc}")
    if info.kind == "image":
        width, height = info.width or 0, info.height or 0
        if width < floors.min_width or height < floors.min_height:
            return Verdict(
                "below_resolution",
                f"The image is {width} x {height} pixels; "
                f"the floor is {floors.min_width} x {floors.min_height}.",
                info,
            )
        return Verdict("", "", info)
    duration_ms = round((info.duration_s or 0.0) * 1000)
    if duration_ms < floors.min_duration_ms:
        return Verdict(
            "below_duration",
            f"The recording lasts {duration_ms / 1000:.1f} s; "
            f"the floor is {floors.min_duration_ms / 1000:.1f} s.",
            info,
        )
    try:
        level = loudness_dbfs(data)
    except (RuntimeError, ValueError) as exc:  # soundfile: RuntimeError; MediaError is a ValueError
        return Verdict("corrupt_media", f"The audio cannot be decoded to the end: {exc}", info)
    if level < floors.min_loudness_dbfs:
        shown = "silent" if level == -math.inf else f"{level:.1f} dBFS"
        return Verdict(
            "below_loudness",
            f"The recording's level is {shown}; the floor is {floors.min_loudness_dbfs} dBFS.",
            info,
            level,
        )
    return Verdict("", "", info, level)
