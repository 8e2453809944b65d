"""A creator watches a vendor's feed of outputs: each new file is compared once, a copy of the creator's
work that no licence of the vendor covers opens a claim on the vendor's output, and monetizing it charges
the vendor."""

from __future__ import annotations

import pytest

from catalog import watches
from catalog.models import Claim, Watch, WatchItem
from catalog.services import asset_upload
from catalog.tasks import fingerprint_asset
from common.money import Money
from royalties import claims
from royalties.funding import prepaid_fund
from royalties.licences import licence_accept
from royalties.models import LedgerAccount
from royalties.selectors import escrow_key
from tests import factories
from tests.catalog import pictures
from tests.catalog.http_site import Site
from tests.catalog.pictures import jpeg

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    photos = pictures.photos()
    mira, sol = factories.creator(username="mira"), factories.creator(username="sol")
    works = {}
    for owner, name in ((mira, "Garden"), (mira, "LadyBird"), (sol, "Aqua")):
        work = factories.work(owner, title=name)
        fingerprint_asset(
            asset_upload(work=work, user=owner, data=jpeg(photos[name]), filename="w.jpg").asset.pk
        )
        works[name] = work
    factories.offer(mira, works["Garden"], uses={"ai-generate": 40})
    factories.offer(mira, works["LadyBird"], uses={"derivative": 0}, derivative_share_bps=1000)
    acme = factories.vendor(username="acme", organisation_name="Acme AI")
    organisation = acme.organisations.get()
    prepaid_fund(organisation=organisation, amount=Money(1_000, "USD"), external_ref="acme-1")
    licence_accept(offer=works["LadyBird"].offers.get(), user=acme)  # Acme holds a licence on LadyBird
    with Site() as site:
        site.files["/outputs/1.jpg"] = jpeg(photos["Garden"], mirror=True)  # unlicensed copy of Mira's
        site.files["/outputs/2.jpg"] = jpeg(photos["LadyBird"], mirror=True)  # licensed
        site.files["/outputs/3.jpg"] = jpeg(photos["Aqua"], mirror=True)  # Sol's, not Mira's business
        site.files["/feed.txt"] = (
            b"# Acme's outputs\n/outputs/1.jpg\n/outputs/2.jpg\n/outputs/3.jpg\n/outputs/4.jpg\n"
        )
        yield {"mira": mira, "acme": acme, "organisation": organisation, "works": works, "site": site}


def test_a_watched_feed_opens_a_claim_on_the_unlicensed_copy_once_and_monetizing_it_charges_the_vendor(
    world, as_user
) -> None:
    created = as_user(world["mira"]).post(
        "/api/v1/watches",
        {"organisation": world["organisation"].slug, "feed_url": f"{world['site'].url}/feed.txt"},
        format="json",
    )
    assert created.status_code == 201, created.content
    watch = Watch.objects.get()

    opened = watches.watch_scan(watch)
    again = watches.watch_scan(watch)

    [claim] = opened
    assert again == []
    assert (claim.work, claim.respondent, claim.subject_output.organisation) == (
        world["works"]["Garden"],
        world["acme"],
        world["organisation"],
    )
    assert claim.subject_output.result["url"].endswith("/outputs/1.jpg")
    items = {item.url.rsplit("/", 1)[1]: item for item in WatchItem.objects.all()}
    assert sorted(items) == ["1.jpg", "2.jpg", "3.jpg", "4.jpg"]
    assert items["2.jpg"].matched_works == [world["works"]["LadyBird"].pk]  # matched, but licensed
    assert items["3.jpg"].matched_works == []  # another creator's work is not this watch's concern
    assert "HTTP 404" in items["4.jpg"].error  # listed, not served: recorded, not retried

    decided = claims.claim_decide(claim=claim, user=world["mira"], decision="monetize")
    assert (decided.charge, decided.charge_minor) == ("held", 40)
    assert Claim.objects.count() == 1
    assert LedgerAccount.objects.get(key=escrow_key(claim.pk, "USD")).balance_minor == 40


def test_a_watch_needs_a_creator_a_known_organisation_and_a_feed_on_this_machine(world, as_user) -> None:
    post = as_user(world["mira"]).post
    unknown = post(
        "/api/v1/watches", {"organisation": "nobody", "feed_url": "http://127.0.0.1/f"}, format="json"
    )
    remote = post(
        "/api/v1/watches",
        {"organisation": world["organisation"].slug, "feed_url": "http://example.com/f"},
        format="json",
    )
    by_vendor = as_user(world["acme"]).post(
        "/api/v1/watches",
        {"organisation": world["organisation"].slug, "feed_url": "http://127.0.0.1/f"},
        format="json",
    )

    assert (unknown.status_code, unknown.json()["code"]) == (404, "organisation_not_found")
    assert (remote.status_code, remote.json()["code"]) == (400, "url_not_allowed")
    assert (by_vendor.status_code, by_vendor.json()["code"]) == (403, "creator_required")
    assert Watch.objects.count() == 0
