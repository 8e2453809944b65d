"""Dataset test helpers: real photographs (Debian's MATE wallpapers) registered through the catalog's own
services, fingerprinted as the upload task would, and a vendor with a funded prepaid balance."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from accounts.models import Organisation, User
from catalog import fingerprinting
from catalog.models import Offer, Work
from catalog.services import Terms, asset_upload, offer_publish, work_create
from common.money import Money
from datasets.models import Dataset
from datasets.services import curation
from media.samples.images import ensure_images
from royalties.funding import prepaid_fund

SAMPLES = Path(__file__).resolve().parents[2] / "var" / "samples"


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    """Real photographs as modest JPEGs (longest side 640 px), by name."""
    paths = {p.stem: p for p in ensure_images(SAMPLES / "images", packages=["mate-backgrounds"])}
    out = {}
    for name in ("Garden", "LadyBird", "Wood", "Aqua", "Dune", "RainDrops"):
        out[name] = jpeg(Image.open(paths[name]), longest=640)
    return out


def jpeg(image: Image.Image, *, longest: int, quality: int = 88) -> bytes:
    rgb = image.convert("RGB")
    rgb.thumbnail((longest, longest))
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def register(owner: User, data: bytes, *, title: str, kind: str = "image", **terms: Any) -> Work:
    """A published work with one fingerprinted file and terms allowing ai-train (5 minor units) unless
    `uses` says otherwise."""
    work = work_create(user=owner, title=title, kind=kind)
    asset = asset_upload(work=work, user=owner, data=data, filename=f"{title}.jpg").asset
    fingerprinting.asset_fingerprint(asset_id=asset.pk)
    publish(owner, work, **terms)
    return work


def publish(owner: User, work: Work, **terms: Any) -> Offer:
    fields: dict[str, Any] = {"currency": "USD", "uses": {"ai-train": 5}, "commercial_use": True}
    fields.update(terms)
    return offer_publish(work=work, user=owner, terms=Terms(**fields))


def dataset(curator: User, **offering: Any) -> Dataset:
    fields: dict[str, Any] = {"currency": "USD", "price_minor": 10_000, "commercial_use": True}
    fields.update(offering)
    return curation.dataset_create(
        user=curator, title="Northern photographs", kind="image", offering=curation.Offering(**fields)
    )


def organisation_of(vendor: User) -> Organisation:
    return Organisation.objects.get(membership__user=vendor)


def funded(vendor: User, amount_minor: int, ref: str = "top-up-1") -> Organisation:
    organisation = organisation_of(vendor)
    prepaid_fund(organisation=organisation, amount=Money(amount_minor, "USD"), external_ref=ref)
    return organisation
