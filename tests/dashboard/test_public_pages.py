"""Released derivatives are visible: a public page per release and per work that anyone may open without
an account (title, creator, credited parents, price, Buy leading to log-in), releases in Browse, the work
no longer a draft, a share link, a sales count for the owner, and never the original file to a visitor."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from django.test import Client

from accounts.models import User
from catalog.models import Work
from catalog.services import ParentClaim, asset_upload, derivative_create, grant_create
from common.money import Money
from studio import services as studio
from tests import factories

pytestmark = pytest.mark.django_db


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(response) -> str:
    return response.content.decode()


@pytest.fixture
def released():
    creator = factories.creator(username="mira", display_name="Mira")
    work = factories.work(creator, title="Harbour at dusk")
    asset_upload(work=work, user=creator, data=factories.png_bytes(), filename="harbour.png")
    offer = factories.offer(creator, work, commercial_use=True, derivative_share_bps=2000)
    fan = factories.fan(username="sol", display_name="Sol")
    grant = grant_create(offer=offer, user=fan).grant
    derivative = derivative_create(
        user=fan,
        title="Harbour remix",
        kind="image",
        parents=[ParentClaim(work_id=work.pk, grant_id=grant.pk)],
    )
    asset = asset_upload(
        work=derivative, user=fan, data=factories.png_bytes(color=(9, 99, 199)), filename="remix.png"
    ).asset
    assert derivative.status == "draft"
    release = studio.release_set(user=fan, work=derivative, price_minor=123_456, currency="USD")
    return {
        "creator": creator,
        "work": work,
        "fan": fan,
        "derivative": derivative,
        "asset": asset,
        "release": release,
    }


def test_a_visitor_opens_the_release_page_without_logging_in(released):
    release = released["release"]

    response = Client().get(f"/releases/{release.pk}/")

    assert response.status_code == 200
    body = page(response)
    assert "<h1>Harbour remix</h1>" in body and "by Sol" in body
    assert "Harbour at dusk</a> by Mira" in body and "receives 20% of what this earns" in body
    assert "1,234.56 USD" in body
    assert f'href="/accounts/login/?next=/dashboard/create/releases/{release.pk}/" data-buy' in body
    assert f'value="http://testserver/releases/{release.pk}/"' in body and "Copy link" in body
    assert "data-sales" not in body  # the sales count is the owner's


def test_the_public_pages_serve_a_preview_and_never_the_original(released):
    asset = released["asset"]
    visitor = Client()

    body = page(visitor.get(f"/releases/{released['release'].pk}/"))
    shown = visitor.get(f"/works/{released['derivative'].pk}/public-preview")

    assert "/file/" not in body and "/content" not in body and "/download" not in body
    assert shown.status_code == 200 and shown["Content-Type"] == "image/jpeg"
    with default_storage.open(asset.blob.storage_name, "rb") as handle:
        assert shown.getvalue() != handle.read()


def test_the_owner_sees_the_sales_count_and_the_work_is_no_longer_a_draft(released):
    fan, release = released["fan"], released["release"]
    buyer = factories.fan(username="ana")
    studio.wallet_fund(user=buyer, amount=Money(200_000, "USD"), external_ref="test-1", rail="development")
    studio.release_purchase(buyer=buyer, release=release, expected_price_minor=123_456)

    public = page(client_for(fan).get(f"/releases/{release.pk}/"))
    dashboard = page(client_for(fan).get(f"/dashboard/create/releases/{release.pk}/"))
    work = page(client_for(fan).get(f"/dashboard/works/{released['derivative'].pk}/"))

    assert "1 sale so far." in public and "<strong>1</strong> sale so far." in dashboard
    assert Work.objects.get(pk=released["derivative"].pk).status == "published"
    assert "data-released>Released</span>" in work and ">Draft<" not in work
    assert f'href="/works/{released["derivative"].pk}/" data-public-link' in work


def test_releases_are_listed_in_browse_for_visitors_and_members(released):
    for client in (Client(), client_for(factories.vendor(username="acme"))):
        body = page(client.get("/dashboard/browse/?q=remix"))
        assert "data-releases" in body and f'href="/releases/{released["release"].pk}/"' in body
    assert "data-releases" not in page(Client().get("/dashboard/browse/?q=nothing-like-this"))


def test_the_public_work_page_credits_and_links_but_drafts_and_withdrawn_releases_are_not_public(released):
    creator = released["creator"]
    body = page(Client().get(f"/works/{released['derivative'].pk}/"))
    assert "Harbour at dusk</a> by Mira" in body and f'href="/releases/{released["release"].pk}/"' in body
    original = page(Client().get(f"/works/{released['work'].pk}/"))
    assert "See the licence terms" in original

    draft = factories.work(creator, title="Secret sketch")
    assert Client().get(f"/works/{draft.pk}/").status_code == 404
    assert Client().get(f"/works/{draft.pk}/public-preview").status_code == 404

    studio.release_withdraw(user=released["fan"], release=released["release"])
    assert Client().get(f"/releases/{released['release'].pk}/").status_code == 404
    assert Client().get("/releases/999999/").status_code == 404
