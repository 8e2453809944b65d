from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import Grant, Offer
from common.money import Money
from royalties.funding import prepaid_fund
from tests import factories
from tests.royalties.builders import organisation_of

pytestmark = pytest.mark.django_db

TERMS = {
    "currency": "USD",
    "uses": {"ai-train": 5, "ai-generate": 2, "derivative": 0},
    "commercial_use": True,
    "derivative_share_bps": 5000,
    "licence_fee_minor": 1999,
    "territories": ["us", "GB"],
    "quota": 1000,
}


def test_publishing_terms_versions_them_and_keeps_grants_on_their_version(as_user) -> None:
    creator, licensee = factories.creator(), factories.vendor()
    prepaid_fund(organisation=organisation_of(licensee), amount=Money(1999, "USD"), external_ref="t-1")
    work = factories.work(creator)
    client = as_user(creator)

    first = client.post(f"/api/v1/works/{work.pk}/offers", TERMS, format="json")
    assert first.status_code == 201
    body = first.json()
    assert (body["version"], body["status"], body["territories"]) == (1, "current", ["GB", "US"])
    assert {u["use_class"]: u["price_minor"] for u in body["uses"]} == {
        "ai-generate": 2,
        "ai-train": 5,
        "derivative": 0,
    }
    grant = as_user(licensee).post("/api/v1/grants", {"offer": body["id"]}, format="json").json()
    assert (grant["offer_version"], grant["fee_minor"], grant["status"]) == (1, 1999, "active")

    second = client.post(
        f"/api/v1/works/{work.pk}/offers", {**TERMS, "licence_fee_minor": 2999}, format="json"
    ).json()

    assert second["version"] == 2
    assert dict(Offer.objects.filter(work=work).values_list("version", "status")) == {
        1: "superseded",
        2: "current",
    }
    kept = Grant.objects.get(pk=grant["id"])
    assert (kept.offer.version, kept.fee_minor) == (1, 1999)
    stale = as_user(factories.fan()).post("/api/v1/grants", {"offer": body["id"]}, format="json")
    assert stale.status_code == 409 and stale.json()["code"] == "offer_not_current"
    assert [o["version"] for o in client.get(f"/api/v1/works/{work.pk}/offers").json()["results"]] == [2, 1]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"currency": "XYZ"}, "unsupported_currency"),
        ({"uses": {}}, "no_uses"),
        ({"uses": {"mining": 1}}, "validation_error"),
        ({"uses": {"ai-train": -1}}, "validation_error"),
        ({"derivative_share_bps": 10001}, "validation_error"),
        ({"uses": {"ai-train": 1}, "derivative_share_bps": 100}, "invalid_share"),
        ({"territories": ["U1"]}, "invalid_territory"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "invalid_expiry"),
        ({"platform_fee_bps": 50}, "fee_override_forbidden"),
    ],
)
def test_bad_terms_are_refused_and_publish_nothing(as_user, change, code) -> None:
    creator = factories.creator()
    work = factories.work(creator)

    response = as_user(creator).post(f"/api/v1/works/{work.pk}/offers", {**TERMS, **change}, format="json")

    assert response.status_code in (400, 403)
    assert response.json()["code"] == code
    assert Offer.objects.count() == 0
    work.refresh_from_db()
    assert work.status == "draft"


def test_the_public_catalogue_lists_current_offers_without_login(api) -> None:
    creator = factories.creator()
    shown = factories.work(creator, title="Shown")
    factories.offer(creator, shown)
    factories.offer(creator, shown, licence_fee_minor=10)
    factories.work(creator, title="Draft only")
    expired = factories.work(creator, title="Expired")
    offer = factories.offer(creator, expired, expires_at=timezone.now() + timedelta(days=1))
    Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() - timedelta(days=1))

    page = api.get("/api/v1/offers").json()

    assert [(o["work_title"], o["version"]) for o in page["results"]] == [("Shown", 2)]
    assert api.get("/api/v1/offers", {"use_class": "voice"}).json()["count"] == 0
    assert api.get("/api/v1/offers", {"use_class": "ai-train"}).json()["count"] == 1


def test_accepting_twice_returns_the_same_grant(as_user) -> None:
    creator, licensee = factories.creator(), factories.vendor()
    offer = factories.offer(creator, factories.work(creator))
    client = as_user(licensee)
    first = client.post("/api/v1/grants", {"offer": offer.pk}, format="json")
    second = client.post("/api/v1/grants", {"offer": offer.pk}, format="json")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["organisation"] is not None
    assert Grant.objects.count() == 1


def test_an_owner_does_not_license_their_own_work(as_user) -> None:
    creator = factories.creator()
    offer = factories.offer(creator, factories.work(creator))
    response = as_user(creator).post("/api/v1/grants", {"offer": offer.pk}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "own_work"


def test_derivative_grants_wait_for_approval_when_the_terms_say_so(as_user) -> None:
    creator, licensee = factories.creator(), factories.fan()
    offer = factories.offer(creator, factories.work(creator), derivative_approval_required=True)
    grant = as_user(licensee).post("/api/v1/grants", {"offer": offer.pk}, format="json").json()
    assert grant["status"] == "pending_approval"

    assert as_user(licensee).post(f"/api/v1/grants/{grant['id']}/approve").status_code == 404
    approved = as_user(creator).post(f"/api/v1/grants/{grant['id']}/approve")
    again = as_user(creator).post(f"/api/v1/grants/{grant['id']}/reject")

    assert approved.json()["status"] == "active"
    assert again.status_code == 409 and again.json()["code"] == "grant_not_pending"


def test_a_withdrawn_work_is_no_longer_offered(as_user, api) -> None:
    creator = factories.creator()
    work = factories.work(creator)
    offer = factories.offer(creator, work)
    assert as_user(creator).post(f"/api/v1/works/{work.pk}/withdraw").json()["status"] == "withdrawn"
    assert api.get("/api/v1/offers").json()["count"] == 0
    assert api.get(f"/api/v1/offers/{offer.pk}").status_code == 404
    assert as_user(creator).get(f"/api/v1/offers/{offer.pk}").status_code == 200
