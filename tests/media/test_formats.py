"""Every accepted format is told by its content and inspected within the caps; hostile containers are
refused from their headers; animations and videos yield their scene-change frames. Real photographs
(Debian's MATE wallpapers) re-encoded with the installed encoders."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
from PIL import Image

from media import containers, frames, preview
from media.errors import CorruptMedia, MediaTooLarge
from media.fingerprint import audio, image
from media.samples import formats
from media.validation import inspect, sniff

RATE = 16_000


@pytest.fixture(scope="module")
def tone() -> np.ndarray:
    """Three seconds of a chord with a moving partial: enough to encode and decode, not a match test."""
    t = np.arange(3 * RATE) / RATE
    return (0.2 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * (660 + 40 * t) * t)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def scenes(image_samples: dict[str, Image.Image]) -> list[Image.Image]:
    return [image_samples[name].resize((320, 200)) for name in ("Aqua", "Garden", "Wood")]


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [
        ("gif", "image/gif"),
        ("avif", "image/avif"),
        ("heic", "image/heic"),
        ("bmp", "image/bmp"),
        ("tiff", "image/tiff"),
        ("webp", "image/webp"),
    ],
)
def test_each_still_image_format_is_told_by_its_content_and_fingerprinted(fmt, media_type, image_samples):
    data = formats.image_as(image_samples["Garden"], fmt)

    info = inspect(data)

    assert (sniff(data[:16]), info.kind, info.media_type, info.animated) == (fmt, "image", media_type, False)
    assert (info.width, info.height) == image_samples["Garden"].size
    assert len(image.compute(data).features) > 100


@pytest.mark.parametrize(
    ("fmt", "media_type", "extension"),
    [
        ("m4a", "audio/mp4", "m4a"),
        ("opus", "audio/ogg", "ogg"),
        ("webm", "audio/webm", "webm"),
        ("aiff", "audio/aiff", "aiff"),
    ],
)
def test_each_audio_format_is_told_by_its_content_and_decoded_at_its_length(fmt, media_type, extension, tone):
    data = formats.audio_as(tone, RATE, fmt)

    info = inspect(data)
    samples, rate = audio.decode(data)

    assert (info.kind, info.media_type, info.extension) == ("audio", media_type, extension)
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert rate == audio.SAMPLE_RATE_HZ
    assert samples.size / rate == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize(
    ("fmt", "media_type"), [("mp4", "video/mp4"), ("mov", "video/quicktime"), ("webm", "video/webm")]
)
def test_a_video_is_inspected_and_its_scenes_and_soundtrack_are_decoded(fmt, media_type, scenes, tone):
    data = formats.video([(scenes[0], 1.0), (scenes[1], 1.0)], fmt, soundtrack=(tone, RATE))

    info = inspect(data)
    chosen = frames.keyframes(data, sniff(data[:16]) or "")
    soundtrack = containers.decode_audio(data, sniff(data[:16]) or "", rate=8000)

    assert (info.kind, info.media_type, info.width, info.height) == ("video", media_type, 640, 360)
    assert [round(frame.time_s, 2) for frame in chosen] == [0.0, 1.0]
    assert soundtrack.size / 8000 == pytest.approx(3.0, abs=0.1)


def test_an_animated_gif_yields_each_new_scene_once_and_in_order(scenes):
    data = formats.animation([scenes[0], scenes[1], scenes[0], scenes[2]], "gif", frame_ms=250)

    info = inspect(data)
    chosen = frames.keyframes(data, "gif")

    assert (info.kind, info.animated) == ("image", True)
    assert [frame.time_s for frame in chosen] == [0.0, 0.25, 0.75]


def test_a_webp_animation_is_animated_and_yields_its_scenes(scenes):
    data = formats.animation(scenes, "webp", frame_ms=500)

    assert inspect(data).animated and frames.multiframe_format(data) == "webp"
    assert [frame.time_s for frame in frames.keyframes(data, "webp")] == [0.0, 0.5, 1.0]


def test_choosing_keeps_the_first_frame_and_the_strongest_changes_within_the_limit(scenes):
    grey = Image.new("RGB", (320, 200), (128, 128, 128))
    sequence = [(0.0, grey), *[(1.0 + i, picture) for i, picture in enumerate(scenes)]]

    chosen = frames.choose(sequence, limit=2)

    assert len(chosen) == 2 and chosen[0].time_s == 0.0


def test_a_still_image_is_not_multiframe_and_a_bundle_round_trips(image_samples):
    still = formats.image_as(image_samples["Garden"], "gif")
    parts = [b"first", b"", b"third fingerprint"]

    assert frames.multiframe_format(still) is None
    assert frames.unbundle(frames.bundle(parts)) == parts
    assert frames.unbundle(b"plain fingerprint") == [b"plain fingerprint"]


def test_a_video_claiming_huge_frames_is_refused_from_its_headers(scenes):
    hostile = formats.huge_dimensions(formats.video([(scenes[0], 0.5)], "mjpeg"))

    with pytest.raises(MediaTooLarge, match="16000 x 16000"):
        inspect(hostile)


def test_a_video_declaring_an_endless_duration_is_refused_from_its_headers(scenes, tone):
    hostile = formats.endless_duration(formats.video([(scenes[0], 1.0)], "mp4", soundtrack=(tone, RATE)))

    with pytest.raises(MediaTooLarge, match="declares"):
        inspect(hostile)
    with pytest.raises(MediaTooLarge):
        containers.probe(hostile, "mp4")


def test_a_zip_inside_an_mp4_box_is_refused_as_corrupt():
    with pytest.raises(CorruptMedia):
        inspect(formats.zip_in_box())


def test_a_soundtrack_longer_than_the_cap_is_refused_while_decoding_whatever_the_header_says(tone):
    data = formats.audio_as(tone, RATE, "m4a")

    with pytest.raises(MediaTooLarge):
        containers.decode_audio(data, "m4a", rate=8000, max_duration_s=1.0)


@pytest.mark.parametrize("fmt", ["m4a", "webm", "aiff", "opus"])
def test_the_preview_of_a_recording_in_each_format_is_its_first_seconds_in_ogg(fmt, tone):
    long_tone = np.tile(tone, 12)  # 36 s

    made = preview.preview(io.BytesIO(formats.audio_as(long_tone, RATE, fmt)), "audio")

    assert made.media_type == "audio/ogg"
    assert soundfile.info(io.BytesIO(made.data)).duration == pytest.approx(preview.PREVIEW_AUDIO_S, abs=0.05)


@pytest.mark.parametrize("fmt", ["heic", "avif", "gif", "tiff"])
def test_the_preview_of_an_image_in_each_format_is_a_jpeg(fmt, image_samples):
    made = preview.preview(io.BytesIO(formats.image_as(image_samples["Garden"], fmt)), "image")

    assert made.media_type == "image/jpeg" and made.data.startswith(b"\xff\xd8")


def test_an_animated_gif_whose_screen_claims_billions_of_pixels_is_refused_before_decoding(scenes):
    data = bytearray(formats.animation(scenes[:2], "gif"))
    data[6:10] = b"\xff\xff\xff\xff"  # logical screen 65535 x 65535

    with pytest.raises(MediaTooLarge):
        inspect(bytes(data))
    with pytest.raises(MediaTooLarge):
        image.compute(bytes(data))
    assert frames.multiframe_format(bytes(data)) is None
