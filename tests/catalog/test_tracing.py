"""Tracing on real media: photographs from Debian's MATE wallpapers and music rendered from the music21
corpus. A transformed copy registered by someone else opens a claim; unrelated media does not."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from PIL import Image, ImageOps

from catalog import tracing
from catalog.models import Claim
from catalog.services import asset_upload, grant_create
from catalog.tasks import fingerprint_asset
from media.samples.audio import render_corpus
from media.samples.images import ensure_images
from tests import factories

pytestmark = pytest.mark.django_db
SAMPLES = Path(__file__).resolve().parents[2] / "var" / "samples"


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    paths = {p.stem: p for p in ensure_images(SAMPLES / "images", packages=["mate-backgrounds"])}
    out = {}
    for name in ("Garden", "Dune"):
        with Image.open(paths[name]) as source:
            image = source.convert("RGB")
            image.thumbnail((1024, 1024))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=90)
            out[name] = buffer.getvalue()
    return out


def _jpeg(image: Image.Image, quality: int = 80) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _mirrored_crop(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        cropped = image.crop((int(width * 0.1), int(height * 0.1), int(width * 0.9), int(height * 0.9)))
        return _jpeg(ImageOps.mirror(cropped))


def _register(owner, data: bytes, *, kind: str = "image", title: str = "Work"):
    work = factories.work(owner, kind=kind, title=title)
    asset = asset_upload(work=work, user=owner, data=data, filename=f"{title}.bin").asset
    fingerprint_asset(asset.pk)  # the Celery task's body, run here
    asset.refresh_from_db()
    return work, asset


def test_uploading_queues_the_fingerprint_job_and_it_reports_progress(
    photos, django_capture_on_commit_callbacks
):
    owner = factories.creator()
    work = factories.work(owner)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        asset = asset_upload(work=work, user=owner, data=photos["Garden"], filename="g.jpg").asset
    assert len(callbacks) == 1
    assert (asset.fingerprint_status, asset.fingerprint_progress) == ("pending", 0)

    fingerprint_asset(asset.pk)

    asset.refresh_from_db()
    assert (asset.fingerprint_status, asset.fingerprint_progress, asset.fingerprint_error) == (
        "done",
        100,
        "",
    )


def test_a_mirrored_crop_registered_by_someone_else_opens_a_claim_and_the_unrelated_photo_does_not(photos):
    painter, copier = factories.creator(), factories.creator()
    original, _ = _register(painter, photos["Garden"], title="Garden")

    _, copied = _register(copier, _mirrored_crop(photos["Garden"]), title="My garden")
    _, unrelated = _register(copier, photos["Dune"], title="Dune")

    claim = Claim.objects.get()
    assert (claim.work, claim.respondent, claim.subject_asset, claim.match_kind) == (
        original,
        copier,
        copied,
        "image",
    )
    assert claim.status == "open" and claim.confidence >= tracing.CLAIM_CONFIDENCE
    assert [e.kind for e in claim.events.all()] == ["opened"]
    assert not Claim.objects.filter(subject_asset=unrelated).exists()


def test_the_trace_api_reports_the_match_and_whether_a_grant_covers_it(photos, as_user):
    painter, user = factories.creator(), factories.vendor()
    original, _ = _register(painter, photos["Garden"], title="Garden")
    offer = factories.offer(painter, original)
    query = _mirrored_crop(photos["Garden"])

    def trace():
        response = as_user(user).post(
            "/api/v1/trace", {"file": SimpleUploadedFile("q.jpg", query)}, format="multipart"
        )
        assert response.status_code == 200
        return response.json()

    before = trace()
    grant = grant_create(offer=offer, user=user).grant
    after = trace()

    assert before["media_type"] == "image/jpeg"
    [match] = before["matches"]
    assert (match["work"], match["kind"], match["mirrored"], match["covered"]) == (
        original.pk,
        "image",
        True,
        False,
    )
    x, y, w, h = match["region"]
    assert 0.05 <= x <= 0.15 and 0.05 <= y <= 0.15 and 0.7 <= w <= 0.9 and 0.7 <= h <= 0.9
    assert (after["matches"][0]["covered"], after["matches"][0]["grant"]) == (True, grant.pk)


def test_an_unpublished_work_of_someone_else_is_not_disclosed_by_a_trace(photos, as_user):
    painter = factories.creator()
    _register(painter, photos["Garden"], title="Secret garden")
    response = as_user(factories.fan()).post(
        "/api/v1/trace", {"file": SimpleUploadedFile("q.jpg", photos["Garden"])}, format="multipart"
    )
    assert response.json()["matches"] == []


def test_the_claim_is_decided_disputed_and_resolved_with_every_step_recorded(photos, as_user):
    painter, copier = factories.creator(), factories.creator()
    operator = factories.creator()
    operator.is_staff = True
    operator.save()
    _register(painter, photos["Garden"], title="Garden")
    _register(copier, _mirrored_crop(photos["Garden"]), title="Copy")
    claim = Claim.objects.get()

    assert (
        as_user(copier)
        .post(f"/api/v1/claims/{claim.pk}/decide", {"decision": "block"}, format="json")
        .status_code
        == 404
    )
    decided = as_user(painter).post(
        f"/api/v1/claims/{claim.pk}/decide", {"decision": "monetize"}, format="json"
    )
    disputed = as_user(copier).post(
        f"/api/v1/claims/{claim.pk}/dispute", {"statement": "I took this photo myself."}, format="json"
    )
    too_late = as_user(painter).post(
        f"/api/v1/claims/{claim.pk}/decide", {"decision": "block"}, format="json"
    )
    not_staff = as_user(painter).post(
        f"/api/v1/claims/{claim.pk}/resolve", {"resolution": "upheld"}, format="json"
    )
    resolved = as_user(operator).post(
        f"/api/v1/claims/{claim.pk}/resolve",
        {"resolution": "upheld", "statement": "EXIF predates"},
        format="json",
    )

    assert (decided.json()["status"], decided.json()["decision"]) == ("decided", "monetize")
    assert disputed.json()["status"] == "disputed"
    assert too_late.status_code == 409 and too_late.json()["code"] == "claim_closed"
    assert not_staff.status_code == 403
    body = resolved.json()
    assert (body["status"], body["decision"], body["resolution"]) == ("resolved", "monetize", "upheld")
    assert [(e["kind"], e["decision"]) for e in body["events"]] == [
        ("opened", ""),
        ("decided", "monetize"),
        ("disputed", ""),
        ("resolved", "upheld"),
    ]
    assert as_user(copier).get("/api/v1/claims").json()["count"] == 1
    assert as_user(factories.creator()).get("/api/v1/claims").json()["count"] == 0


def _wav(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples.astype("float32"), rate, format="WAV")
    return buffer.getvalue()


def test_a_noisy_excerpt_of_rendered_music_is_traced_to_its_original_with_the_offset(tmp_path):
    composer, sampler = factories.creator(), factories.creator()
    [piece] = render_corpus(SAMPLES / "audio", count=1, seed=11)
    samples, rate = soundfile.read(piece, dtype="float32")
    original, _ = _register(composer, _wav(samples, rate), kind="audio", title="Chorale")

    start = 12 * rate
    excerpt = samples[start : start + 8 * rate]
    noise = np.random.default_rng(3).normal(0, 1, excerpt.size)
    noise *= np.sqrt(np.mean(excerpt**2) / np.mean(noise**2) / 10 ** (15 / 10))  # 15 dB SNR
    _, _ = _register(sampler, _wav(excerpt + noise, rate), kind="audio", title="Loop")

    claim = Claim.objects.get()
    assert (claim.work, claim.match_kind) == (original, "audio")
    path = tmp_path / "loop.wav"
    path.write_bytes(_wav(excerpt + noise, rate))
    out = io.StringIO()
    call_command("trace", str(path), "--json", stdout=out)
    [match] = [m for m in json.loads(out.getvalue())["matches"] if m["work"] == original.pk]
    assert match["kind"] == "audio" and abs(match["offset_s"] - 12.0) < 0.5


def test_refingerprint_adds_the_current_algorithms_fingerprints_once(photos):
    from matching.models import Fingerprint

    owner = factories.creator()
    _, asset = _register(owner, photos["Garden"], title="Garden")
    Fingerprint.objects.filter(sha256=asset.blob_id).update(algorithm="img-older-v0")

    first, second = io.StringIO(), io.StringIO()
    call_command("refingerprint", stdout=first)
    call_command("refingerprint", stdout=second)

    assert first.getvalue().strip() == "1 files checked, 1 fingerprints computed, 0 failed"
    assert second.getvalue().strip() == "1 files checked, 0 fingerprints computed, 0 failed"
    assert set(Fingerprint.objects.values_list("algorithm", flat=True)) == {
        "img-older-v0",
        "img-orb-ransac-v1",
    }
