"""Stripe webhooks, built and signed here with Stripe's scheme and posted to the real endpoint: a bad or
stale signature leaves no row; every event is stored once and processed once; shuffled deliveries end in
the state of in-order ones; a top-up is credited once; transfers confirm or return their payout."""

from __future__ import annotations

import itertools
import time
from unittest import mock

import pytest
from django.test import Client

from accounts.models import Organisation, PayoutProfile
from royalties import payouts
from royalties.ledger import ledger_check
from royalties.models import JournalTransaction, Payout, PayoutStatus, WebhookEvent
from royalties.rails import stripe as gateway
from royalties.selectors import prepaid_available
from tests import factories
from tests.royalties.payout_world import balance, credit, in_transit, payable, stripe_profile
from tests.royalties.stripe_world import (
    API_BASE,
    deliver,
    event,
    recorded,
    signature_header,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def web() -> Client:
    return Client(enforce_csrf_checks=True)


def account_event(account_id: str, *, n: int, created: int, enabled: bool, submitted: bool) -> bytes:
    obj = recorded("account") | {"id": account_id, "payouts_enabled": enabled, "details_submitted": submitted}
    return event("account.updated", obj, event_id=f"evt_acct_{account_id}_{n}", created=created)


def profile_with_account(account_id: str) -> PayoutProfile:
    user = factories.creator()
    return PayoutProfile.objects.create(user=user, stripe_account_id=account_id)


# Signatures ----------------------------------------------------------------------------------------------


def test_a_signed_event_is_stored_and_processed(stripe_on, web: Client) -> None:
    profile = profile_with_account("acct_good")
    payload = account_event("acct_good", n=1, created=int(time.time()), enabled=True, submitted=True)

    response = deliver(web, payload)

    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False}
    stored = WebhookEvent.objects.get()
    assert (stored.provider, stored.event_id, stored.event_type) == (
        "stripe",
        "evt_acct_acct_good_1",
        "account.updated",
    )
    assert stored.processed_at is not None and stored.error == ""
    profile.refresh_from_db()
    assert (profile.stripe_payouts_enabled, profile.stripe_details_submitted) == (True, True)


def test_a_bad_signature_is_refused_and_leaves_no_row(stripe_on, web: Client) -> None:
    profile = profile_with_account("acct_bad")
    payload = account_event("acct_bad", n=1, created=int(time.time()), enabled=True, submitted=True)

    response = deliver(web, payload, header=signature_header(payload, secret="whsec_someone_else"))

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_signature"
    assert WebhookEvent.objects.count() == 0
    profile.refresh_from_db()
    assert profile.stripe_payouts_enabled is False


def test_an_event_from_the_connect_endpoint_is_verified_with_its_own_secret(
    stripe_on, settings, web: Client
) -> None:
    settings.STRIPE_CONNECT_WEBHOOK_SECRET = "whsec_connect_endpoint_000000"
    profile = profile_with_account("acct_connect")
    payload = account_event("acct_connect", n=1, created=int(time.time()), enabled=True, submitted=True)

    connect = deliver(web, payload, header=signature_header(payload, secret="whsec_connect_endpoint_000000"))
    stranger = deliver(web, payload, header=signature_header(payload, secret="whsec_neither_of_ours"))

    assert (connect.status_code, stranger.status_code) == (200, 400)
    profile.refresh_from_db()
    assert profile.stripe_payouts_enabled is True
    assert WebhookEvent.objects.count() == 1


def test_a_body_changed_after_signing_is_refused(stripe_on, web: Client) -> None:
    payload = account_event("acct_x", n=1, created=int(time.time()), enabled=False, submitted=False)
    header = signature_header(payload)
    tampered = payload.replace(b'"payouts_enabled":false', b'"payouts_enabled":true')
    assert tampered != payload

    response = deliver(web, tampered, header=header)

    assert response.status_code == 400
    assert WebhookEvent.objects.count() == 0


def test_a_signature_older_than_five_minutes_is_refused(stripe_on, web: Client) -> None:
    payload = account_event("acct_old", n=1, created=int(time.time()), enabled=True, submitted=True)

    stale = deliver(web, payload, header=signature_header(payload, timestamp=int(time.time()) - 301))
    fresh_enough = deliver(web, payload, header=signature_header(payload, timestamp=int(time.time()) - 290))

    assert stale.status_code == 400
    assert stale.json()["code"] == "invalid_signature"
    assert "tolerance" in stale.json()["detail"]
    assert fresh_enough.status_code == 200
    assert WebhookEvent.objects.count() == 1


