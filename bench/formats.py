"""Recall per accepted format, and the time to refuse hostile files.

    python -m bench.formats            # 6 photos x 5 image transformations, 4 pieces x 4 audio ones
    python -m bench.formats --photos 12 --pieces 6

Corpus: photos of Debian's MATE wallpapers (``media.samples.images``) and music rendered from the
music21 corpus (``media.samples.audio``); every photo and piece is a reference, indexed as the product
indexes an upload. Queries are transformed copies (the image and audio benchmarks' transformations, a
few of each), then encoded in each format with the encoders the product installs (Pillow, pillow-heif,
PyAV), then decoded and matched as a trace does: still images whole, animations and videos by their
scene-change frames (the copy is the middle of three scenes, between two photos that are not
references), audio and soundtracks through the same decoder the index uses.

A query is found when its true reference is among the matches the product reports (images: the index's
decision rule; audio: confidence >= 0.5); any other reference reported is a false answer.

Hostile files are inspected as an upload or a trace inspects them, each timed from the bytes to the
refusal (median of five).
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

from bench.fingerprint_audio import add_noise, change_speed, change_tempo
from bench.fingerprint_image import TRANSFORMS as IMAGE_TRANSFORMS
from media import frames
from media.errors import MediaError
from media.fingerprint import audio, image
from media.fingerprint.audio_index import AudioIndex
from media.fingerprint.image_index import ImageIndex
from media.samples import formats
from media.samples.audio import render_corpus
from media.samples.images import ensure_images
from media.validation import inspect

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = REPO_ROOT / "var" / "samples"
SEED = 20261207
IMAGE_TRANSFORM_NAMES = ("resize 50%", "jpeg q30", "crop 20%", "mirror + crop 20%", "text overlay")
EXCERPT_S = 8.0
REPORT_CONFIDENCE = 0.5
FRAME = (640, 480)

ImageQuery = Callable[[Image.Image, list[Image.Image]], bytes]


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


IMAGE_FORMATS: dict[str, ImageQuery] = {
    "png (baseline)": lambda query, _: _png(query),
    "gif": lambda query, _: formats.image_as(query, "gif"),
    "gif, animated": lambda query, others: formats.animation(
        [others[0].resize(FRAME), query.resize(FRAME), others[1].resize(FRAME)], "gif", frame_ms=500
    ),
    "webp, animated": lambda query, others: formats.animation(
        [others[0].resize(FRAME), query.resize(FRAME), others[1].resize(FRAME)], "webp", frame_ms=500
    ),
    "avif": lambda query, _: formats.image_as(query, "avif"),
    "heic": lambda query, _: formats.image_as(query, "heic"),
    "bmp": lambda query, _: formats.image_as(query, "bmp"),
    "tiff": lambda query, _: formats.image_as(query, "tiff"),
    "mp4 scene": lambda query, others: formats.video(
        [(others[0], 1.0), (query, 1.0), (others[1], 1.0)], "mp4", size=FRAME
    ),
    "webm scene": lambda query, others: formats.video(
        [(others[0], 1.0), (query, 1.0), (others[1], 1.0)], "webm", size=FRAME
    ),
}

AUDIO_TRANSFORMS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "excerpt, clean": lambda x, _: x,
    "+ noise 20 dB SNR": lambda x, rng: add_noise(x, 20, rng),
    "speed +3 %": lambda x, _: change_speed(x, 1.03),
    "tempo +5 %": lambda x, _: change_tempo(x, 1.05),
}


def _wav(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


AUDIO_FORMATS: dict[str, Callable[[np.ndarray, int, Image.Image], bytes]] = {
    "wav (baseline)": lambda x, rate, _: _wav(x, rate),
    "m4a (aac)": lambda x, rate, _: formats.audio_as(x, rate, "m4a"),
    "ogg (opus)": lambda x, rate, _: formats.audio_as(x, rate, "opus"),
    "webm (opus)": lambda x, rate, _: formats.audio_as(x, rate, "webm"),
    "aiff": lambda x, rate, _: formats.audio_as(x, rate, "aiff"),
    "mp4 soundtrack": lambda x, rate, still: formats.video(
        [(still, len(x) / rate)], "mp4", soundtrack=(x, rate), size=(320, 240), fps=4
    ),
}


def _image_matches(data: bytes, index: ImageIndex[str]) -> set[str]:
    fmt = frames.multiframe_format(data)
    pictures: list[bytes | Image.Image] = (
        [data] if fmt is None else [f.image for f in frames.keyframes(data, fmt)]
    )
    found: set[str] = set()
    for picture in pictures:
        found |= {ref for ref, match in index.query(image.compute(picture)) if match.is_match}
    return found


def _photos(count: int) -> list[tuple[str, Image.Image]]:
    paths = sorted(ensure_images(SAMPLES / "images", packages=["mate-backgrounds"]))
    chosen = random.Random(SEED).sample(paths, min(len(paths), count + 2))
    photos = []
    for path in chosen:
        with Image.open(path) as source:
            picture = source.convert("RGB")
        picture.thumbnail((1024, 1024))
        photos.append((path.stem, picture))
    return photos


def bench_images(count: int) -> None:
    photos = _photos(count)
    references, fillers = photos[:count], [picture for _, picture in photos[count:]]
    index: ImageIndex[str] = ImageIndex()
    for name, picture in references:
        index.add(name, image.compute(picture, include_mirror=False))
    print(f"\nImages: {len(references)} photos x {len(IMAGE_TRANSFORM_NAMES)} transformations per format")
    print(f"{'format':<18} {'found':>7} {'recall':>7} {'false':>6} {'ms/query':>9}")
    for fmt, make in IMAGE_FORMATS.items():
        rng = random.Random(SEED)  # the same transformed copies in every format
        found = false = total = 0
        elapsed = 0.0
        for name, picture in references:
            for transform in IMAGE_TRANSFORM_NAMES:
                query = IMAGE_TRANSFORMS[transform](picture, rng).convert("RGB")
                data = make(query, fillers)
                started = time.perf_counter()
                matched = _image_matches(data, index)
                elapsed += time.perf_counter() - started
                total += 1
                found += name in matched
                false += len(matched - {name})
        print(
            f"{fmt:<18} {found:>3}/{total:<3} {found / total:>7.2f} {false:>6} {1000 * elapsed / total:>9.0f}"
        )


def bench_audio(count: int) -> None:
    pieces = render_corpus(SAMPLES / "audio", count=count, seed=11)
    index = AudioIndex()
    excerpts = []
    rng = np.random.default_rng(SEED)
    for path in pieces:
        samples, rate = audio.decode(path)
        index.add(path.stem, audio.compute(samples, rate))
        start = int(rng.uniform(5.0, max(5.0, samples.size / rate - EXCERPT_S - 5.0)) * rate)
        excerpts.append((path.stem, samples[start : start + int(EXCERPT_S * rate)], rate))
    still = Image.new("RGB", (320, 240), (40, 40, 40))
    print(
        f"\nAudio: {len(pieces)} pieces x {len(AUDIO_TRANSFORMS)} transformations per format "
        f"({EXCERPT_S:.0f} s excerpts)"
    )
    print(f"{'format':<18} {'found':>7} {'recall':>7} {'false':>6} {'ms/query':>9}")
    for fmt, make in AUDIO_FORMATS.items():
        rng = np.random.default_rng(SEED)  # the same noise in every format
        found = false = total = 0
        elapsed = 0.0
        for name, excerpt, rate in excerpts:
            for transform in AUDIO_TRANSFORMS.values():
                data = make(transform(excerpt, rng).astype(np.float32), rate, still)
                started = time.perf_counter()
                samples, decoded_rate = audio.decode(data)
                heard = index.query(audio.compute(samples, decoded_rate, query=True), limit=5)
                elapsed += time.perf_counter() - started
                matched = {str(h.ref_id) for h in heard if h.confidence >= REPORT_CONFIDENCE}
                total += 1
                found += name in matched
                false += len(matched - {name})
        print(
            f"{fmt:<18} {found:>3}/{total:<3} {found / total:>7.2f} {false:>6} {1000 * elapsed / total:>9.0f}"
        )


def bench_hostile() -> None:
    scene = Image.new("RGB", (320, 240), (90, 140, 60))
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(16_000 * 2) / 16_000)).astype(np.float32)
    hostile = {
        "video 16000 x 16000 px (MJPEG in MP4)": formats.huge_dimensions(
            formats.video([(scene, 0.5)], "mjpeg")
        ),
        "MP4 with an endless duration header": formats.endless_duration(
            formats.video([(scene, 1.0)], "mp4", soundtrack=(tone, 16_000))
        ),
        "zip (10 MB of zeros) in an MP4 box": formats.zip_in_box(),
    }
    print("\nHostile files: time from the bytes to the refusal (median of 5)")
    print(f"{'file':<38} {'bytes':>8} {'refused as':<16} {'ms':>6}")
    for name, data in hostile.items():
        times, code = [], "accepted!"
        for _ in range(5):
            started = time.perf_counter()
            try:
                inspect(data)
            except MediaError as error:
                code = error.code
            times.append(time.perf_counter() - started)
        print(f"{name:<38} {len(data):>8} {code:<16} {1000 * statistics.median(times):>6.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=6)
    parser.add_argument("--pieces", type=int, default=4)
    arguments = parser.parse_args(argv)
    bench_hostile()
    bench_images(arguments.photos)
    bench_audio(arguments.pieces)
    return 0


if __name__ == "__main__":
    sys.exit(main())
