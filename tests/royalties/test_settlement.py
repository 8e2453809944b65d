"""Recording revenue and settling it: exact amounts up a derivative chain, once and only once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.utils import timezone

from catalog.models import Grant
from common.money import Money
from common.problems import Conflict
from royalties import settlement as settling
from royalties.funding import prepaid_fund
from royalties.ledger import InsufficientFunds, ledger_check
from royalties.licences import licence_accept
from royalties.models import Entry, JournalTransaction, LedgerAccount, RevenueItem, TransactionKind
from royalties.revenue import access_fee_record, claim_charge_hold, claim_charge_release
from royalties.reversal import transaction_reverse
from royalties.settlement import revenue_settle
from tests import factories
from tests.royalties.builders import (
    balance,
    co_own,
    funded_vendor,
    organisation_of,
    payable,
    publish,
    three_level_chain,
)

pytestmark = pytest.mark.django_db


def _ledger_rows() -> tuple[int, int, int, list[tuple[str, int, int]]]:
    return (
        JournalTransaction.objects.count(),
        Entry.objects.count(),
        RevenueItem.objects.count(),
        list(LedgerAccount.objects.order_by("key").values_list("key", "balance_minor", "held_minor")),
    )


def test_access_revenue_on_a_three_level_chain_with_two_parents_is_split_exactly() -> None:
    chain = three_level_chain()
    organisation = funded_vendor()
    access_fee_record(
        organisation=organisation, offer=chain.offer_d, amount=Money(10_000, "USD"), access_key="k1"
    )
    access_fee_record(
        organisation=organisation, offer=chain.offer_d, amount=Money(999, "USD"), access_key="k2"
    )

    result = revenue_settle()

    assert (result.items, result.transactions) == (2, 1)
    assert payable(chain.dan) == 4500 + 449
    assert payable(chain.carl) == 2250 + 225
    assert payable(chain.alice) == 810 + 81
    assert payable(chain.bob) == 540 + 54
    assert payable(chain.bea) == 900 + 90
    assert balance("platform_fee:USD") == 1000 + 100
    prepaid = LedgerAccount.objects.get(key=f"vendor_prepaid:org:{organisation.pk}:USD")
    assert (prepaid.balance_minor, prepaid.held_minor) == (1_000_000 - 10_999, 0)
    assert ledger_check().clean


def test_an_access_holds_the_price_until_settlement_moves_it() -> None:
    chain = three_level_chain()
    organisation = funded_vendor(1_000)

    access_fee_record(
        organisation=organisation, offer=chain.offer_d, amount=Money(600, "USD"), access_key="k1"
    )

    prepaid = LedgerAccount.objects.get(key=f"vendor_prepaid:org:{organisation.pk}:USD")
    assert (prepaid.balance_minor, prepaid.held_minor, prepaid.available_minor) == (1_000, 600, 400)
    assert payable(chain.dan) == 0
    assert ledger_check().clean


def test_an_access_beyond_the_available_balance_is_refused_and_changes_nothing() -> None:
    chain = three_level_chain()
    organisation = funded_vendor(1_000)
    access_fee_record(
        organisation=organisation, offer=chain.offer_d, amount=Money(600, "USD"), access_key="k1"
    )
    before = _ledger_rows()

    with pytest.raises(InsufficientFunds) as refused:
        access_fee_record(
            organisation=organisation, offer=chain.offer_d, amount=Money(401, "USD"), access_key="k2"
        )

    assert refused.value.status_code == 402
    assert _ledger_rows() == before


def test_a_vendor_without_a_prepaid_account_is_refused() -> None:
    chain = three_level_chain()
    organisation = organisation_of(factories.vendor(username="broke"))
    with pytest.raises(InsufficientFunds):
        access_fee_record(
            organisation=organisation, offer=chain.offer_d, amount=Money(1, "USD"), access_key="k"
        )
    assert RevenueItem.objects.count() == 0


def test_recording_the_same_access_key_twice_records_it_once() -> None:
    chain = three_level_chain()
    organisation = funded_vendor(1_000)
    first = access_fee_record(
        organisation=organisation, offer=chain.offer_d, amount=Money(100, "USD"), access_key="k"
    )
    again = access_fee_record(
        organisation=organisation, offer=chain.offer_d, amount=Money(100, "USD"), access_key="k"
    )

    assert first is not None and again is not None and again.pk == first.pk
    assert LedgerAccount.objects.get(key=f"vendor_prepaid:org:{organisation.pk}:USD").held_minor == 100
    with pytest.raises(Conflict):
        access_fee_record(
            organisation=organisation, offer=chain.offer_d, amount=Money(101, "USD"), access_key="k"
        )
    assert LedgerAccount.objects.get(key=f"vendor_prepaid:org:{organisation.pk}:USD").held_minor == 100


def test_a_free_use_records_nothing() -> None:
    chain = three_level_chain()
    organisation = funded_vendor(1_000)
    assert (
        access_fee_record(
            organisation=organisation, offer=chain.offer_d, amount=Money(0, "USD"), access_key="k"
        )
        is None
    )
    assert RevenueItem.objects.count() == 0


def test_settling_twice_settles_nothing_the_second_time() -> None:
    chain = three_level_chain()
    organisation = funded_vendor()
    for i in range(7):
        access_fee_record(
            organisation=organisation, offer=chain.offer_d, amount=Money(100, "USD"), access_key=f"k{i}"
        )
    assert revenue_settle(chunk_size=3).items == 7
    before = _ledger_rows()

    assert revenue_settle(chunk_size=3).items == 0

    assert _ledger_rows() == before
    assert RevenueItem.objects.filter(settlement__isnull=True).count() == 0


def test_a_crash_between_chunks_keeps_the_settled_chunk_and_the_next_run_settles_the_rest(
    monkeypatch,
) -> None:
    chain = three_level_chain()
    organisation = funded_vendor()
    for i in range(10):
        access_fee_record(
            organisation=organisation, offer=chain.offer_d, amount=Money(1_000, "USD"), access_key=f"k{i}"
        )
    real_chunk = settling._settle_chunk
    calls = {"n": 0}

    def crash_on_second_chunk(*, limit: int, **kwargs) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return real_chunk(limit=limit, **kwargs)

    monkeypatch.setattr(settling, "_settle_chunk", crash_on_second_chunk)
    with pytest.raises(RuntimeError):
        revenue_settle(chunk_size=4)
    assert RevenueItem.objects.filter(settlement__isnull=False).count() == 4
    assert payable(chain.dan) == 4 * 450
    assert ledger_check().clean

    monkeypatch.setattr(settling, "_settle_chunk", real_chunk)
    assert revenue_settle(chunk_size=4).items == 6
    assert payable(chain.dan) == 10 * 450
    assert balance("platform_fee:USD") == 10 * 100
    assert ledger_check().clean


def test_a_crash_inside_a_chunk_rolls_the_whole_chunk_back(monkeypatch) -> None:
    chain = three_level_chain()
    organisation = funded_vendor()
    for i in range(3):
        access_fee_record(
            organisation=organisation, offer=chain.offer_d, amount=Money(1_000, "USD"), access_key=f"k{i}"
        )
    before = _ledger_rows()

    def fail(*args, **kwargs):
        raise RuntimeError("power cut while moving balances")

    monkeypatch.setattr(settling, "balances_move", fail)
    with pytest.raises(RuntimeError):
        revenue_settle()

    assert _ledger_rows() == before
    monkeypatch.undo()
    assert revenue_settle().items == 3
    assert ledger_check().clean


def test_an_item_another_worker_settled_meanwhile_makes_the_chunk_roll_back_and_retry(monkeypatch) -> None:
    chain = three_level_chain()
    organisation = funded_vendor()
    for i in range(3):
        access_fee_record(
            organisation=organisation, offer=chain.offer_d, amount=Money(1_000, "USD"), access_key=f"k{i}"
        )
    real_create = JournalTransaction.objects.create
    raced = {"done": False}

    def racing_create(**kwargs):
        if not raced["done"] and kwargs.get("kind") == TransactionKind.SETTLEMENT:
            raced["done"] = True
            other = real_create(kind=TransactionKind.SETTLEMENT, key="settlement:other-worker", memo="")
            RevenueItem.objects.filter(pk=RevenueItem.objects.order_by("id").first().pk).update(
                settlement=other
            )
        return real_create(**kwargs)

    monkeypatch.setattr(JournalTransaction.objects, "create", racing_create)
    result = revenue_settle()

    # The first attempt rolled back (taking the simulated worker's write with it); the retry settled all.
    assert result.items == 3
    assert RevenueItem.objects.filter(settlement__isnull=True).count() == 0
    assert payable(chain.dan) == 3 * 450


def test_revenue_follows_the_split_sheet_in_force_when_it_arose() -> None:
    sol, ade = factories.creator(username="sol"), factories.creator(username="ade")
    song = factories.work(sol, title="Song")
    offer = publish(sol, song)
    organisation = funded_vendor()
    early = timezone.now()
    access_fee_record(organisation=organisation, offer=offer, amount=Money(1_000, "USD"), access_key="before")
    co_own(song, sol, [(sol, 7000), (ade, 3000)])
    access_fee_record(organisation=organisation, offer=offer, amount=Money(1_000, "USD"), access_key="after")
    # Reported late, but it arose under the first sheet.
    access_fee_record(
        organisation=organisation, offer=offer, amount=Money(100, "USD"), access_key="late", arose_at=early
    )

    revenue_settle()

    assert payable(sol) == 900 + 630 + 90
    assert payable(ade) == 270


def test_a_per_offer_fee_override_replaces_the_default_fee() -> None:
    creator = factories.creator()
    work = factories.work(creator)
    offer = publish(creator, work, platform_fee_bps=250)
    organisation = funded_vendor()
    access_fee_record(organisation=organisation, offer=offer, amount=Money(1_000, "USD"), access_key="k")
    revenue_settle()
    assert balance("platform_fee:USD") == 25
    assert payable(creator) == 975


def test_the_default_fee_comes_from_settings(settings) -> None:
    settings.PLATFORM_FEE_BPS = 2000
    creator = factories.creator()
    offer = publish(creator, factories.work(creator))
    access_fee_record(organisation=funded_vendor(), offer=offer, amount=Money(1_000, "USD"), access_key="k")
    revenue_settle()
    assert (balance("platform_fee:USD"), payable(creator)) == (200, 800)


def test_a_licence_fee_paid_by_an_organisation_comes_from_its_prepaid_balance_once() -> None:
    creator = factories.creator()
    offer = publish(creator, factories.work(creator), licence_fee_minor=500)
    vendor = factories.vendor(username="v")
    organisation = organisation_of(vendor)
    prepaid_fund(organisation=organisation, amount=Money(2_000, "USD"), external_ref="t")

    first = licence_accept(offer=offer, user=vendor)
    again = licence_accept(offer=offer, user=vendor)
    revenue_settle()

    assert (first.fee_charged_minor, again.fee_charged_minor) == (500, 0)
    assert first.grant.pk == again.grant.pk
    assert payable(creator) == 450
    assert balance(f"vendor_prepaid:org:{organisation.pk}:USD") == 1_500


def test_a_persons_licence_fee_and_a_claims_escrow_come_in_through_their_payers() -> None:
    creator = factories.creator()
    work = factories.work(creator)
    offer = publish(creator, work, licence_fee_minor=300)
    grant = licence_accept(offer=offer, user=factories.fan(), paid_on_rail="card").grant
    assert Grant.objects.get(pk=grant.pk).organisation_id is None
    organisation = funded_vendor(1_000)

    claim_charge_hold(claim_id=1, organisation_id=organisation.pk, amount=Money(700, "USD"))
    claim_charge_release(claim_id=1, work=work, amount=Money(700, "USD"))
    revenue_settle()

    assert payable(creator) == 270 + 630
    assert balance("clearing:card:USD") == -300
    assert balance(f"vendor_prepaid:org:{organisation.pk}:USD") == 300
    assert balance("escrow:claim:1:USD") == 0
    assert ledger_check().clean


def test_funding_is_idempotent_by_reference_and_a_reused_reference_conflicts() -> None:
    organisation = funded_vendor(1_000)
    again = prepaid_fund(organisation=organisation, amount=Money(1_000, "USD"), external_ref="top-up-acme")
    assert JournalTransaction.objects.filter(kind=TransactionKind.FUNDING).count() == 1
    assert again.kind == TransactionKind.FUNDING
    with pytest.raises(Conflict):
        prepaid_fund(organisation=organisation, amount=Money(5, "USD"), external_ref="top-up-acme")
    assert balance(f"vendor_prepaid:org:{organisation.pk}:USD") == 1_000
    assert balance("clearing:manual:USD") == -1_000


def test_a_reversal_mirrors_the_settlement_once_and_refunds_the_vendor() -> None:
    chain = three_level_chain()
    organisation = funded_vendor(20_000)
    access_fee_record(
        organisation=organisation, offer=chain.offer_d, amount=Money(10_000, "USD"), access_key="k"
    )
    revenue_settle()
    settlement = JournalTransaction.objects.get(kind=TransactionKind.SETTLEMENT)

    reversal = transaction_reverse(transaction=settlement, reason="chargeback")
    again = transaction_reverse(transaction=settlement, reason="chargeback")

    assert again.pk == reversal.pk
    assert [payable(u) for u in (chain.dan, chain.carl, chain.alice, chain.bob, chain.bea)] == [0, 0, 0, 0, 0]
    assert balance(f"vendor_prepaid:org:{organisation.pk}:USD") == 20_000
    assert RevenueItem.objects.get().settlement_id == settlement.pk  # settled once; corrected, not redone
    assert revenue_settle().items == 0
    assert ledger_check().clean
    with pytest.raises(Conflict):
        transaction_reverse(transaction=reversal, reason="undo")


def test_reversing_a_top_up_the_vendor_already_spent_is_refused_and_changes_nothing() -> None:
    chain = three_level_chain()
    organisation = funded_vendor(1_000)
    access_fee_record(
        organisation=organisation, offer=chain.offer_d, amount=Money(600, "USD"), access_key="k"
    )
    before = _ledger_rows()
    with pytest.raises(InsufficientFunds):
        transaction_reverse(
            transaction=JournalTransaction.objects.get(kind=TransactionKind.FUNDING), reason="refund"
        )
    assert _ledger_rows() == before


def test_the_database_refuses_a_negative_available_balance_whatever_the_code_does() -> None:
    organisation = funded_vendor(1_000)
    with pytest.raises(IntegrityError):
        LedgerAccount.objects.filter(key=f"vendor_prepaid:org:{organisation.pk}:USD").update(held_minor=1_001)


def test_revenue_arising_before_a_later_parent_link_is_not_shared_with_that_parent() -> None:
    chain = three_level_chain()
    organisation = funded_vendor()
    access_fee_record(
        organisation=organisation,
        offer=chain.offer_d,
        amount=Money(1_000, "USD"),
        access_key="ancient",
        arose_at=chain.d.created_at - timedelta(seconds=1),
    )
    revenue_settle()
    # Before D's parent link existed, D's owner kept everything after the fee.
    assert payable(chain.dan) == 900
