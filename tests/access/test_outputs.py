"""A vendor registers generated outputs: receipts confirm their sources; unpaid sources open claims."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageOps

from catalog.models import Claim
from catalog.services import asset_upload
from catalog.tasks import fingerprint_asset
from common.money import Money
from media import index
from media.samples.images import ensure_images
from royalties.services import prepaid_fund
from tests import factories

pytestmark = pytest.mark.django_db
SAMPLES = Path(__file__).resolve().parents[2] / "var" / "samples"


@pytest.fixture(autouse=True)
def fresh_index():
    index.reset()
    yield
    index.reset()


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
