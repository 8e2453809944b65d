"""The payouts API (your own, staff: all), the deposit address API, and the payee and operator pages."""

from __future__ import annotations

import pytest
from django.test import Client
from eth_account import Account
from eth_account.messages import encode_defunct

from accounts.models import User
from royalties.models import DepositAddress, Payout, ReconciliationDifference
from royalties.payouts import payout_run
from royalties.reconcile import reconcile
from tests import factories
from tests.royalties.builders import organisation_of
from tests.royalties.payout_world import credit, payable

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_payouts(settings) -> tuple[User, User]:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    settings.STRIPE_SECRET_KEY = ""
    alice, bob = factories.creator(username="alice"), factories.creator(username="bob")
    credit(alice, 1234)
    credit(bob, 5678)
    payout_run()
    return alice, bob


def _staff() -> User:
    operator = factories.creator(username="op")
    User.objects.filter(pk=operator.pk).update(is_staff=True)
    operator.refresh_from_db()
    return operator


def test_a_payee_lists_only_their_own_payouts(two_payouts, as_user) -> None:
    alice, _ = two_payouts

    body = as_user(alice).get("/api/v1/payouts").json()

    assert body["count"] == 1
    [row] = body["results"]
    assert (row["user"], row["amount_minor"], row["rail"], row["status"]) == (
        alice.pk,
        1234,
        "manual",
        "created",
    )
    assert row["key"] == Payout.objects.get(user=alice).key


def test_staff_list_every_payout_and_filter_by_payee(two_payouts, as_user) -> None:
    _, bob = two_payouts
    client = as_user(_staff())

    everyone = client.get("/api/v1/payouts").json()
    only_bob = client.get(f"/api/v1/payouts?user={bob.pk}").json()

    assert everyone["count"] == 2
    assert [row["amount_minor"] for row in only_bob["results"]] == [5678]


def test_an_api_key_lists_payouts_with_the_read_scope(two_payouts, with_key) -> None:
    alice, _ = two_payouts

    response = with_key(factories.key(alice, "read")).get("/api/v1/payouts")

    assert response.status_code == 200 and response.json()["count"] == 1


def test_a_vendor_registers_a_deposit_wallet_by_signature(as_user) -> None:
    vendor = factories.vendor()
    client = as_user(vendor)
    wallet = Account.create()
    message = client.get(f"/api/v1/deposit-addresses/message?address={wallet.address}").json()
    signature = wallet.sign_message(encode_defunct(text=message["message"])).signature.hex()

    bad = client.post(
        "/api/v1/deposit-addresses", {"address": wallet.address, "signature": "0x" + "11" * 65}, format="json"
    )
    made = client.post(
        "/api/v1/deposit-addresses", {"address": wallet.address, "signature": signature}, format="json"
    )

    assert bad.status_code == 400 and bad.json()["code"] == "invalid_signature"
    assert made.status_code == 201, made.content
    assert DepositAddress.objects.get().organisation == organisation_of(vendor)
    assert message["deposit_to"].startswith("0x")
    assert client.get("/api/v1/deposit-addresses").json()["count"] == 1
    assert as_user(factories.vendor(username="other")).get("/api/v1/deposit-addresses").json()["count"] == 0


def test_the_payee_page_shows_payouts_and_their_status(two_payouts) -> None:
    alice, _ = two_payouts
    client = Client()
    client.force_login(alice)

    body = client.get("/dashboard/payouts/").content.decode()

    assert 'data-payout="' + Payout.objects.get(user=alice).key + '"' in body
    assert "12.34 USD" in body and "Created" in body


def test_operator_pages_are_staff_only(two_payouts) -> None:
    alice, _ = two_payouts
    client = Client()
    client.force_login(alice)
    for url in (
        "/dashboard/staff/payouts/",
        "/dashboard/staff/payouts/csv/",
        "/dashboard/staff/reconciliation/",
    ):
        assert client.get(url).status_code == 404, url


def test_the_operator_exports_and_marks_manual_payouts(two_payouts) -> None:
    alice, bob = two_payouts
    client = Client()
    client.force_login(_staff())

    listing = client.get("/dashboard/staff/payouts/").content.decode()
    export = client.get("/dashboard/staff/payouts/csv/")
    alice_payout, bob_payout = Payout.objects.get(user=alice), Payout.objects.get(user=bob)
    client.post(
        "/dashboard/staff/payouts/", {"payout": alice_payout.pk, "action": "paid", "reference": "SEPA-77"}
    )
    client.post(
        "/dashboard/staff/payouts/", {"payout": bob_payout.pk, "action": "failed", "reason": "IBAN closed"}
    )
    refused = client.post("/dashboard/staff/payouts/", {"payout": alice_payout.pk, "action": "failed"})

    assert f'data-waiting="{alice_payout.key}"' in listing
    assert export["Content-Type"] == "text/csv"
    assert alice_payout.key in export.content.decode()
    alice_payout.refresh_from_db()
    assert (alice_payout.status, alice_payout.external_id) == ("confirmed", "SEPA-77")
    assert Payout.objects.get(user=bob).status == "failed"
    assert payable(bob) == 5678
    assert refused.status_code == 404  # no longer waiting


def test_the_operator_sees_and_resolves_reconciliation_differences(settings, monkeypatch) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_pages"
    settings.CHAIN_PAYOUTS_ENABLED = False
    monkeypatch.setattr("royalties.rails.stripe.balance_transactions", lambda *, since, until: [])
    run = reconcile(period="2026-11", rail="stripe")
    difference = ReconciliationDifference.objects.create(
        run=run,
        rail="stripe",
        kind="missing_in_ledger",
        record_kind="payout",
        reference="tr_mystery",
        currency="USD",
    )
    client = Client()
    client.force_login(_staff())

    body = client.get("/dashboard/staff/reconciliation/").content.decode()
    client.post("/dashboard/staff/reconciliation/", {"difference": difference.pk, "note": "test transfer"})
    ran = client.post("/dashboard/staff/reconciliation/", {"action": "run", "period": "2026-10"}, follow=True)

    assert "tr_mystery" in body and 'data-difference="missing_in_ledger"' in body
    difference.refresh_from_db()
    assert difference.resolution == "test transfer" and difference.resolved_at is not None
    assert "Reconciled 2 rail(s) for 2026-10" in ran.content.decode()  # Stripe and the reported rail


def test_the_admin_actions_mark_manual_payouts(two_payouts) -> None:
    alice, bob = two_payouts
    superuser = User.objects.create_superuser(
        username="root", email="root@example.com", password="pw-123456789"
    )
    client = Client()
    client.force_login(superuser)
    ids = list(Payout.objects.filter(user__in=[alice, bob]).values_list("pk", flat=True))

    client.post("/admin/royalties/payout/", {"action": "mark_paid", "_selected_action": ids[:1]})
    client.post("/admin/royalties/payout/", {"action": "mark_failed", "_selected_action": ids[1:]})

    statuses = dict(Payout.objects.values_list("pk", "status"))
    assert statuses == {ids[0]: "confirmed", ids[1]: "failed"}
    assert Payout.objects.get(pk=ids[0]).external_id.startswith("admin:root:")
