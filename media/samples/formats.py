"""Real samples re-encoded in the formats tracing accepts, and hostile files built from them, for tests
and the formats benchmark. Encoders: Pillow (with pillow-heif for HEIC) and FFmpeg's libraries through
PyAV, both installed from the registries. Pure: no Django.

Every maker is deterministic for the same input, so results can be cached on disk by name
(`cached`), like the samples themselves.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt
from PIL import Image

import media.limits  # noqa: F401 (registers the HEIF plugin)

IMAGE_FORMATS = ("gif", "avif", "heic", "bmp", "tiff", "webp")
AUDIO_FORMATS = ("m4a", "opus", "webm", "aiff")
VIDEO_FORMATS = ("mp4", "webm", "mov")


def cached(directory: Path, name: str, make: Callable[[], bytes]) -> bytes:
    """The bytes `make` returns, kept in `directory/name` after the first call."""
    path = directory / name
    if path.exists():
        return path.read_bytes()
    data = make()
    directory.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".part")
    partial.write_bytes(data)
    partial.replace(path)
    return data


def image_as(image: Image.Image, fmt: str) -> bytes:
    """A still image in `fmt` (one of IMAGE_FORMATS)."""
    buffer = io.BytesIO()
    rgb = image.convert("RGB")
    if fmt == "gif":
        rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(buffer, "GIF")
    elif fmt == "avif":
        rgb.save(buffer, "AVIF", quality=70)
    elif fmt == "heic":
        rgb.save(buffer, "HEIF", quality=70)
    elif fmt == "tiff":
        rgb.save(buffer, "TIFF", compression="tiff_deflate")
    elif fmt in ("bmp", "webp"):
        rgb.save(buffer, fmt.upper())
    else:
        raise ValueError(f"no still-image encoder for {fmt}")
    return buffer.getvalue()


def animation(frames: Sequence[Image.Image], fmt: str, *, frame_ms: int = 200) -> bytes:
    """An animated GIF or WebP showing `frames` in turn."""
    buffer = io.BytesIO()
    first, *rest = [frame.convert("RGB") for frame in frames]
    if fmt == "gif":
        palette = [frame.convert("P", palette=Image.Palette.ADAPTIVE, colors=256) for frame in (first, *rest)]
        palette[0].save(buffer, "GIF", save_all=True, append_images=palette[1:], duration=frame_ms, loop=0)
    elif fmt == "webp":
        first.save(buffer, "WEBP", save_all=True, append_images=rest, duration=frame_ms, loop=0, quality=80)
    else:
        raise ValueError(f"no animation encoder for {fmt}")
    return buffer.getvalue()


# Container, video codec, audio codec for each format.
_AUDIO_CODECS = {
    "m4a": ("mp4", "aac"),
    "opus": ("ogg", "libopus"),
    "webm": ("webm", "libopus"),
    "aiff": ("aiff", "pcm_s16be"),
}
_VIDEO_CODECS = {
    "mp4": ("mp4", "libx264", "aac"),
    "mov": ("mov", "libx264", "aac"),
    "webm": ("webm", "libvpx-vp9", "libopus"),
    "mjpeg": ("mp4", "mjpeg", "aac"),
}


def _add_audio(container, codec: str, rate: int):  # type: ignore[no-untyped-def]
    out_rate = 48_000 if "opus" in codec else rate
    stream = container.add_stream(codec, rate=out_rate)
    stream.layout = "mono"
    return stream, out_rate


def _encode_audio(container, stream, samples: npt.NDArray[np.floating], rate: int, out_rate: int) -> None:  # type: ignore[no-untyped-def]
    import av

    resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=out_rate)
    chunk = 1024
    mono = np.asarray(samples, dtype=np.float32).reshape(1, -1)
    for start in range(0, mono.shape[1], chunk):
        block = np.ascontiguousarray(mono[:, start : start + chunk])
        frame = av.AudioFrame.from_ndarray(block, format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        for converted in resampler.resample(frame):
            for packet in stream.encode(converted):
                container.mux(packet)
    for converted in resampler.resample(None):
        for packet in stream.encode(converted):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def audio_as(samples: npt.NDArray[np.floating], rate: int, fmt: str) -> bytes:
    """Mono `samples` at `rate` in `fmt` (one of AUDIO_FORMATS): AAC in M4A, Opus in Ogg or WebM, AIFF."""
    import av

    muxer, codec = _AUDIO_CODECS[fmt]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=muxer) as container:
        stream, out_rate = _add_audio(container, codec, rate)
        if codec == "aac":
            stream.bit_rate = 128_000
        _encode_audio(container, stream, samples, rate, out_rate)
    return buffer.getvalue()


def video(
    scenes: Sequence[tuple[Image.Image, float]],
    fmt: str,
    *,
    soundtrack: tuple[npt.NDArray[np.floating], int] | None = None,
    size: tuple[int, int] = (640, 360),
    fps: int = 12,
) -> bytes:
    """A video (`fmt` one of VIDEO_FORMATS, or "mjpeg": Motion JPEG in MP4) of `scenes`, each an image
    shown for so many seconds, fitted into `size` on black; with `soundtrack` (mono samples and their rate)
    when given."""
    import av

    muxer, video_codec, audio_codec = _VIDEO_CODECS[fmt]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=muxer) as container:
        stream = cast(av.VideoStream, container.add_stream(video_codec, rate=fps))
        stream.width, stream.height = size
        stream.pix_fmt = "yuvj420p" if video_codec == "mjpeg" else "yuv420p"
        sound = None
        if soundtrack is not None:
            sound, out_rate = _add_audio(container, audio_codec, soundtrack[1])
        index = 0
        for picture, seconds in scenes:
            canvas = Image.new("RGB", size)
            fitted = picture.convert("RGB")
            fitted.thumbnail(size)
            canvas.paste(fitted, ((size[0] - fitted.width) // 2, (size[1] - fitted.height) // 2))
            for _ in range(max(1, round(seconds * fps))):
                frame = av.VideoFrame.from_image(canvas)
                frame.pts = index
                index += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if sound is not None and soundtrack is not None:
            _encode_audio(container, sound, soundtrack[0], soundtrack[1], out_rate)
    return buffer.getvalue()


# Hostile files: ISO base media (MP4) boxes rewritten in place.


def _boxes(data: bytes, start: int = 0, end: int | None = None):  # type: ignore[no-untyped-def]
    end = len(data) if end is None else end
    position = start
    while position + 8 <= end:
        size, name = struct.unpack_from(">I4s", data, position)
        if size < 8:
            break
        yield name, position, size
        position += size


def _find(data: bytes, path: Sequence[bytes]) -> list[tuple[int, int]]:
    """Offsets and sizes of every box at `path` (e.g. moov/trak/tkhd)."""
    found = [(0, len(data), -8)]
    for name in path:
        nested = []
        for start, size, header in found:
            body = start + 8 if header != -8 else 0
            for box, position, length in _boxes(data, body, start + size if header != -8 else len(data)):
                if box == name:
                    nested.append((position, length, 0))
        found = nested
    return [(start, size) for start, size, _ in found]


def endless_duration(data: bytes) -> bytes:
    """The MP4 with every duration field of its movie and media headers set near the largest value (all
    ones would mean "unknown"), and every sample's duration in its time-to-sample tables with them (FFmpeg
    trusts those over the headers): days of media where the file holds seconds."""
    out = bytearray(data)
    for start, _ in _find(data, (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts")):
        (count,) = struct.unpack_from(">I", out, start + 12)
        for entry in range(count):
            struct.pack_into(">I", out, start + 16 + 8 * entry + 4, 0x7FFFFFFF)
    for start, _ in _find(data, (b"moov", b"trak", b"edts", b"elst")):
        version, (count,) = out[start + 8], struct.unpack_from(">I", out, start + 12)
        for entry in range(count):
            if version == 1:
                struct.pack_into(">Q", out, start + 16 + 20 * entry, 2**62)
            else:
                struct.pack_into(">I", out, start + 16 + 12 * entry, 0xFFFFFFF0)
    for path in ((b"moov", b"mvhd"), (b"moov", b"trak", b"mdia", b"mdhd")):
        for start, _ in _find(data, path):
            version = out[start + 8]
            if version == 1:
                struct.pack_into(">Q", out, start + 8 + 4 + 16 + 4, 2**63 - 1)
            else:
                struct.pack_into(">I", out, start + 8 + 4 + 8 + 4, 0xFFFFFFF0)
    return bytes(out)


HUGE_SIDE = 16_000  # 256 megapixels a frame: within what FFmpeg takes, far over our cap


def huge_dimensions(data: bytes) -> bytes:
    """A Motion JPEG MP4 (`video(..., "mjpeg")`) whose frames claim HUGE_SIDE x HUGE_SIDE pixels: in the
    track header, the sample entry and every JPEG frame header."""
    out = bytearray(data)
    for start, _ in _find(data, (b"moov", b"trak", b"tkhd")):
        size = struct.unpack_from(">I", out, start)[0]
        struct.pack_into(">II", out, start + size - 8, HUGE_SIDE << 16, HUGE_SIDE << 16)
    for start, _ in _find(data, (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd")):
        entry = start + 16  # full box header, entry count
        if out[entry + 4 : entry + 8] == b"mp4v":
            struct.pack_into(">HH", out, entry + 8 + 24, HUGE_SIDE, HUGE_SIDE)
    for start, size in _find(data, (b"mdat",)):
        position = start
        while (position := out.find(b"\xff\xc0", position, start + size)) >= 0:
            struct.pack_into(">HH", out, position + 5, HUGE_SIDE, HUGE_SIDE)
            position += 2
    return bytes(out)


def zip_in_box() -> bytes:
    """An MP4 type box followed by a media data box that holds a zip archive and nothing playable."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("payload.txt", "0" * 10_000_000)  # a zip bomb's shape: 10 MB of zeros
    payload = archive.getvalue()
    ftyp = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 512, b"isom", b"mp41")
    mdat = struct.pack(">I4s", 8 + len(payload), b"mdat") + payload
    return ftyp + mdat
