"""One small world of every role for the browser tests of issue 28's pages: a creator with an image work
(real photograph, fingerprinted), a style of three photographs and a claim against a copy of the image; an
invited co-owner; a fan with a licence, a derivative and its release; a vendor with a key and a top-up;
an operator. Built through the services, as the pages would, so each page has something to show."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from accounts.models import User
from catalog.models import Claim, SplitSheet, Work
from catalog.services import (
    ParentClaim,
    asset_upload,
    derivative_create,
    split_sheet_propose,
    work_members_set,
)
from catalog.tasks import fingerprint_asset
from common.money import Money
from media.samples.images import ensure_images
from royalties.funding import prepaid_fund
from studio import services as studio
from tests import factories

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "var" / "samples"
PASSWORD = "correct horse battery staple"


@dataclass
class World:
    creator: User
    co_owner: User
    fan: User
    vendor: User
    staff: User
    image: Work
    style: Work
    claim: Claim
    release_id: int


def photos(count: int) -> list[bytes]:
    """Real photographs (Debian's MATE wallpapers) as modest JPEGs."""
    paths = sorted(ensure_images(SAMPLES / "images", packages=["mate-backgrounds"]))[:count]
    shots = []
    for path in paths:
        with Image.open(path) as source:
            image = source.convert("RGB")
            image.thumbnail((640, 640))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=85)
            shots.append(buffer.getvalue())
    return shots


def mirrored(data: bytes) -> bytes:
    """A copy flipped left to right and re-encoded: the claim says it is a mirror image."""
    with Image.open(io.BytesIO(data)) as image:
        flipped = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buffer = io.BytesIO()
        flipped.save(buffer, "JPEG", quality=80)
        return buffer.getvalue()


def build() -> World:
    pictures = photos(4)
    creator = factories.creator(username="mira", display_name="Mira Okafor", password=PASSWORD)
    image = factories.work(creator, title="Garden at noon")
    first = asset_upload(work=image, user=creator, data=pictures[0], filename="garden.jpg").asset
    fingerprint_asset(first.pk)
    offer = factories.offer(creator, image, commercial_use=True, derivative_share_bps=2000)

    members = []
    for number, data in enumerate(pictures[1:], start=1):
        photo = factories.work(creator, title=f"Dusk study {number}")
        asset_upload(work=photo, user=creator, data=data, filename=f"dusk-{number}.jpg")
        members.append(photo.pk)
    style = factories.work(creator, kind="style", title="Dusk palette")
    work_members_set(collection=style, member_ids=members)

    co_owner = factories.creator(
        username="kai", display_name="Kai Lindqvist", email="kai@example.com", password=PASSWORD
    )
    sheet = split_sheet_propose(
        work=image, user=creator, shares=[(creator.email, 7000), ("kai@example.com", 3000)]
    )
    # As if Kai followed the emailed link (its token is only in the email; part A tests that path).
    sheet.shares.filter(email="kai@example.com").update(user=co_owner, accepted_at=sheet.created_at)
    SplitSheet.objects.filter(work=image, status="active").exclude(pk=sheet.pk).update(status="superseded")
    SplitSheet.objects.filter(pk=sheet.pk).update(status="active")

    copier = factories.creator(username="copycat", display_name="Copy Cat", password=PASSWORD)
    copy = factories.work(copier, title="My garden")
    fingerprint_asset(
        asset_upload(work=copy, user=copier, data=mirrored(pictures[0]), filename="mine.jpg").asset.pk
    )
    claim = Claim.objects.get(work=image)

    fan = factories.fan(username="sol", display_name="Sol Reyes", password=PASSWORD)
    studio.wallet_fund(user=fan, amount=Money(5_000, "USD"), external_ref="walk-fan", rail="development")
    grant = studio.terms_accept(user=fan, offer=offer).grant
    derivative = derivative_create(
        user=fan,
        title="Garden at night",
        kind="image",
        parents=[ParentClaim(work_id=image.pk, grant_id=grant.pk)],
    )
    asset_upload(work=derivative, user=fan, data=pictures[1], filename="night.jpg")
    release = studio.release_set(user=fan, work=derivative, price_minor=499, currency="USD")

    vendor = factories.vendor(username="acme", display_name="Acme AI", password=PASSWORD)
    factories.key(vendor, "read", "access")
    prepaid_fund(
        organisation=vendor.memberships.get().organisation,
        amount=Money(250_000, "USD"),
        external_ref="walk-vendor",
        rail="manual",
    )

    staff = factories.creator(username="op", display_name="Operator", password=PASSWORD)
    User.objects.filter(pk=staff.pk).update(is_staff=True)
    staff.refresh_from_db()
    return World(creator, co_owner, fan, vendor, staff, image, style, claim, release.pk)


def log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/dashboard/")
