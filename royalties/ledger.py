"""The ledger: accounts, posting balanced transactions, holds on balances, and the ledger's own check.

Invariants every function here keeps (docs/royalties.md explains them):
- a journal transaction's entries sum to zero per currency (checked here; a deferred trigger on PostgreSQL);
- entries are only ever inserted; a correction is a reversal transaction;
- an account's cached balance moves in the same database transaction as its entries, by conditional
  UPDATEs with F() expressions, and accounts that must not go negative cannot (a CHECK constraint backs
  the conditional UPDATE);
- a hold reserves part of a balance in one conditional UPDATE: what is held is never spent twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum

from common import clock, locks
from common import currency as currencies
from common.money import Money
from common.problems import ApiError, Conflict
from royalties import selectors
from royalties.models import (
    NON_NEGATIVE_KINDS,
    OWED_KINDS,
    AccountKind,
    Entry,
    JournalTransaction,
    LedgerAccount,
)


class InsufficientFunds(ApiError):
    status_code = 402
    default_code = "insufficient_funds"
    default_detail = "The balance is not enough for this."


class LedgerImbalance(RuntimeError):
    """A transaction that would not sum to zero: a bug, never a user error."""


class AmountOutOfRange(ApiError):
    default_code = "amount_out_of_range"
    default_detail = "The amount is outside what the ledger accepts."


# Accounts ----------------------------------------------------------------------------------------------


def account_ensure(
    *,
    key: str,
    kind: str,
    currency: str,
    user_id: int | None = None,
    organisation_id: int | None = None,
    rail: str = "",
) -> LedgerAccount:
    """The account with this key, made on first use (one a concurrent writer just made is returned)."""
    account = LedgerAccount.objects.filter(key=key).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return LedgerAccount.objects.create(
                key=key,
                kind=kind,
                currency=currency,
                user_id=user_id,
                organisation_id=organisation_id,
                rail=rail,
            )
    except IntegrityError:  # made by a concurrent writer a moment ago
        return LedgerAccount.objects.get(key=key)


def prepaid_account(*, organisation_id: int, currency: str) -> LedgerAccount:
    return account_ensure(
        key=selectors.prepaid_key(organisation_id, currency),
        kind=AccountKind.VENDOR_PREPAID,
        currency=currency,
        organisation_id=organisation_id,
    )


def vendor_debt_account(*, organisation_id: int, currency: str) -> LedgerAccount:
    return account_ensure(
        key=selectors.vendor_debt_key(organisation_id, currency),
        kind=AccountKind.VENDOR_DEBT,
        currency=currency,
        organisation_id=organisation_id,
    )


def clawback_account(*, user_id: int, currency: str) -> LedgerAccount:
    return account_ensure(
        key=selectors.clawback_key(user_id, currency),
        kind=AccountKind.CLAWBACK,
        currency=currency,
        user_id=user_id,
    )


def clearing_account(*, rail: str, currency: str) -> LedgerAccount:
    return account_ensure(
        key=selectors.clearing_key(rail, currency), kind=AccountKind.CLEARING, currency=currency, rail=rail
    )


def accounts_ensure(specs: dict[str, dict[str, object]]) -> dict[str, int]:
    """Ids of the accounts with these keys, creating the missing ones in one statement."""
    ids = dict(LedgerAccount.objects.filter(key__in=list(specs)).values_list("key", "id"))
    missing = [key for key in specs if key not in ids]
    if missing:
        LedgerAccount.objects.bulk_create(
            [LedgerAccount(key=key, **specs[key]) for key in missing],
            ignore_conflicts=True,
        )
        ids.update(LedgerAccount.objects.filter(key__in=missing).values_list("key", "id"))
    return ids


def payee_spec(payee: tuple[str, object], currency: str) -> tuple[str, dict[str, object]]:
    kind, ident = payee
    if kind == "user":
        return selectors.payable_key(int(str(ident)), currency), {
            "kind": AccountKind.PAYABLE,
            "currency": currency,
            "user_id": ident,
        }
    if kind == "fee":
        return selectors.fee_key(currency), {"kind": AccountKind.PLATFORM_FEE, "currency": currency}
    # An owner we cannot pay yet (no account): held in suspense until an operator resolves it.
    return selectors.suspense_key(currency), {"kind": AccountKind.SUSPENSE, "currency": currency}


def escrow_account(*, claim_id: int, currency: str) -> LedgerAccount:
    return account_ensure(
        key=selectors.escrow_key(claim_id, currency), kind=AccountKind.ESCROW, currency=currency
    )


def receipts_key(reporter_id: int, distributor: str, currency: str) -> str:
    return selectors.receipts_key(reporter_id, distributor, currency)


def receipts_account(*, reporter_id: int, distributor: str, currency: str) -> LedgerAccount:
    return account_ensure(
        key=receipts_key(reporter_id, distributor, currency),
        kind=AccountKind.RECEIPTS,
        currency=currency,
        user_id=reporter_id,
    )


# Posting -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leg:
    account: LedgerAccount
    amount_minor: int
    work_id: int | None = None
    source: str = ""


def balanced_check(legs: Iterable[tuple[int, str]]) -> None:
    totals: dict[str, int] = defaultdict(int)
    for amount, currency in legs:
        totals[currency] += amount
    unbalanced = {currency: total for currency, total in totals.items() if total}
    if unbalanced:
        raise LedgerImbalance(f"entries do not sum to zero: {unbalanced}")


def transaction_post(
    *, kind: str, key: str, memo: str, legs: Sequence[Leg], reverses: JournalTransaction | None = None
) -> JournalTransaction:
    """Append one balanced transaction and move the cached balances. Call inside transaction.atomic."""
    legs = [leg for leg in legs if leg.amount_minor]
    if not legs:
        raise LedgerImbalance("a transaction needs entries")
    if any(leg.account.currency not in currencies.MINOR_DIGITS for leg in legs):
        raise LedgerImbalance("unsupported currency")
    if any(abs(leg.amount_minor) > currencies.COLUMN_MAX for leg in legs):
        raise AmountOutOfRange("An amount does not fit the ledger's 64-bit columns.")
    balanced_check((leg.amount_minor, leg.account.currency) for leg in legs)
    locks.hold(locks.Serialised.LEDGER_WRITES, shared=True)  # before created_at is set: see statements
    txn = JournalTransaction.objects.create(
        kind=kind, key=key, memo=memo[:300], reverses=reverses, created_at=clock.now()
    )
    Entry.objects.bulk_create(
        [
            Entry(
                transaction=txn,
                account=leg.account,
                amount_minor=leg.amount_minor,
                currency=leg.account.currency,
                work_id=leg.work_id,
                source=leg.source,
            )
            for leg in legs
        ]
    )
    deltas: dict[int, int] = defaultdict(int)
    accounts = {}
    for leg in legs:
        deltas[leg.account.pk] += leg.amount_minor
        accounts[leg.account.pk] = leg.account
    for account_id, delta in sorted(deltas.items()):  # a fixed order: no deadlock between two posters
        if not delta:
            continue
        rows = LedgerAccount.objects.filter(pk=account_id)
        if delta < 0 and accounts[account_id].kind in NON_NEGATIVE_KINDS:
            # balance + delta >= held, in the UPDATE itself: no read-then-write.
            rows = rows.filter(balance_minor__gte=F("held_minor") - delta)
        # The new balance must fit the 64-bit column (SQLite would silently store a REAL instead).
        if delta > 0:
            rows = rows.filter(balance_minor__lte=currencies.COLUMN_MAX - delta)
        else:
            rows = rows.filter(balance_minor__gte=-currencies.COLUMN_MAX - delta)
        if rows.update(balance_minor=F("balance_minor") + delta) != 1:
            if delta > 0 or accounts[account_id].kind not in NON_NEGATIVE_KINDS:
                raise AmountOutOfRange(
                    f"Account {accounts[account_id].key} cannot hold that much.",
                    extra={"account": accounts[account_id].key},
                )
            raise InsufficientFunds(
                f"Account {accounts[account_id].key} does not hold {-delta} minor units to move.",
                extra={"account": accounts[account_id].key, "amount_minor": -delta},
            )
    return txn


_DELTA_SQL = (
    f"UPDATE {LedgerAccount._meta.db_table} "  # noqa: S608 (constant names; values are parameters)
    "SET balance_minor = balance_minor + %s, held_minor = held_minor + %s WHERE id = %s"
)
_ENTRY_SQL = (
    f"INSERT INTO {Entry._meta.db_table} "  # noqa: S608 (constant names; values are parameters)
    "(transaction_id, account_id, amount_minor, currency, work_id, source) VALUES (%s, %s, %s, %s, %s, %s)"
)


def balances_move(balance: dict[int, int], held: dict[int, int]) -> None:
    """Move many cached balances: one prepared UPDATE, executed per account (executemany).

    Used by settlement, which only credits payees and takes from a payer exactly what its holds reserved,
    so the conditional form is not needed; the CHECK constraints still refuse any negative result. The
    ids are sorted so two settlements lock accounts in the same order.
    """
    rows = [(balance.get(i, 0), held.get(i, 0), i) for i in sorted(set(balance) | set(held))]
    with connection.cursor() as cursor:
        cursor.executemany(_DELTA_SQL, rows)


def entries_insert(rows: list[tuple[int, int, int, str, int | None, str]]) -> None:
    """Append entries with one prepared INSERT (executemany): building thousands of model instances and
    compiling them is what made the ORM's bulk_create the slowest part of a settlement."""
    with connection.cursor() as cursor:
        cursor.executemany(_ENTRY_SQL, rows)


