"""The Stripe gateway, with the real `stripe` SDK against recorded API answers (served by `responses`):
what is sent (form body, Idempotency-Key, Stripe-Version, the configured API base), what comes back, and
how every kind of Stripe failure becomes our RailError with the right `retryable`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests
import responses
from stripe._api_version import _ApiVersion

from accounts.models import Organisation
from common.money import Money
from royalties.models import Payout
from royalties.rails import RailError
from royalties.rails import stripe as gateway
from tests import factories
from tests.royalties.stripe_world import (
    API_BASE,
    SECRET_KEY,
    form,
    query,
    recorded,
)

pytestmark = pytest.mark.django_db


def a_payout(
    amount_minor: int = 12345, currency: str = "USD", destination: str = "acct_1SxP9zQm4Hn7Wc2e"
) -> Payout:
    payee = factories.creator()
    return Payout.objects.create(
        key=f"payout:2026-11:{payee.pk}:{currency}",
        user=payee,
        currency=currency,
        period="2026-11",
        amount_minor=amount_minor,
        rail="stripe",
        destination=destination,
    )


def test_the_pinned_api_version_is_the_one_the_sdk_was_generated_for() -> None:
    # Upgrading the SDK changes its generated version: then re-read Stripe's changelog and re-pin.
    assert gateway.API_VERSION == _ApiVersion.CURRENT


def test_a_transfer_sends_the_exact_amount_to_the_account_keyed_by_the_payout(stripe_api) -> None:
    payout = a_payout(amount_minor=12345)
    answer = recorded("transfer")
    stripe_api.post(f"{API_BASE}/v1/transfers", json=answer)

    transfer_id = gateway.transfer_send(payout)

    assert transfer_id == answer["id"]
    (call,) = stripe_api.calls
    assert call.request.headers["Idempotency-Key"] == payout.key
    assert call.request.headers["Stripe-Version"] == gateway.API_VERSION
    assert call.request.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    body = form(call)
    assert body["amount"] == ["12345"]
    assert body["currency"] == ["usd"]
    assert body["destination"] == [payout.destination]
    assert body[f"metadata[{gateway.META_PAYOUT}]"] == [payout.key]
    assert body[f"metadata[{gateway.META_USER}]"] == [str(payout.user_id)]


def test_a_zero_decimal_currency_is_sent_in_its_own_minor_unit(stripe_api) -> None:
    payout = a_payout(amount_minor=1500, currency="JPY")
    stripe_api.post(
        f"{API_BASE}/v1/transfers", json=recorded("transfer") | {"amount": 1500, "currency": "jpy"}
    )

    gateway.transfer_send(payout)

    body = form(stripe_api.calls[0])
    assert (body["amount"], body["currency"]) == (["1500"], ["jpy"])


def test_a_retry_after_a_stripe_500_resends_the_same_idempotency_key(stripe_api, settings) -> None:
    settings.STRIPE_MAX_NETWORK_RETRIES = 1
    payout = a_payout()
    stripe_api.post(f"{API_BASE}/v1/transfers", status=500, json=recorded("error_api"))
    stripe_api.post(f"{API_BASE}/v1/transfers", json=recorded("transfer"))

    transfer_id = gateway.transfer_send(payout)

    assert transfer_id == recorded("transfer")["id"]
    assert len(stripe_api.calls) == 2
    assert {call.request.headers["Idempotency-Key"] for call in stripe_api.calls} == {payout.key}


@pytest.mark.parametrize(
    ("status", "answer", "retryable"),
    [
        (400, "error_invalid_request", False),
        (400, "error_insufficient_funds", False),
        (402, "error_card_declined", False),
        (429, "error_rate_limit", True),
        (500, "error_api", True),
        (503, "error_api", True),
        (401, "error_authentication", True),
    ],
)
def test_each_stripe_error_becomes_a_rail_error_saying_whether_to_retry(
    stripe_api, status: int, answer: str, retryable: bool
) -> None:
    payout = a_payout()
    body = recorded(answer)
    stripe_api.post(f"{API_BASE}/v1/transfers", status=status, json=body)

    with pytest.raises(RailError) as raised:
        gateway.transfer_send(payout)

    assert raised.value.retryable is retryable
    assert body["error"]["message"] in str(raised.value)


def test_a_connection_failure_is_retryable(stripe_api) -> None:
    stripe_api.post(f"{API_BASE}/v1/transfers", body=requests.ConnectionError("connection refused"))

    with pytest.raises(RailError) as raised:
        gateway.transfer_send(a_payout())

    assert raised.value.retryable is True
    assert "transfer" in str(raised.value)


def test_a_reused_idempotency_key_with_other_parameters_is_its_own_error(stripe_api) -> None:
    stripe_api.post(f"{API_BASE}/v1/transfers", status=400, json=recorded("error_idempotency"))

    with pytest.raises(gateway.IdempotencyKeyReused) as raised:
        gateway.transfer_send(a_payout())

    assert raised.value.retryable is False


def test_a_payout_without_a_connected_account_is_refused_before_calling_stripe(stripe_api) -> None:
    with pytest.raises(RailError) as raised:
        gateway.transfer_send(a_payout(destination=""))

    assert raised.value.retryable is False
    assert len(stripe_api.calls) == 0


def test_with_stripe_off_nothing_is_called(settings) -> None:
    settings.STRIPE_SECRET_KEY = ""
    with responses.RequestsMock() as mock, pytest.raises(gateway.StripeNotConfigured):
        gateway.transfer_send(a_payout())
    assert len(mock.calls) == 0
    assert gateway.is_configured() is False


# Connect Express -----------------------------------------------------------------------------------------


def test_an_express_account_is_created_keyed_by_the_user(stripe_api) -> None:
    user = factories.creator(email="ada@example.com")
    answer = recorded("account")
    stripe_api.post(f"{API_BASE}/v1/accounts", json=answer)

    account_id = gateway.account_create(user)

    assert account_id == answer["id"]
    (call,) = stripe_api.calls
    assert call.request.headers["Idempotency-Key"] == f"tribute-account-user-{user.pk}"
    assert call.request.headers["Stripe-Version"] == gateway.API_VERSION
    body = form(call)
    assert body["type"] == ["express"]
    assert body["email"] == ["ada@example.com"]
    assert body["capabilities[transfers][requested]"] == ["true"]
    assert body[f"metadata[{gateway.META_USER}]"] == [str(user.pk)]


def test_an_account_link_is_made_for_onboarding_with_our_return_and_refresh_urls(stripe_api) -> None:
    answer = recorded("account_link")
    stripe_api.post(f"{API_BASE}/v1/account_links", json=answer)

    url = gateway.account_link(
        "acct_1SxP9zQm4Hn7Wc2e", return_url="http://testserver/back", refresh_url="http://testserver/again"
    )

    assert url == answer["url"]
    body = form(stripe_api.calls[0])
    assert body == {
        "account": ["acct_1SxP9zQm4Hn7Wc2e"],
        "type": ["account_onboarding"],
        "return_url": ["http://testserver/back"],
        "refresh_url": ["http://testserver/again"],
    }


def test_an_account_state_is_read_from_stripe(stripe_api) -> None:
    answer = recorded("account_enabled")
    stripe_api.get(f"{API_BASE}/v1/accounts/{answer['id']}", json=answer)

    state = gateway.account_state(answer["id"])

    assert state == gateway.AccountState(answer["id"], payouts_enabled=True, details_submitted=True)


# Funding -------------------------------------------------------------------------------------------------


def test_a_payment_intent_carries_our_reference_as_metadata_and_idempotency_key(stripe_api) -> None:
    vendor = factories.vendor()
    organisation = Organisation.objects.get(membership__user=vendor)
    answer = recorded("payment_intent")
    stripe_api.post(f"{API_BASE}/v1/payment_intents", json=answer)

    started = gateway.payment_intent_create(organisation, Money(5000, "USD"), reference="topup-1-abc")

    assert started == gateway.PaymentIntentStarted(answer["id"], answer["client_secret"], answer["status"])
    (call,) = stripe_api.calls
    assert call.request.headers["Idempotency-Key"] == "topup-1-abc"
    body = form(call)
    assert (body["amount"], body["currency"]) == (["5000"], ["usd"])
    assert body["automatic_payment_methods[enabled]"] == ["true"]
    assert body[f"metadata[{gateway.META_TOPUP}]"] == ["topup-1-abc"]
    assert body[f"metadata[{gateway.META_ORGANISATION}]"] == [str(organisation.pk)]


def test_a_checkout_session_sells_one_prepaid_line_and_tags_its_payment_intent(stripe_api) -> None:
    vendor = factories.vendor()
    organisation = Organisation.objects.get(membership__user=vendor)
    answer = recorded("checkout_session")
    stripe_api.post(f"{API_BASE}/v1/checkout/sessions", json=answer)

    started = gateway.checkout_session_create(
        organisation,
        Money(5000, "EUR"),
        reference="topup-1-xyz",
        success_url="http://testserver/ok",
        cancel_url="http://testserver/no",
    )

    assert started == gateway.CheckoutStarted(answer["id"], answer["url"])
    (call,) = stripe_api.calls
    assert call.request.headers["Idempotency-Key"] == "topup-1-xyz"
    body = form(call)
    assert body["mode"] == ["payment"]
    assert body["line_items[0][quantity]"] == ["1"]
    assert body["line_items[0][price_data][unit_amount]"] == ["5000"]
    assert body["line_items[0][price_data][currency]"] == ["eur"]
    assert body["client_reference_id"] == ["topup-1-xyz"]
    assert body[f"payment_intent_data[metadata][{gateway.META_ORGANISATION}]"] == [str(organisation.pk)]
    assert body[f"payment_intent_data[metadata][{gateway.META_TOPUP}]"] == ["topup-1-xyz"]
    assert (body["success_url"], body["cancel_url"]) == (["http://testserver/ok"], ["http://testserver/no"])


# Reconciliation ------------------------------------------------------------------------------------------


def test_balance_transactions_are_read_page_by_page_and_mapped_to_our_references(stripe_api) -> None:
    page1, page2 = recorded("balance_transactions_page1"), recorded("balance_transactions_page2")
    stripe_api.get(
        f"{API_BASE}/v1/balance_transactions",
        json=page2,
        match=[
            responses.matchers.query_param_matcher(
                {"starting_after": page1["data"][-1]["id"]}, strict_match=False
            )
        ],
    )
    stripe_api.get(f"{API_BASE}/v1/balance_transactions", json=page1)
    since, until = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)

    records = gateway.balance_transactions(since=since, until=until)

    first, second = stripe_api.calls
    assert query(first)["created[gte]"] == [str(int(since.timestamp()))]
    assert query(first)["created[lt]"] == [str(int(until.timestamp()))]
    assert query(first)["expand[0]"] == ["data.source"]
    assert query(first)["limit"] == [str(gateway.PAGE_LIMIT)]
    assert query(second)["starting_after"] == [page1["data"][-1]["id"]]
    assert first.request.headers["Stripe-Version"] == gateway.API_VERSION
    # What reconciliation must see: every transfer (ours by the payout key in its metadata, a stray one
    # with no reference) and every charge (by its PaymentIntent); not our own payout to the bank.
    expected = []
    for item in page1["data"] + page2["data"]:
        source = item["source"]
        if item["type"] == "transfer":
            reference = source["metadata"].get(gateway.META_PAYOUT, "")
            expected.append(("payout", reference, source["id"], -item["amount"]))
        elif item["type"] == "charge":
            expected.append(("funding", source["payment_intent"], source["id"], item["amount"]))
    assert [(r.kind, r.reference, r.external_id, r.amount_minor) for r in records] == expected
    assert {r.currency for r in records} == {"USD"}
    assert all(since <= r.at < until for r in records)
    assert any(r.reference == "" for r in records)  # the stray transfer is reported, not dropped
