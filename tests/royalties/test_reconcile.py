"""Reconciliation: our ledger against the chain's events and Stripe's balance transactions, per period;
each difference (missing on the rail, missing in the ledger, duplicate, amount mismatch) is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from contracts.chain import Chain, PayoutEntry
from royalties import reconcile
from royalties.models import Payout, ReconciliationDifference
from royalties.payouts import payout_confirm, payout_run, payout_submitted, period_of
from royalties.rails import RailRecord
from tests import factories
from tests.royalties.payout_world import credit, onchain, prove_wallet, stripe_profile

__all__ = ["onchain"]
pytestmark = pytest.mark.django_db

AT = datetime(2026, 11, 10, tzinfo=UTC)


def _record(reference: str, amount: int, *, kind: str = "payout", external_id: str = "x") -> RailRecord:
    return RailRecord(
        kind=kind, reference=reference, external_id=external_id, amount_minor=amount, currency="USD", at=AT
    )


def test_compare_finds_each_kind_of_difference() -> None:
    ours = [_record("a", 100), _record("b", 200), _record("c", 300), _record("f1", 50, kind="funding")]
    theirs = [
        _record("a", 100),
        _record("b", 250, external_id="tr_b"),
        _record("d", 400, external_id="tr_d"),
        _record("f1", 50, kind="funding", external_id="pi_1"),
        _record("f1", 50, kind="funding", external_id="pi_2"),
    ]

    found = {(d.kind, d.reference): d for d in reconcile.compare(ours, theirs)}

    assert set(found) == {
        ("amount_mismatch", "b"),
        ("missing_on_rail", "c"),
        ("missing_in_ledger", "d"),
        ("duplicate", "f1"),
    }
    assert (
        found[("amount_mismatch", "b")].ledger_amount_minor,
        found[("amount_mismatch", "b")].rail_amount_minor,
    ) == (
        200,
        250,
    )
    assert found[("duplicate", "f1")].detail == "2 rail records: pi_1, pi_2"
    assert reconcile.compare(ours[:1], theirs[:1]) == []


def _chain_paid(onchain: Chain, settings) -> list[Payout]:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    settings.CHAIN_PAYOUTS_ENABLED = True
    settings.CHAIN_CONFIRMATIONS = 1
    for amount in (1500, 2500):
        payee = factories.creator()
        prove_wallet(payee)
        credit(payee, amount)
    payout_run()
    payout_run()
    return list(Payout.objects.order_by("id"))


def test_a_clean_chain_period_has_no_differences(onchain: Chain, settings) -> None:
    paid = _chain_paid(onchain, settings)
    assert {p.status for p in paid} == {"confirmed"}

    run = reconcile.reconcile(period=period_of(timezone.now()), rail="chain")

    assert (run.ledger_records, run.rail_records, run.differences_found, run.error) == (2, 2, 0, "")


def test_chain_differences_are_found_and_stored(onchain: Chain, settings) -> None:
    first, second = _chain_paid(onchain, settings)
    Payout.objects.filter(pk=first.pk).update(amount_minor=1499)  # our record says otherwise
    ghost = Payout.objects.create(
        key="payout:ghost",
        user=first.user,
        currency="USD",
        period="1999-01",
        amount_minor=700,
        rail="chain",
        status="submitted",
        external_id="0xdead",
        submitted_at=timezone.now(),
    )
    stranger = "0x" + "42" * 20
    onchain.mint(str(onchain.distributor.address), 10_000)
    onchain.wait_for_receipt(
        onchain.send_batch_payout(b"\x07" * 32, [PayoutEntry(b"\x09" * 32, stranger, 10_000)]).tx_hash
    )

    run = reconcile.reconcile(period=period_of(timezone.now()), rail="chain")

    rows = {(d.kind, d.reference): d for d in ReconciliationDifference.objects.filter(run=run)}
    assert set(rows) == {
        ("amount_mismatch", first.key),
        ("missing_on_rail", ghost.key),
        ("missing_in_ledger", "0x" + "09" * 32),
    }
    assert (
        rows[("amount_mismatch", first.key)].ledger_amount_minor,
        rows[("amount_mismatch", first.key)].rail_amount_minor,
    ) == (1499, 1500)
    assert rows[("missing_in_ledger", "0x" + "09" * 32)].rail_amount_minor == 1
    assert run.differences_found == 3
    assert second.key not in {d.reference for d in rows.values()}


def test_chain_fundings_are_reconciled_with_the_transfer_logs(onchain: Chain, settings) -> None:
    from royalties import funding

    settings.CHAIN_CONFIRMATIONS = 1
    settings.CHAIN_PAYOUTS_ENABLED = True
    onchain.mint(onchain.address, 3_000_000)
    onchain.transfer(funding.deposit_address(), 3_000_000)
    onchain.mint(funding.deposit_address(), 2_000_000)  # a mint: the watcher skips it, so it is no funding
    funding.chain_deposits_watch()

    run = reconcile.reconcile(period=period_of(timezone.now()), rail="chain")

    assert (run.ledger_records, run.rail_records, run.differences_found) == (1, 1, 0)


def test_stripe_is_reconciled_with_its_balance_transactions(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_reconcile"
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    keys = []
    for amount in (1000, 2000, 3000):
        payee = factories.creator()
        stripe_profile(payee)
        credit(payee, amount)
    monkeypatch.setattr("royalties.rails.stripe.transfer_send", lambda payout: f"tr_{payout.pk}")
    payout_run()
    for payout in Payout.objects.order_by("id"):
        keys.append(payout.key)
        payout_confirm(key=payout.key, external_id=payout.external_id)
    now = timezone.now()
    answers = [
        RailRecord("payout", keys[0], "tr_1", 1000, "USD", now),
        RailRecord("payout", keys[1], "tr_2", 2000, "USD", now),
        RailRecord("payout", keys[1], "tr_2b", 2000, "USD", now),  # paid twice!
        RailRecord("funding", "pi_unknown", "txn_9", 5000, "USD", now),
    ]
    asked: list[tuple[datetime, datetime]] = []

    def balance_transactions(*, since: datetime, until: datetime) -> list[RailRecord]:
        asked.append((since, until))
        return answers

    monkeypatch.setattr("royalties.rails.stripe.balance_transactions", balance_transactions)

    run = reconcile.reconcile(period=period_of(now), rail="stripe")

    kinds = sorted(ReconciliationDifference.objects.filter(run=run).values_list("kind", "reference"))
    assert kinds == sorted(
        [("duplicate", keys[1]), ("missing_on_rail", keys[2]), ("missing_in_ledger", "pi_unknown")]
    )
    since, until = asked[0]
    assert since <= now - timedelta(days=1) and until >= now


def test_the_reconcile_command_lists_open_differences_and_exits_1(settings, monkeypatch, capsys) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_reconcile"
    settings.CHAIN_PAYOUTS_ENABLED = False
    payee = factories.creator()
    stripe_profile(payee)
    credit(payee, 5000)
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    monkeypatch.setattr("royalties.rails.stripe.transfer_send", lambda payout: "tr_only")
    payout_run()
    monkeypatch.setattr("royalties.rails.stripe.balance_transactions", lambda *, since, until: [])

    with pytest.raises(SystemExit) as exited:
        call_command("reconcile")

    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert "stripe" in out and "missing_on_rail" in out and "1 unresolved difference(s)" in out
    difference = reconcile.differences_open().get()
    reconcile.difference_resolve(difference=difference, user=None, note="confirmed with Stripe support")
    call_command("reconcile", "--list")
    assert reconcile.differences_open().count() == 0


def test_a_submitted_payout_counts_for_the_period_it_was_submitted_in(settings, monkeypatch) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_reconcile"
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    payee = factories.creator()
    stripe_profile(payee)
    credit(payee, 5000)
    monkeypatch.setattr("royalties.rails.stripe.transfer_send", lambda payout: "tr_late")
    payout_run()
    payout = Payout.objects.get()
    payout_submitted(key=payout.key, external_id="tr_late")
    monkeypatch.setattr("royalties.rails.stripe.balance_transactions", lambda *, since, until: [])

    last_year = reconcile.reconcile(period="2020-01", rail="stripe")

    assert (last_year.ledger_records, last_year.differences_found) == (0, 0)