# Holds -------------------------------------------------------------------------------------------------


def hold_sql(*, also: str = "") -> str:
    """The prepaid hold, the one definition of it: a conditional UPDATE that reserves an amount on a prepaid
    account only while its available balance covers it, RETURNING the account's id (no row when short).
    Its parameters are hold_params(). `also` adds a condition (the access charge holds only for a use
    it counted first, splicing this statement into its own as a CTE)."""
    condition = f" AND ({also})" if also else ""
    return (
        f"UPDATE {LedgerAccount._meta.db_table} SET held_minor = held_minor + %s "  # noqa: S608 (constant names)
        f"WHERE key = %s AND balance_minor - held_minor >= %s{condition} RETURNING id"
    )


def hold_params(*, key: str, amount_minor: int) -> list[Any]:
    """The parameters of hold_sql(), in order."""
    return [amount_minor, key, amount_minor]


_HOLD_SQL = hold_sql()


def account_hold(*, key: str, amount_minor: int) -> int | None:
    """Reserve `amount_minor` on a prepaid account in one conditional UPDATE; its id, or None if short."""
    with connection.cursor() as cursor:
        cursor.execute(_HOLD_SQL, hold_params(key=key, amount_minor=amount_minor))
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def amount_check(amount: Money, *, what: str = "The amount") -> None:
    if not currencies.is_supported(amount.currency):
        raise ApiError(f"Currency {amount.currency} is not supported.", code="unsupported_currency")
    if not currencies.amount_in_bounds(amount.amount_minor, amount.currency):
        raise ApiError(
            f"{what} must be a positive whole number of minor units, "
            f"{currencies.bound_text(amount.currency)}.",
            code="amount_out_of_range",
            extra={"max_minor": currencies.max_minor(amount.currency)},
        )


