"""Stripe onboarding and top-ups over the API, with the real SDK against recorded answers: one Express
account per user however often onboarding starts, our dashboard as the way back, top-ups keyed by the
client's Idempotency-Key, and a clear 409 when Stripe is off."""

from __future__ import annotations

import pytest

from accounts.models import Organisation, PayoutProfile
from royalties.models import JournalTransaction
from royalties.rails import stripe as gateway
from tests import factories
from tests.royalties.stripe_world import API_BASE, form, recorded

pytestmark = pytest.mark.django_db


def test_onboarding_makes_one_account_per_user_and_a_fresh_link_each_time(
    stripe_api, as_user, settings
) -> None:
    user = factories.creator()
    client = as_user(user)
    account, link = recorded("account"), recorded("account_link")
    stripe_api.post(f"{API_BASE}/v1/accounts", json=account)
    stripe_api.post(f"{API_BASE}/v1/account_links", json=link)

    first = client.post("/api/v1/payout-profile/stripe-onboarding")
    second = client.post("/api/v1/payout-profile/stripe-onboarding")

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json() == {"url": link["url"]}
    paths = [call.request.url.removeprefix(API_BASE) for call in stripe_api.calls]
    assert paths == ["/v1/accounts", "/v1/account_links", "/v1/account_links"]
    assert PayoutProfile.objects.get(user=user).stripe_account_id == account["id"]
    body = form(stripe_api.calls[1])
    assert body["account"] == [account["id"]]
    assert body["return_url"] == [f"{settings.SITE_URL}/dashboard/payout-settings/?stripe=return"]
    assert body["refresh_url"] == [f"{settings.SITE_URL}/dashboard/payout-settings/stripe/refresh/"]


def test_onboarding_with_stripe_off_is_a_clear_409(as_user, settings) -> None:
    settings.STRIPE_SECRET_KEY = ""
    user = factories.creator()

    response = as_user(user).post("/api/v1/payout-profile/stripe-onboarding")

    assert (response.status_code, response.json()["code"]) == (409, "stripe_not_configured")
    assert not PayoutProfile.objects.filter(user=user).exclude(stripe_account_id="").exists()


def test_a_stripe_refusal_during_onboarding_is_reported_and_nothing_is_stored(stripe_api, as_user) -> None:
    user = factories.creator()
    stripe_api.post(f"{API_BASE}/v1/accounts", status=400, json=recorded("error_invalid_request"))

    response = as_user(user).post("/api/v1/payout-profile/stripe-onboarding")

    assert (response.status_code, response.json()["code"]) == (502, "stripe_refused")
    assert not PayoutProfile.objects.filter(user=user).exclude(stripe_account_id="").exists()


def test_onboarding_needs_a_logged_in_person(with_key, stripe_api) -> None:
    user = factories.creator()

    response = with_key(factories.key(user, "read", "write")).post("/api/v1/payout-profile/stripe-onboarding")

    assert response.status_code == 403
    assert len(stripe_api.calls) == 0


# Top-ups -------------------------------------------------------------------------------------------------


def test_a_vendor_starts_a_payment_intent_top_up_keyed_by_its_idempotency_key(stripe_api, with_key) -> None:
    vendor = factories.vendor()
    organisation = Organisation.objects.get(membership__user=vendor)
    intent = recorded("payment_intent")
    stripe_api.post(f"{API_BASE}/v1/payment_intents", json=intent)
    client = with_key(factories.key(vendor, "read", "write"))

    response = client.post(
        "/api/v1/topups",
        {"amount_minor": 5000, "currency": "USD", "method": "payment_intent"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="order-2026-11-0001",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    reference = f"topup-{organisation.pk}-order-2026-11-0001"
    assert body["reference"] == reference
    assert (body["payment_intent_id"], body["client_secret"]) == (intent["id"], intent["client_secret"])
    assert (body["amount_minor"], body["currency"], body["organisation"]) == (5000, "USD", organisation.pk)
    (call,) = stripe_api.calls
    assert call.request.headers["Idempotency-Key"] == reference
    assert form(call)[f"metadata[{gateway.META_ORGANISATION}]"] == [str(organisation.pk)]
    assert JournalTransaction.objects.filter(kind="funding").count() == 0  # credited by the webhook only


def test_a_checkout_top_up_answers_the_payment_page(stripe_api, as_user, settings) -> None:
    vendor = factories.vendor()
    session = recorded("checkout_session")
    stripe_api.post(f"{API_BASE}/v1/checkout/sessions", json=session)

    response = as_user(vendor).post(
        "/api/v1/topups", {"amount_minor": 2000, "currency": "EUR", "method": "checkout"}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["checkout_url"] == session["url"]
    body = form(stripe_api.calls[0])
    assert body["success_url"] == [f"{settings.SITE_URL}/dashboard/balance/top-up/?topup=done"]
    assert body["line_items[0][price_data][currency]"] == ["eur"]


def test_the_same_key_with_another_amount_is_a_conflict(stripe_api, as_user) -> None:
    vendor = factories.vendor()
    stripe_api.post(f"{API_BASE}/v1/payment_intents", status=400, json=recorded("error_idempotency"))

    response = as_user(vendor).post(
        "/api/v1/topups",
        {"amount_minor": 7000, "currency": "USD"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="topup-same-key-1",
    )

    assert (response.status_code, response.json()["code"]) == (409, "idempotency_key_reused")


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"amount_minor": 99, "currency": "USD"}, 400, "invalid_amount"),
        ({"amount_minor": 100_000_000, "currency": "USD"}, 400, "invalid_amount"),
        ({"amount_minor": 5000, "currency": "XYZ"}, 400, "validation_error"),
        ({"amount_minor": 5000, "currency": "USD", "organisation": 999_999}, 404, "organisation_not_found"),
    ],
)
def test_bad_top_ups_are_refused_before_stripe_is_called(stripe_api, as_user, payload, status, code) -> None:
    vendor = factories.vendor()

    response = as_user(vendor).post("/api/v1/topups", payload, format="json")

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert len(stripe_api.calls) == 0


def test_nobody_tops_up_another_vendors_organisation(stripe_api, as_user) -> None:
    other = factories.vendor().organisations.get()

    response = as_user(factories.vendor()).post(
        "/api/v1/topups", {"amount_minor": 5000, "currency": "USD", "organisation": other.pk}, format="json"
    )

    assert (response.status_code, response.json()["code"]) == (404, "organisation_not_found")
    assert len(stripe_api.calls) == 0


def test_someone_without_an_organisation_cannot_top_up(stripe_api, as_user) -> None:
    response = as_user(factories.creator()).post(
        "/api/v1/topups", {"amount_minor": 5000, "currency": "USD"}, format="json"
    )

    assert (response.status_code, response.json()["code"]) == (400, "no_organisation")
    assert len(stripe_api.calls) == 0


def test_top_ups_with_stripe_off_are_a_clear_503(as_user, settings) -> None:
    settings.STRIPE_SECRET_KEY = ""

    response = as_user(factories.vendor()).post(
        "/api/v1/topups", {"amount_minor": 5000, "currency": "USD"}, format="json"
    )

    assert (response.status_code, response.json()["code"]) == (409, "stripe_not_configured")
    assert response["Content-Type"] == "application/problem+json"
