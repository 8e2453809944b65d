"""Fuzzing (hypothesis on bytes) over the upload validator and the decoders: whatever the bytes, the only
exceptions are the media errors the API turns into 4xx (MediaError, which is a ValueError), never a crash,
another exception or a hang.

Inputs are random bytes and mutations of real media (a photograph, rendered music, in each accepted
format): flipped bytes, truncations, spliced headers. Each target runs a bounded number of examples
(SECURITY_FUZZ_EXAMPLES, default 150); each call is interrupted after 10 s and reported as a hang.
"""

from __future__ import annotations

import functools
import io
import os
import signal
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from media.errors import MediaError
from media.fingerprint import audio as audio_fingerprint
from media.fingerprint import image as image_fingerprint
from media.fingerprint.voice import VoiceEmbedding
from media.samples.images import ensure_images
from media.validation import Limits, inspect, sniff
from tests.security.live import ROOT

pytestmark = pytest.mark.security

SAMPLES = ROOT / "var" / "samples"
EXAMPLES = int(os.environ.get("SECURITY_FUZZ_EXAMPLES", "150"))
HANG_AFTER_S = 10
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Hang(Exception):
    pass


@contextmanager
def bounded() -> Iterator[None]:
    """Fail a call that runs longer than HANG_AFTER_S (a decoder stuck in a loop) instead of waiting."""

    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {HANG_AFTER_S} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_AFTER_S)
    try:
        # Decoders may warn about odd input (Pillow's EXIF, libsndfile); a warning is not a crash.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def only_media_errors(call: Callable[[], Any]) -> Any:
    """Run a call; return its result or the MediaError it raised. Anything else fails the test."""
    with bounded():
        try:
            return call()
        except MediaError as error:
            assert error.code in {"unsupported_media", "corrupt_media", "media_too_large"}, error.code
            assert str(error)
            return error


@functools.cache
def seeds() -> dict[str, bytes]:
    """Real media in every accepted format (made on first use, not when the module is collected)."""
    paths = {p.stem: p for p in ensure_images(SAMPLES / "images", packages=["mate-backgrounds"])}
    seeds: dict[str, bytes] = {}
    with Image.open(paths["Garden"]) as source:
        image = source.convert("RGB")
        image.thumbnail((96, 96))
        for fmt in ("PNG", "JPEG", "WEBP"):
            buffer = io.BytesIO()
            image.save(buffer, fmt)
            seeds[fmt.lower()] = buffer.getvalue()
    music = sorted((SAMPLES / "audio").glob("*.wav"))
    if music:
        samples, rate = soundfile.read(music[0], dtype="float32", frames=44_100, always_2d=False)
    else:  # a fresh checkout before the samples are rendered: a chord, still real decodable audio
        rate = 22_050
        t = np.arange(rate) / rate
        samples = (0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 330 * t)).astype("float32")
    for fmt in ("WAV", "FLAC", "OGG", "MP3"):
        buffer = io.BytesIO()
        soundfile.write(buffer, samples, rate, format=fmt)
        seeds[fmt.lower()] = buffer.getvalue()
    return seeds


@st.composite
def mutated_media(draw: st.DrawFn) -> bytes:
    data = bytearray(seeds()[draw(st.sampled_from(sorted(seeds())))])
    for _ in range(draw(st.integers(0, 8))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "splice", "zero"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif action == "truncate":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif action == "splice":  # another format's header grafted on
            other = seeds()[draw(st.sampled_from(sorted(seeds())))]
            data[: min(len(data), 64)] = other[:64]
        else:
            end = min(len(data), at + draw(st.integers(1, 4096)))
            data[at:end] = bytes(end - at)
    return bytes(data)


any_bytes = st.one_of(st.binary(max_size=4096), mutated_media())
# Low caps so the duration and pixel checks are reached often.
SMALL = Limits(max_bytes=2 * 1024 * 1024, max_pixels=4_000, max_audio_seconds=0.5)


@FUZZ
@given(data=any_bytes, small=st.booleans())
def test_the_upload_validator_raises_only_media_errors(data: bytes, small: bool) -> None:
    result = only_media_errors(lambda: inspect(data, SMALL if small else None))
    if not isinstance(result, MediaError):
        assert result.kind in {"image", "audio"}
        assert sniff(data[:16]) == result.extension


@FUZZ
@given(data=any_bytes)
def test_the_audio_decoder_raises_only_media_errors(data: bytes) -> None:
    result = only_media_errors(lambda: audio_fingerprint.decode(data, max_duration_s=5))
    if not isinstance(result, MediaError):
        samples, rate = result
        assert rate == audio_fingerprint.SAMPLE_RATE_HZ
        assert np.all(np.isfinite(samples))


@FUZZ
@given(data=any_bytes)
def test_the_image_loader_raises_only_media_errors(data: bytes) -> None:
    result = only_media_errors(lambda: image_fingerprint.load_image(data))
    if not isinstance(result, MediaError):
        assert result.size[0] > 0 and result.size[1] > 0


@functools.cache
def stored() -> dict[str, bytes]:
    image = image_fingerprint.compute(seeds()["png"])
    samples, rate = audio_fingerprint.decode(seeds()["wav"])
    sound = audio_fingerprint.compute(samples, rate)
    return {"image": image.to_bytes(), "audio": sound.to_bytes()}


@st.composite
def mutated_fingerprint(draw: st.DrawFn, kind: str) -> bytes:
    data = bytearray(stored()[kind])
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        choice = draw(st.sampled_from(["flip", "truncate", "insert"]))
        if choice == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif choice == "truncate":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@FUZZ
@given(data=st.one_of(st.binary(max_size=2048), mutated_fingerprint("image")))
def test_the_stored_image_fingerprint_decoder_raises_only_media_errors(data: bytes) -> None:
    result = only_media_errors(lambda: image_fingerprint.ImageFingerprint.from_bytes(data))
    if not isinstance(result, MediaError):
        assert result.to_bytes() == data
    only_media_errors(lambda: image_fingerprint.ImageFingerprint.from_json(data.decode("latin-1")))


@FUZZ
@given(data=st.one_of(st.binary(max_size=2048), mutated_fingerprint("audio")))
def test_the_stored_audio_fingerprint_decoder_raises_only_media_errors(data: bytes) -> None:
    result = only_media_errors(lambda: audio_fingerprint.AudioFingerprint.from_bytes(data))
    if not isinstance(result, MediaError):
        assert len(result) >= 0


@FUZZ
@given(data=st.binary(max_size=2048))
def test_the_stored_voice_embedding_decoder_raises_only_value_errors(data: bytes) -> None:
    with bounded():
        try:
            embedding = VoiceEmbedding.from_bytes(data)
        except ValueError as error:  # its documented refusal (MediaError is a ValueError too)
            assert str(error)
            return
    assert embedding.to_bytes() == data


def test_the_seeds_are_valid_media_so_the_mutations_start_from_real_files() -> None:
    kinds = {name: inspect(data).kind for name, data in seeds().items()}
    assert kinds == {
        "png": "image",
        "jpeg": "image",
        "webp": "image",
        "wav": "audio",
        "flac": "audio",
        "ogg": "audio",
        "mp3": "audio",
    }


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_the_fingerprint_seeds_round_trip(kind: str) -> None:
    decoders: dict[str, Callable[[bytes], Any]] = {
        "image": image_fingerprint.ImageFingerprint.from_bytes,
        "audio": audio_fingerprint.AudioFingerprint.from_bytes,
    }
    assert decoders[kind](stored()[kind]).to_bytes() == stored()[kind]
