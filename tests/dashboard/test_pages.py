"""The dashboard's pages through Django's test client: each party sees its own data and nobody else's,
forms say what is wrong next to the field, lists paginate, and the writes go through the services."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from accounts.models import ApiKey, User
from catalog.models import Asset, Claim, Grant, Offer, SplitSheet, Work, WorkParent
from catalog.services import ParentClaim, asset_upload, derivative_create, grant_create
from catalog.tasks import fingerprint_asset
from tests import factories
from tests.dashboard.conftest import reencoded

pytestmark = pytest.mark.django_db


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(response) -> str:
    return response.content.decode()


@pytest.fixture
def story():
    """A creator's published work with a file, a fan's licence and derivative, a vendor with a key."""
    creator = factories.creator(username="mira", display_name="Mira")
    work = factories.work(creator, title="Harbour at dusk")
    asset = asset_upload(work=work, user=creator, data=factories.png_bytes(), filename="harbour.png").asset
    offer = factories.offer(creator, work)
    fan = factories.fan(username="sol")
    grant = grant_create(offer=offer, user=fan).grant
    derivative = derivative_create(
        user=fan,
        title="Harbour remix",
        kind="image",
        parents=[ParentClaim(work_id=work.pk, grant_id=grant.pk)],
    )
    vendor = factories.vendor(username="acme")
    key = factories.key(vendor, "read")
    return {
        "creator": creator,
        "work": work,
        "asset": asset,
        "offer": offer,
        "fan": fan,
        "grant": grant,
        "derivative": derivative,
        "vendor": vendor,
        "key": ApiKey.objects.get(user=vendor),
        "secret": key,
    }


# Who sees what ------------------------------------------------------------------------------------------


LOGIN_PAGES = [
    "/dashboard/",
    "/dashboard/works/",
    "/dashboard/works/new/",
    "/dashboard/grants/",
    "/dashboard/claims/",
    "/dashboard/keys/",
    "/dashboard/derivatives/new/",
    "/dashboard/invitations/",
    "/dashboard/earnings/",
    "/dashboard/payouts/",
    "/dashboard/balance/",
    "/dashboard/usage/",
    "/dashboard/receipts/",
    "/dashboard/outputs/",
    "/dashboard/statements/1/csv/",
    "/dashboard/staff/disputes/",
]


@pytest.mark.parametrize("url", LOGIN_PAGES)
def test_an_anonymous_visitor_is_sent_to_log_in(url: str) -> None:
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_another_creator_gets_404_on_every_page_of_someone_elses_work(story) -> None:
    intruder = client_for(factories.creator(username="eve"))
    work, asset = story["work"], story["asset"]
    pages = [
        ("get", f"/dashboard/works/{work.pk}/"),
        ("get", f"/dashboard/works/{work.pk}/split-sheet/"),
        ("post", f"/dashboard/works/{work.pk}/split-sheet/"),
        ("get", f"/dashboard/works/{work.pk}/offers/new/"),
        ("post", f"/dashboard/works/{work.pk}/offers/new/"),
        ("post", f"/dashboard/works/{work.pk}/offers/preview/"),
        ("post", f"/dashboard/works/{work.pk}/assets/"),
        ("get", f"/dashboard/assets/{asset.pk}/status/"),
        ("post", f"/dashboard/grants/{story['grant'].pk}/approve/"),
        ("post", f"/dashboard/keys/{story['key'].pk}/revoke/"),
        ("get", f"/dashboard/works/{story['derivative'].pk}/"),
    ]
    for method, url in pages:
        response = getattr(intruder, method)(url)
        assert response.status_code == 404, url
        assert "Harbour" not in page(response), url
    assert ApiKey.objects.get(pk=story["key"].pk).revoked_at is None
    assert Offer.objects.count() == 1 and SplitSheet.objects.count() == 2  # the creator's and the fan's


def test_lists_show_only_the_users_own_rows(story) -> None:
    intruder = client_for(factories.creator(username="eve"))
    for url in [
        "/dashboard/",
        "/dashboard/works/",
        "/dashboard/grants/",
        "/dashboard/keys/",
        "/dashboard/claims/",
    ]:
        body = page(intruder.get(url))
        assert "Harbour" not in body, url
        assert story["key"].prefix not in body, url
    assert story["key"].prefix in page(client_for(story["vendor"]).get("/dashboard/keys/"))


def test_an_unpublished_works_file_is_not_served_to_others(story) -> None:
    creator = story["creator"]
    draft = factories.work(creator, title="Secret sketch")
    asset = asset_upload(
        work=draft, user=creator, data=factories.png_bytes(color=(1, 2, 3)), filename="s.png"
    )
    url = f"/dashboard/assets/{asset.asset.pk}/file/"
    assert client_for(story["fan"]).get(url).status_code == 404
    assert Client().get(url).status_code == 404
    owner = client_for(creator).get(url)
    assert owner.status_code == 200 and owner["Content-Type"] == "image/png"
    assert owner.getvalue() == factories.png_bytes(color=(1, 2, 3))  # and closes the file
    # Anyone else gets a published work's preview, never its original: a marked JPEG.
    public = Client().get(f"/dashboard/assets/{story['asset'].pk}/file/")
    assert public.status_code == 200 and public["Content-Type"] == "image/jpeg"
    body = public.getvalue()  # reading it to the end closes the file
    assert body.startswith(b"\xff\xd8") and body != factories.png_bytes()


def test_a_fan_cannot_register_an_original_work_and_nothing_is_created(story) -> None:
    fan = client_for(story["fan"])
    before = Work.objects.count()
    response = fan.post("/dashboard/works/new/", {"title": "Mine", "kind": "image"})
    assert response.status_code == 403
    assert "for Creator accounts" in page(response)
    assert Work.objects.count() == before


def test_operator_pages_do_not_exist_for_non_staff(story) -> None:
    for user in (story["creator"], story["fan"], story["vendor"]):
        assert client_for(user).get("/dashboard/staff/disputes/").status_code == 404


def test_the_session_pages_need_the_csrf_token() -> None:
    user = factories.creator()
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/dashboard/works/new/", {"title": "T", "kind": "image"})
    assert response.status_code == 403
    assert Work.objects.count() == 0


# Forms --------------------------------------------------------------------------------------------------


def test_work_form_shows_errors_next_to_the_field() -> None:
    client = client_for(factories.creator())
    response = client.post("/dashboard/works/new/", {"title": "", "kind": "sculpture"})
    body = page(response)
    assert response.status_code == 200
    assert re.search(r"id_title.*?This field is required", body, re.S)
    assert "Select a valid choice. sculpture is not one of the available choices." in body
    assert Work.objects.count() == 0


def test_split_sheet_must_sum_to_100_percent(story) -> None:
    client = client_for(story["creator"])
    url = f"/dashboard/works/{story['work'].pk}/split-sheet/"
    data = {
        "shares-TOTAL_FORMS": "2",
        "shares-INITIAL_FORMS": "0",
        "shares-0-email": "mira@example.com",
        "shares-0-percent": "60",
        "shares-1-email": "kai@example.com",
        "shares-1-percent": "30",
    }
    response = client.post(url, data)
    assert "they add up to 90%" in page(response)
    assert story["work"].split_sheets.count() == 1

    data["shares-1-email"] = ""
    response = client.post(url, data)
    assert "Whose share is this? Enter their email." in page(response)


def test_split_sheet_invites_the_co_owner_who_accepts_on_the_invitation_page(
    story, django_capture_on_commit_callbacks
) -> None:
    creator, work = story["creator"], story["work"]
    client = client_for(creator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/dashboard/works/{work.pk}/split-sheet/",
            {
                "shares-TOTAL_FORMS": "2",
                "shares-INITIAL_FORMS": "0",
                "shares-0-email": creator.email,
                "shares-0-percent": "70",
                "shares-1-email": "kai@example.com",
                "shares-1-percent": "30",
            },
        )
    assert response.status_code == 302
    sheet = work.split_sheets.get(version=2)
    assert sheet.status == "pending"
    body = page(client.get(f"/dashboard/works/{work.pk}/"))
    assert "Version 2" in body and "invited" in body

    token = re.search(r"token:\n(\S+)", str(mail.outbox[-1].body)).group(1)
    kai = factories.creator(username="kai", email="kai@example.com")
    wrong = client_for(story["fan"]).post("/dashboard/invitations/accept/", {"token": token})
    assert "No open invitation matches this token" in page(wrong)
    accepted = client_for(kai).post("/dashboard/invitations/accept/", {"token": token})
    assert accepted.status_code == 302
    sheet.refresh_from_db()
    assert sheet.status == "active"
    assert client_for(kai).get(f"/dashboard/works/{work.pk}/").status_code == 200


def test_offer_form_publishes_terms_and_shows_field_errors(story) -> None:
    creator = story["creator"]
    work = factories.work(creator, title="Chorale", kind="audio")
    client = client_for(creator)
    url = f"/dashboard/works/{work.pk}/offers/new/"
    bad = client.post(
        url, {"currency": "USD", "licence_fee": "1.234", "derivative_share": "10", "territories": "France"}
    )
    body = page(bad)
    assert "USD amounts have at most 2 decimal places." in body
    assert "Use two-letter country codes (like FR or JP); not: FRANCE." in body
    assert "Allow at least one use." in body
    assert "A share of derivatives needs derivative works to be allowed." in body
    assert not work.offers.exists()

    good = client.post(
        url,
        {
            "currency": "EUR",
            "licence_fee": "5",
            "derivative_share": "12.5",
            "allow_derivative": "on",
            "price_derivative": "0",
            "commercial_use": "on",
            "allow_ai_train": "on",
            "price_ai_train": "0.02",
            "territories": "fr, de",
            "attribution_required": "on",
            "step": "confirm",
        },
    )
    assert good.status_code == 302
    offer = work.offers.get()
    assert (offer.currency, offer.licence_fee_minor, offer.derivative_share_bps) == ("EUR", 500, 1250)
    assert offer.territories == ["DE", "FR"]
    assert {u.use_class: u.price_minor for u in offer.uses.all()} == {"ai-train": 2, "derivative": 0}


def test_the_terms_preview_renders_the_rsl_document_it_would_publish(story) -> None:
    client = client_for(story["creator"])
    url = f"/dashboard/works/{story['work'].pk}/offers/preview/"
    response = client.post(
        url,
        {
            "currency": "USD",
            "licence_fee": "0",
            "derivative_share": "0",
            "allow_ai_train": "on",
            "price_ai_train": "0.05",
        },
    )
    body = page(response)
    assert "&lt;permits type=&quot;usage&quot;&gt;ai-train&lt;/permits&gt;" in body
    assert "&lt;amount currency=&quot;USD&quot;&gt;0.05&lt;/amount&gt;" in body
    assert "You may train AI models on it (0.05 USD per use)." in body
    assert Offer.objects.count() == 1  # nothing published
    invalid = page(client.post(url, {"currency": "USD", "licence_fee": "-1", "derivative_share": "0"}))
    assert "Fix these to see the preview" in invalid


def test_api_key_is_shown_once_and_can_be_revoked(story) -> None:
    client = client_for(story["vendor"])
    missing = client.post("/dashboard/keys/", {"name": "cluster"})
    assert "Choose at least one thing the key may do." in page(missing)
    response = client.post("/dashboard/keys/", {"name": "cluster", "scopes": ["read", "access"]})
    secret = re.search(r'value="(trb_[0-9A-Za-z]+)"', page(response)).group(1)
    key = ApiKey.objects.get(name="cluster")
    assert key.scopes == ["access", "read"]
    assert secret not in page(client.get("/dashboard/keys/"))
    assert client.post(f"/dashboard/keys/{key.pk}/revoke/").status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


# Lists ---------------------------------------------------------------------------------------------------


def test_works_list_paginates_searches_and_says_what_to_do_when_empty() -> None:
    creator = factories.creator()
    client = client_for(creator)
    assert "Register your first work" in page(client.get("/dashboard/works/"))
    for n in range(12):
        factories.work(creator, title=f"Study {n:02d}")
    first = page(client.get("/dashboard/works/"))
    assert first.count('class="work-row"') == 10 and "Page 1 of 2" in first
    second = page(client.get("/dashboard/works/?page=2"))
    assert second.count('class="work-row"') == 2
    found = page(client.get("/dashboard/works/?q=Study+07"))
    assert found.count('class="work-row"') == 1
    assert "No work matches these filters." in page(client.get("/dashboard/works/?q=nothing"))


def test_browse_lists_public_offers_in_plain_words_and_paginates(story) -> None:
    creator = story["creator"]
    for n in range(12):
        factories.offer(creator, factories.work(creator, title=f"Plate {n:02d}"))
    client = Client()
    first = page(client.get("/dashboard/browse/"))
    assert first.count('class="card offer-card"') == 12 and "Page 1 of 2" in first
    found = page(client.get("/dashboard/browse/?q=harbour"))
    assert found.count('class="card offer-card"') == 1
    assert "You may make and sell derivative works from it (no charge per use)." in page(
        client.get(f"/dashboard/offers/{story['offer'].pk}/")
    )


# The fan's path and the creator's view of it -------------------------------------------------------------


def test_fan_accepts_a_licence_and_registers_a_derivative_with_its_lineage(story) -> None:
    creator = story["creator"]
    work = factories.work(creator, title="Lighthouse")
    offer = factories.offer(creator, work, derivative_share_bps=2000)
    fan = client_for(factories.fan(username="ade"))
    assert fan.post(f"/dashboard/offers/{offer.pk}/accept/").status_code == 302
    grant = Grant.objects.get(offer=offer, licensee__username="ade")
    assert "You hold this licence" in page(fan.get(f"/dashboard/offers/{offer.pk}/"))

    empty = fan.post("/dashboard/derivatives/new/", {"title": "Lighthouse at night", "kind": "image"})
    assert "Name at least one parent work" in page(empty)
    response = fan.post(
        "/dashboard/derivatives/new/", {"title": "Lighthouse at night", "kind": "image", "grants": [grant.pk]}
    )
    child = Work.objects.get(title="Lighthouse at night")
    assert response["Location"] == f"/dashboard/works/{child.pk}/"
    body = page(fan.get(f"/dashboard/works/{child.pk}/"))
    assert "<svg" in body and "Lighthouse" in body and "20%" in body
    assert WorkParent.objects.get(child=child).share_bps == 2000

    owner_view = page(client_for(creator).get(f"/dashboard/works/{work.pk}/"))
    assert "Lighthouse at night" in owner_view and "20% to this work" in owner_view


def test_derivative_grants_that_need_approval_are_decided_by_the_creator(story) -> None:
    creator = story["creator"]
    work = factories.work(creator, title="Tide")
    offer = factories.offer(creator, work, derivative_approval_required=True)
    fan = factories.fan(username="ade")
    grant = grant_create(offer=offer, user=fan).grant
    assert grant.status == "pending_approval"
    client = client_for(creator)
    assert "asks to license" in page(client.get("/dashboard/"))
    client.post(f"/dashboard/grants/{grant.pk}/approve/", {"next": "/dashboard/grants/"})
    grant.refresh_from_db()
    assert grant.status == "active"


def test_upload_returns_the_asset_row_which_follows_the_fingerprint_job(story, photo) -> None:
    creator = story["creator"]
    work = factories.work(creator, title="Garden")
    client = client_for(creator)
    response = client.post(
        f"/dashboard/works/{work.pk}/assets/",
        {"file": SimpleUploadedFile("garden.jpg", photo)},
        HTTP_X_REQUESTED_WITH="XMLHttpRequest",
    )
    assert response.status_code == 201
    asset = Asset.objects.get(work=work)
    assert 'hx-trigger="every 1s"' in page(response)
    fingerprint_asset(asset.pk)
    status = page(client.get(f"/dashboard/assets/{asset.pk}/status/"))
    assert "Fingerprinted" in status and "hx-trigger" not in status

    bad = client.post(
        f"/dashboard/works/{work.pk}/assets/",
        {"file": SimpleUploadedFile("notes.txt", b"just some text")},
        HTTP_X_REQUESTED_WITH="XMLHttpRequest",
    )
    assert bad.status_code == 422 and 'role="alert"' in page(bad)
    assert Asset.objects.filter(work=work).count() == 1


def test_claims_inbox_decide_dispute_and_resolve(photo) -> None:
    owner = factories.creator(username="mira")
    work = factories.work(owner, title="Garden")
    fingerprint_asset(asset_upload(work=work, user=owner, data=photo, filename="garden.jpg").asset.pk)
    copier = factories.creator(username="copycat")
    copy = factories.work(copier, title="My garden")
    fingerprint_asset(
        asset_upload(work=copy, user=copier, data=reencoded(photo), filename="copy.jpg").asset.pk
    )
    claim = Claim.objects.get(work=work)

    owner_client, copier_client = client_for(owner), client_for(copier)
    assert "copycat" in page(owner_client.get("/dashboard/claims/"))
    detail = page(owner_client.get(f"/dashboard/claims/{claim.pk}/"))
    # Both sides of the comparison are shown: the registered file, and the upload's preview.
    assert detail.count("/file/") == 1 and detail.count(f"/claims/{claim.pk}/subject/") == 1
    # The respondent may look but not decide; a stranger may not even look.
    assert (
        copier_client.post(f"/dashboard/claims/{claim.pk}/decide/", {"decision": "block"}).status_code == 400
    )
    assert client_for(factories.creator()).get(f"/dashboard/claims/{claim.pk}/").status_code == 404
    claim.refresh_from_db()
    assert claim.status == "open"

    owner_client.post(f"/dashboard/claims/{claim.pk}/decide/", {"decision": "monetize"})
    empty = copier_client.post(f"/dashboard/claims/{claim.pk}/dispute/", {"statement": ""})
    assert "This field is required." in page(empty)
    copier_client.post(f"/dashboard/claims/{claim.pk}/dispute/", {"statement": "I took this photo myself."})
    claim.refresh_from_db()
    assert (claim.status, claim.decision) == ("disputed", "monetize")

    operator = factories.creator(username="op")
    User.objects.filter(pk=operator.pk).update(is_staff=True)
    operator.refresh_from_db()
    staff = client_for(operator)
    assert "I took this photo myself." in page(staff.get("/dashboard/staff/disputes/"))
    staff.post("/dashboard/staff/disputes/", {"claim": claim.pk, "resolution": "upheld"})
    claim.refresh_from_db()
    assert (claim.status, claim.resolution) == ("resolved", "upheld")


def test_every_home_and_money_page_renders_for_each_role_and_vendor_pages_only_for_vendors(story) -> None:
    vendor_pages = ["/dashboard/balance/", "/dashboard/usage/", "/dashboard/receipts/", "/dashboard/outputs/"]
    for user in (story["creator"], story["fan"], story["vendor"]):
        client = client_for(user)
        for url in ["/dashboard/", "/dashboard/earnings/", "/dashboard/payouts/", *vendor_pages]:
            response = client.get(url)
            expected = 403 if url in vendor_pages and user.role != "vendor" else 200
            assert response.status_code == expected, (user.role, url)
    body = page(client_for(story["creator"]).get("/dashboard/"))
    assert 'id="activity-data"' in body and "chart-4.6.1.umd.min.js" in body
