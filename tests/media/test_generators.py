"""The built-in generators on real media, and the external generator against a real HTTP service on
127.0.0.1: what each makes, that the licensed parent stays traceable in it, and how each fails."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
from PIL import Image

from media.fingerprint import audio as audio_fingerprint
from media.fingerprint import image as image_fingerprint
from media.fingerprint.audio_index import AudioIndex
from media.generators import BUILT_IN, GenerationFailed, GenerationRequest, ParentMedia
from media.generators.audio_remix import AudioRemix, _semitones_between, _stretch_ratio
from media.generators.external import ExternalGenerator, from_config
from media.generators.image_restyle import ImageRestyle
from media.samples import audio, speech
from media.samples.images import ensure_images
from tests.studio.vendor import running_vendor

SAMPLES = Path(__file__).resolve().parents[2] / "var" / "samples"
STAGES: list[tuple[int, str]] = []


def record(percent: int, stage: str) -> None:
    STAGES.append((percent, stage))


def jpeg(path: Path, side: int = 800) -> bytes:
    with Image.open(path) as source:
        image = source.convert("RGB")
        image.thumbnail((side, side))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        return buffer.getvalue()


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    paths = {p.stem: p for p in ensure_images(SAMPLES / "images", packages=["mate-backgrounds"])}
    return {name: jpeg(paths[name]) for name in ("Garden", "Aqua", "Wood", "Dune")}


@pytest.fixture(scope="module")
def music() -> list[bytes]:
    audio.ensure_system_packages()
    return [path.read_bytes() for path in audio.render_corpus(SAMPLES / "audio", count=2, seed=7)]


@pytest.fixture(scope="module")
def vocal() -> bytes:
    speech.ensure_system_packages()
    return speech.render_song(SAMPLES / "speech", "festival-kal").read_bytes()


def mean_ab(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).reshape(-1, 3)[:, 1:].mean(axis=0)


def test_generators_declare_their_inputs_and_the_uses_they_need():
    assert BUILT_IN["image-restyle"].use_classes == {"derivative", "style"}
    assert [spec.name for spec in BUILT_IN["image-restyle"].inputs] == ["photo"]
    assert BUILT_IN["audio-remix"].use_classes == {"derivative"}
    assert [(s.name, s.kind, s.required) for s in BUILT_IN["audio-remix"].inputs] == [
        ("vocal", "audio", True),
        ("vocal_bpm", "text", False),
    ]


@pytest.mark.parametrize(("photo", "artwork"), [("Aqua", "Garden"), ("Wood", "Dune"), ("Garden", "Aqua")])
def test_a_restyled_photo_takes_the_artworks_colours_and_the_artwork_stays_traceable(photos, photo, artwork):
    STAGES.clear()
    request = GenerationRequest(
        parents=[ParentMedia(1, artwork, "image/jpeg", photos[artwork])], inputs={"photo": photos[photo]}
    )
    result = ImageRestyle().run(request, record)

    assert result.media_type == "image/jpeg"
    with Image.open(io.BytesIO(result.data)) as made, Image.open(io.BytesIO(photos[photo])) as original:
        assert made.size == original.size
    # Colour: the result's mean chroma moved most of the way from the photo's to the artwork's.
    before = np.linalg.norm(mean_ab(photos[photo]) - mean_ab(photos[artwork]))
    after = np.linalg.norm(mean_ab(result.data) - mean_ab(photos[artwork]))
    assert after < 0.5 * before
    # Traceable: the artwork's fingerprint finds it in the result, on its own.
    found = image_fingerprint.compare(
        image_fingerprint.compute(result.data),
        image_fingerprint.compute(photos[artwork], include_mirror=False),
    )
    assert found.is_match and found.confidence >= 0.95
    assert result.details["artwork_match_confidence"] == pytest.approx(found.confidence, abs=1e-3)
    assert [percent for percent, _ in STAGES] == sorted(percent for percent, _ in STAGES)
    assert STAGES[-1] == (100, "Done")


def test_the_restyle_refuses_a_photo_that_is_not_an_image(photos, vocal):
    request = GenerationRequest(
        parents=[ParentMedia(1, "a", "image/jpeg", photos["Garden"])], inputs={"photo": vocal}
    )
    with pytest.raises(GenerationFailed, match="cannot be decoded as an image"):
        ImageRestyle().run(request, record)


def test_a_remix_keeps_the_instrumental_audible_and_traceable_with_the_vocal_in_key_and_tempo(music, vocal):
    instrumental = music[1]
    request = GenerationRequest(
        parents=[ParentMedia(1, "song", "audio/wav", instrumental)], inputs={"vocal": vocal}
    )
    result = AudioRemix().run(request, record)

    samples, rate = soundfile.read(io.BytesIO(result.data), dtype="float32")
    original, original_rate = soundfile.read(io.BytesIO(instrumental), dtype="float32")
    assert rate == original_rate
    assert len(samples) == len(original)  # the whole instrumental, start to end
    assert np.max(np.abs(samples)) <= 10 ** (-1 / 20) + 1e-4  # peak under -1 dBFS, no clipping
    assert np.max(np.abs(samples[-100:])) < 0.01  # faded out
    # The parent is present: the landmark fingerprint of the instrumental finds the mix.
    reference = AudioIndex()
    reference.add("song", audio_fingerprint.compute(*audio_fingerprint.decode(instrumental)))
    heard = reference.query(audio_fingerprint.compute(*audio_fingerprint.decode(result.data), query=True))
    assert heard and heard[0].ref_id == "song" and heard[0].confidence >= 0.9
    assert abs(heard[0].offset_s) < 0.1 and heard[0].time_scale == pytest.approx(1.0, abs=0.01)
    # ...and so is the vocal: while it sings, the mix is no longer a scaled copy of the instrumental.
    start = int(result.details["vocal_starts_s"] * rate)
    window = slice(start, start + 5 * rate)
    correlation = np.corrcoef(samples[window], original[window])[0, 1]
    assert 0.2 < correlation < 0.95
    lead_in = slice(int(0.2 * rate), start - int(0.05 * rate))
    assert np.corrcoef(samples[lead_in], original[lead_in])[0, 1] > 0.99
    # Tempo and key: the stretch brings the vocal's tempo to the instrumental's (octave-folded).
    details = result.details
    assert details["time_stretch"] == pytest.approx(
        _stretch_ratio(details["instrumental_bpm"], details["vocal_bpm"]), abs=1e-3
    )
    assert -6 <= details["pitch_shift_semitones"] <= 5


def test_a_stated_vocal_tempo_is_used_instead_of_the_estimate(music, vocal):
    request = GenerationRequest(
        parents=[ParentMedia(1, "song", "audio/wav", music[1])],
        inputs={"vocal": vocal, "vocal_bpm": str(speech.SONG_BPM)},
    )
    result = AudioRemix().run(request, record)
    assert result.details["vocal_bpm"] == speech.SONG_BPM and result.details["vocal_bpm_stated"] is True


def test_a_silent_vocal_is_refused_with_a_reason(music):
    silence = io.BytesIO()
    soundfile.write(silence, np.zeros(22050 * 3, dtype=np.float32), 22050, format="WAV")
    request = GenerationRequest(
        parents=[ParentMedia(1, "song", "audio/wav", music[1])], inputs={"vocal": silence.getvalue()}
    )
    with pytest.raises(GenerationFailed) as failure:
        AudioRemix().run(request, record)
    assert failure.value.code == "vocal_too_short"


def test_key_and_tempo_arithmetic():
    assert _semitones_between((7, "major"), (2, "major")) == -5  # G to D: down a fourth
    assert _semitones_between((9, "minor"), (0, "major")) == 0  # A minor is C major's relative
    assert _semitones_between((0, "major"), (6, "major")) == -6
    assert _stretch_ratio(120.0, 60.0) == pytest.approx(1.0)  # double time is the same tempo
    assert _stretch_ratio(100.0, 96.0) == pytest.approx(100 / 96)
    assert _stretch_ratio(130.0, 100.0) == pytest.approx(1.25)  # +30% is held at +25%
    assert _stretch_ratio(150.0, 100.0) == pytest.approx(0.8)  # folds to half time (0.75), held at -20%


# External generator ------------------------------------------------------------------------------------


def external(url: str, **overrides) -> ExternalGenerator:
    config = {"name": "acme", "title": "Acme", "url": url, "timeout_s": 2, "max_bytes": 500_000}
    config.update(overrides)
    return from_config(config)


def request_for(photos) -> GenerationRequest:
    return GenerationRequest(
        parents=[ParentMedia(7, "Garden", "image/jpeg", photos["Garden"])],
        inputs={"prompt": "the garden at night"},
        context={"grant": 3, "terms_url": "http://127.0.0.1/terms/3"},
    )


def test_the_external_generator_sends_inputs_parents_and_licence_and_returns_the_vendors_media(photos):
    with running_vendor(photos["Aqua"]) as vendor:
        result = external(vendor.url).run(request_for(photos), record)
    assert result.data == photos["Aqua"] and result.media_type == "image/jpeg"
    sent = vendor.requests[0]
    assert sent["protocol"] == "tribute-generate-1" and sent["generator"] == "acme"
    assert sent["inputs"] == {"prompt": "the garden at night"}
    assert sent["parents"][0]["work"] == 7
    assert sent["licence"] == {"grant": 3, "terms_url": "http://127.0.0.1/terms/3"}


def test_a_vendor_that_answers_too_slowly_times_out(photos):
    with running_vendor(photos["Aqua"]) as vendor:
        vendor.mode.update(kind="slow", delay_s=3)
        with pytest.raises(GenerationFailed) as failure:
            external(vendor.url, timeout_s=0.5).run(request_for(photos), record)
    assert failure.value.code == "vendor_timeout"
    assert "0.5 s" in str(failure.value)


def test_a_vendor_error_is_reported_with_its_status_and_words(photos):
    with running_vendor(photos["Aqua"]) as vendor:
        vendor.mode.update(kind="error", status=503, body=b"model overloaded, retry later")
        with pytest.raises(GenerationFailed) as failure:
            external(vendor.url).run(request_for(photos), record)
    assert failure.value.code == "vendor_error"
    assert "503" in str(failure.value) and "model overloaded" in str(failure.value)


def test_an_oversized_answer_is_refused_by_its_declared_length_and_by_the_bytes_read(photos):
    with running_vendor(photos["Aqua"]) as vendor:
        vendor.mode.update(declared=10_000_000)
        with pytest.raises(GenerationFailed) as declared:
            external(vendor.url).run(request_for(photos), record)
        vendor.mode.update(kind="endless", chunks=50)
        with pytest.raises(GenerationFailed) as streamed:
            external(vendor.url).run(request_for(photos), record)
    assert declared.value.code == streamed.value.code == "vendor_output_too_large"
    assert "10000000 bytes" in str(declared.value)


def test_an_answer_that_is_not_media_of_the_right_kind_is_refused(photos, vocal):
    with running_vendor(b"<html>oops</html>", "text/html") as vendor:
        with pytest.raises(GenerationFailed) as html:
            external(vendor.url).run(request_for(photos), record)
        vendor.mode.update(body=vocal, content_type="audio/wav")
        with pytest.raises(GenerationFailed) as wrong_kind:
            external(vendor.url).run(request_for(photos), record)
    assert html.value.code == wrong_kind.value.code == "vendor_bad_output"
    assert "sent audio" in str(wrong_kind.value)


def test_an_unreachable_vendor_is_reported():
    with running_vendor(b"") as vendor:
        url = vendor.url
    with pytest.raises(GenerationFailed) as failure:
        external(url).run(GenerationRequest(parents=[], inputs={}), record)
    assert failure.value.code == "vendor_unreachable"


def test_an_external_generator_needs_an_http_url():
    with pytest.raises(ValueError, match="http"):
        from_config({"name": "x", "url": "file:///etc/passwd"})
    assert json.loads(json.dumps(sorted(from_config({"name": "x", "url": "http://a/"}).use_classes))) == [
        "ai-generate",
        "derivative",
    ]
