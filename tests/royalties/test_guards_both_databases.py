"""The ledger's guards hold on SQLite as on PostgreSQL, whatever the code does: no DELETE of entries or
transactions, no unbalanced transaction at commit, no entry in another currency than its account's; and a
payout period has one spelling at every input."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.utils import timezone

from accounts.models import User
from common.money import Money
from common.problems import ApiError
from royalties import payouts
from royalties.ledger import ledger_check
from royalties.models import (
    Entry,
    JournalTransaction,
    LedgerAccount,
    Payout,
    ReconciliationRun,
    TransactionKind,
)
from royalties.reconcile import reconcile
from royalties.revenue import access_fee_record
from royalties.settlement import revenue_settle
from tests import factories
from tests.royalties.builders import funded_vendor, three_level_chain
from tests.royalties.payout_world import credit


def _raw(sql: str, params: list[int] | None = None) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def _accounts() -> tuple[LedgerAccount, LedgerAccount]:
    return (
        LedgerAccount.objects.create(key="clearing:test:USD", kind="clearing", currency="USD"),
        LedgerAccount.objects.create(key="clearing:other:USD", kind="clearing", currency="USD"),
    )


def _ledger() -> tuple[list[tuple[int, int, int]], list[int]]:
    return (
        list(Entry.objects.order_by("id").values_list("id", "account_id", "amount_minor")),
        list(JournalTransaction.objects.order_by("id").values_list("id", flat=True)),
    )


@pytest.mark.django_db
def test_a_raw_delete_of_an_entry_or_a_transaction_fails_on_every_database() -> None:
    chain = three_level_chain()
    access_fee_record(
        organisation=funded_vendor(), offer=chain.offer_d, amount=Money(10_000, "USD"), access_key="k"
    )
    revenue_settle()
    before = _ledger()

    with pytest.raises(IntegrityError, match="append-only"):
        _raw("DELETE FROM royalties_entry")
    with pytest.raises(IntegrityError, match="append-only"):
        _raw("DELETE FROM royalties_journaltransaction WHERE kind = 'funding'")

    assert _ledger() == before
    assert ledger_check().clean


@pytest.mark.django_db(transaction=True)
def test_an_unbalanced_transaction_is_refused_at_commit_on_every_database() -> None:
    account, other = _accounts()

    with pytest.raises(IntegrityError, match="does not sum to zero"), transaction.atomic():
        txn = JournalTransaction.objects.create(kind=TransactionKind.ADJUSTMENT, key="bad")
        Entry.objects.create(transaction=txn, account=account, amount_minor=5, currency="USD")
        Entry.objects.create(transaction=txn, account=other, amount_minor=-4, currency="USD")

    assert _ledger() == ([], [])
    # Balanced across several statements is fine: the sums are checked at the commit.
    with transaction.atomic():
        txn = JournalTransaction.objects.create(kind=TransactionKind.ADJUSTMENT, key="good")
        Entry.objects.create(transaction=txn, account=account, amount_minor=5, currency="USD")
        Entry.objects.create(transaction=txn, account=other, amount_minor=-5, currency="USD")
    assert Entry.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_lone_entry_written_outside_a_transaction_is_refused_on_every_database() -> None:
    account, _ = _accounts()
    with transaction.atomic():
        txn = JournalTransaction.objects.create(kind=TransactionKind.ADJUSTMENT, key="lone")

    with pytest.raises(IntegrityError):
        Entry.objects.create(transaction=txn, account=account, amount_minor=5, currency="USD")

    assert Entry.objects.count() == 0


@pytest.mark.django_db
def test_an_entry_in_another_currency_than_its_account_is_refused_on_every_database() -> None:
    account, other = _accounts()

    with pytest.raises(IntegrityError, match="currency"), transaction.atomic():
        txn = JournalTransaction.objects.create(kind=TransactionKind.ADJUSTMENT, key="eur-on-usd")
        Entry.objects.create(transaction=txn, account=account, amount_minor=5, currency="EUR")
        Entry.objects.create(transaction=txn, account=other, amount_minor=-5, currency="EUR")

    assert _ledger() == ([], [])


@pytest.mark.django_db
def test_an_accounts_currency_never_changes_on_every_database() -> None:
    account, _ = _accounts()

    with pytest.raises(IntegrityError, match="currency"):
        _raw("UPDATE royalties_ledgeraccount SET currency = 'EUR' WHERE id = %s", [account.pk])

    account.refresh_from_db()
    assert account.currency == "USD"


# Payout periods ----------------------------------------------------------------------------------------


@pytest.fixture
def payee(db, settings) -> User:
    settings.PAYOUT_PERIOD = "month"
    user = factories.creator(username="sol")
    credit(user, 50_000)
    return user


@pytest.mark.parametrize("period", ["garbage", "2026-1", "2026-13", "2026-W47", "2026-11-21", " ", "9999-12"])
def test_a_payout_period_not_in_the_configured_form_is_refused_and_pays_nothing(payee, period) -> None:
    with pytest.raises(ApiError) as refused:
        payouts.payout_run(period=period)
    with pytest.raises(ApiError):
        payouts.payout_create(user=payee, currency="USD", period=period)

    assert refused.value.problem_code == "invalid_period"
    assert "months like 2026-11" in str(refused.value.detail)
    assert not Payout.objects.exists()


def test_a_payout_period_in_the_configured_form_pays_once(payee) -> None:
    first = payouts.payout_run(period="2026-11")
    again = payouts.payout_run(period="2026-11")

    assert [p.amount_minor for p in first.created] == [50_000]
    assert again.created == []
    assert list(Payout.objects.values_list("period", flat=True)) == ["2026-11"]


def test_the_api_refuses_a_period_filter_it_cannot_match(payee, as_user) -> None:
    client = as_user(payee)

    refused = client.get("/api/v1/payouts", {"period": "garbage"})
    accepted = client.get("/api/v1/payouts", {"period": "2026-W47"})  # an older period of another kind

    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_period")
    assert (accepted.status_code, accepted.json()["count"]) == (200, 0)


def test_the_management_commands_refuse_a_garbage_period(payee) -> None:
    with pytest.raises(CommandError, match="not a payout period"):
        call_command("payout_run", period="garbage")
    with pytest.raises(CommandError, match="not a payout period"):
        call_command("reconcile", period="garbage", rail="chain")

    assert not Payout.objects.exists()


def test_reconciliation_refuses_a_garbage_period(payee) -> None:
    with pytest.raises(ApiError) as refused:
        reconcile(period="garbage", rail="chain")
    assert refused.value.problem_code == "invalid_period"


@pytest.mark.django_db
def test_the_database_refuses_a_payout_period_of_no_known_form() -> None:
    user = factories.creator(username="sol")
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        Payout.objects.create(
            key="k",
            user=user,
            currency="USD",
            period="garbage",
            amount_minor=1,
            rail="manual",
            created_at=now,
        )
    assert not Payout.objects.exists()


def test_the_operators_reconciliation_page_refuses_a_period_spelled_another_way(payee) -> None:
    staff = factories.creator(username="op")
    User.objects.filter(pk=staff.pk).update(is_staff=True)
    client = Client()
    client.force_login(staff)

    page = client.post("/dashboard/staff/reconciliation/", {"action": "run", "period": "2026-1"}, follow=True)

    assert "&#x27;2026-1&#x27; is not a payout period" in page.content.decode()
    assert not ReconciliationRun.objects.exists()
