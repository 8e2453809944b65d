"""Every coin the ledger holds or pays out is a coin that arrived: a hypothesis state machine drives the
money surface (top-ups, accesses, licence fees, reported revenue and its receipts, claim charges held in
escrow then paid or returned, refunds, chargebacks won and lost, settlement with holdbacks, payouts
confirmed, failed and returned by the rail, operators' reversals) and, after every step, compares the
ledger with the test's own record of the cash that moved.

The test plays the rails: it alone knows what money came in (each payment), went back (each refund or
chargeback, never more than the payment) and went out (each confirmed payout). The ledger is never asked
what cash it thinks it has. So a credit made from nothing (reported revenue paid without money, an
overflowing sum, a refund that forgot what it funded) shows as a difference at the step that made it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from common.money import Money
from common.problems import ApiError
from royalties import payouts
from royalties.funding import funding_find, prepaid_fund
from royalties.ledger import InsufficientFunds, ledger_check
from royalties.licences import licence_accept
from royalties.models import (
    AccountKind,
    JournalTransaction,
    LedgerAccount,
    Payout,
    PayoutStatus,
    TransactionKind,
)
from royalties.reports import ReportLine, receipt_record, revenue_report_record
from royalties.revenue import access_fee_record, claim_charge_hold, claim_charge_release, claim_charge_return
from royalties.reversal import funding_refund, funding_reinstate, transaction_reverse
from royalties.settlement import revenue_settle
from tests import factories
from tests.royalties.builders import organisation_of, publish, three_level_chain

pytestmark = pytest.mark.django_db

STEPS_WANTED = 2_000
OWED = [AccountKind.VENDOR_DEBT, AccountKind.CLAWBACK]


@dataclass
class Payment:
    reference: str
    amount: int
    returned: int = 0  # refunded or charged back, net of what came back


class MoneyMachine(RuleBasedStateMachine):
    world: dict = {}
    steps_run = 0

    @initialize()
    def open_savepoint(self) -> None:
        # Each run starts from the same catalog; its money is rolled back at teardown.
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.counter = 0
        self.received = 0
        self.returned = 0
        self.paid_out = 0
        self.payments: list[Payment] = []
        self.disputes: list[tuple[Payment, str, int]] = []
        self.escrow: list[tuple[int, int, Money]] = []  # (claim id, vendor, charge) held, not yet final
        self.period = 0
        self.initialised = True

    def teardown(self) -> None:
        if hasattr(self, "atomic"):
            transaction.set_rollback(True)
            self.atomic.__exit__(None, None, None)

    def _key(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # Money in -----------------------------------------------------------------------------------------

    @rule(vendor=st.integers(0, 1), amount=st.integers(1, 6_000))
    def top_up(self, vendor: int, amount: int) -> None:
        reference = self._key("pi_top_")
        prepaid_fund(
            organisation=self.world["orgs"][vendor],
            amount=Money(amount, "USD"),
            external_ref=reference,
            rail="stripe",
        )
        self.received += amount
        self.payments.append(Payment(reference, amount))

    @rule(amount=st.integers(1, 12_000))
    def distributor_pays(self, amount: int) -> None:
        reference = self._key("pi_shop_")
        receipt_record(
            reporter=self.world["chain"].dan,
            distributor="shop",
            amount=Money(amount, "USD"),
            rail="stripe",
            reference=reference,
        )
        self.received += amount
        self.payments.append(Payment(reference, amount))

    # Revenue ------------------------------------------------------------------------------------------

    @rule(vendor=st.integers(0, 1), offer=st.integers(0, 3), amount=st.integers(1, 3_000))
    def access(self, vendor: int, offer: int, amount: int) -> None:
        with contextlib.suppress(InsufficientFunds):  # refused accesses change nothing: the invariants say so
            access_fee_record(
                organisation=self.world["orgs"][vendor],
                offer=self.world["offers"][offer],
                amount=Money(amount, "USD"),
                access_key=self._key("a"),
            )

    @rule(vendor=st.integers(0, 1), amount=st.integers(1, 3_000))
    def claim_charged(self, vendor: int, amount: int) -> None:
        claim_id = self.counter = self.counter + 1
        with contextlib.suppress(InsufficientFunds):  # a short balance leaves the charge owed: nothing moves
            claim_charge_hold(
                claim_id=claim_id, organisation_id=self.world["orgs"][vendor].pk, amount=Money(amount, "USD")
            )
            self.escrow.append((claim_id, vendor, Money(amount, "USD")))

    @precondition(lambda self: bool(getattr(self, "escrow", None)))
    @rule(pick=st.integers(0, 10**6), upheld=st.booleans())
    def claim_final(self, pick: int, upheld: bool) -> None:
        claim_id, vendor, amount = self.escrow.pop(pick % len(self.escrow))
        if upheld:
            claim_charge_release(claim_id=claim_id, work=self.world["chain"].a, amount=amount)
        else:
            claim_charge_return(
                claim_id=claim_id, organisation_id=self.world["orgs"][vendor].pk, amount=amount
            )

    @rule(offer=st.integers(0, 3))
    def licence_fee(self, offer: int) -> None:
        with contextlib.suppress(InsufficientFunds, ApiError):
            licence_accept(offer=self.world["offers"][offer], user=self.world["vendor_users"][0])

    @rule(
        lines=st.lists(
            st.tuples(st.integers(0, 30), st.integers(1, 10_000)),
            min_size=1,
            max_size=3,
            unique_by=lambda t: t[0],
        )
    )
    def report(self, lines) -> None:
        chain = self.world["chain"]
        with contextlib.suppress(ApiError):  # a line id seen before with another amount: refused whole
            revenue_report_record(
                user=chain.dan,
                distributor="shop",
                lines=[ReportLine(f"L{line}", chain.d.pk, amount, "USD") for line, amount in lines],
            )

    @rule(chunk=st.integers(1, 7))
    def settle(self, chunk: int) -> None:
        revenue_settle(chunk_size=chunk)

    # Money back to payers -----------------------------------------------------------------------------

    @precondition(lambda self: bool(getattr(self, "payments", None)))
    @rule(pick=st.integers(0, 10**6), amount=st.integers(1, 12_000))
    def refund(self, pick: int, amount: int) -> None:
        payment = self.payments[pick % len(self.payments)]
        actual = min(amount, payment.amount - payment.returned)  # the rail never refunds more than was paid
        if actual <= 0:
            return
        funding = funding_find(rail="stripe", reference=payment.reference)
        assert funding is not None
        funding_refund(funding=funding, amount_minor=actual, cause=self._key("refund:"), memo="refund")
        payment.returned += actual
        self.returned += actual

    @precondition(lambda self: bool(getattr(self, "payments", None)))
    @rule(pick=st.integers(0, 10**6))
    def chargeback(self, pick: int) -> None:
        payment = self.payments[pick % len(self.payments)]
        actual = payment.amount - payment.returned
        if actual <= 0:
            return
        dispute = self._key("dp_")
        funding = funding_find(rail="stripe", reference=payment.reference)
        assert funding is not None
        funding_refund(funding=funding, amount_minor=actual, cause=f"dispute:{dispute}", memo="chargeback")
        payment.returned += actual
        self.returned += actual
        self.disputes.append((payment, dispute, actual))

    @precondition(lambda self: bool(getattr(self, "disputes", None)))
    @rule(pick=st.integers(0, 10**6))
    def chargeback_won(self, pick: int) -> None:
        payment, dispute, amount = self.disputes.pop(pick % len(self.disputes))
        funding = funding_find(rail="stripe", reference=payment.reference)
        assert funding is not None
        funding_reinstate(funding=funding, amount_minor=amount, cause=f"dispute:{dispute}", memo="won")
        payment.returned -= amount
        self.returned -= amount

    # Money out to payees ------------------------------------------------------------------------------

    @rule(
        outcomes=st.lists(st.sampled_from(["paid", "failed", "returned", "waiting"]), min_size=6, max_size=6)
    )
    def payout_run(self, outcomes: list[str]) -> None:
        self.period += 1
        period = f"{2000 + self.period // 12}-{self.period % 12 + 1:02d}"
        created = payouts.payout_run(period=period).created
        for payout, outcome in zip(created, outcomes + ["waiting"] * len(created), strict=False):
            if outcome == "failed":
                payouts.manual_mark_failed(payout=payout, reason="the bank refused")
                continue
            if outcome == "waiting":
                continue
            payouts.manual_mark_paid(payout=payout, reference=self._key("bank-out-"))
            self.paid_out += payout.amount_minor
            if outcome == "returned":
                payouts.payout_fail(key=payout.key, reason="returned by the bank", returned=True)
                self.paid_out -= payout.amount_minor

    @precondition(lambda self: hasattr(self, "atomic"))
    @rule()
    def pay_the_waiting(self) -> None:
        for payout in Payout.objects.filter(status=PayoutStatus.CREATED):
            payouts.manual_mark_paid(payout=payout, reference=self._key("bank-late-"))
            self.paid_out += payout.amount_minor

    @precondition(lambda self: hasattr(self, "atomic"))
    @rule(pick=st.integers(0, 10**6))
    def operator_reverses_a_settlement(self, pick: int) -> None:
        candidates = list(
            JournalTransaction.objects.filter(
                kind=TransactionKind.SETTLEMENT, reversed_by__isnull=True
            ).order_by("id")
        )
        if candidates:
            transaction_reverse(transaction=candidates[pick % len(candidates)], reason="test", clawback=True)

    # What must always hold ----------------------------------------------------------------------------

    @invariant()
    def count_the_step(self) -> None:
        if getattr(self, "initialised", False):
            self.initialised = False  # the check right after the set-up is not a step
            return
        MoneyMachine.steps_run += 1

    @invariant()
    def the_ledger_holds_exactly_the_cash_that_moved(self) -> None:
        if not hasattr(self, "atomic"):
            return
        problems = ledger_check()
        assert problems.clean, problems
        inside = (
            LedgerAccount.objects.exclude(kind=AccountKind.CLEARING).aggregate(t=Sum("balance_minor"))["t"]
            or 0
        )
        # Cash received = cash held + cash paid out + cash returned to payers; what is held may include
        # what a vendor or a payee owes (negative balances the ledger shows).
        assert self.received == inside + self.paid_out + self.returned
        owed = -(LedgerAccount.objects.filter(kind__in=OWED).aggregate(t=Sum("balance_minor"))["t"] or 0)
        # No payee is paid money that no payer paid: beyond the net cash received, only what someone owes us.
        assert self.paid_out <= self.received - self.returned + owed
        assert not LedgerAccount.objects.filter(kind__in=OWED, balance_minor__gt=0).exists()
        # Reported revenue earns only what its payer's money matched.
        reported = (
            LedgerAccount.objects.filter(kind=AccountKind.RECEIPTS).aggregate(t=Sum("balance_minor"))["t"]
            or 0
        )
        assert reported >= 0


def test_every_coin_paid_out_is_a_coin_that_arrived_through_any_sequence_of_operations(settings_) -> None:
    chain = three_level_chain()
    vendors = [factories.vendor(username=f"v{i}") for i in range(2)]
    other = factories.creator(username="other")
    MoneyMachine.world = {
        "chain": chain,
        "vendor_users": vendors,
        "orgs": [organisation_of(v) for v in vendors],
        "offers": [
            chain.offer_d,
            publish(chain.alice, chain.a, share_bps=3000, licence_fee_minor=250),
            publish(other, factories.work(other), platform_fee_bps=0),
            publish(chain.carl, chain.c, share_bps=5000, licence_fee_minor=99),
        ],
    }
    MoneyMachine.steps_run = 0
    run_state_machine_as_test(
        MoneyMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    assert MoneyMachine.steps_run >= STEPS_WANTED


@pytest.fixture
def settings_(settings):
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 1}
    settings.HOLDBACK_BPS = 1_500
    settings.HOLDBACK_DAYS = 0  # released by the next payout run: both paths are taken
    return settings