def test_a_missing_signature_or_a_body_that_is_not_an_event_is_refused(stripe_on, web: Client) -> None:
    payload = account_event("acct_none", n=1, created=int(time.time()), enabled=True, submitted=True)
    not_an_event = b'{"hello": "world"}'

    unsigned = web.post("/api/v1/webhooks/stripe", data=payload, content_type="application/json")
    malformed = deliver(web, not_an_event)

    assert (unsigned.status_code, unsigned.json()["code"]) == (400, "invalid_signature")
    assert (malformed.status_code, malformed.json()["code"]) == (400, "malformed_event")
    assert WebhookEvent.objects.count() == 0


def test_without_a_webhook_secret_the_endpoint_says_stripe_is_off(settings, web: Client) -> None:
    settings.STRIPE_WEBHOOK_SECRET = ""
    payload = account_event("acct_off", n=1, created=int(time.time()), enabled=True, submitted=True)

    response = deliver(web, payload, header=signature_header(payload, secret=""))

    assert (response.status_code, response.json()["code"]) == (404, "stripe_not_configured")
    assert WebhookEvent.objects.count() == 0


# Once, whatever the order ------------------------------------------------------------------------------


def test_a_redelivered_event_is_a_no_op(stripe_on, web: Client) -> None:
    profile = profile_with_account("acct_dup")
    now = int(time.time())
    payload = account_event("acct_dup", n=1, created=now - 10, enabled=True, submitted=True)
    assert deliver(web, payload).json()["duplicate"] is False
    # An operator's manual change after the event must survive its redelivery.
    PayoutProfile.objects.filter(pk=profile.pk).update(stripe_payouts_enabled=False)

    again = deliver(web, payload)

    assert again.status_code == 200
    assert again.json() == {"received": True, "duplicate": True}
    assert WebhookEvent.objects.count() == 1
    profile.refresh_from_db()
    assert profile.stripe_payouts_enabled is False


def test_three_account_updates_in_any_order_end_as_in_order_and_each_is_processed_once(
    stripe_on, web: Client
) -> None:
    now = int(time.time())
    states = [  # as Stripe sent them: started, details submitted, payouts enabled
        (now - 30, False, False),
        (now - 20, False, True),
        (now - 10, True, True),
    ]
    finals = set()
    for order in itertools.permutations(range(3)):
        account_id = "acct_" + "".join(map(str, order))
        profile = profile_with_account(account_id)
        payloads = [
            account_event(account_id, n=n, created=created, enabled=enabled, submitted=submitted)
            for n, (created, enabled, submitted) in enumerate(states)
        ]
        for index in order:
            assert deliver(web, payloads[index]).status_code == 200
        for index in order:  # and every one delivered again
            assert deliver(web, payloads[index]).json()["duplicate"] is True
        profile.refresh_from_db()
        finals.add(
            (profile.stripe_payouts_enabled, profile.stripe_details_submitted, profile.stripe_state_at)
        )
        assert WebhookEvent.objects.filter(event_id__startswith=f"evt_acct_{account_id}_").count() == 3
    latest = states[-1]
    assert len(finals) == 1
    enabled, submitted, state_at = finals.pop()
    assert (enabled, submitted, int(state_at.timestamp())) == (latest[1], latest[2], latest[0])
    assert WebhookEvent.objects.filter(processed_at__isnull=True).count() == 0


def test_an_event_for_an_account_nobody_holds_is_stored_and_changes_nothing(stripe_on, web: Client) -> None:
    payload = account_event("acct_stranger", n=1, created=int(time.time()), enabled=True, submitted=True)

    response = deliver(web, payload)

    assert response.status_code == 200
    assert WebhookEvent.objects.get().error.startswith("not applied")
    assert PayoutProfile.objects.filter(stripe_payouts_enabled=True).count() == 0


def test_an_event_type_we_do_not_handle_is_stored_as_processed(stripe_on, web: Client) -> None:
    payload = event("customer.created", {"id": "cus_1", "object": "customer"}, event_id="evt_other")

    response = deliver(web, payload)

    assert response.status_code == 200
    stored = WebhookEvent.objects.get()
    assert (stored.event_type, stored.error) == ("customer.created", "")
    assert stored.processed_at is not None


# Top-ups -------------------------------------------------------------------------------------------------


def topup_objects(organisation: Organisation, amount_minor: int) -> tuple[dict, dict]:
    intent = recorded("payment_intent") | {
        "amount": amount_minor,
        "amount_received": amount_minor,
        "status": "succeeded",
        "metadata": {gateway.META_ORGANISATION: str(organisation.pk), gateway.META_TOPUP: "topup-x"},
    }
    session = recorded("checkout_session") | {
        "amount_total": amount_minor,
        "payment_status": "paid",
        "status": "complete",
        "payment_intent": intent["id"],
        "metadata": intent["metadata"],
    }
    return intent, session


