"""A vendor registers generated outputs: receipts confirm their sources; unpaid sources open claims."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageOps

from catalog.models import Claim
from catalog.services import asset_upload
from catalog.tasks import fingerprint_asset
from common.money import Money
from media.samples.images import ensure_images
from royalties.funding import prepaid_fund
from tests import factories

pytestmark = pytest.mark.django_db
SAMPLES = Path(__file__).resolve().parents[2] / "var" / "samples"


def _jpeg(path: Path, *, mirror: bool = False) -> bytes:
    with Image.open(path) as source:
        image = source.convert("RGB")
    image.thumbnail((900, 900))
    if mirror:
        image = ImageOps.mirror(image)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def test_an_output_confirms_paid_sources_and_opens_claims_for_unpaid_ones(with_key) -> None:
    photos = {p.stem: p for p in ensure_images(SAMPLES / "images", packages=["mate-backgrounds"])}
    painter, vendor = factories.creator(), factories.vendor()
    works = {}
    for name in ("Garden", "LadyBird"):
        work = factories.work(painter, title=name)
        factories.offer(painter, work, uses={"ai-generate": 3})
        fingerprint_asset(
            asset_upload(work=work, user=painter, data=_jpeg(photos[name]), filename=name).asset.pk
        )
        works[name] = work
    prepaid_fund(organisation=vendor.organisations.get(), amount=Money(100, "USD"), external_ref="t")
    client = with_key(factories.key(vendor, "access", "outputs"))
    paid = client.post(
        "/api/v1/access",
        {"work": works["Garden"].pk, "use": "ai-generate", "territory": "US"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    ).json()

    covered = client.post(
        "/api/v1/outputs",
        {
            "file": SimpleUploadedFile("out1.jpg", _jpeg(photos["Garden"], mirror=True)),
            "receipts": [paid["access_id"]],
        },
        format="multipart",
    )
    unpaid = client.post(
        "/api/v1/outputs",
        {"file": SimpleUploadedFile("out2.jpg", _jpeg(photos["LadyBird"]))},
        format="multipart",
    )
    unknown = client.post(
        "/api/v1/outputs",
        {"file": SimpleUploadedFile("out3.jpg", _jpeg(photos["Garden"])), "receipts": [str(uuid.uuid4())]},
        format="multipart",
    )

    assert covered.status_code == 201
    assert (covered.json()["confirmed_works"], covered.json()["uncovered"], covered.json()["claims"]) == (
        [works["Garden"].pk],
        [],
        [],
    )
    body = unpaid.json()
    assert [m["work"] for m in body["uncovered"]] == [works["LadyBird"].pk]
    claim = Claim.objects.get()
    assert body["claims"] == [claim.pk]
    assert (claim.work, claim.respondent, claim.subject_output_id) == (works["LadyBird"], vendor, body["id"])
    assert unknown.status_code == 404 and unknown.json()["code"] == "receipt_not_found"


def test_outputs_need_the_outputs_scope(with_key) -> None:
    vendor = factories.vendor()
    client = with_key(factories.key(vendor, "access"))
    response = client.post(
        "/api/v1/outputs", {"file": SimpleUploadedFile("x.png", factories.png_bytes())}, format="multipart"
    )
    assert response.status_code == 403


def _stored_files() -> list[Path]:
    from django.conf import settings

    return sorted(p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file())


def test_an_output_matching_an_unpublished_work_discloses_nothing_and_opens_no_claim(with_key) -> None:
    # given a creator's draft (no offer published) with a fingerprinted photograph
    photos = {p.stem: p for p in ensure_images(SAMPLES / "images", packages=["mate-backgrounds"])}
    painter, vendor = factories.creator(display_name="Secret Painter"), factories.vendor()
    draft = factories.work(painter, title="Unreleased garden")
    fingerprint_asset(
        asset_upload(work=draft, user=painter, data=_jpeg(photos["Garden"]), filename="g.jpg").asset.pk
    )
    client = with_key(factories.key(vendor, "outputs", "read"))
    copy = _jpeg(photos["Garden"], mirror=True)

    # when the vendor registers a copy as an output, and traces the same copy
    registered = client.post(
        "/api/v1/outputs", {"file": SimpleUploadedFile("out.jpg", copy)}, format="multipart"
    )
    traced = client.post("/api/v1/trace", {"file": SimpleUploadedFile("t.jpg", copy)}, format="multipart")

    # then both answer as if the draft did not exist: no work, title or creator, and no claim to follow
    assert registered.status_code == 201 and traced.status_code == 200
    body = registered.json()
    assert (body["uncovered"], body["claims"], body["confirmed_works"]) == ([], [], [])
    assert traced.json()["matches"] == []
    assert "Unreleased garden" not in registered.content.decode()
    assert "Secret Painter" not in registered.content.decode()
    assert Claim.objects.count() == 0


def test_a_refused_output_leaves_no_blob_row_and_no_file_on_disk(with_key) -> None:
    # given a vendor key and five seconds of silence: a valid WAV, but no voice to fingerprint
    from catalog.models import Blob, Output

    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(5 * 8000), 8000, format="WAV")
    client = with_key(factories.key(factories.vendor(), "outputs"))
    files_before = _stored_files()

    # when it is registered as an output
    response = client.post(
        "/api/v1/outputs", {"file": SimpleUploadedFile("quiet.wav", buffer.getvalue())}, format="multipart"
    )

    # then it is refused and nothing of it stays: no blob, no output, no file
    assert response.status_code == 422
    assert response.json()["code"] == "corrupt_media"
    assert (Blob.objects.count(), Output.objects.count()) == (0, 0)
    assert _stored_files() == files_before
