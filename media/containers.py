"""Audio and video containers that neither soundfile nor Pillow reads: MP4, MOV and M4A (ISO base media),
WebM and Matroska, decoded by FFmpeg's libraries through PyAV. Pure: no Django.

Every entry point takes the container format decided by content sniffing, never FFmpeg's own guess, so
no other demuxer (playlists, concatenation lists, image sequences) ever reads the bytes, and nothing is
opened beside them. Limits are checked from the headers before anything is decoded (dimensions, declared
duration), then again while decoding (samples and frames actually seen), so a lying header costs a
bounded amount of work and ends in a MediaError.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from media.errors import CorruptMedia, MediaTooLarge, UnsupportedMedia
from media.limits import MAX_VIDEO_DECODED_FRAMES, MAX_VIDEO_PIXELS, MAX_VIDEO_SECONDS

# Sniffed name -> FFmpeg demuxer.
DEMUXERS = {"mp4": "mov", "mov": "mov", "m4a": "mov", "webm": "matroska", "mkv": "matroska"}
# Bytes FFmpeg may read to find the streams (its default): a header that hides them deeper is refused.
_PROBE_OPTIONS = {"probesize": "5000000", "analyzeduration": "5000000", "enable_drefs": "0"}


@dataclass(frozen=True)
class ContainerInfo:
    has_video: bool
    has_audio: bool
    width: int | None
    height: int | None
    duration_s: float | None


def _open(data: bytes, fmt: str) -> Any:
    import av

    demuxer = DEMUXERS.get(fmt)
    if demuxer is None:
        raise UnsupportedMedia(f"{fmt} is not a container this decoder reads.")
    try:
        return av.open(io.BytesIO(data), mode="r", format=demuxer, options=_PROBE_OPTIONS)
    except av.FFmpegError as exc:
        raise CorruptMedia(f"The {fmt.upper()} file cannot be opened: {exc}") from None


def _declared_duration_s(container: Any) -> float | None:
    durations = []
    if container.duration is not None and container.duration > 0:
        durations.append(container.duration / 1_000_000)
    for stream in container.streams:
        if stream.duration and stream.time_base:
            durations.append(float(stream.duration * stream.time_base))
    return max(durations) if durations else None


def probe(data: bytes, fmt: str, *, max_duration_s: float = MAX_VIDEO_SECONDS) -> ContainerInfo:
    """What the container holds, from its headers; refuses a video frame over the pixel cap or a declared
    duration over `max_duration_s` before decoding anything."""
    with _open(data, fmt) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None and audio is None:
            raise CorruptMedia(f"The {fmt.upper()} file holds no audio or video stream.")
        width = height = None
        if video is not None:
            width, height = int(video.codec_context.width), int(video.codec_context.height)
            if width <= 0 or height <= 0:
                raise CorruptMedia("The video's frames have no pixels.")
            if width * height > MAX_VIDEO_PIXELS:
                raise MediaTooLarge(
                    f"The video's frames are {width} x {height} pixels; the limit is {MAX_VIDEO_PIXELS}."
                )
        duration_s = _declared_duration_s(container)
        if duration_s is not None and duration_s > max_duration_s:
            raise MediaTooLarge(
                f"The media declares {duration_s:.0f} s; the limit is {max_duration_s:.0f} s."
            )
    return ContainerInfo(video is not None, audio is not None, width, height, duration_s)


def decode_audio(
    data: bytes,
    fmt: str,
    *,
    rate: int,
    max_duration_s: float = MAX_VIDEO_SECONDS,
    first_s: float | None = None,
) -> npt.NDArray[np.float32]:
    """The first audio stream as mono float32 at `rate` (only its first `first_s` seconds when given).
    Raises CorruptMedia when there is none or it does not decode, MediaTooLarge past `max_duration_s`
    (counted on the samples, whatever the header says)."""
    import av

    limit = int(max_duration_s * rate) + rate
    blocks: list[npt.NDArray[np.float32]] = []
    total = 0
    with _open(data, fmt) as container:
        if not container.streams.audio:
            raise CorruptMedia(f"The {fmt.upper()} file has no soundtrack.")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        try:
            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    block = converted.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    blocks.append(block)
                    total += block.size
                if first_s is not None and total >= first_s * rate:
                    return np.concatenate(blocks)[: int(first_s * rate)]
                if total > limit:
                    raise MediaTooLarge(f"The soundtrack lasts over {max_duration_s:.0f} s.")
            for converted in resampler.resample(None):
                blocks.append(converted.to_ndarray().reshape(-1).astype(np.float32, copy=False))
        except av.FFmpegError as exc:
            raise CorruptMedia(f"The {fmt.upper()} soundtrack is damaged: {exc}") from None
    samples = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise CorruptMedia("The soundtrack has no decodable samples.")
    if not np.all(np.isfinite(samples)):
        raise CorruptMedia("The soundtrack holds non-finite samples.")
    return samples


def video_frames(data: bytes, fmt: str, *, every_s: float = 0.25) -> Iterator[tuple[float, Image.Image]]:
    """Frames of the first video stream as (time in seconds, RGB image), at most one per `every_s`.

    Every frame's dimensions are checked before it is converted (a stream may change size midway), and
    decoding stops after MAX_VIDEO_DECODED_FRAMES frames; a stream declaring more frames than that is
    read by its key frames only, which encoders place at scene cuts.
    """
    import av

    with _open(data, fmt) as container:
        if not container.streams.video:
            return
        stream = container.streams.video[0]
        declared = int(stream.frames or 0)
        rate = float(stream.average_rate or 0)
        duration_s = _declared_duration_s(container) or 0.0
        if declared > MAX_VIDEO_DECODED_FRAMES or duration_s * rate > MAX_VIDEO_DECODED_FRAMES:
            stream.codec_context.skip_frame = "NONKEY"
        decoded = 0
        last_s = -every_s
        try:
            for frame in container.decode(stream):
                decoded += 1
                if decoded > MAX_VIDEO_DECODED_FRAMES:
                    return
                if frame.width * frame.height > MAX_VIDEO_PIXELS:
                    raise MediaTooLarge(f"A video frame is {frame.width} x {frame.height} pixels.")
                time_s = float(frame.time) if frame.time is not None else decoded / (rate or 25.0)
                if time_s > MAX_VIDEO_SECONDS:
                    raise MediaTooLarge(f"The video lasts over {MAX_VIDEO_SECONDS:.0f} s.")
                if time_s - last_s < every_s:
                    continue
                last_s = time_s
                yield time_s, frame.to_image()
        except av.FFmpegError as exc:
            raise CorruptMedia(f"The {fmt.upper()} video is damaged: {exc}") from None
