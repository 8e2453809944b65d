"""Refunds, disputes and chargebacks, delivered as signed Stripe webhooks to the real endpoint: each reverses
what its payment funded, once; what was already spent becomes the vendor's debt (its accesses are refused
until a top-up covers it); what was already paid out becomes the payee's clawback, taken from their next
payouts; a holdback keeps a share of new earnings through the dispute window; operators reverse from the
admin with a reason."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.sites import site
from django.test import Client, RequestFactory

from accounts.models import Organisation
from common.money import Money
from royalties import payouts
from royalties.admin import JournalTransactionAdmin
from royalties.funding import prepaid_fund
from royalties.ledger import InsufficientFunds, ledger_check
from royalties.models import Holdback, JournalTransaction, Payout, WebhookEvent
from royalties.rails import stripe as gateway
from royalties.reports import ReportLine, receipt_record, revenue_report_record
from royalties.revenue import access_fee_record
from royalties.reversal import funding_refund, funding_reinstate
from royalties.selectors import prepaid_available
from royalties.settlement import revenue_settle
from tests import factories
from tests.royalties.builders import balance, payable, publish
from tests.royalties.stripe_world import deliver, event, recorded

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.fixture
def web() -> Client:
    return Client(enforce_csrf_checks=True)


def _pay(web: Client, amount: int, metadata: dict[str, str], intent_id: str) -> None:
    intent = recorded("payment_intent") | {
        "id": intent_id,
        "amount": amount,
        "amount_received": amount,
        "status": "succeeded",
        "metadata": metadata,
    }
    assert (
        deliver(web, event("payment_intent.succeeded", intent, event_id=f"evt_{intent_id}")).status_code
        == 200
    )


def _top_up(web: Client, organisation: Organisation, amount: int, intent_id: str = "pi_topup_1") -> None:
    _pay(web, amount, {gateway.META_ORGANISATION: str(organisation.pk)}, intent_id)


def _charge(intent_id: str, amount: int, refunded: int) -> dict:
    return {
        "id": f"ch_{intent_id}",
        "object": "charge",
        "amount": amount,
        "amount_refunded": refunded,
        "currency": "usd",
        "payment_intent": intent_id,
        "refunded": refunded == amount,
    }


def _refunded(web: Client, intent_id: str, amount: int, refunded: int, n: int) -> int:
    payload = event("charge.refunded", _charge(intent_id, amount, refunded), event_id=f"evt_refund_{n}")
    return deliver(web, payload).status_code


def _dispute(status: str, amount: int, intent_id: str = "pi_topup_1") -> dict:
    return {
        "id": "dp_1",
        "object": "dispute",
        "amount": amount,
        "charge": f"ch_{intent_id}",
        "payment_intent": intent_id,
        "currency": "usd",
        "status": status,
    }


def _vendor() -> Organisation:
    return Organisation.objects.get(membership__user=factories.vendor())


def _debt(organisation: Organisation) -> int:
    return balance(f"vendor_debt:org:{organisation.pk}:USD")


def test_a_refund_of_an_unspent_top_up_takes_it_back_once(stripe_on, web: Client) -> None:
    organisation = _vendor()
    _top_up(web, organisation, 5_000)

    first = _refunded(web, "pi_topup_1", 5_000, 5_000, n=1)
    redelivered = deliver(
        web, event("charge.refunded", _charge("pi_topup_1", 5_000, 5_000), event_id="evt_refund_1")
    )

    assert (first, redelivered.status_code, redelivered.json()["duplicate"]) == (200, 200, True)
    assert prepaid_available(organisation=organisation, currency="USD") == 0
    assert _debt(organisation) == 0
    assert balance("clearing:stripe:USD") == 0  # 5,000 in, 5,000 back out
    assert JournalTransaction.objects.filter(kind="refund").count() == 1
    assert ledger_check().clean


def test_partial_refunds_add_up_and_an_older_event_arriving_late_changes_nothing(
    stripe_on, web: Client
) -> None:
    organisation = _vendor()
    _top_up(web, organisation, 5_000)

    _refunded(web, "pi_topup_1", 5_000, 3_000, n=2)  # the newer event first
    _refunded(web, "pi_topup_1", 5_000, 1_000, n=1)  # the older one, late
    _refunded(web, "pi_topup_1", 5_000, 3_500, n=3)

    assert prepaid_available(organisation=organisation, currency="USD") == 1_500
    assert balance("clearing:stripe:USD") == -1_500
    assert WebhookEvent.objects.get(event_id="evt_refund_1").error == "nothing new refunded"


def test_a_refund_of_spent_money_becomes_the_vendors_debt_and_accesses_are_refused_until_it_is_covered(
    stripe_on, web: Client, with_key
) -> None:
    vendor = factories.vendor()
    organisation = Organisation.objects.get(membership__user=vendor)
    creator = factories.creator()
    work = factories.work(creator)
    offer = publish(creator, work, uses={"ai-train": 4_000})
    _top_up(web, organisation, 5_000)
    access_fee_record(organisation=organisation, offer=offer, amount=Money(4_000, "USD"), access_key="a1")
    revenue_settle()

    _refunded(web, "pi_topup_1", 5_000, 5_000, n=1)
    client = with_key(factories.key(vendor, "access", "read"))
    refused = client.post(
        "/api/v1/access",
        {"work": work.pk, "use": "ai-train", "territory": "US"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )

    assert (prepaid_available(organisation=organisation, currency="USD"), _debt(organisation)) == (0, -4_000)
    assert payable(creator) == 3_600  # the creator keeps what the vendor used
    assert refused.status_code == 402
    assert ledger_check().clean

    prepaid_fund(organisation=organisation, amount=Money(3_000, "USD"), external_ref="bank-1")
    with pytest.raises(InsufficientFunds):
        access_fee_record(organisation=organisation, offer=offer, amount=Money(1, "USD"), access_key="a2")
    assert (prepaid_available(organisation=organisation, currency="USD"), _debt(organisation)) == (0, -1_000)

    prepaid_fund(organisation=organisation, amount=Money(5_000, "USD"), external_ref="bank-2")
    assert (prepaid_available(organisation=organisation, currency="USD"), _debt(organisation)) == (4_000, 0)
    assert ledger_check().clean


def test_a_dispute_withdraws_once_and_a_won_dispute_gives_it_back_paying_the_debt_first(
    stripe_on, web: Client
) -> None:
    organisation = _vendor()
    creator = factories.creator()
    offer = publish(creator, factories.work(creator), uses={"ai-train": 3_000})
    _top_up(web, organisation, 5_000)
    access_fee_record(organisation=organisation, offer=offer, amount=Money(3_000, "USD"), access_key="a1")
    revenue_settle()

    deliver(web, event("charge.dispute.created", _dispute("needs_response", 5_000), event_id="evt_dp_1"))
    deliver(
        web, event("charge.dispute.funds_withdrawn", _dispute("needs_response", 5_000), event_id="evt_dp_2")
    )
    withdrawn = (prepaid_available(organisation=organisation, currency="USD"), _debt(organisation))
    deliver(web, event("charge.dispute.closed", _dispute("won", 5_000), event_id="evt_dp_3"))
    deliver(web, event("charge.dispute.funds_reinstated", _dispute("won", 5_000), event_id="evt_dp_4"))

    assert withdrawn == (0, -3_000)
    assert (prepaid_available(organisation=organisation, currency="USD"), _debt(organisation)) == (2_000, 0)
    assert balance("clearing:stripe:USD") == -5_000
    assert JournalTransaction.objects.filter(kind="refund").count() == 2
    assert ledger_check().clean


def test_a_lost_dispute_takes_the_money_once_and_an_inquiry_takes_nothing(stripe_on, web: Client) -> None:
    organisation = _vendor()
    _top_up(web, organisation, 5_000)

    deliver(web, event("charge.dispute.created", _dispute("warning_needs_response", 5_000), event_id="evt_q"))
    after_inquiry = prepaid_available(organisation=organisation, currency="USD")
    deliver(web, event("charge.dispute.closed", _dispute("lost", 5_000), event_id="evt_lost"))
    deliver(web, event("charge.dispute.closed", _dispute("lost", 5_000), event_id="evt_lost_again"))

    assert after_inquiry == 5_000
    assert prepaid_available(organisation=organisation, currency="USD") == 0
    assert JournalTransaction.objects.filter(kind="refund").count() == 1


def test_a_failed_refund_gives_the_money_back(stripe_on, web: Client) -> None:
    organisation = _vendor()
    _top_up(web, organisation, 5_000)
    _refunded(web, "pi_topup_1", 5_000, 2_000, n=1)
    refund = {
        "id": "re_1",
        "object": "refund",
        "amount": 2_000,
        "payment_intent": "pi_topup_1",
        "status": "failed",
    }

    deliver(web, event("refund.created", refund | {"status": "pending"}, event_id="evt_re_0"))
    deliver(web, event("refund.failed", refund, event_id="evt_re_1"))
    deliver(web, event("refund.updated", refund, event_id="evt_re_2"))

    assert prepaid_available(organisation=organisation, currency="USD") == 5_000
    assert balance("clearing:stripe:USD") == -5_000
    assert ledger_check().clean


def test_a_refunded_receipt_already_paid_out_becomes_a_clawback_taken_from_the_next_payout(
    stripe_on, web: Client, settings, time_machine
) -> None:
    time_machine.move_to(T0)
    creator = factories.creator()
    work = factories.work(creator)
    revenue_report_record(user=creator, distributor="shop", lines=[ReportLine("L1", work.pk, 10_000, "USD")])
    _pay(web, 10_000, {gateway.META_REPORTER: str(creator.pk), gateway.META_DISTRIBUTOR: "shop"}, "pi_shop_1")
    revenue_settle()
    [paid] = payouts.payout_run().created
    payouts.manual_mark_paid(payout=paid, reference="BANK-OUT-1")

    _refunded(web, "pi_shop_1", 10_000, 10_000, n=1)

    assert paid.amount_minor == 9_000
    assert (payable(creator), balance(f"clawback:user:{creator.pk}:USD")) == (0, -9_000)
    assert balance("platform_fee:USD") == 0
    assert ledger_check().clean

    # New earnings in the next month: the clawback comes off before anything is paid out.
    time_machine.move_to(T0 + timedelta(days=31))
    revenue_report_record(user=creator, distributor="shop", lines=[ReportLine("L2", work.pk, 20_000, "USD")])
    _pay(web, 20_000, {gateway.META_REPORTER: str(creator.pk), gateway.META_DISTRIBUTOR: "shop"}, "pi_shop_2")
    revenue_settle()
    [second] = payouts.payout_run().created

    assert second.amount_minor == 18_000 - 9_000
    assert balance(f"clawback:user:{creator.pk}:USD") == 0
    assert ledger_check().clean


def test_a_holdback_keeps_a_share_through_the_dispute_window_and_a_refund_in_it_is_taken_from_there(
    stripe_on, web: Client, settings, time_machine
) -> None:
    settings.HOLDBACK_BPS = 2_000
    settings.HOLDBACK_DAYS = 30
    settings.PAYOUT_PERIOD = "day"
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    time_machine.move_to(T0)
    creator = factories.creator()
    work = factories.work(creator)
    revenue_report_record(user=creator, distributor="shop", lines=[ReportLine("L1", work.pk, 10_000, "USD")])
    _pay(web, 10_000, {gateway.META_REPORTER: str(creator.pk), gateway.META_DISTRIBUTOR: "shop"}, "pi_shop_1")
    revenue_settle()

    [first] = payouts.payout_run().created
    payouts.manual_mark_paid(payout=first, reference="BANK-OUT-1")
    assert (first.amount_minor, Holdback.objects.get().remaining_minor) == (7_200, 1_800)

    _refunded(web, "pi_shop_1", 10_000, 1_000, n=1)  # 900 of it was the creator's: from the holdback
    assert (balance(f"clawback:user:{creator.pk}:USD"), Holdback.objects.get().remaining_minor) == (0, 900)
    assert payouts.payout_run().created == []  # nothing available before the window ends

    time_machine.move_to(T0 + timedelta(days=31))
    [released] = payouts.payout_run().created

    assert released.amount_minor == 900
    assert Holdback.objects.get().remaining_minor == 0
    assert ledger_check().clean


def test_an_operator_reverses_a_transaction_in_the_admin_only_with_a_reason(rf: RequestFactory) -> None:
    organisation = _vendor()
    funding = prepaid_fund(organisation=organisation, amount=Money(700, "USD"), external_ref="wrong-org")
    operator = factories.creator(username="op", is_staff=True, is_superuser=True)
    admin = JournalTransactionAdmin(JournalTransaction, site)
    messages: list[str] = []
    admin.message_user = lambda request, message, *args, **kwargs: messages.append(str(message))  # type: ignore[method-assign]

    without = rf.post("/", {"reason": " "})
    without.user = operator
    admin.reverse(without, JournalTransaction.objects.filter(pk=funding.pk))
    assert JournalTransaction.objects.filter(kind="reversal").count() == 0

    with_reason = rf.post("/", {"reason": "credited to the wrong organisation"})
    with_reason.user = operator
    admin.reverse(with_reason, JournalTransaction.objects.filter(pk=funding.pk))
    admin.reverse(with_reason, JournalTransaction.objects.filter(pk=funding.pk))

    [reversal] = JournalTransaction.objects.filter(kind="reversal")
    assert reversal.reverses_id == funding.pk
    assert "credited to the wrong organisation (by op in the admin)" in reversal.memo
    assert prepaid_available(organisation=organisation, currency="USD") == 0
    assert ledger_check().clean


def test_a_connected_accounts_failed_bank_payout_is_noted_and_moves_no_money(stripe_on, web: Client) -> None:
    user = factories.creator()
    Payout.objects.create(
        key="payout:2026-11:1:USD:x",
        user=user,
        currency="USD",
        period="2026-11",
        amount_minor=500,
        rail="stripe",
        destination="acct_1",
        status="confirmed",
    )
    payout = {"id": "po_1", "object": "payout", "destination_account": "acct_1", "failure_message": "closed"}

    deliver(web, event("payout.failed", payout, event_id="evt_po_1"))

    assert "closed" in Payout.objects.get().last_error
    assert JournalTransaction.objects.count() == 0


def test_a_payment_for_one_access_pays_that_access_not_the_vendors_debt(stripe_on, web: Client) -> None:
    organisation = _vendor()
    creator = factories.creator()
    offer = publish(creator, factories.work(creator), uses={"ai-train": 500})
    _top_up(web, organisation, 500)
    access_fee_record(organisation=organisation, offer=offer, amount=Money(500, "USD"), access_key="a1")
    _refunded(web, "pi_topup_1", 500, 500, n=1)

    prepaid_fund(organisation=organisation, amount=Money(500, "USD"), external_ref="0xabc", rail="x402")

    assert (prepaid_available(organisation=organisation, currency="USD"), _debt(organisation)) == (500, -500)
    access_fee_record(organisation=organisation, offer=offer, amount=Money(500, "USD"), access_key="a2")
    assert ledger_check().clean


def test_a_chargeback_of_a_receipt_whose_money_a_later_match_used_takes_it_from_what_the_pool_paid() -> None:
    """A distributor's money is one pool: receipt 1 is charged back and won back (its money returns to the
    pool, unmatched), a report is then matched when receipt 2 arrives, using that money. Charging back
    receipt 2 takes the pool's unused unit; charging back receipt 1 again finds no money of its own
    unused and no receivable matched in its name: it takes from the payees the pool's money paid."""
    creator = factories.creator()
    work = factories.work(creator)
    first = receipt_record(
        reporter=creator, distributor="shop", amount=Money(1_000, "USD"), rail="stripe", reference="pi_1"
    ).receipt
    funding_refund(funding=first, amount_minor=1_000, cause="dispute:1", memo="chargeback")
    funding_reinstate(funding=first, amount_minor=1_000, cause="dispute:1", memo="chargeback won")
    revenue_report_record(user=creator, distributor="shop", lines=[ReportLine("L1", work.pk, 1_000, "USD")])
    second = receipt_record(
        reporter=creator, distributor="shop", amount=Money(1_000, "USD"), rail="stripe", reference="pi_2"
    )
    assert [r.receipt_id for r in second.matched] == [second.receipt.pk]
    revenue_settle()
    funding_refund(funding=second.receipt, amount_minor=1_000, cause="dispute:2", memo="chargeback")

    again = funding_refund(funding=first, amount_minor=1_000, cause="dispute:3", memo="chargeback")

    assert again is not None
    assert payable(creator) == 0 and balance("platform_fee:USD") == 0  # the 900 and the 100 fee taken back
    assert balance("clearing:stripe:USD") == 0  # both payments went back; nothing is left in the ledger
    assert ledger_check().clean
