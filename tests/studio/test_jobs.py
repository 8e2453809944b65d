"""Generation jobs end to end on real media: terms accepted and paid from the wallet, the job queued and
run by its task, the derivative registered with its royalty stack, fingerprints and C2PA manifest, and
the trace finding the parent with and without the manifest. Failures and refusals charge nothing."""

from __future__ import annotations

import io
import json

import pytest
import soundfile
from PIL import Image

from access.models import AccessEvent
from catalog import services as catalog_services
from catalog import tracing
from catalog.models import FingerprintStatus, WorkParent
from catalog.services import Terms, offer_publish
from media.validation import inspect
from royalties.ledger import InsufficientFunds
from royalties.models import RevenueItem
from studio import selectors
from studio.models import GenerationJob, JobStatus
from studio.services import InputFile, job_create, terms_accept
from studio.tasks import run_generation_job
from tests.studio.http import content


def wallet(user) -> int:
    return selectors.wallet_available(user=user, currency="USD")


def start(client, grant, generator, **files):
    data = {"grant": grant.pk, "generator": generator}
    data.update(files)
    return client.post("/api/v1/generation-jobs", data, format="multipart")


def upload(name: str, data: bytes):
    file = io.BytesIO(data)
    file.name = name
    return file


def reencoded_jpeg(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        return buffer.getvalue()


def test_an_image_derivative_is_generated_registered_signed_and_traced(
    image_catalogue, photos, as_user, django_capture_on_commit_callbacks
):
    cat = image_catalogue
    client = as_user(cat.fan)
    accepted = client.post(f"/api/v1/offers/{cat.offer.pk}/studio-accept")
    assert accepted.status_code == 201, accepted.content
    assert accepted.json()["fee_charged_minor"] == 150
    assert wallet(cat.fan) == 1_000 - 150
    grant = cat.fan.grants.get()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = start(
            client, grant, "image-restyle", photo=upload("me.jpg", photos["Aqua"]), title="Aqua garden"
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (
        body["status"] == "queued"
        and body["progress"] == 0
        and body["inputs"]["photo"]["filename"] == "me.jpg"
    )
    assert len(callbacks) == 1  # the task is enqueued when the job commits
    assert wallet(cat.fan) == 850  # nothing charged until it succeeds

    with django_capture_on_commit_callbacks(execute=False) as after_run:
        run_generation_job(body["id"])  # the Celery task's body
    job = client.get(f"/api/v1/generation-jobs/{body['id']}").json()
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"] == 100 and job["charged_minor"] == 25
    # The job fingerprinted its result itself: no fingerprinting task is queued to do it again.
    queued = [c for c in after_run if getattr(c, "func", None) is catalog_services._enqueue_fingerprint]
    assert queued == []
    assert wallet(cat.fan) == 850 - 25
    # The derivative: the fan's work, its parent and share from the grant, its file fingerprinted.
    result = GenerationJob.objects.select_related("result_asset__blob", "result_work").get(pk=body["id"])
    link = WorkParent.objects.get(child=result.result_work)
    assert (link.parent_id, link.grant_id, link.share_bps) == (cat.work.pk, grant.pk, 3000)
    assert result.result_work.created_by == cat.fan
    assert "Based on “Licensed image” by Mira" in result.result_work.description
    assert result.result_asset.fingerprint_status == FingerprintStatus.DONE
    # The metered style use went through the access API from the fan's wallet, with a receipt.
    event = AccessEvent.objects.get(organisation__personal_wallet__user=cat.fan)
    assert (event.use_class, event.price_minor, event.work_id) == ("style", 25, cat.work.pk)
    # The manifest: AI marker, the parent as ingredient, the grant, terms and receipt.
    manifest = job["manifest"]
    assert manifest["validation_state"] == "Trusted" and manifest["ai_generated"] is True
    assert manifest["ingredients"][0] == {
        "title": f"Licensed image (work #{cat.work.pk})",
        "relationship": "parentOf",
    }
    assert manifest["licence"]["grant"] == grant.pk
    assert manifest["licence"]["terms_url"].endswith(f"/api/v1/offers/{cat.offer.pk}/rsl")
    assert manifest["licence"]["receipts"] == result.receipts and len(result.receipts) == 1
    assert manifest["licence"]["access_ids"] == [str(event.access_id)]

    downloaded = content(client.get(job["result_url"]))
    assert inspect(downloaded).kind == "image"
    # The trace finds the parent in the file as generated, and reports its manifest...
    traced = client.post("/api/v1/trace", {"file": upload("x.jpg", downloaded)}, format="multipart").json()
    assert cat.work.pk in [m["work"] for m in traced["matches"] if m["confidence"] >= 0.9]
    assert traced["manifest"]["licence"]["grant"] == grant.pk
    # ...and in the same picture with its manifest stripped (re-encoded), by fingerprint alone.
    stripped = reencoded_jpeg(downloaded)
    info, matches = tracing.trace(data=stripped, user=None)
    assert tracing.manifest_of(data=stripped, info=info) is None
    assert cat.work.pk in [m.work.pk for m in matches if m.match.confidence >= 0.9]


def test_an_audio_remix_is_generated_and_its_parent_traced_with_and_without_the_manifest(
    audio_catalogue, vocal, as_user
):
    cat = audio_catalogue
    client = as_user(cat.fan)
    assert client.post(f"/api/v1/offers/{cat.offer.pk}/studio-accept").status_code == 201
    grant = cat.fan.grants.get()
    response = start(client, grant, "audio-remix", vocal=upload("vocal.wav", vocal), vocal_bpm="96")
    assert response.status_code == 201, response.content
    run_generation_job(response.json()["id"])
    job = GenerationJob.objects.select_related("result_asset__blob").get(pk=response.json()["id"])
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.charged_minor == 0 and wallet(cat.fan) == 1_000  # derivative use is not metered; no fee
    assert job.manifest["ai_generated"] and job.manifest["licence"]["parents"][0]["share_bps"] == 5000
    assert job.details["vocal_bpm"] == 96.0

    data = content(client.get(f"/api/v1/generation-jobs/{job.pk}/result"))
    traced = client.post("/api/v1/trace", {"file": upload("remix.wav", data)}, format="multipart").json()
    assert traced["manifest"]["validation_state"] == "Trusted"
    assert cat.work.pk in [
        m["work"] for m in traced["matches"] if m["kind"] == "audio" and m["confidence"] >= 0.9
    ]
    # Stripped: decoded and written again as FLAC, the manifest is gone; the fingerprint still finds it.
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    flac = io.BytesIO()
    soundfile.write(flac, samples, rate, format="FLAC")
    info, matches = tracing.trace(data=flac.getvalue(), user=None)
    assert tracing.manifest_of(data=flac.getvalue(), info=info) is None
    assert cat.work.pk in [
        m.work.pk for m in matches if m.match.kind == "audio" and m.match.confidence >= 0.9
    ]


def test_a_generator_the_offer_does_not_allow_is_refused_with_403_naming_the_term(
    db, image_catalogue, photos, as_user
):
    cat = image_catalogue
    no_style = offer_publish(
        work=cat.work,
        user=cat.creator,
        terms=Terms(currency="USD", uses={"derivative": 0}, derivative_share_bps=3000),
    )
    client = as_user(cat.fan)
    assert client.post(f"/api/v1/offers/{no_style.pk}/studio-accept").status_code == 201
    grant = cat.fan.grants.get(offer=no_style)
    before = (wallet(cat.fan), GenerationJob.objects.count(), RevenueItem.objects.count())

    response = start(client, grant, "image-restyle", photo=upload("me.jpg", photos["Aqua"]))

    assert response.status_code == 403
    problem = response.json()
    assert problem["code"] == "use_not_allowed" and problem["term"] == "style"
    assert "'style'" in problem["detail"] and "Restyle a photo" in problem["detail"]
    assert (wallet(cat.fan), GenerationJob.objects.count(), RevenueItem.objects.count()) == before


def test_a_failed_job_charges_nothing_and_says_why(audio_catalogue, as_user):
    cat = audio_catalogue
    client = as_user(cat.fan)
    client.post(f"/api/v1/offers/{cat.offer.pk}/studio-accept")
    grant = cat.fan.grants.get()
    silence = io.BytesIO()
    soundfile.write(silence, [0.0] * 44_100, 22_050, format="WAV")  # valid audio, but nothing sung
    job_id = start(client, grant, "audio-remix", vocal=upload("v.wav", silence.getvalue())).json()["id"]
    before = (
        wallet(cat.fan),
        RevenueItem.objects.count(),
        AccessEvent.objects.count(),
        WorkParent.objects.count(),
    )

    run_generation_job(job_id)
    run_generation_job(job_id)  # redelivered: nothing changes

    job = client.get(f"/api/v1/generation-jobs/{job_id}").json()
    assert job["status"] == "failed" and job["error_code"] == "vocal_too_short"
    assert job["error"].endswith("Nothing was charged.") and job["result_work"] is None
    assert (
        wallet(cat.fan),
        RevenueItem.objects.count(),
        AccessEvent.objects.count(),
        WorkParent.objects.count(),
    ) == before


def test_inputs_are_validated_like_any_upload(image_catalogue, as_user):
    cat = image_catalogue
    client = as_user(cat.fan)
    client.post(f"/api/v1/offers/{cat.offer.pk}/studio-accept")
    grant = cat.fan.grants.get()
    html = start(client, grant, "image-restyle", photo=upload("me.jpg", b"<html>not a photo</html>"))
    missing = start(client, grant, "image-restyle")
    assert (html.status_code, html.json()["code"], html.json()["input"]) == (
        415,
        "unsupported_media",
        "photo",
    )
    assert (missing.status_code, missing.json()["code"]) == (400, "missing_input")
    assert GenerationJob.objects.count() == 0


def test_a_short_wallet_is_refused_before_the_grant_is_made(db, image_catalogue):
    cat = image_catalogue
    from tests import factories

    poor = factories.fan(username="poor")
    with pytest.raises(InsufficientFunds) as refused:
        terms_accept(user=poor, offer=cat.offer)
    assert refused.value.status_code == 402
    assert not poor.grants.exists()


def test_a_job_under_another_persons_grant_is_not_found_and_starts_nothing(image_catalogue, photos, as_user):
    from tests import factories

    cat = image_catalogue
    terms_accept(user=cat.fan, offer=cat.offer)
    grant = cat.fan.grants.get()
    before = (wallet(cat.fan), GenerationJob.objects.count())

    response = start(
        as_user(factories.fan(username="eve")), grant, "image-restyle", photo=upload("me.jpg", photos["Aqua"])
    )

    assert (response.status_code, response.json()["code"]) == (404, "grant_not_found")
    assert (wallet(cat.fan), GenerationJob.objects.count()) == before


def test_another_persons_job_is_not_found(image_catalogue, photos, as_user):
    cat = image_catalogue
    terms_accept(user=cat.fan, offer=cat.offer)
    job = job_create(
        user=cat.fan,
        grant_id=cat.fan.grants.get().pk,
        generator_name="image-restyle",
        inputs={"photo": InputFile("me.jpg", photos["Aqua"])},
    )
    other = as_user(cat.creator)
    assert other.get(f"/api/v1/generation-jobs/{job.pk}").status_code == 404
    assert other.get(f"/api/v1/generation-jobs/{job.pk}/result").status_code == 404
    assert other.get("/api/v1/generation-jobs").json()["count"] == 0
    assert as_user(cat.fan).get("/api/v1/generation-jobs").json()["count"] == 1


def test_the_generators_list_names_inputs_and_uses(as_user, db):
    from tests import factories

    listed = {g["name"]: g for g in as_user(factories.fan()).get("/api/v1/generators").json()}
    assert listed["image-restyle"]["use_classes"] == ["derivative", "style"]
    assert listed["audio-remix"]["inputs"][0]["name"] == "vocal"
    assert json.dumps(listed)  # serialisable as it is


def test_a_job_whose_worker_died_is_failed_after_the_timeout_and_nothing_is_charged(
    image_catalogue, photos, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from studio.services import jobs_sweep_stuck

    cat = image_catalogue
    terms_accept(user=cat.fan, offer=cat.offer)
    job = job_create(
        user=cat.fan,
        grant_id=cat.fan.grants.get().pk,
        generator_name="image-restyle",
        inputs={"photo": InputFile("me.jpg", photos["Aqua"])},
    )
    balance = wallet(cat.fan)
    started = timezone.now() - timedelta(seconds=settings.STUDIO_JOB_TIMEOUT_S + 60)
    GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, started_at=started)
    recent = job_create(
        user=cat.fan,
        grant_id=cat.fan.grants.get().pk,
        generator_name="image-restyle",
        inputs={"photo": InputFile("me.jpg", photos["Aqua"])},
    )
    GenerationJob.objects.filter(pk=recent.pk).update(status=JobStatus.RUNNING, started_at=timezone.now())

    assert jobs_sweep_stuck() == 1

    job.refresh_from_db()
    recent.refresh_from_db()
    assert (job.status, job.error_code, job.charged_minor) == (JobStatus.FAILED, "worker_stopped", 0)
    assert recent.status == JobStatus.RUNNING
    assert wallet(cat.fan) == balance
    run_generation_job(job.pk)  # a late redelivery of the dead worker's task does nothing
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_reading_the_wallet_makes_none(as_user, db):
    from accounts.models import ApiKey, Organisation
    from tests import factories

    fan = factories.fan()
    response = as_user(fan).get("/api/v1/wallet")

    assert response.status_code == 200
    assert (response.json()["organisation"], response.json()["available_minor"]) == (None, 0)
    assert not Organisation.objects.filter(membership__user=fan).exists()
    assert not ApiKey.objects.filter(user=fan).exists()
