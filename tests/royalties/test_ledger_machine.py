"""A hypothesis state machine drives the ledger through random funding, accesses, licence fees, reported
revenue, claims, settlements and reversals, and checks the ledger's invariants after every step."""

from __future__ import annotations

import contextlib

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from common.money import Money
from common.problems import Conflict
from royalties.funding import prepaid_fund
from royalties.ledger import InsufficientFunds, ledger_check
from royalties.licences import licence_accept
from royalties.models import Entry, JournalTransaction, LedgerAccount, RevenueItem, TransactionKind
from royalties.reports import ReportLine, revenue_report_record
from royalties.revenue import access_fee_record, claim_charge_hold, claim_charge_release
from royalties.reversal import transaction_reverse
from royalties.settlement import revenue_settle
from tests import factories
from tests.royalties.builders import organisation_of, publish, three_level_chain

pytestmark = pytest.mark.django_db


class LedgerMachine(RuleBasedStateMachine):
    world: dict = {}

    @initialize()
    def open_savepoint(self) -> None:
        # Each run starts from the same catalog; its ledger activity is rolled back at teardown.
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.counter = 0
        self.settled_seen: dict[int, int] = {}

    def teardown(self) -> None:
        if hasattr(self, "atomic"):
            transaction.set_rollback(True)
            self.atomic.__exit__(None, None, None)

    def _key(self) -> str:
        self.counter += 1
        return f"m{self.counter}"

    @rule(vendor=st.integers(0, 1), amount=st.integers(1, 5_000))
    def fund(self, vendor: int, amount: int) -> None:
        prepaid_fund(
            organisation=self.world["orgs"][vendor], amount=Money(amount, "USD"), external_ref=self._key()
        )

    @rule(vendor=st.integers(0, 1), offer=st.integers(0, 3), amount=st.integers(1, 3_000))
    def access(self, vendor: int, offer: int, amount: int) -> None:
        with contextlib.suppress(InsufficientFunds):  # refused accesses change nothing: the invariants say so
            access_fee_record(
                organisation=self.world["orgs"][vendor],
                offer=self.world["offers"][offer],
                amount=Money(amount, "USD"),
                access_key=self._key(),
            )

    @rule(offer=st.integers(0, 3))
    def licence_fee(self, offer: int) -> None:
        with contextlib.suppress(InsufficientFunds, Conflict):
            licence_accept(offer=self.world["offers"][offer], user=self.world["vendor_users"][0])

    @rule(
        lines=st.lists(
            st.tuples(st.integers(0, 20), st.integers(1, 10_000)),
            min_size=1,
            max_size=4,
            unique_by=lambda t: t[0],
        )
    )
    def reported_revenue(self, lines) -> None:
        chain = self.world["chain"]
        with contextlib.suppress(Conflict):  # a line id seen before with another amount: refused whole
            revenue_report_record(
                user=chain.dan,
                distributor="shop",
                lines=[ReportLine(f"L{line}", chain.d.pk, amount, "USD") for line, amount in lines],
            )

    @rule(vendor=st.integers(0, 1), amount=st.integers(1, 3_000))
    def claim(self, vendor: int, amount: int) -> None:
        """A vendor's output monetized: its charge held in the claim's escrow, then paid to the work."""
        self.counter += 1
        with contextlib.suppress(InsufficientFunds):
            claim_charge_hold(
                claim_id=self.counter,
                organisation_id=self.world["orgs"][vendor].pk,
                amount=Money(amount, "USD"),
            )
            claim_charge_release(
                claim_id=self.counter, work=self.world["chain"].a, amount=Money(amount, "USD")
            )

    @rule(chunk=st.integers(1, 7))
    def settle(self, chunk: int) -> None:
        revenue_settle(chunk_size=chunk)
        assert not RevenueItem.objects.filter(settlement__isnull=True).exists()

    @rule(pick=st.integers(0, 10**6))
    def reverse(self, pick: int) -> None:
        candidates = list(
            JournalTransaction.objects.exclude(kind=TransactionKind.REVERSAL)
            .filter(reversed_by__isnull=True)
            .order_by("id")
        )
        if not candidates:
            return
        with contextlib.suppress(InsufficientFunds):
            transaction_reverse(transaction=candidates[pick % len(candidates)], reason="test")

    @invariant()
    def ledger_is_consistent(self) -> None:
        if not hasattr(self, "atomic"):
            return
        problems = ledger_check()
        assert problems.clean, problems
        assert not LedgerAccount.objects.filter(
            balance_minor__lt=0, kind__in=["vendor_prepaid", "payable"]
        ).exists()

    @invariant()
    def each_item_is_settled_once_and_stays_settled(self) -> None:
        if not hasattr(self, "atomic"):
            return
        for item_id, settlement_id in RevenueItem.objects.filter(settlement__isnull=False).values_list(
            "id", "settlement"
        ):
            assert self.settled_seen.setdefault(item_id, settlement_id) == settlement_id
        # What settlements took from payers is exactly the revenue they settled.
        settled = (
            RevenueItem.objects.filter(settlement__isnull=False).aggregate(t=Sum("amount_minor"))["t"] or 0
        )
        credited = (
            Entry.objects.filter(transaction__kind=TransactionKind.SETTLEMENT, amount_minor__gt=0).aggregate(
                t=Sum("amount_minor")
            )["t"]
            or 0
        )
        assert credited == settled


def test_the_ledger_keeps_its_invariants_through_any_sequence_of_operations() -> None:
    chain = three_level_chain()
    vendors = [factories.vendor(username=f"v{i}") for i in range(2)]
    other = factories.creator(username="other")
    LedgerMachine.world = {
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
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