def test_a_checkout_payment_credits_the_prepaid_balance_once_whatever_arrives(stripe_on, web: Client) -> None:
    vendor = factories.vendor()
    organisation = Organisation.objects.get(membership__user=vendor)
    intent, session = topup_objects(organisation, 5000)
    deliveries = [
        event("checkout.session.completed", session, event_id="evt_cs_1"),
        event("payment_intent.succeeded", intent, event_id="evt_pi_1"),
        event("payment_intent.succeeded", intent, event_id="evt_pi_1"),  # redelivered
    ]

    statuses = [deliver(web, payload).status_code for payload in deliveries]

    assert statuses == [200, 200, 200]
    assert prepaid_available(organisation=organisation, currency="USD") == 5000
    funding = JournalTransaction.objects.get(kind="funding")
    assert funding.key == f"funding:stripe:{intent['id']}"
    assert balance("clearing:stripe:USD") == -5000
    assert WebhookEvent.objects.count() == 2
    assert ledger_check().clean


def test_a_payment_intent_that_is_not_a_tribute_top_up_credits_nothing(stripe_on, web: Client) -> None:
    intent = recorded("payment_intent") | {"status": "succeeded", "amount_received": 5000, "metadata": {}}

    response = deliver(web, event("payment_intent.succeeded", intent, event_id="evt_pi_foreign"))

    assert response.status_code == 200
    assert WebhookEvent.objects.get().error == "not a Tribute top-up"
    assert JournalTransaction.objects.filter(kind="funding").count() == 0


def test_an_unpaid_checkout_session_credits_nothing_yet(stripe_on, web: Client) -> None:
    vendor = factories.vendor()
    organisation = Organisation.objects.get(membership__user=vendor)
    _, session = topup_objects(organisation, 5000)
    session["payment_status"] = "unpaid"

    deliver(web, event("checkout.session.completed", session, event_id="evt_cs_unpaid"))

    assert prepaid_available(organisation=organisation, currency="USD") == 0
    assert WebhookEvent.objects.get().error == "not paid yet"


def test_a_top_up_for_an_unknown_organisation_is_kept_for_the_operator(stripe_on, web: Client) -> None:
    intent = recorded("payment_intent") | {
        "status": "succeeded",
        "amount_received": 5000,
        "metadata": {gateway.META_ORGANISATION: "987654"},
    }

    response = deliver(web, event("payment_intent.succeeded", intent, event_id="evt_pi_unknown"))

    assert response.status_code == 200  # Stripe need not retry: a retry cannot succeed
    stored = WebhookEvent.objects.get()
    assert stored.processed_at is not None
    assert "unknown organisation" in stored.error
    assert JournalTransaction.objects.filter(kind="funding").count() == 0


def test_an_unexpected_failure_answers_500_and_the_redelivery_processes_it(stripe_on, web: Client) -> None:
    vendor = factories.vendor()
    organisation = Organisation.objects.get(membership__user=vendor)
    intent, _ = topup_objects(organisation, 2500)
    payload = event("payment_intent.succeeded", intent, event_id="evt_pi_flaky")

    with mock.patch("royalties.webhooks.prepaid_fund", side_effect=RuntimeError("database went away")):
        first = deliver(web, payload)
    stored = WebhookEvent.objects.get()
    assert first.status_code == 500
    assert (stored.processed_at, "database went away" in stored.error) == (None, True)
    assert prepaid_available(organisation=organisation, currency="USD") == 0

    second = deliver(web, payload)

    assert (second.status_code, second.json()["duplicate"]) == (200, True)
    stored.refresh_from_db()
    assert stored.processed_at is not None and stored.error == ""
    assert prepaid_available(organisation=organisation, currency="USD") == 2500


# Transfers -----------------------------------------------------------------------------------------------


def transfer_object(payout: Payout, *, reversed_minor: int = 0) -> dict:
    return recorded("transfer") | {
        "id": payout.external_id or "tr_webhook_1",
        "amount": payout.amount_minor,
        "currency": payout.currency.lower(),
        "destination": payout.destination,
        "metadata": {gateway.META_PAYOUT: payout.key},
        "amount_reversed": reversed_minor,
        "reversed": reversed_minor >= payout.amount_minor,
    }


