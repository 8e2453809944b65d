"""What the database itself enforces, whatever the code does. PostgreSQL-only tests are marked `postgres`
(run with DATABASE_URL pointing at PostgreSQL; deselected on SQLite)."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, connection, transaction

from common.money import Money
from royalties.ledger import InsufficientFunds, ledger_check
from royalties.models import Entry, JournalTransaction, LedgerAccount, RevenueItem, TransactionKind
from royalties.revenue import access_fee_record
from royalties.settlement import revenue_settle
from tests.royalties.builders import balance, funded_vendor, payable, three_level_chain


@pytest.fixture
def settled_ledger():
    chain = three_level_chain()
    access_fee_record(
        organisation=funded_vendor(), offer=chain.offer_d, amount=Money(10_000, "USD"), access_key="k"
    )
    revenue_settle()
    return chain


def _raw(sql: str) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)


@pytest.mark.django_db
def test_a_raw_update_of_an_entry_fails(settled_ledger) -> None:
    before = list(Entry.objects.values_list("id", "amount_minor"))
    with pytest.raises(IntegrityError):
        _raw("UPDATE royalties_entry SET amount_minor = amount_minor + 1")
    with pytest.raises(IntegrityError):
        _raw("UPDATE royalties_journaltransaction SET memo = 'rewritten'")
    assert list(Entry.objects.values_list("id", "amount_minor")) == before


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_raw_delete_of_an_entry_or_a_transaction_fails_on_postgresql(settled_ledger) -> None:
    count = Entry.objects.count()
    with pytest.raises(IntegrityError):
        _raw("DELETE FROM royalties_entry")
    with pytest.raises(IntegrityError):
        _raw("DELETE FROM royalties_journaltransaction")
    assert Entry.objects.count() == count


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_unbalanced_transaction_is_refused_at_commit_on_postgresql() -> None:
    account = LedgerAccount.objects.create(key="clearing:test:USD", kind="clearing", currency="USD")
    other = LedgerAccount.objects.create(key="clearing:other:USD", kind="clearing", currency="USD")
    with pytest.raises(IntegrityError, match="does not sum to zero"), transaction.atomic():
        txn = JournalTransaction.objects.create(kind=TransactionKind.ADJUSTMENT, key="bad")
        Entry.objects.create(transaction=txn, account=account, amount_minor=5, currency="USD")
    assert JournalTransaction.objects.count() == 0

    # Balanced across several statements is fine: the check waits for the commit.
    with transaction.atomic():
        txn = JournalTransaction.objects.create(kind=TransactionKind.ADJUSTMENT, key="good")
        Entry.objects.create(transaction=txn, account=account, amount_minor=5, currency="USD")
        Entry.objects.create(transaction=txn, account=other, amount_minor=-5, currency="USD")
    assert Entry.objects.count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_threads_settling_and_accessing_at_once_give_exact_totals_on_postgresql() -> None:
    chain = three_level_chain()
    organisation = funded_vendor(50_000)  # room for exactly 500 accesses at 100
    accepted: list[int] = []
    refused: list[int] = []
    errors: list[BaseException] = []
    accessing_done = threading.Event()
    lock = threading.Lock()

    def access(thread: int) -> None:
        try:
            for i in range(200):
                try:
                    access_fee_record(
                        organisation=organisation,
                        offer=chain.offer_d,
                        amount=Money(100, "USD"),
                        access_key=f"t{thread}-{i}",
                    )
                    with lock:
                        accepted.append(1)
                except InsufficientFunds:
                    with lock:
                        refused.append(1)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def settle() -> None:
        try:
            while not accessing_done.is_set():
                revenue_settle(chunk_size=37)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    accessors = [threading.Thread(target=access, args=(n,)) for n in range(4)]
    settlers = [threading.Thread(target=settle) for _ in range(2)]
    for thread in accessors + settlers:
        thread.start()
    for thread in accessors:
        thread.join()
    accessing_done.set()
    for thread in settlers:
        thread.join()
    revenue_settle()

    assert errors == []
    assert (len(accepted), len(refused)) == (500, 300)
    assert RevenueItem.objects.count() == 500
    assert not RevenueItem.objects.filter(settlement__isnull=True).exists()
    assert payable(chain.dan) == 500 * 45
    # Carl is owed 22.5 per access; each settlement transaction rounds its group once.
    settlements = JournalTransaction.objects.filter(kind=TransactionKind.SETTLEMENT).count()
    assert abs(payable(chain.carl) - 500 * 22.5) < settlements
    assert (
        payable(chain.dan)
        + payable(chain.carl)
        + payable(chain.alice)
        + payable(chain.bob)
        + payable(chain.bea)
        + balance("platform_fee:USD")
        == 50_000
    )
    prepaid = LedgerAccount.objects.get(key=f"vendor_prepaid:org:{organisation.pk}:USD")
    assert (prepaid.balance_minor, prepaid.held_minor) == (0, 0)
    assert ledger_check().clean