def funding_existing(key: str, accounts: Sequence[LedgerAccount], amount: Money) -> JournalTransaction | None:
    """The funding already posted under `key` (a replayed top-up or receipt), or None; a conflict when it
    credited `accounts` another amount or was in another currency."""
    txn = JournalTransaction.objects.filter(key=key).first()
    if txn is None:
        return None
    credited = txn.entries.filter(account__in=list(accounts), amount_minor__gt=0).aggregate(
        total=Sum("amount_minor")
    )["total"]
    if credited != amount.amount_minor or txn.entries.exclude(currency=amount.currency).exists():
        raise Conflict(
            "This payment reference was already used for another top-up.", code="funding_reference_reused"
        )
    return txn


# Checks ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerProblems:
    balance_differences: dict[str, tuple[int, int]]  # account key -> (cached, from entries)
    held_differences: dict[str, tuple[int, int]]  # account key -> (cached, from unsettled items)
    unbalanced: list[tuple[int, str, int]]
    negative: list[str]
    currency_mismatches: int

    @property
    def clean(self) -> bool:
        return not (
            self.balance_differences
            or self.held_differences
            or self.unbalanced
            or self.negative
            or self.currency_mismatches
        )


def ledger_check() -> LedgerProblems:
    """Recompute every cached balance and hold from the entries and the unsettled revenue."""
    sums = selectors.account_balances_from_entries()
    holds = selectors.held_from_unsettled_items()
    balance_differences = {}
    held_differences = {}
    negative = []
    for account in LedgerAccount.objects.all().iterator():
        from_entries = sums.get(account.pk, 0)
        if account.balance_minor != from_entries:
            balance_differences[account.key] = (account.balance_minor, from_entries)
        if account.held_minor != holds.get(account.pk, 0):
            held_differences[account.key] = (account.held_minor, holds.get(account.pk, 0))
        if account.kind in NON_NEGATIVE_KINDS and (account.held_minor < 0 or account.available_minor < 0):
            negative.append(account.key)
        if account.kind in OWED_KINDS and account.balance_minor > 0:
            negative.append(account.key)
    return LedgerProblems(
        balance_differences=balance_differences,
        held_differences=held_differences,
        unbalanced=selectors.unbalanced_transactions(),
        negative=negative,
        currency_mismatches=selectors.mismatched_entry_currencies(),
    )
