"""Tracing every accepted format through the product's own path (upload, the fingerprint task's body, the
trace API): photographs from Debian's MATE wallpapers, music rendered from the music21 corpus and a
Festival voice, re-encoded with the installed encoders (cached beside the samples). Each matching step
fails alone: a step the media does not allow is reported as skipped, never refusing the others."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from catalog.models import Asset, Blob
from catalog.services import asset_upload
from catalog.tasks import fingerprint_asset
from common.problems import ApiError
from matching.models import Fingerprint
from media.fingerprint import voice
from media.samples import formats, speech
from media.samples.audio import render_corpus
from media.samples.images import ensure_images
from tests import factories

pytestmark = pytest.mark.django_db
SAMPLES = Path(__file__).resolve().parents[2] / "var" / "samples"
CONVERTED = SAMPLES / "formats"
VERSION = "v2"  # part of every converted file's name: bump it when a maker changes
FRAME = (640, 480)  # every frame of an animation has the same size


@pytest.fixture(scope="module")
def pictures() -> dict[str, Image.Image]:
    paths = {p.stem: p for p in ensure_images(SAMPLES / "images", packages=["mate-backgrounds"])}
    out = {}
    for name in ("Garden", "Aqua", "Wood", "Dune"):
        with Image.open(paths[name]) as source:
            picture = source.convert("RGB")
        picture.thumbnail((1024, 1024))
        out[name] = picture
    return out


@pytest.fixture(scope="module")
def song() -> tuple[np.ndarray, int]:
    [piece] = render_corpus(SAMPLES / "audio", count=1, seed=11)
    samples, rate = soundfile.read(piece, dtype="float32")
    return samples, rate


def _jpeg(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _wav(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples.astype("float32"), rate, format="WAV")
    return buffer.getvalue()


def _crop(picture: Image.Image, share: float = 0.8) -> Image.Image:
    width, height = picture.size
    left, top = int(width * (1 - share) / 2), int(height * (1 - share) / 2)
    return picture.crop((left, top, width - left, height - top))


def _register(owner, data: bytes, *, kind: str, title: str):
    work = factories.work(owner, kind=kind, title=title)
    asset = asset_upload(work=work, user=owner, data=data, filename=f"{title}.bin").asset
    fingerprint_asset(asset.pk)  # the Celery task's body, run here
    factories.offer(owner, work)  # published: a trace by anyone may disclose it
    asset.refresh_from_db()
    return work, asset


def _trace(as_user, data: bytes, name: str) -> dict:
    response = as_user(factories.vendor()).post(
        "/api/v1/trace", {"file": SimpleUploadedFile(name, data)}, format="multipart"
    )
    assert response.status_code == 200, response.content
    return response.json()


def _match(answer: dict, work) -> dict:
    [match] = [m for m in answer["matches"] if m["work"] == work.pk]
    return match


def test_an_animated_gif_with_the_work_in_one_frame_is_traced_to_it_with_the_frame_time(pictures, as_user):
    painter = factories.creator()
    garden, _ = _register(painter, _jpeg(pictures["Garden"]), kind="image", title="Garden")
    gif = formats.cached(
        CONVERTED,
        f"aqua-garden-wood-{VERSION}.gif",
        lambda: formats.animation(
            [
                pictures["Aqua"].resize(FRAME),
                _crop(pictures["Garden"]).resize(FRAME),
                pictures["Wood"].resize(FRAME),
            ],
            "gif",
            frame_ms=400,
        ),
    )

    answer = _trace(as_user, gif, "loop.gif")

    match = _match(answer, garden)
    assert (answer["media_type"], answer["kind"], answer["skipped"]) == ("image/gif", "image", [])
    assert (match["kind"], match["time_s"]) == ("image", 0.4)
    assert match["confidence"] >= 0.9


def test_an_mp4_with_the_work_in_one_scene_and_a_song_in_its_soundtrack_is_traced_to_both(
    pictures, song, as_user
):
    painter, composer = factories.creator(), factories.creator()
    garden, _ = _register(painter, _jpeg(pictures["Garden"]), kind="image", title="Garden")
    samples, rate = song
    chorale, _ = _register(composer, _wav(samples, rate), kind="audio", title="Chorale")
    clip = formats.cached(
        CONVERTED,
        f"aqua-garden-wood-chorale-{VERSION}.mp4",
        lambda: formats.video(
            [(pictures["Aqua"], 2.0), (pictures["Garden"], 2.0), (pictures["Wood"], 2.0)],
            "mp4",
            soundtrack=(samples[12 * rate : 18 * rate], rate),
        ),
    )

    answer = _trace(as_user, clip, "clip.mp4")

    assert (answer["media_type"], answer["kind"], answer["skipped"]) == ("video/mp4", "video", [])
    seen = _match(answer, garden)
    heard = _match(answer, chorale)
    assert seen["kind"] == "image" and 2.0 <= seen["time_s"] < 2.5
    assert heard["kind"] == "audio" and abs(heard["offset_s"] - 12.0) < 0.5


def test_an_avif_of_a_cropped_photo_is_traced_to_it(pictures, as_user):
    painter = factories.creator()
    garden, _ = _register(painter, _jpeg(pictures["Garden"]), kind="image", title="Garden")
    avif = formats.cached(
        CONVERTED, f"garden-crop-{VERSION}.avif", lambda: formats.image_as(_crop(pictures["Garden"]), "avif")
    )

    answer = _trace(as_user, avif, "garden.avif")

    assert (answer["media_type"], _match(answer, garden)["kind"]) == ("image/avif", "image")


def test_an_m4a_excerpt_of_a_registered_song_is_traced_to_it_with_the_offset(song, as_user):
    composer = factories.creator()
    samples, rate = song
    chorale, _ = _register(composer, _wav(samples, rate), kind="audio", title="Chorale")
    m4a = formats.cached(
        CONVERTED,
        f"chorale-20s-{VERSION}.m4a",
        lambda: formats.audio_as(samples[20 * rate : 28 * rate], rate, "m4a"),
    )

    answer = _trace(as_user, m4a, "excerpt.m4a")

    match = _match(answer, chorale)
    assert (answer["media_type"], answer["kind"], match["kind"]) == ("audio/mp4", "audio", "audio")
    assert abs(match["offset_s"] - 20.0) < 0.5


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [("bmp", "image/bmp"), ("tiff", "image/tiff"), ("heic", "image/heic"), ("webp-animation", "image/webp")],
)
def test_each_other_image_format_is_traced_to_the_photo(fmt, media_type, pictures, as_user):
    painter = factories.creator()
    garden, _ = _register(painter, _jpeg(pictures["Garden"]), kind="image", title="Garden")
    cropped = _crop(pictures["Garden"])

    def make() -> bytes:
        if fmt == "webp-animation":
            return formats.animation([pictures["Wood"].resize(cropped.size), cropped], "webp", frame_ms=300)
        return formats.image_as(cropped, fmt)

    data = formats.cached(CONVERTED, f"garden-crop-{VERSION}.{fmt}", make)

    answer = _trace(as_user, data, f"query.{fmt}")

    assert (answer["media_type"], _match(answer, garden)["kind"]) == (media_type, "image")


@pytest.mark.parametrize(
    ("fmt", "media_type"), [("aiff", "audio/aiff"), ("opus", "audio/ogg"), ("webm", "audio/webm")]
)
def test_each_other_audio_format_is_traced_to_the_song(fmt, media_type, song, as_user):
    composer = factories.creator()
    samples, rate = song
    chorale, _ = _register(composer, _wav(samples, rate), kind="audio", title="Chorale")
    data = formats.cached(
        CONVERTED,
        f"chorale-30s-{VERSION}.{fmt}",
        lambda: formats.audio_as(samples[30 * rate : 38 * rate], rate, fmt),
    )

    answer = _trace(as_user, data, f"query.{fmt}")

    match = _match(answer, chorale)
    assert (answer["media_type"], match["kind"]) == (media_type, "audio")
    assert abs(match["offset_s"] - 30.0) < 0.5


def test_an_uploaded_animation_registers_its_scenes_and_a_photo_of_any_scene_traces_to_it(pictures, as_user):
    animator = factories.creator()
    gif = formats.cached(
        CONVERTED,
        f"aqua-wood-{VERSION}.gif",
        lambda: formats.animation(
            [pictures["Aqua"].resize((640, 480)), pictures["Wood"].resize((640, 480))], "gif"
        ),
    )
    loop, asset = _register(animator, gif, kind="image", title="Loop")

    answer = _trace(as_user, _jpeg(_crop(pictures["Wood"].resize(FRAME))), "wood.jpg")

    assert asset.fingerprint_status == "done"
    assert _match(answer, loop)["kind"] == "image"


def _hostile(name: str, pictures: dict[str, Image.Image], song: tuple[np.ndarray, int]) -> bytes:
    samples, rate = song
    if name == "huge-dimensions":
        return formats.huge_dimensions(formats.video([(pictures["Aqua"], 0.5)], "mjpeg"))
    if name == "endless-duration":
        return formats.endless_duration(
            formats.video([(pictures["Aqua"], 1.0)], "mp4", soundtrack=(samples[: 2 * rate], rate))
        )
    return formats.zip_in_box()


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("huge-dimensions", 413, "media_too_large"),
        ("endless-duration", 413, "media_too_large"),
        ("zip-in-an-mp4-box", 422, "corrupt_media"),
    ],
)
def test_a_hostile_video_is_refused_with_a_clear_problem_and_leaves_nothing_behind(
    name, status, code, pictures, song, as_user
):
    data = _hostile(name, pictures, song)
    owner = factories.creator()
    work = factories.work(owner, kind="image", title="Target")
    files_before = _stored_files()

    response = as_user(owner).post(
        "/api/v1/trace", {"file": SimpleUploadedFile("clip.mp4", data)}, format="multipart"
    )
    with pytest.raises(ApiError) as refused:
        asset_upload(work=work, user=owner, data=data, filename="clip.mp4")

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert (refused.value.status_code, refused.value.problem_code) == (status, code)
    assert (Blob.objects.count(), Asset.objects.count(), Fingerprint.objects.count()) == (0, 0, 0)
    assert _stored_files() == files_before


def _stored_files() -> set[Path]:
    root = Path(settings.MEDIA_ROOT)
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


@pytest.fixture
def catalogue_with_a_voice(song):
    """A registered voice (a Festival voice reading a sentence) and a registered song."""
    speech.ensure_system_packages()
    [reading] = speech.render_speech(SAMPLES / "speech", ["festival-kal"], [0])["festival-kal"]
    singer, composer = factories.creator(), factories.creator()
    voice_work, _ = _register(singer, reading.read_bytes(), kind="voice", title="Kal")
    samples, rate = song
    chorale, _ = _register(composer, _wav(samples, rate), kind="audio", title="Chorale")
    assert Fingerprint.objects.filter(kind="voice").count() == 1
    return voice_work, chorale


def test_an_instrumental_excerpt_the_voice_step_cannot_take_still_answers_with_its_audio_match(
    catalogue_with_a_voice, song, as_user, monkeypatch
):
    _, chorale = catalogue_with_a_voice
    samples, rate = song
    # What the voice step meets on some instrumentals: too little left after its speech detector.
    monkeypatch.setattr(voice, "MIN_SPEECH_S", 60.0)

    answer = _trace(as_user, _wav(samples[12 * rate : 20 * rate], rate), "excerpt.wav")

    assert _match(answer, chorale)["kind"] == "audio"
    [skipped] = answer["skipped"]
    assert (skipped["step"], skipped["code"]) == ("voice", "corrupt_media")
    assert "of speech after removing silence" in skipped["reason"]


def test_an_excerpt_below_the_voice_models_sample_rate_is_traced_by_its_audio(
    catalogue_with_a_voice, song, as_user
):
    _, chorale = catalogue_with_a_voice
    samples, rate = song
    excerpt = samples[12 * rate : 20 * rate]
    low_rate = 6000
    resampled = np.interp(np.arange(0, excerpt.size, rate / low_rate), np.arange(excerpt.size), excerpt)

    answer = _trace(as_user, _wav(resampled, low_rate), "phone.wav")

    assert _match(answer, chorale)["kind"] == "audio"
    assert [(s["step"], s["code"]) for s in answer["skipped"]] == [("voice", "unsupported_media")]


def test_a_voice_works_recording_that_is_mostly_music_still_gets_its_audio_fingerprint(song, monkeypatch):
    singer = factories.creator()
    samples, rate = song
    monkeypatch.setattr(voice, "MIN_SPEECH_S", 60.0)

    _, asset = _register(singer, _wav(samples[: 20 * rate], rate), kind="voice", title="Hummed")

    assert asset.fingerprint_status == "done"
    assert sorted(Fingerprint.objects.filter(sha256=asset.blob_id).values_list("kind", flat=True)) == [
        "audio"
    ]
    assert asset.fingerprint_error.startswith("voice skipped: under 60.0 s of speech")
