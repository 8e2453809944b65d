"""An external generator run through the studio against a real HTTP service on 127.0.0.1: the per-use
price is paid through the access API from the fan's wallet only when the vendor delivers."""

from __future__ import annotations

import io

from access.models import AccessEvent
from catalog.models import Work
from catalog.services import Terms, offer_publish
from royalties.models import RevenueItem
from studio import selectors
from studio.models import GenerationJob, JobStatus
from studio.services import InputFile, job_create, terms_accept
from studio.tasks import run_generation_job


def priced_offer(cat):
    return offer_publish(
        work=cat.work,
        user=cat.creator,
        terms=Terms(
            currency="USD",
            uses={"derivative": 0, "ai-generate": 40},
            derivative_share_bps=3000,
            commercial_use=True,
        ),
    )


def run(cat, vendor_body_mode, vendor_service):
    offer = priced_offer(cat)
    grant = terms_accept(user=cat.fan, offer=offer).grant
    vendor_service.mode.update(vendor_body_mode)
    job = job_create(
        user=cat.fan,
        grant_id=grant.pk,
        generator_name="acme-image",
        inputs={"prompt": "the garden under snow"},
    )
    run_generation_job(job.pk)
    job.refresh_from_db()
    return job, offer


def test_the_vendor_is_paid_per_access_on_delivery_and_its_output_registered(
    image_catalogue, external_settings, vendor_service, photos
):
    cat = image_catalogue
    before = selectors.wallet_available(user=cat.fan, currency="USD")
    # The vendor answers with the artwork, mirrored: an output that plainly derives from the parent.
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(photos["Garden"])) as image:
        buffer = io.BytesIO()
        ImageOps.mirror(image).save(buffer, "PNG")
    job, offer = run(cat, {"body": buffer.getvalue(), "content_type": "image/png"}, vendor_service)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.charged_minor == 40
    assert selectors.wallet_available(user=cat.fan, currency="USD") == before - 40
    event = AccessEvent.objects.get(organisation__personal_wallet__user=cat.fan)
    assert (event.use_class, event.price_minor, event.offer_id) == ("ai-generate", 40, offer.pk)
    sent = vendor_service.requests[0]
    assert sent["inputs"] == {"prompt": "the garden under snow"}
    assert sent["licence"]["grant"] == job.grant_id and sent["licence"]["price_minor"] == 40
    assert job.manifest["licence"]["access_ids"] == [str(event.access_id)]
    assert job.manifest["validation_state"] == "Trusted"
    assert Work.objects.get(pk=job.result_work_id).kind == "image"


def test_a_vendor_failure_charges_nothing(image_catalogue, external_settings, vendor_service):
    cat = image_catalogue
    before = selectors.wallet_available(user=cat.fan, currency="USD")
    items = RevenueItem.objects.count()
    job, _ = run(cat, {"kind": "error", "status": 502, "body": b"upstream model crashed"}, vendor_service)
    # terms_accept charged nothing either: these terms have no licence fee.
    assert job.status == JobStatus.FAILED and job.error_code == "vendor_error"
    assert "502" in job.error and "upstream model crashed" in job.error and "Nothing was charged" in job.error
    assert selectors.wallet_available(user=cat.fan, currency="USD") == before
    assert RevenueItem.objects.count() == items and not AccessEvent.objects.exists()
    assert not GenerationJob.objects.filter(result_work__isnull=False).exists()


def test_a_vendor_timeout_charges_nothing(image_catalogue, external_settings, vendor_service, photos):
    cat = image_catalogue
    external_settings(timeout_s=0.5)
    before = selectors.wallet_available(user=cat.fan, currency="USD")
    job, _ = run(cat, {"kind": "slow", "delay_s": 2}, vendor_service)
    assert job.status == JobStatus.FAILED and job.error_code == "vendor_timeout"
    assert selectors.wallet_available(user=cat.fan, currency="USD") == before
    assert not AccessEvent.objects.exists()


def test_an_oversized_vendor_answer_charges_nothing(image_catalogue, external_settings, vendor_service):
    cat = image_catalogue
    job, _ = run(cat, {"kind": "endless", "chunks": 100}, vendor_service)
    assert job.status == JobStatus.FAILED and job.error_code == "vendor_output_too_large"
    assert not AccessEvent.objects.exists()


def test_inputs_for_an_unknown_generator_are_refused(image_catalogue):
    cat = image_catalogue
    grant = terms_accept(user=cat.fan, offer=cat.offer).grant
    try:
        job_create(user=cat.fan, grant_id=grant.pk, generator_name="nope", inputs={"x": InputFile("a", b"")})
    except Exception as exc:
        assert getattr(exc, "problem_code", "") == "unknown_generator"
    assert not GenerationJob.objects.exists()