def test_transfer_events_call_the_payout_state_machine(stripe_on, web: Client) -> None:
    payee = factories.creator()
    payout = Payout.objects.create(
        key="payout:2026-11:mock:USD",
        user=payee,
        currency="USD",
        period="2026-11",
        amount_minor=700,
        rail="stripe",
        destination="acct_mock",
        status=PayoutStatus.SUBMITTED,
        external_id="tr_mock",
    )
    with (
        mock.patch("royalties.payouts.payout_confirm") as confirm,
        mock.patch("royalties.payouts.payout_fail") as fail,
    ):
        deliver(web, event("transfer.created", transfer_object(payout), event_id="evt_tr_mock_1"))
        deliver(
            web,
            event("transfer.reversed", transfer_object(payout, reversed_minor=700), event_id="evt_tr_mock_2"),
        )

    confirm.assert_called_once_with(key=payout.key, external_id="tr_mock")
    fail.assert_called_once_with(key=payout.key, reason="Stripe transfer tr_mock was reversed", returned=True)


def submitted_stripe_payout(amount_minor: int) -> Payout:
    """A payee with money, a Stripe account with payouts enabled, and their payout sent (as the run does)."""
    payee = factories.creator()
    credit(payee, amount_minor)
    stripe_profile(payee)
    payout = payouts.payout_create(user=payee, currency="USD", period="2026-11")
    assert payout is not None and payout.rail == "stripe"
    return payouts.payout_submitted(key=payout.key, external_id=f"tr_e2e_{payee.pk}")


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_created_updated_reversed_in_any_order_return_the_payout_once(
    stripe_on, web: Client, settings, order: tuple[int, ...]
) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    payout = submitted_stripe_payout(4200)
    payee = payout.user
    deliveries = [
        event("transfer.created", transfer_object(payout), event_id="evt_tr_1", created=1795000000),
        event(
            "transfer.updated",
            transfer_object(payout) | {"description": "x"},
            event_id="evt_tr_2",
            created=1795000100,
        ),
        event(
            "transfer.reversed",
            transfer_object(payout, reversed_minor=4200),
            event_id="evt_tr_3",
            created=1795000200,
        ),
    ]

    for index in order:
        assert deliver(web, deliveries[index]).status_code == 200
    for index in order:
        assert deliver(web, deliveries[index]).json()["duplicate"] is True

    payout.refresh_from_db()
    assert payout.status == PayoutStatus.RETURNED
    assert payable(payee) == 4200  # the money is back, once
    assert in_transit("stripe") == 0
    assert WebhookEvent.objects.filter(processed_at__isnull=True).count() == 0
    assert ledger_check().clean


def test_a_transfer_confirms_its_payout_end_to_end(stripe_on, web: Client, settings) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    payout = submitted_stripe_payout(3100)

    response = deliver(web, event("transfer.created", transfer_object(payout), event_id="evt_tr_ok"))

    assert response.status_code == 200
    payout.refresh_from_db()
    assert (payout.status, payout.external_id) == (PayoutStatus.CONFIRMED, f"tr_e2e_{payout.user_id}")
    assert (in_transit("stripe"), balance("clearing:stripe:USD")) == (0, 3100)
    assert ledger_check().clean


def test_a_transfer_whose_amount_differs_from_its_payout_changes_nothing(
    stripe_on, web: Client, settings
) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    payout = submitted_stripe_payout(3100)

    deliver(
        web, event("transfer.created", transfer_object(payout) | {"amount": 3000}, event_id="evt_tr_wrong")
    )

    payout.refresh_from_db()
    assert payout.status == PayoutStatus.SUBMITTED
    assert in_transit("stripe") == 3100
    assert "is 3000 USD" in WebhookEvent.objects.get().error


def test_a_partial_reversal_is_left_to_the_operator(stripe_on, web: Client, settings) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    payout = submitted_stripe_payout(3100)

    deliver(
        web, event("transfer.reversed", transfer_object(payout, reversed_minor=1000), event_id="evt_tr_part")
    )

    payout.refresh_from_db()
    assert payout.status == PayoutStatus.SUBMITTED
    assert "partly reversed" in WebhookEvent.objects.get().error


def test_the_payout_run_sends_the_transfer_through_the_real_sdk_and_the_webhook_confirms_it(
    stripe_api, web: Client, settings
) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    payee = factories.creator()
    credit(payee, 12345)
    stripe_profile(payee)
    answer = recorded("transfer")
    stripe_api.post(f"{API_BASE}/v1/transfers", json=answer)

    result = payouts.payout_run(period="2026-11")

    (payout,) = result.created
    payout.refresh_from_db()
    assert (payout.status, payout.external_id) == (PayoutStatus.SUBMITTED, answer["id"])
    (call,) = stripe_api.calls
    assert call.request.headers["Idempotency-Key"] == payout.key
    payouts.payout_run(period="2026-11")  # a second run sends nothing
    assert len(stripe_api.calls) == 1

    deliver(web, event("transfer.created", transfer_object(payout), event_id="evt_tr_run"))

    payout.refresh_from_db()
    assert payout.status == PayoutStatus.CONFIRMED
    assert balance("clearing:stripe:USD") == 12345 and payable(payee) == 0
