"""The payout run and the payout state machine: one payout per payee, currency and period, every move of
money in the ledger, idempotent transitions, and exactly one Stripe transfer per payout whatever crashes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from royalties import payouts
from royalties.ledger import ledger_check
from royalties.models import JournalTransaction, Payout, PayoutStatus
from royalties.payouts import (
    PayoutTransitionError,
    payout_confirm,
    payout_fail,
    payout_run,
    payout_submitted,
)
from royalties.rails import RailError
from tests import factories
from tests.royalties.payout_world import (
    Crash,
    FakeStripe,
    balance,
    credit,
    in_transit,
    payable,
    stripe_profile,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def at_noon_on_the_21st(time_machine) -> None:
    """The whole test runs on the platform clock moved to NOW (and ticking from there): the payouts it
    makes and the retry window it checks read the same clock."""
    time_machine.move_to(NOW)


@pytest.fixture
def fake_stripe(monkeypatch: pytest.MonkeyPatch, settings) -> FakeStripe:
    settings.STRIPE_SECRET_KEY = "sk_test_payouts"
    fake = FakeStripe()
    monkeypatch.setattr("royalties.rails.stripe.transfer_send", fake.transfer_send)
    return fake


def test_periods_name_month_week_and_day_and_bound_them() -> None:
    assert payouts.period_of(NOW, "month") == "2026-11"
    assert payouts.period_of(NOW, "week") == "2026-W47"
    assert payouts.period_of(NOW, "day") == "2026-11-21"
    assert payouts.period_bounds("2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    start, end = payouts.period_bounds("2026-W47")
    assert (start, end) == (datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))
    assert payouts.previous_period("2026-01") == "2025-12"
    assert payouts.previous_period("2026-W01") == "2025-W52"


def test_a_payee_at_the_threshold_gets_one_manual_payout_and_the_money_moves_to_in_transit(settings) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 1000}
    rich, poor = factories.creator(), factories.creator()
    credit(rich, 1000)
    credit(poor, 999)

    result = payout_run()

    assert [(p.user_id, p.amount_minor, p.rail, p.status) for p in result.created] == [
        (rich.pk, 1000, "manual", "created")
    ]
    assert result.manual == 1
    assert (payable(rich), payable(poor), in_transit("manual")) == (0, 999, 1000)
    payout = result.created[0]
    assert payout.period == "2026-11"
    assert JournalTransaction.objects.get(key=f"{payout.key}:create").kind == "payout"
    assert ledger_check().clean


def test_a_payee_whose_email_is_not_confirmed_is_paid_only_once_it_is(settings) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 1000}
    squatter = factories.creator(email_verified=False)
    credit(squatter, 5000)

    assert payout_run().created == []
    assert (payable(squatter), Payout.objects.count()) == (5000, 0)
    squatter.email_verified_at = NOW
    squatter.save(update_fields=["email_verified_at"])
    assert [(p.user_id, p.amount_minor) for p in payout_run().created] == [(squatter.pk, 5000)]


def test_running_again_in_the_same_period_makes_no_second_payout(settings, time_machine) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 500}
    payee = factories.creator()
    credit(payee, 700)
    payout_run()
    credit(payee, 900)  # earned more later in the month

    again = payout_run()

    assert again.created == []
    assert Payout.objects.filter(user=payee).count() == 1
    assert payable(payee) == 900
    time_machine.move_to(datetime(2026, 12, 2, tzinfo=UTC))
    next_month = payout_run()
    assert [(p.period, p.amount_minor) for p in next_month.created] == [("2026-12", 900)]


def test_each_currency_is_paid_separately_with_its_own_default_threshold(settings) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {}
    payee = factories.creator()
    credit(payee, 1000, "USD")  # 10.00 USD: the default threshold
    credit(payee, 999, "EUR")
    credit(payee, 10, "JPY")  # 10 yen: JPY has no minor digits, so the default is 10

    made = payout_run().created

    assert sorted((p.currency, p.amount_minor) for p in made) == [("JPY", 10), ("USD", 1000)]


def test_the_rail_follows_the_profile_only_when_that_rail_can_pay(settings) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    settings.STRIPE_SECRET_KEY = ""
    payee = factories.creator()
    profile = stripe_profile(payee)

    assert payouts.rail_for(profile, "USD") == ("manual", "")  # Stripe is off
    settings.STRIPE_SECRET_KEY = "sk_test_x"
    assert payouts.rail_for(profile, "USD") == ("stripe", profile.stripe_account_id)
    profile.stripe_payouts_enabled = False
    assert payouts.rail_for(profile, "USD") == ("manual", "")
    profile.rail, profile.wallet_address = "chain", "0x" + "ab" * 20
    assert payouts.rail_for(profile, "USD") == ("manual", "")  # the wallet is not verified
    profile.wallet_verified_at = NOW
    assert payouts.rail_for(profile, "USD") == ("chain", "0x" + "ab" * 20)
    assert payouts.rail_for(profile, "EUR") == ("manual", "")  # the stablecoin is USD
    settings.CHAIN_PAYOUTS_ENABLED = False
    assert payouts.rail_for(profile, "USD") == ("manual", "")


# Transitions -------------------------------------------------------------------------------------------


def _one_payout(settings, amount: int = 2500) -> Payout:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    payee = factories.creator()
    credit(payee, amount)
    return payout_run().created[0]


def test_confirm_moves_in_transit_to_clearing_once(settings) -> None:
    payout = _one_payout(settings)

    payout_submitted(key=payout.key, external_id="ref-1")
    first = payout_confirm(key=payout.key, external_id="ref-1")
    again = payout_confirm(key=payout.key, external_id="ref-1")

    assert (first.status, again.status) == ("confirmed", "confirmed")
    assert in_transit("manual") == 0
    assert balance("clearing:manual:USD") == 2500
    assert JournalTransaction.objects.filter(key__startswith=payout.key).count() == 2
    assert ledger_check().clean


def test_fail_gives_the_money_back_to_payable_once_and_confirm_after_fail_is_refused(settings) -> None:
    payout = _one_payout(settings)

    payout_fail(key=payout.key, reason="bank account closed")
    payout_fail(key=payout.key, reason="bank account closed")

    assert payable(payout.user) == 2500
    assert in_transit("manual") == 0
    with pytest.raises(PayoutTransitionError) as refused:
        payout_confirm(key=payout.key, external_id="late")
    assert refused.value.problem_code == "payout_transition_invalid"
    with pytest.raises(PayoutTransitionError):
        payout_submitted(key=payout.key, external_id="late")
    assert Payout.objects.get(pk=payout.pk).status == "failed"
    assert payable(payout.user) == 2500


def test_a_confirmed_payout_cannot_fail_but_can_be_returned_by_the_rail(settings) -> None:
    payout = _one_payout(settings)
    payout_confirm(key=payout.key, external_id="tr_1")

    with pytest.raises(PayoutTransitionError):
        payout_fail(key=payout.key, reason="nope")
    returned = payout_fail(key=payout.key, reason="transfer reversed", returned=True)

    assert returned.status == "returned"
    assert payable(payout.user) == 2500
    assert balance("clearing:manual:USD") == 0
    assert JournalTransaction.objects.filter(key=f"{payout.key}:return").count() == 1
    assert ledger_check().clean


def test_a_second_external_id_for_the_same_payout_is_refused(settings) -> None:
    payout = _one_payout(settings)
    payout_submitted(key=payout.key, external_id="tr_A")

    with pytest.raises(PayoutTransitionError):
        payout_submitted(key=payout.key, external_id="tr_B")
    payout_confirm(key=payout.key, external_id="tr_A")
    with pytest.raises(PayoutTransitionError):
        payout_confirm(key=payout.key, external_id="tr_B")
    assert Payout.objects.get(pk=payout.pk).external_id == "tr_A"


def test_an_unknown_key_is_a_clear_not_found() -> None:
    with pytest.raises(payouts.PayoutNotFound) as missing:
        payout_confirm(key="payout:nope", external_id="x")
    assert missing.value.status_code == 404


# Stripe rail (transfer_send patched; the Stripe helper tests the real module) ---------------------------


def test_stripe_payouts_are_sent_with_the_payout_key_and_submitted(settings, fake_stripe: FakeStripe) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    payee = factories.creator()
    stripe_profile(payee)
    credit(payee, 4321)

    result = payout_run()

    payout = Payout.objects.get(user=payee)
    assert (payout.rail, payout.status, payout.external_id) == ("stripe", "submitted", "tr_0001")
    assert payout.destination == f"acct_{payee.pk:04d}test"
    assert result.submitted == 1
    assert dict(fake_stripe.calls) == {payout.key: 1}
    assert in_transit("stripe") == 4321


def test_crash_after_the_ledger_move_then_rerun_sends_one_transfer(
    settings, fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    payee = factories.creator()
    stripe_profile(payee)
    credit(payee, 5000)

    def die(result: payouts.PayoutRunResult) -> None:
        raise Crash("killed between the ledger move and the rail call")

    with monkeypatch.context() as patch:
        patch.setattr(payouts, "_send_unsent", die)
        with pytest.raises(Crash):
            payout_run()
    assert Payout.objects.get(user=payee).status == "created"
    assert fake_stripe.transfers == {}

    payout_run()
    payout_run()

    payout = Payout.objects.get(user=payee)
    assert payout.status == "submitted"
    assert len(fake_stripe.transfers) == 1
    assert dict(fake_stripe.calls) == {payout.key: 1}
    assert in_transit("stripe") == 5000 and payable(payee) == 0


def test_crash_after_the_stripe_call_then_rerun_gets_the_same_transfer(
    settings, fake_stripe: FakeStripe
) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    payee = factories.creator()
    stripe_profile(payee)
    credit(payee, 5000)
    fake_stripe.crash_after_call = True

    with pytest.raises(Crash):
        payout_run()
    assert Payout.objects.get(user=payee).status == "created"
    payout_run()

    payout = Payout.objects.get(user=payee)
    assert (payout.status, payout.external_id, payout.attempts) == ("submitted", "tr_0001", 2)
    assert dict(fake_stripe.calls) == {payout.key: 2}  # asked twice, with one Idempotency-Key
    assert len(fake_stripe.transfers) == 1  # paid once


def test_crash_before_recording_the_answer_then_rerun_pays_once(
    settings, fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    payees = [factories.creator() for _ in range(3)]
    for payee in payees:
        stripe_profile(payee)
        credit(payee, 1500)
    real = payouts.payout_submitted
    crashed: list[str] = []

    def record_or_die(*, key: str, external_id: str) -> Payout:
        if not crashed:
            crashed.append(key)
            raise Crash("killed before the transfer id was stored")
        return real(key=key, external_id=external_id)

    with monkeypatch.context() as patch:
        patch.setattr(payouts, "payout_submitted", record_or_die)
        with pytest.raises(Crash):
            payout_run()
    payout_run()
    # A webhook confirming it arrives and then is delivered again: nothing moves twice.
    for payout in Payout.objects.all():
        payout_confirm(key=payout.key, external_id=payout.external_id)
        payout_confirm(key=payout.key, external_id=payout.external_id)

    assert len(fake_stripe.transfers) == 3
    assert sorted(fake_stripe.calls.values()) == [1, 1, 2]
    assert {p.status for p in Payout.objects.all()} == {"confirmed"}
    assert in_transit("stripe") == 0
    assert balance("clearing:stripe:USD") == 4500
    assert ledger_check().clean


def test_a_retryable_stripe_error_leaves_the_payout_for_the_next_run(
    settings, fake_stripe: FakeStripe
) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    payee = factories.creator()
    stripe_profile(payee)
    credit(payee, 3000)
    fake_stripe.fail_with = RailError("rate limited", retryable=True)

    result = payout_run()

    payout = Payout.objects.get(user=payee)
    assert (payout.status, result.waiting) == ("created", 1)
    assert payout.last_error == "Stripe: rate limited"
    fake_stripe.fail_with = None
    payout_run()
    assert Payout.objects.get(user=payee).status == "submitted"


def test_a_refused_stripe_transfer_fails_the_payout_and_returns_the_money(
    settings, fake_stripe: FakeStripe
) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    payee = factories.creator()
    stripe_profile(payee)
    credit(payee, 3000)
    fake_stripe.fail_with = RailError("No such destination", retryable=False)

    payout_run()

    payout = Payout.objects.get(user=payee)
    assert payout.status == "failed"
    assert "No such destination" in payout.failure_reason
    assert (payable(payee), in_transit("stripe")) == (3000, 0)


def test_an_unanswered_stripe_payout_older_than_a_day_is_not_sent_again(
    settings, fake_stripe: FakeStripe, time_machine
) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    payee = factories.creator()
    stripe_profile(payee)
    credit(payee, 3000)
    fake_stripe.fail_with = RailError("timeout", retryable=True)
    time_machine.move_to(datetime(2026, 11, 1, tzinfo=UTC))
    payout_run()
    fake_stripe.fail_with = None
    time_machine.move_to(NOW)

    payout_run()  # the payout was created on the 1st; it is now the 21st

    payout = Payout.objects.get(user=payee)
    assert payout.status == "created"
    assert dict(fake_stripe.calls) == {payout.key: 1}
    assert "24 hours" in payout.last_error


# Manual rail -------------------------------------------------------------------------------------------


def test_manual_payouts_export_as_csv_and_are_marked_paid_or_failed(settings, tmp_path) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    alice = factories.creator(username="alice", display_name="=HYPERLINK(evil)")
    bob = factories.creator(username="bob")
    credit(alice, 1234)
    credit(bob, 5678)
    payout_run()
    target = tmp_path / "payouts.csv"

    call_command("payouts_export", output=str(target))

    lines = target.read_text().splitlines()
    assert lines[0].split(",") == payouts.MANUAL_CSV_COLUMNS
    rows = {line.split(",")[2]: line.split(",") for line in lines[1:]}
    assert rows["alice"][4] == "'=HYPERLINK(evil)"
    assert (rows["alice"][6], rows["alice"][7]) == ("1234", "12.34 USD")
    assert rows["bob"][6] == "5678"

    alice_payout = Payout.objects.get(user=alice)
    payouts.manual_mark_paid(payout=alice_payout, reference="BANK-REF-1")
    payouts.manual_mark_failed(payout=Payout.objects.get(user=bob), reason="IBAN invalid")

    assert Payout.objects.get(user=alice).external_id == "BANK-REF-1"
    assert payable(bob) == 5678
    assert list(payouts.manual_waiting()) == []
    assert ledger_check().clean


def test_marking_a_manual_payout_paid_needs_a_reference(settings) -> None:
    payout = _one_payout(settings)
    with pytest.raises(PayoutTransitionError) as refused:
        payouts.manual_mark_paid(payout=payout, reference="  ")
    assert refused.value.problem_code == "missing_reference"
    assert Payout.objects.get(pk=payout.pk).status == PayoutStatus.CREATED


def test_the_payout_run_command_and_task_run_the_same_job(settings, capsys) -> None:
    from royalties.tasks import payout_run as task

    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    first, second = factories.creator(), factories.creator()
    credit(first, 200)
    call_command("payout_run", period="2026-11")
    credit(second, 300)

    assert task.run(period="2026-11") == 1
    assert "1 payout(s) made for 2026-11" in capsys.readouterr().out
    assert sorted(Payout.objects.values_list("amount_minor", flat=True)) == [200, 300]
