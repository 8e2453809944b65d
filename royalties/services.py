"""Writes to the ledger: funding, recording revenue, settling it, reversing, and statements.

Invariants every function here keeps (docs/royalties.md explains them):
- a journal transaction's entries sum to zero per currency (checked here; a deferred trigger on PostgreSQL);
- entries are only ever inserted; a correction is a reversal transaction;
- an account's cached balance moves in the same database transaction as its entries, by conditional
  UPDATEs with F() expressions, and accounts that must not go negative cannot (a CHECK constraint backs
  the conditional UPDATE);
- a revenue item is recorded once (unique source key) and settled once (conditional UPDATE of its
  settlement, unique settlement key).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import secrets
import time
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, QuerySet, Sum
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Organisation, User
from catalog.models import Grant, Offer, OfferStatus, Work, WorkParent, WorkStatus
from catalog.selectors import claims_holding_revenue, monetizing_claim_on
from common import clock, locks, rows
from common import currency as currencies
from common.csvsafe import SafeCsvWriter
from common.money import Money, allocate
from common.problems import ApiError, Conflict, NotFound
from royalties import selectors, splits
from royalties.models import (
    NON_NEGATIVE_KINDS,
    OWED_KINDS,
    AccountKind,
    Entry,
    Holdback,
    JournalTransaction,
    LedgerAccount,
    ParkedRevenue,
    Receivable,
    ReceivableStatus,
    RevenueItem,
    RevenueSource,
    Statement,
    StatementLine,
    TransactionKind,
)

logger = logging.getLogger(__name__)

SETTLEMENT_CHUNK = 10_000
REPORT_MAX_LINES = 10_000


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


def _account(
    *,
    key: str,
    kind: str,
    currency: str,
    user_id: int | None = None,
    organisation_id: int | None = None,
    rail: str = "",
) -> LedgerAccount:
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
    return _account(
        key=selectors.prepaid_key(organisation_id, currency),
        kind=AccountKind.VENDOR_PREPAID,
        currency=currency,
        organisation_id=organisation_id,
    )


def vendor_debt_account(*, organisation_id: int, currency: str) -> LedgerAccount:
    return _account(
        key=selectors.vendor_debt_key(organisation_id, currency),
        kind=AccountKind.VENDOR_DEBT,
        currency=currency,
        organisation_id=organisation_id,
    )


def clawback_account(*, user_id: int, currency: str) -> LedgerAccount:
    return _account(
        key=selectors.clawback_key(user_id, currency),
        kind=AccountKind.CLAWBACK,
        currency=currency,
        user_id=user_id,
    )


def clearing_account(*, rail: str, currency: str) -> LedgerAccount:
    return _account(
        key=selectors.clearing_key(rail, currency), kind=AccountKind.CLEARING, currency=currency, rail=rail
    )


def _ensure_accounts(specs: dict[str, dict[str, object]]) -> dict[str, int]:
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


def _payee_spec(payee: tuple[str, object], currency: str) -> tuple[str, dict[str, object]]:
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


# Posting -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leg:
    account: LedgerAccount
    amount_minor: int
    work_id: int | None = None
    source: str = ""


def _check_balanced(legs: Iterable[tuple[int, str]]) -> None:
    totals: dict[str, int] = defaultdict(int)
    for amount, currency in legs:
        totals[currency] += amount
    unbalanced = {currency: total for currency, total in totals.items() if total}
    if unbalanced:
        raise LedgerImbalance(f"entries do not sum to zero: {unbalanced}")


def _post(
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
    _check_balanced((leg.amount_minor, leg.account.currency) for leg in legs)
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


def _apply_deltas(balance: dict[int, int], held: dict[int, int]) -> None:
    """Move many cached balances: one prepared UPDATE, executed per account (executemany).

    Used by settlement, which only credits payees and takes from a payer exactly what its holds reserved,
    so the conditional form is not needed; the CHECK constraints still refuse any negative result. The
    ids are sorted so two settlements lock accounts in the same order.
    """
    rows = [(balance.get(i, 0), held.get(i, 0), i) for i in sorted(set(balance) | set(held))]
    with connection.cursor() as cursor:
        cursor.executemany(_DELTA_SQL, rows)


def _insert_entries(rows: list[tuple[int, int, int, str, int | None, str]]) -> None:
    """Append entries with one prepared INSERT (executemany): building thousands of model instances and
    compiling them is what made the ORM's bulk_create the slowest part of a settlement."""
    with connection.cursor() as cursor:
        cursor.executemany(_ENTRY_SQL, rows)


# Funding -----------------------------------------------------------------------------------------------


# Rails whose payments each pay for one access: they never go to a vendor's debt.
PER_ACCESS_RAILS = frozenset({"x402"})


@transaction.atomic
def prepaid_fund(
    *, organisation: Organisation, amount: Money, external_ref: str, rail: str = "manual"
) -> JournalTransaction:
    """Credit a vendor's prepaid balance with money received on `rail` (idempotent by external_ref).

    The same reference again returns the first transaction; with another amount or organisation it is a
    conflict. Money moves from the rail's clearing account, so the rail can be reconciled against it. A
    vendor that owes us (a refund or chargeback of money it had already spent) pays that debt first: the
    top-up covers the debt, and only the rest becomes spendable (except a payment made for one access,
    on a rail in PER_ACCESS_RAILS, which pays that access).
    """
    if amount.amount_minor <= 0:
        raise ApiError("A top-up must be a positive amount.", code="invalid_amount")
    _check_amount(amount, what="A top-up")
    if not external_ref:
        raise ApiError("A top-up needs the rail's reference.", code="missing_reference")
    key = f"funding:{rail}:{external_ref}"
    prepaid = prepaid_account(organisation_id=organisation.pk, currency=amount.currency)
    debt = vendor_debt_account(organisation_id=organisation.pk, currency=amount.currency)
    existing = _existing_funding(key, [prepaid, debt], amount)
    if existing is not None:
        return existing
    clearing = clearing_account(rail=rail, currency=amount.currency)
    try:
        with transaction.atomic():
            owed = -LedgerAccount.objects.select_for_update().get(pk=debt.pk).balance_minor
            # A payment for one access (x402) pays that access, not an older debt.
            to_debt = 0 if rail in PER_ACCESS_RAILS else min(owed, amount.amount_minor)
            return _post(
                kind=TransactionKind.FUNDING,
                key=key,
                memo=f"Top-up of {organisation.name} via {rail} ({external_ref})",
                legs=[
                    Leg(clearing, -amount.amount_minor),
                    Leg(debt, to_debt),
                    Leg(prepaid, amount.amount_minor - to_debt),
                ],
            )
    except IntegrityError:
        replay = _existing_funding(key, [prepaid, debt], amount)
        if replay is None:
            raise
        return replay


def _existing_funding(
    key: str, accounts: Sequence[LedgerAccount], amount: Money
) -> JournalTransaction | None:
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


# Recording revenue -------------------------------------------------------------------------------------


def _fee_bps(offer: Offer | None) -> int:
    if offer is not None and offer.platform_fee_bps is not None:
        return offer.platform_fee_bps
    return int(settings.PLATFORM_FEE_BPS)


def _current_offer(work_id: int) -> Offer | None:
    return Offer.objects.filter(work_id=work_id, status=OfferStatus.CURRENT).first()


_HOLD_SQL = (
    f"UPDATE {LedgerAccount._meta.db_table} SET held_minor = held_minor + %s "  # noqa: S608 (a constant name)
    "WHERE key = %s AND balance_minor - held_minor >= %s RETURNING id"
)


def _hold(*, key: str, amount_minor: int) -> int | None:
    """Reserve `amount_minor` on a prepaid account in one conditional UPDATE; its id, or None if short."""
    with connection.cursor() as cursor:
        cursor.execute(_HOLD_SQL, [amount_minor, key, amount_minor])
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def _record(
    *,
    source: str,
    source_key: str,
    work_id: int,
    amount: Money,
    fee_bps: int,
    arose_at: datetime,
    payer_key: str | None = None,
    payer: LedgerAccount | None = None,
    fresh_key: bool = False,
) -> RevenueItem:
    """Insert a revenue item; a prepaid payer (by key) is held first, in the same savepoint.

    Recording the same source key twice returns the first item when it says the same thing and is a
    conflict when it does not. Refused recordings change nothing. A caller whose source key was just made
    (`fresh_key`, e.g. a new access id) and which runs inside its own transaction skips the savepoint:
    there is no earlier recording to fall back on, and any failure rolls back the caller's transaction.
    """
    if amount.amount_minor <= 0:
        raise ApiError("Revenue must be a positive amount.", code="invalid_amount")
    _check_amount(amount, what="Revenue")
    if fresh_key:
        return _insert_revenue(source, source_key, work_id, amount, fee_bps, arose_at, payer_key, payer)
    try:
        with transaction.atomic():
            return _insert_revenue(source, source_key, work_id, amount, fee_bps, arose_at, payer_key, payer)
    except IntegrityError:
        existing = RevenueItem.objects.filter(source_key=source_key).first()
        if existing is None:
            raise
        if (existing.work_id, existing.amount_minor, existing.currency) != (
            work_id,
            amount.amount_minor,
            amount.currency,
        ):
            raise Conflict(
                f"Revenue {source_key} was already recorded with other values.", code="revenue_key_reused"
            ) from None
        return existing


def _insert_revenue(
    source: str,
    source_key: str,
    work_id: int,
    amount: Money,
    fee_bps: int,
    arose_at: datetime,
    payer_key: str | None,
    payer: LedgerAccount | None,
) -> RevenueItem:
    if payer_key is not None:
        payer_id = _hold(key=payer_key, amount_minor=amount.amount_minor)
        if payer_id is None:
            raise InsufficientFunds(
                "The prepaid balance is not enough for this access; top it up.",
                extra={"price_minor": amount.amount_minor, "currency": amount.currency},
            )
    else:
        assert payer is not None
        payer_id = payer.pk
    values = _revenue_values(source, source_key, work_id, amount, fee_bps, arose_at)
    return rows.insert(RevenueItem(**values, payer_id=payer_id))


def _revenue_values(
    source: str, source_key: str, work_id: int, amount: Money, fee_bps: int, arose_at: datetime
) -> dict[str, object]:
    """A revenue item's values by attribute name, all but the payer's account id."""
    return {
        "source": source,
        "source_key": source_key,
        "work_id": work_id,
        "amount_minor": amount.amount_minor,
        "currency": amount.currency,
        "fee_bps": fee_bps,
        "arose_at": arose_at,
    }


@dataclass(frozen=True)
class AccessFee:
    """One paid access's revenue before it is recorded, and the vendor's prepaid account that pays it."""

    source_key: str
    work_id: int
    amount: Money
    fee_bps: int
    arose_at: datetime
    payer_key: str

    def revenue_values(self) -> dict[str, object]:
        """The RevenueItem's values by attribute name, all but the payer's account id."""
        return _revenue_values(
            RevenueSource.ACCESS.value,
            self.source_key,
            self.work_id,
            self.amount,
            self.fee_bps,
            self.arose_at,
        )


def access_fee(
    *,
    organisation: Organisation,
    offer: Offer,
    amount: Money,
    access_key: str,
    arose_at: datetime | None = None,
) -> AccessFee | None:
    """What charging a vendor for one access to `offer`'s work records; None for a free use."""
    if amount.currency != offer.currency:
        raise ApiError("The price must be in the offer's currency.", code="currency_mismatch")
    if amount.amount_minor == 0:
        return None
    return AccessFee(
        source_key=f"access:{access_key}",
        work_id=offer.work_id,
        amount=amount,
        fee_bps=_fee_bps(offer),
        arose_at=arose_at or clock.now(),
        payer_key=selectors.prepaid_key(organisation.pk, amount.currency),
    )


def access_fee_record(
    *,
    organisation: Organisation,
    offer: Offer,
    amount: Money,
    access_key: str,
    arose_at: datetime | None = None,
    new_key: bool = False,
) -> RevenueItem | None:
    """Charge a vendor for one access to `offer`'s work: the access API calls this inside its transaction.

    One conditional UPDATE holds the price on the vendor's prepaid balance (refused with
    InsufficientFunds, HTTP 402, when the available balance is short) and one INSERT records the revenue,
    unique by `access_key`. Settlement later moves the held money to the fee and the owners. A free use
    (price 0) records nothing. `new_key` says the access key was made just now, inside the caller's
    transaction, so no savepoint is needed to recover from an earlier recording of it.
    """
    fee = access_fee(
        organisation=organisation, offer=offer, amount=amount, access_key=access_key, arose_at=arose_at
    )
    if fee is None:
        return None
    return _record(
        source=RevenueSource.ACCESS,
        source_key=fee.source_key,
        work_id=fee.work_id,
        amount=fee.amount,
        fee_bps=fee.fee_bps,
        arose_at=fee.arose_at,
        payer_key=fee.payer_key,
        fresh_key=new_key,
    )


def access_fees_record(
    *, organisation: Organisation, fees: list[tuple[Offer, Money, str]], arose_at: datetime | None = None
) -> int:
    """Charge a vendor for several accesses sold together (a retrieval's passages), inside the caller's
    transaction, under access keys made just now: one conditional UPDATE holds their total on the prepaid
    balance (InsufficientFunds, 402, when short) and one INSERT records a revenue item for each, as
    access_fee_record would one by one. Free ones record nothing. How many were recorded."""
    charged = [
        access_fee(organisation=organisation, offer=offer, amount=amount, access_key=key, arose_at=arose_at)
        for offer, amount, key in fees
    ]
    made = [fee for fee in charged if fee is not None]
    if not made:
        return 0
    if len({(fee.payer_key, fee.amount.currency) for fee in made}) != 1:
        raise ApiError("Accesses charged together are paid in one currency.", code="currency_mismatch")
    for fee in made:
        _check_amount(fee.amount, what="Revenue")
    total = sum(fee.amount.amount_minor for fee in made)
    payer_id = _hold(key=made[0].payer_key, amount_minor=total)
    if payer_id is None:
        raise InsufficientFunds(
            "The prepaid balance is not enough for this access; top it up.",
            extra={"price_minor": total, "currency": made[0].amount.currency},
        )
    RevenueItem.objects.bulk_create([RevenueItem(**fee.revenue_values(), payer_id=payer_id) for fee in made])
    return len(made)


def licence_fee_charge(*, grant: Grant, organisation_id: int | None = None, rail: str = "") -> RevenueItem:
    """Record the licence fee owed under `grant`, once per grant (source key `licence:<grant id>`).

    Paid from `organisation_id`'s prepaid balance (held by one conditional UPDATE: InsufficientFunds,
    402, when short) or, when the money already arrived on an external `rail`, from that rail's clearing
    account. Only `royalties.licences` calls this, inside the transaction that activates the grant.
    """
    if grant.fee_minor <= 0:
        raise ApiError("This grant has no licence fee to charge.", code="no_licence_fee")
    amount = Money(grant.fee_minor, grant.currency)
    values = {
        "source": RevenueSource.LICENCE_FEE,
        "source_key": f"licence:{grant.pk}",
        "work_id": grant.offer.work_id,
        "amount": amount,
        "fee_bps": _fee_bps(grant.offer),
        "arose_at": clock.now(),
    }
    if rail:
        return _record(**values, payer=clearing_account(rail=rail, currency=grant.currency))  # type: ignore[arg-type]
    if organisation_id is None:
        raise InsufficientFunds(
            "The licence fee is paid from a prepaid balance and you have none yet: fund your wallet, then "
            "accept the terms again.",
            code="licence_fee_unpaid",
            extra={"price_minor": amount.amount_minor, "currency": amount.currency},
        )
    try:
        return _record(**values, payer_key=selectors.prepaid_key(organisation_id, grant.currency))  # type: ignore[arg-type]
    except InsufficientFunds:
        raise InsufficientFunds(
            "The prepaid balance is not enough for the licence fee of "
            f"{currencies.format_minor(amount.amount_minor, amount.currency)}; top it up.",
            extra={"price_minor": amount.amount_minor, "currency": amount.currency},
        ) from None


def escrow_account(*, claim_id: int, currency: str) -> LedgerAccount:
    return _account(key=selectors.escrow_key(claim_id, currency), kind=AccountKind.ESCROW, currency=currency)


def claim_charge_hold(*, claim_id: int, organisation_id: int, amount: Money) -> JournalTransaction:
    """Move a claim's charge from the vendor's available prepaid balance into the claim's escrow, once
    per claim (InsufficientFunds, changing nothing, when the balance is short). Call inside a transaction."""
    _check_amount(amount, what="A claim's charge")
    key = f"claim-hold:{claim_id}"
    existing = JournalTransaction.objects.filter(key=key).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        return _post(
            kind=TransactionKind.CLAIM,
            key=key,
            memo=f"Claim #{claim_id}: charge held in escrow",
            legs=[
                Leg(
                    prepaid_account(organisation_id=organisation_id, currency=amount.currency),
                    -amount.amount_minor,
                ),
                Leg(escrow_account(claim_id=claim_id, currency=amount.currency), amount.amount_minor),
            ],
        )


def claim_charge_release(*, claim_id: int, work: Work, amount: Money) -> RevenueItem:
    """The claim is final: its escrow becomes revenue of the claimed work (source `claim`), split up the
    work's chain at settlement like any other, once per claim."""
    return _record(
        source=RevenueSource.CLAIM,
        source_key=f"claim:{claim_id}",
        work_id=work.pk,
        amount=amount,
        fee_bps=_fee_bps(_current_offer(work.pk)),
        arose_at=clock.now(),
        payer_key=selectors.escrow_key(claim_id, amount.currency),
    )


def claim_charge_return(*, claim_id: int, organisation_id: int, amount: Money) -> JournalTransaction:
    """The claim was dismissed: its escrow goes back to the vendor's prepaid balance, once per claim."""
    key = f"claim-return:{claim_id}"
    existing = JournalTransaction.objects.filter(key=key).first()
    if existing is not None:
        return existing
    return _post(
        kind=TransactionKind.CLAIM,
        key=key,
        memo=f"Claim #{claim_id}: charge returned to the vendor",
        legs=[
            Leg(escrow_account(claim_id=claim_id, currency=amount.currency), -amount.amount_minor),
            Leg(
                prepaid_account(organisation_id=organisation_id, currency=amount.currency),
                amount.amount_minor,
            ),
        ],
    )


def dataset_share_record(
    *, organisation: Organisation, key: str, offer: Offer, amount: Money, arose_at: datetime
) -> RevenueItem:
    """One work's part of a dataset sale, held on the vendor's prepaid balance (InsufficientFunds when
    short) and split later by settlement like any revenue of the work. Call inside the sale's transaction."""
    return _record(
        source=RevenueSource.DATASET,
        source_key=key,
        work_id=offer.work_id,
        amount=amount,
        fee_bps=_fee_bps(offer),
        arose_at=arose_at,
        payer_key=selectors.prepaid_key(organisation.pk, amount.currency),
    )


def dataset_curator_pay(
    *, organisation: Organisation, key: str, curator_id: int | None, amount: Money, memo: str
) -> JournalTransaction:
    """Pay a dataset curator's declared share of a sale at once, from the vendor's available prepaid
    balance (InsufficientFunds when short) to the curator's payable, or to the platform's fee account when
    the platform curates. Call inside the sale's transaction."""
    prepaid = prepaid_account(organisation_id=organisation.pk, currency=amount.currency)
    spec = ("fee", None) if curator_id is None else ("user", curator_id)
    key_for_payee, fields = _payee_spec(spec, amount.currency)
    payee = _account(key=key_for_payee, **fields)  # type: ignore[arg-type]
    return _post(
        kind=TransactionKind.SETTLEMENT,
        key=key,
        memo=memo,
        legs=[
            Leg(prepaid, -amount.amount_minor, None, RevenueSource.DATASET),
            Leg(payee, amount.amount_minor, None, RevenueSource.DATASET),
        ],
    )


def _earning_work(work_id: int) -> int:
    """The work a sale of `work_id`'s media earns for: the claimed work while a monetize claim stands on
    it, else the work itself."""
    claim = monetizing_claim_on(work_id=work_id)
    return claim.work_id if claim is not None else work_id


@transaction.atomic
def sale_record(*, work: Work, buyer: Organisation, amount: Money, sale_ref: str) -> RevenueItem:
    """A sale on Tribute of `work`, paid from the buyer's prepaid balance, once per `sale_ref`.

    The price is held on the buyer's balance (402 InsufficientFunds when it is short, and nothing changes)
    and split up the work's chain at settlement. Under a standing monetize claim the claimed work earns.
    """
    earning_work = _earning_work(work.pk)
    return _record(
        source=RevenueSource.SALE if earning_work == work.pk else RevenueSource.CLAIM,
        source_key=f"sale:{sale_ref}",
        work_id=earning_work,
        amount=amount,
        fee_bps=_fee_bps(_current_offer(earning_work)),
        arose_at=clock.now(),
        payer_key=selectors.prepaid_key(buyer.pk, amount.currency),
    )


@dataclass(frozen=True)
class ReportLine:
    line_id: str
    work_id: int
    amount_minor: int
    currency: str
    arose_at: datetime | None = None


@dataclass(frozen=True)
class ReportResult:
    created: int
    duplicates: int
    items: list[Receivable]


def _earliest_sale(work_id: int) -> datetime:
    """The earliest moment a sale of `work_id` can have happened: not before the work existed, nor before
    any parent link (and the grant it was made under) that shares in its revenue."""
    work_created = Work.objects.filter(pk=work_id).values_list("created_at", flat=True).get()
    moments = [work_created]
    for link_created, grant_created in WorkParent.objects.filter(child_id=work_id).values_list(
        "created_at", "grant__created_at"
    ):
        moments += [link_created, grant_created]
    return max(moments)


def _check_sale_at(*, line_id: str, work_id: int, sale_at: datetime, now: datetime) -> None:
    if sale_at > now:
        raise ApiError(f"Line {line_id}: the sale is in the future.", code="invalid_arose_at")
    oldest = now - timedelta(days=int(settings.REPORT_MAX_AGE_DAYS))
    if sale_at < oldest:
        raise ApiError(
            f"Line {line_id}: a sale older than {settings.REPORT_MAX_AGE_DAYS} days is not accepted.",
            code="invalid_arose_at",
            extra={"earliest": oldest.isoformat()},
        )
    earliest = _earliest_sale(work_id)
    if sale_at < earliest:
        raise ApiError(
            f"Line {line_id}: the sale is dated before the work (or its licence) existed.",
            code="invalid_arose_at",
            extra={"earliest": earliest.isoformat()},
        )


def _check_amount(amount: Money, *, what: str = "The amount") -> None:
    if not currencies.is_supported(amount.currency):
        raise ApiError(f"Currency {amount.currency} is not supported.", code="unsupported_currency")
    if not currencies.amount_in_bounds(amount.amount_minor, amount.currency):
        raise ApiError(
            f"{what} must be a positive whole number of minor units, "
            f"{currencies.bound_text(amount.currency)}.",
            code="amount_out_of_range",
            extra={"max_minor": currencies.max_minor(amount.currency)},
        )


@transaction.atomic
def revenue_report_record(*, user: User, distributor: str, lines: Sequence[ReportLine]) -> ReportResult:
    """Sales of the user's own works reported by a distributor: all lines or none.

    Each line becomes a *receivable* from the distributor (named payer), not revenue: nothing is credited
    to anyone until money from that distributor arrives and is matched (`receipt_record`). A work whose
    media stands under a monetize claim earns for the claimed work instead (source `claim`).

    The sale date (`arose_at`) may not be in the future, before the work or its parent licences existed,
    or older than REPORT_MAX_AGE_DAYS. It is kept as reported, but the revenue is split by the lineage and
    owners in force when it was reported, unless an operator confirms the earlier date
    (`receivable_date_confirm`): backdating cannot cut out a parent or a co-owner.

    Each line is recorded once per (reporter, distributor, line id): sending the same statement again
    records nothing new; a known line id with other values is a conflict.
    """
    distributor = distributor.strip().lower()
    if not distributor or len(distributor) > 40 or ":" in distributor:
        raise ApiError("Name the distributor (at most 40 characters, no colon).", code="invalid_distributor")
    if not lines:
        raise ApiError("A report needs at least one line.", code="empty_report")
    if len(lines) > REPORT_MAX_LINES:
        raise ApiError(f"A report has at most {REPORT_MAX_LINES} lines.", code="report_too_large")
    ids = [line.line_id for line in lines]
    if len(set(ids)) != len(ids):
        raise ApiError("Each line id may appear once in a report.", code="duplicate_line")
    managed = set(
        Work.objects.filter(pk__in={line.work_id for line in lines}, created_by=user).values_list(
            "pk", flat=True
        )
    )
    now = clock.now()
    due_at = now + timedelta(days=int(settings.RECEIVABLE_DUE_DAYS))
    fees: dict[int, int] = {}
    earner: dict[int, int] = {}
    items: list[Receivable] = []
    created = 0
    for line in lines:
        if line.work_id not in managed:
            raise NotFound(
                f"Line {line.line_id}: work {line.work_id} is not one you manage.", code="work_not_found"
            )
        if not line.line_id or len(line.line_id) > 100:
            raise ApiError("Line ids are 1 to 100 characters.", code="invalid_line_id")
        amount = Money(line.amount_minor, line.currency) if isinstance(line.amount_minor, int) else None
        if amount is None:
            raise ApiError(f"Line {line.line_id}: the amount is not an integer.", code="invalid_amount")
        _check_amount(amount, what=f"Line {line.line_id}: the amount")
        sale_at = line.arose_at or now
        _check_sale_at(line_id=line.line_id, work_id=line.work_id, sale_at=sale_at, now=now)
        if line.work_id not in earner:
            earner[line.work_id] = _earning_work(line.work_id)
        earning_work = earner[line.work_id]
        if earning_work not in fees:
            fees[earning_work] = _fee_bps(_current_offer(earning_work))
        key = f"report:{user.pk}:{distributor}:{line.line_id}"
        existing = Receivable.objects.filter(source_key=key).first()
        if existing is not None:
            if (existing.reported_work_id, existing.amount_minor, existing.currency) != (
                line.work_id,
                amount.amount_minor,
                amount.currency,
            ):
                raise Conflict(
                    f"Revenue {key} was already recorded with other values.", code="revenue_key_reused"
                )
            items.append(existing)
            continue
        items.append(
            Receivable.objects.create(
                reporter=user,
                distributor=distributor,
                source=RevenueSource.REPORTED if earning_work == line.work_id else RevenueSource.CLAIM,
                source_key=key,
                work_id=earning_work,
                reported_work_id=line.work_id,
                amount_minor=amount.amount_minor,
                currency=amount.currency,
                fee_bps=fees[earning_work],
                sale_at=sale_at,
                split_at=now,
                due_at=due_at,
                created_at=now,
            )
        )
        created += 1
    return ReportResult(created=created, duplicates=len(lines) - created, items=items)


def receipts_key(reporter_id: int, distributor: str, currency: str) -> str:
    return selectors.receipts_key(reporter_id, distributor, currency)


def receipts_account(*, reporter_id: int, distributor: str, currency: str) -> LedgerAccount:
    return _account(
        key=receipts_key(reporter_id, distributor, currency),
        kind=AccountKind.RECEIPTS,
        currency=currency,
        user_id=reporter_id,
    )


@dataclass(frozen=True)
class ReceiptResult:
    receipt: JournalTransaction
    matched: list[Receivable]


@transaction.atomic
def receipt_record(
    *,
    reporter: User,
    distributor: str,
    amount: Money,
    rail: str,
    reference: str,
    receivable_ids: Sequence[int] | None = None,
) -> ReceiptResult:
    """Money a distributor paid for a reporter's receivables arrived on `rail` (a Stripe charge, a chain
    deposit, an operator's confirmed bank receipt): clearing:<rail> -> receipts:<reporter>:<distributor>,
    once per (rail, reference), then matched to the open receivables it covers.

    The same reference again returns the first receipt (and matches again, which finds nothing new);
    with another amount it is a conflict. `receivable_ids` names the receivables this payment is for;
    otherwise the oldest open ones are matched while the money covers them whole.
    """
    distributor = distributor.strip().lower()
    _check_amount(amount, what="A receipt")
    if not reference.strip():
        raise ApiError("A receipt needs the payment's reference.", code="missing_reference")
    reference = reference.strip()[:150]
    key = f"funding:{rail}:{reference}"
    account = receipts_account(reporter_id=reporter.pk, distributor=distributor, currency=amount.currency)
    receipt = _existing_funding(key, [account], amount)
    if receipt is None:
        receipt = _post(
            kind=TransactionKind.FUNDING,
            key=key,
            memo=f"Receipt from {distributor} for {reporter.get_username()} via {rail} ({reference})",
            legs=[
                Leg(clearing_account(rail=rail, currency=amount.currency), -amount.amount_minor),
                Leg(account, amount.amount_minor),
            ],
        )
    matched = receivables_match(
        reporter=reporter,
        distributor=distributor,
        currency=amount.currency,
        receipt=receipt,
        receivable_ids=receivable_ids,
    )
    return ReceiptResult(receipt=receipt, matched=matched)


@transaction.atomic
def receivables_match(
    *,
    reporter: User,
    distributor: str,
    currency: str,
    receipt: JournalTransaction | None = None,
    receivable_ids: Sequence[int] | None = None,
) -> list[Receivable]:
    """Match open receivables of (reporter, distributor, currency), oldest first, while the money received
    from that payer and not yet used covers each whole one. Each match holds its amount on the receipts
    account and records its revenue item (source key as reported), which settlement then splits: the
    only way reported revenue reaches a payable."""
    key = receipts_key(reporter.pk, distributor, currency)
    open_receivables = (
        Receivable.objects.select_for_update()
        .filter(reporter=reporter, distributor=distributor, currency=currency, status=ReceivableStatus.OPEN)
        .order_by("id")
    )
    if receivable_ids is not None:
        open_receivables = open_receivables.filter(pk__in=list(receivable_ids))
    now = clock.now()
    matched = []
    for receivable in open_receivables:
        payer_id = _hold(key=key, amount_minor=receivable.amount_minor)
        if payer_id is None:
            break
        revenue = rows.insert(
            RevenueItem(
                **_revenue_values(
                    receivable.source,
                    receivable.source_key,
                    receivable.work_id,
                    Money(receivable.amount_minor, receivable.currency),
                    receivable.fee_bps,
                    receivable.split_at,
                ),
                payer_id=payer_id,
                created_at=now,
            )
        )
        receivable.status = ReceivableStatus.MATCHED
        receivable.revenue = revenue
        receivable.receipt = receipt
        receivable.matched_at = now
        receivable.save(update_fields=["status", "revenue", "receipt", "matched_at"])
        matched.append(receivable)
    return matched


@transaction.atomic
def receivable_date_confirm(*, receivable: Receivable, operator: User, sale_at: datetime) -> Receivable:
    """An operator confirmed (from the distributor's own statement) that an open receivable's sale happened
    at `sale_at`: it is then split by the lineage and owners in force at that moment. The same bounds as
    a report apply; a matched receivable is not changed."""
    receivable = Receivable.objects.select_for_update().get(pk=receivable.pk)
    if receivable.status != ReceivableStatus.OPEN:
        raise Conflict("Only an open receivable's date can be confirmed.", code="receivable_matched")
    if timezone.is_naive(sale_at):
        raise ApiError("Times need a zone.", code="naive_datetime")
    _check_sale_at(
        line_id=receivable.source_key, work_id=receivable.work_id, sale_at=sale_at, now=clock.now()
    )
    receivable.sale_at = sale_at
    receivable.split_at = sale_at
    receivable.date_confirmed_by = operator
    receivable.save(update_fields=["sale_at", "split_at", "date_confirmed_by"])
    return receivable


REPORT_COLUMNS = ("line_id", "work", "amount_minor", "currency", "arose_at")


def report_lines_from_csv(data: bytes) -> list[ReportLine]:
    """Parse a distributor statement: a header row naming `line_id, work, amount_minor, currency` and
    optionally `arose_at` (ISO 8601 with a zone offset). Any bad row refuses the whole file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError("The statement must be UTF-8 CSV.", code="invalid_csv") from None
    reader = csv.DictReader(io.StringIO(text))
    header = set(reader.fieldnames or ())
    missing = [c for c in REPORT_COLUMNS[:4] if c not in header]
    if missing:
        raise ApiError(f"The CSV header lacks {', '.join(missing)}.", code="invalid_csv")
    lines = []
    for number, row in enumerate(reader, start=2):
        try:
            amount = int(row["amount_minor"])
            work_id = int(row["work"])
        except (TypeError, ValueError):
            raise ApiError(
                f"Row {number}: work and amount_minor must be integers.", code="invalid_csv"
            ) from None
        arose_at = None
        if row.get("arose_at"):
            arose_at = parse_datetime(row["arose_at"].strip())
            if arose_at is None or timezone.is_naive(arose_at):
                raise ApiError(f"Row {number}: arose_at must be ISO 8601 with a zone.", code="invalid_csv")
        lines.append(
            ReportLine(
                line_id=(row["line_id"] or "").strip(),
                work_id=work_id,
                amount_minor=amount,
                currency=(row["currency"] or "").strip().upper(),
                arose_at=arose_at,
            )
        )
        if len(lines) > REPORT_MAX_LINES:
            raise ApiError(f"A report has at most {REPORT_MAX_LINES} lines.", code="report_too_large")
    return lines


# Settlement --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettleResult:
    items: int
    transactions: int


class SettlementRace(RuntimeError):
    """Another settlement took some of this chunk's items: this chunk rolls back and is retried."""


SETTLEMENT_RACE_RETRIES = 8
# Errors a chunk can meet because of what its items say (an amount the columns cannot hold, a split that
# cannot be made): the items at fault are parked so the others settle. Anything else (the database went
# away) stops the run, and the next run takes the chunk again.
_ITEM_ERRORS = (
    splits.SplitError,
    LedgerImbalance,
    AmountOutOfRange,
    ArithmeticError,
    DataError,
    IntegrityError,
)


def revenue_settle(*, chunk_size: int = SETTLEMENT_CHUNK, max_chunks: int | None = None) -> SettleResult:
    """Turn unsettled revenue into journal transactions, exactly once, one database transaction per chunk.

    Each chunk selects up to `chunk_size` unsettled items (on PostgreSQL locked with SKIP LOCKED, so
    concurrent workers take different items; SQLite's IMMEDIATE transactions serialise them), marks them
    settled with a conditional UPDATE, appends one balanced transaction with the aggregated entries, and
    moves the cached balances. A crash loses at most the chunk in flight, which rolls back whole and is
    taken by the next run. Running it again settles nothing twice.

    A chunk that fails because of its items is split in halves until the failing items are found; each is
    parked (`ParkedRevenue`, with its error, shown in the admin) and everything else settles, so one bad
    item never blocks other payees. A chunk that raced with another worker is retried at most
    SETTLEMENT_RACE_RETRIES times, with a growing pause between tries.
    """
    parked = set(ParkedRevenue.objects.values_list("item_id", flat=True))
    items = chunks = races = 0
    while max_chunks is None or chunks < max_chunks:
        try:
            count = _settle_chunk(limit=chunk_size, excluded=parked)
        except SettlementRace:
            races += 1
            if races > SETTLEMENT_RACE_RETRIES:
                logger.warning("settlement raced %d times in a row; the next run goes on", races)
                break
            logger.info("settlement chunk raced with another worker; retrying")
            time.sleep(min(0.01 * 2**races, 1.0))
            continue
        except _ITEM_ERRORS as error:
            logger.warning("settlement chunk failed (%s); isolating the items at fault", error)
            count = _settle_isolating(limit=chunk_size, excluded=parked)
            if count == 0 and not _next_ids(limit=1, excluded=parked):
                break
            items += count
            chunks += 1
            continue
        races = 0
        if count == 0:
            break
        items += count
        chunks += 1
    return SettleResult(items=items, transactions=chunks)


def _settleable() -> QuerySet[RevenueItem]:
    """Unsettled revenue, less what claims hold: that of works a claim blocks (until the block is lifted,
    catalog.blocks), and that of a claimed work from the claim's date while the claim is pending or under
    a monetize decision (until royalties.claims re-routes it or the claim is dismissed for good). Held
    revenue waits on its payer's account."""
    held_by_claim = claims_holding_revenue().filter(
        subject_work_id=OuterRef("work_id"), created_at__lte=OuterRef("arose_at")
    )
    return (
        RevenueItem.objects.filter(settlement__isnull=True)
        .exclude(work_id__in=Work.objects.filter(status=WorkStatus.BLOCKED).values("pk"))
        .exclude(Exists(held_by_claim))
    )


def claim_revenue_reroute(*, subject_work_id: int, claimed_work_id: int, since: datetime) -> int:
    """A final monetize claim: the claimed work earns the subject work's unsettled revenue from the claim's
    date on (source `claim`), split up the claimed work's chain at settlement. Answers how many items."""
    return RevenueItem.objects.filter(
        work_id=subject_work_id, settlement__isnull=True, arose_at__gte=since
    ).update(work_id=claimed_work_id, source=RevenueSource.CLAIM)


def _next_ids(*, limit: int, excluded: set[int]) -> list[int]:
    pending = _settleable()
    if excluded:
        pending = pending.exclude(pk__in=excluded)
    return list(pending.order_by("id").values_list("id", flat=True)[:limit])


def _settle_isolating(*, limit: int, excluded: set[int]) -> int:
    """Settle the next chunk's items in halves, parking each single item that still fails. Adds the
    parked ids to `excluded`; answers how many items settled."""
    settled = 0
    pending = [_next_ids(limit=limit, excluded=excluded)]
    while pending:
        ids = pending.pop()
        if not ids:
            continue
        try:
            settled += _settle_chunk(limit=len(ids), excluded=excluded, only=ids)
        except SettlementRace:
            continue  # another worker took some of them: the next run sees the rest
        except _ITEM_ERRORS as error:
            if len(ids) == 1:
                _park(ids[0], error)
                excluded.add(ids[0])
            else:
                middle = len(ids) // 2
                pending += [ids[middle:], ids[:middle]]
    return settled


def _park(item_id: int, error: Exception) -> None:
    message = f"{type(error).__name__}: {error}"[:500]
    logger.error("revenue item #%s parked: %s", item_id, message)
    with transaction.atomic():
        ParkedRevenue.objects.get_or_create(
            item_id=item_id, defaults={"error": message, "parked_at": clock.now()}
        )


def parked_retry(*, parked_ids: Sequence[int]) -> int:
    """An operator retries parked items (after fixing their cause): they are unparked and settled; any
    that still fails is parked again with its new error. Answers how many settled."""
    item_ids = list(ParkedRevenue.objects.filter(pk__in=parked_ids).values_list("item_id", flat=True))
    ParkedRevenue.objects.filter(pk__in=parked_ids).delete()
    excluded = set(ParkedRevenue.objects.values_list("item_id", flat=True))
    settled = 0
    for item_id in item_ids:
        try:
            settled += _settle_chunk(limit=1, excluded=excluded, only=[item_id])
        except (SettlementRace, *_ITEM_ERRORS) as error:
            _park(item_id, error)
    return settled


class _Plans:
    """Split plans per (work, period in which its lineage and sheets stayed the same, fee)."""

    def __init__(self, lineage: selectors.Lineage) -> None:
        self.lineage = lineage
        self.times: dict[int, list[datetime]] = {}
        self.plans: dict[tuple[int, int, int], splits.Plan] = {}

    def get(self, work: int, arose_at: datetime, fee_bps: int) -> splits.Plan:
        times = self.times.get(work)
        if times is None:
            times = self.times[work] = self.lineage.change_times(work)
        cache_key = (work, bisect_right(times, arose_at), fee_bps)
        found = self.plans.get(cache_key)
        if found is None:
            edges = self.lineage.edges_at(arose_at)
            owners = {
                node: [
                    (("user", user_id) if user_id is not None else ("email", email), bps)
                    for user_id, email, bps in self.lineage.owners_at(node, arose_at)
                ]
                for node in self.lineage.closure(work)
            }
            found = self.plans[cache_key] = splits.plan(
                work=work, fee_bps=fee_bps, owners=owners, edges=edges
            )
        return found


@transaction.atomic
def _settle_chunk(*, limit: int, excluded: set[int] | None = None, only: Sequence[int] | None = None) -> int:
    # Held until the chunk commits, and taken before its transaction's created_at is set, so a statement
    # cut (which takes this lock exclusively) sees the whole chunk or none of it.
    locks.hold(locks.Serialised.LEDGER_WRITES, shared=True)
    pending = _settleable().order_by("id")
    if excluded:
        pending = pending.exclude(pk__in=excluded)
    if only is not None:
        pending = pending.filter(pk__in=list(only))
    if connection.features.has_select_for_update_skip_locked:
        pending = pending.select_for_update(skip_locked=True, of=("self",))
    rows = list(
        pending.values_list(
            "id", "work_id", "amount_minor", "currency", "arose_at", "payer_id", "fee_bps", "source"
        )[:limit]
    )
    if not rows:
        return 0
    ids = [row[0] for row in rows]
    now = clock.now()
    txn = JournalTransaction.objects.create(
        kind=TransactionKind.SETTLEMENT,
        key=f"settlement:{ids[0]}-{ids[-1]}:{len(ids)}",
        memo=f"Settlement of {len(ids)} revenue items",
        created_at=now,
    )
    marked = 0
    for start in range(0, len(ids), 5_000):
        marked += RevenueItem.objects.filter(
            pk__in=ids[start : start + 5_000], settlement__isnull=True
        ).update(settlement=txn)
    if marked != len(ids):
        raise SettlementRace(f"{len(ids) - marked} items were settled by someone else")

    plans = _Plans(selectors.lineage_for({row[1] for row in rows}))
    payer_kinds = dict(
        LedgerAccount.objects.filter(pk__in={row[5] for row in rows}).values_list("pk", "kind")
    )
    credits: dict[tuple[str, int | None, str], int] = defaultdict(int)  # (account key, work, source)
    debits: dict[tuple[int, int | None, str], int] = defaultdict(int)  # (payer id, work, source)
    specs: dict[str, dict[str, object]] = {}
    spec_of: dict[tuple[object, str], str] = {}
    # Items that split the same way (same plan: work, sheets and lineage in force, fee) and share a source
    # and currency are summed and split once: rounding then costs at most one unit per part per group, instead
    # of one per item, which would hand small payments' odd units to the same payee every time.
    groups: dict[tuple[int, str, str], tuple[splits.Plan, list[int]]] = {}
    for _, work_id, amount, currency, arose_at, payer_id, fee_bps, source in rows:
        revenue_plan = plans.get(work_id, arose_at, fee_bps)
        group = groups.setdefault((id(revenue_plan), currency, source), (revenue_plan, [0]))
        group[1][0] += amount
        debits[(payer_id, work_id, source)] -= amount
    for (_, currency, source), (revenue_plan, summed) in groups.items():
        for part, part_amount in zip(revenue_plan.parts, revenue_plan.split(summed[0]), strict=True):
            if not part_amount:
                continue
            payee = ("fee", None) if part.payee == splits.FEE else part.payee
            account_key = spec_of.get((payee, currency))
            if account_key is None:
                account_key, spec = _payee_spec(payee, currency)  # type: ignore[arg-type]
                specs[account_key] = spec
                spec_of[(payee, currency)] = account_key
            credits[(account_key, part.work, source)] += part_amount

    account_ids = _ensure_accounts(specs)
    currency_of = dict(
        LedgerAccount.objects.filter(pk__in=set(account_ids.values()) | set(payer_kinds)).values_list(
            "pk", "currency"
        )
    )
    rows_out: list[tuple[int, int, int, str, int | None, str]] = [
        (txn.pk, payer_id, total, currency_of[payer_id], work, source)
        for (payer_id, work, source), total in debits.items()
        if total
    ] + [
        (txn.pk, account_ids[key], total, currency_of[account_ids[key]], work, source)
        for (key, work, source), total in credits.items()
        if total
    ]
    _check_balanced((row[2], row[3]) for row in rows_out)

    balance: dict[int, int] = defaultdict(int)
    held: dict[int, int] = defaultdict(int)
    for row in rows_out:
        balance[row[1]] += row[2]
    for (payer_id, _, _), total in debits.items():
        if payer_kinds[payer_id] in NON_NEGATIVE_KINDS:
            held[payer_id] += total  # the hold placed when the revenue was recorded is released
    holdbacks = _holdbacks(txn, balance, specs, account_ids, now)
    for holdback in holdbacks:
        held[holdback.account_id] += holdback.amount_minor
    _check_fits(balance, held, rows_out)
    _insert_entries(rows_out)
    _apply_deltas(balance, held)
    if holdbacks:
        Holdback.objects.bulk_create(holdbacks)
    return len(ids)


def _holdbacks(
    txn: JournalTransaction,
    balance: dict[int, int],
    specs: dict[str, dict[str, object]],
    account_ids: dict[str, int],
    now: datetime,
) -> list[Holdback]:
    """HOLDBACK_BPS of what this settlement credits each payee, kept on their payable for HOLDBACK_DAYS."""
    share = int(settings.HOLDBACK_BPS)
    if not share:
        return []
    release_at = now + timedelta(days=int(settings.HOLDBACK_DAYS))
    found = []
    for key, spec in specs.items():
        if spec["kind"] != AccountKind.PAYABLE:
            continue
        account_id = account_ids[key]
        amount = balance.get(account_id, 0) * share // 10_000
        if amount > 0:
            found.append(
                Holdback(
                    account_id=account_id,
                    settlement=txn,
                    amount_minor=amount,
                    remaining_minor=amount,
                    release_at=release_at,
                    created_at=now,
                )
            )
    return found


def _check_fits(
    balance: dict[int, int], held: dict[int, int], rows_out: list[tuple[int, int, int, str, int | None, str]]
) -> None:
    """Refuse, before writing anything, a settlement whose entries or new balances would not fit the 64-bit
    columns: PostgreSQL would fail the chunk at its end and SQLite would silently store a REAL."""
    if any(abs(row[2]) > currencies.COLUMN_MAX for row in rows_out):
        raise AmountOutOfRange("A settlement entry does not fit the ledger's 64-bit columns.")
    current = LedgerAccount.objects.filter(pk__in=list(balance)).values_list(
        "pk", "balance_minor", "held_minor"
    )
    for account_id, cached, held_now in current:
        if abs(cached + balance.get(account_id, 0)) > currencies.COLUMN_MAX or (
            held_now + held.get(account_id, 0) > currencies.COLUMN_MAX
        ):
            raise AmountOutOfRange(f"Account #{account_id} cannot hold what this settlement credits.")


# Reversal ----------------------------------------------------------------------------------------------


@transaction.atomic
def transaction_reverse(
    *, transaction: JournalTransaction, reason: str, clawback: bool = False
) -> JournalTransaction:
    """Append the mirror image of a transaction (once: reversing again returns the same reversal).

    Without `clawback`, refused, changing nothing, when an account that must stay non-negative no longer
    holds what the reversal takes back (a payee already paid out, a vendor who spent the top-up). With
    `clawback` (what an operator's reversal in the admin asks), what a payee no longer holds becomes
    their clawback (recovered from their next payouts), and what a vendor spent becomes its debt (paid
    first by its next top-up): the reversal is then always whole.
    """
    if not reason.strip():
        raise ApiError("A reversal needs a reason.", code="missing_reason")
    original = JournalTransaction.objects.select_for_update().get(pk=transaction.pk)
    if original.kind == TransactionKind.REVERSAL:
        raise Conflict(
            "A reversal is not reversed; post a new transaction instead.", code="reversal_not_reversible"
        )
    existing = JournalTransaction.objects.filter(reverses=original).first()
    if existing is not None:
        return existing
    legs = [
        Leg(entry.account, -entry.amount_minor, entry.work_id, entry.source)
        for entry in original.entries.select_related("account")
    ]
    if clawback:
        legs = _covered(legs)
    return _post(
        kind=TransactionKind.REVERSAL,
        key=f"reversal:{original.pk}",
        memo=f"Reverses #{original.pk}: {reason}",
        legs=legs,
        reverses=original,
    )


def _covered(legs: Sequence[Leg]) -> list[Leg]:
    """The legs, with each take from a payable or a prepaid balance limited to what it holds; the rest is
    taken from the payee's clawback account or the vendor's debt account (both may go negative: owed to
    us). A payee's holdbacks are used before anything becomes a clawback."""
    wanted: dict[int, int] = defaultdict(int)
    for leg in legs:
        if leg.amount_minor < 0 and leg.account.kind in (AccountKind.PAYABLE, AccountKind.VENDOR_PREPAID):
            wanted[leg.account.pk] += -leg.amount_minor
    if not wanted:
        return list(legs)
    takeable: dict[int, int] = {}
    for account in LedgerAccount.objects.select_for_update().filter(pk__in=list(wanted)).order_by("pk"):
        if account.kind == AccountKind.PAYABLE:
            # Holdbacks exist for this: release what the take needs from them.
            short_of_available = wanted[account.pk] - account.available_minor
            if short_of_available > 0:
                _holdback_consume(account=account, amount_minor=short_of_available)
            takeable[account.pk] = max(0, min(wanted[account.pk], account.balance_minor))
        else:
            takeable[account.pk] = max(0, min(wanted[account.pk], account.available_minor))
    out: list[Leg] = []
    for leg in legs:
        remaining = takeable.get(leg.account.pk)
        if leg.amount_minor >= 0 or remaining is None:
            out.append(leg)
            continue
        take = min(-leg.amount_minor, remaining)
        takeable[leg.account.pk] = remaining - take
        short = -leg.amount_minor - take
        out.append(Leg(leg.account, -take, leg.work_id, leg.source))
        if short:
            owed = (
                clawback_account(user_id=int(leg.account.user_id or 0), currency=leg.account.currency)
                if leg.account.kind == AccountKind.PAYABLE
                else vendor_debt_account(
                    organisation_id=int(leg.account.organisation_id or 0), currency=leg.account.currency
                )
            )
            out.append(Leg(owed, -short, leg.work_id, leg.source))
    return out


def _holdback_consume(*, account: LedgerAccount, amount_minor: int) -> int:
    """Release up to `amount_minor` of a payable's holdbacks, oldest first, so a clawback can take it."""
    released = 0
    for holdback in (
        Holdback.objects.select_for_update()
        .filter(account=account, remaining_minor__gt=0)
        .order_by("release_at", "id")
    ):
        if released >= amount_minor:
            break
        part = min(holdback.remaining_minor, amount_minor - released)
        Holdback.objects.filter(pk=holdback.pk).update(remaining_minor=F("remaining_minor") - part)
        released += part
    if released:
        LedgerAccount.objects.filter(pk=account.pk).update(held_minor=F("held_minor") - released)
        account.held_minor -= released
    return released


@transaction.atomic
def holdbacks_release() -> int:
    """Release every holdback whose dispute window is over: its payee can be paid it. Answers how much."""
    due = list(
        Holdback.objects.select_for_update()
        .filter(remaining_minor__gt=0, release_at__lte=clock.now())
        .order_by("account_id", "id")
    )
    per_account: dict[int, int] = defaultdict(int)
    for holdback in due:
        per_account[holdback.account_id] += holdback.remaining_minor
    Holdback.objects.filter(pk__in=[h.pk for h in due]).update(remaining_minor=0)
    for account_id, amount in sorted(per_account.items()):
        LedgerAccount.objects.filter(pk=account_id).update(held_minor=F("held_minor") - amount)
    return sum(per_account.values())


@transaction.atomic
def clawback_recover(*, user_id: int, currency: str) -> int:
    """Take what a payee owes (their clawback) from their available payable, before they are paid out.
    Answers the amount recovered."""
    owed_account = LedgerAccount.objects.filter(key=selectors.clawback_key(user_id, currency)).first()
    if owed_account is None:
        return 0
    owed = -LedgerAccount.objects.select_for_update().get(pk=owed_account.pk).balance_minor
    payable = LedgerAccount.objects.filter(key=selectors.payable_key(user_id, currency)).first()
    if owed <= 0 or payable is None:
        return 0
    available = LedgerAccount.objects.select_for_update().get(pk=payable.pk).available_minor
    take = min(owed, available)
    if take <= 0:
        return 0
    _post(
        kind=TransactionKind.ADJUSTMENT,
        key=f"clawback:{user_id}:{currency}:{secrets.token_hex(8)}",
        memo=f"Clawback of {currencies.format_minor(take, currency)} recovered from later earnings",
        legs=[Leg(payable, -take), Leg(owed_account, take)],
    )
    return take


# Refunds and chargebacks -------------------------------------------------------------------------------


def funding_find(*, rail: str, reference: str) -> JournalTransaction | None:
    """The funding credited for a payment on `rail` with this reference (a top-up or a receipt)."""
    return JournalTransaction.objects.filter(
        kind=TransactionKind.FUNDING, key=f"funding:{rail}:{reference}"
    ).first()


def _funding_sides(funding: JournalTransaction) -> tuple[LedgerAccount, LedgerAccount]:
    """(the rail's clearing account, the account the money went to) of a funding."""
    entries = list(funding.entries.select_related("account").order_by("id"))
    clearing = next(e.account for e in entries if e.amount_minor < 0)
    funded = next(
        (e.account for e in entries if e.amount_minor > 0 and e.account.kind != AccountKind.VENDOR_DEBT),
        None,
    ) or next(e.account for e in entries if e.amount_minor > 0)
    if funded.kind == AccountKind.VENDOR_DEBT:  # the whole top-up paid a debt: the vendor's prepaid
        funded = prepaid_account(organisation_id=int(funded.organisation_id or 0), currency=funded.currency)
    return clearing, funded


def funding_refunded_minor(*, funding: JournalTransaction, kind: str = "") -> int:
    """How much of a funding went back to the payer and stayed back: refunds (and chargebacks) posted less
    what came back again. `kind` narrows it to one cause (`refund`, `dispute`)."""
    clearing, _ = _funding_sides(funding)
    out = Entry.objects.filter(
        transaction__key__startswith=f"refund:{funding.pk}:{kind}", account=clearing
    ).aggregate(total=Sum("amount_minor"))["total"]
    back = Entry.objects.filter(
        transaction__key__startswith=f"reinstate:{funding.pk}:{kind}", account=clearing
    ).aggregate(total=Sum("amount_minor"))["total"]
    return int(out or 0) + int(back or 0)


@transaction.atomic
def funding_refund(
    *, funding: JournalTransaction, amount_minor: int, cause: str, memo: str
) -> JournalTransaction | None:
    """Money that arrived as `funding` went back to the payer (a refund, a chargeback): reverse what it
    funded, once per `cause` (`refund:<n>`, `dispute:<id>`). At most what the funding brought in (less
    what went back already) is taken.

    - A vendor's top-up: taken from its available prepaid balance; what it already spent becomes its
      debt (`vendor_debt`, negative), which its next top-up pays first; until then its accesses are
      refused (nothing is available).
    - A distributor's receipt: taken from the money not yet matched; the rest from the payees its matched
      revenue was split to (in the same shares, each item settled first if it was not yet), from their
      payable and holdbacks, and what they were already paid becomes their clawback, taken from their
      next payouts.
    """
    key = f"refund:{funding.pk}:{cause}"
    existing = JournalTransaction.objects.filter(key=key).first()
    if existing is not None:
        return existing
    clearing, funded = _funding_sides(funding)
    brought = -sum(e.amount_minor for e in funding.entries.all() if e.account_id == clearing.pk)
    amount = min(amount_minor, brought - funding_refunded_minor(funding=funding))
    if amount <= 0:
        return None
    legs = [Leg(clearing, amount)]
    if funded.kind == AccountKind.RECEIPTS:
        legs += _receipt_refund_legs(funding, funded, amount)
    else:
        legs += _covered([Leg(funded, -amount)])
    return _post(kind=TransactionKind.REFUND, key=key, memo=memo, legs=legs)


def _receipt_refund_legs(funding: JournalTransaction, receipts: LedgerAccount, amount: int) -> list[Leg]:
    available = LedgerAccount.objects.select_for_update().get(pk=receipts.pk).available_minor
    take = max(0, min(amount, available))
    legs = [Leg(receipts, -take)] if take else []
    rest = amount - take
    if not rest:
        return legs
    matched = list(Receivable.objects.filter(receipt=funding).select_related("revenue").order_by("id"))
    if not matched:
        # The payer's money is one pool: a receivable matched when a later receipt arrived may have used
        # this receipt's money (a chargeback won returns it to the pool). Take from what the pool paid.
        matched = list(
            Receivable.objects.filter(receipt__entries__account=receipts, status=ReceivableStatus.MATCHED)
            .select_related("revenue")
            .distinct()
            .order_by("id")
        )
    unsettled = [r.revenue.pk for r in matched if r.revenue is not None and r.revenue.settlement_id is None]
    if unsettled:
        _settle_chunk(limit=len(unsettled), only=unsettled)
    if not matched:
        raise InsufficientFunds("The receipt's money is neither unused nor matched: for the operator.")
    revenues = [r.revenue for r in matched if r.revenue is not None]
    shares = allocate(rest, [item.amount_minor for item in revenues])
    plans = _Plans(selectors.lineage_for({item.work_id for item in revenues}))
    payee_legs: list[Leg] = []
    for item, share in zip(revenues, shares, strict=True):
        if not share:
            continue
        plan = plans.get(item.work_id, item.arose_at, item.fee_bps)
        for part, part_amount in zip(plan.parts, plan.split(share), strict=True):
            if not part_amount:
                continue
            payee = ("fee", None) if part.payee == splits.FEE else part.payee
            account_key, spec = _payee_spec(payee, item.currency)  # type: ignore[arg-type]
            account = _account(key=account_key, **spec)  # type: ignore[arg-type]
            payee_legs.append(Leg(account, -part_amount, part.work, item.source))
    return legs + _covered(payee_legs)


@transaction.atomic
def funding_reinstate(
    *, funding: JournalTransaction, amount_minor: int, cause: str, memo: str
) -> JournalTransaction | None:
    """Money that had gone back to the payer came back (a chargeback won, a refund that failed): at most
    what went back for `cause`. It returns to where it came from: a vendor's debt first, then its prepaid
    balance; a distributor's receipts account (unmatched: the operator sees it in reconciliation)."""
    key = f"reinstate:{funding.pk}:{cause}"
    existing = JournalTransaction.objects.filter(key=key).first()
    if existing is not None:
        return existing
    clearing, funded = _funding_sides(funding)
    # A chargeback comes back only as far as that dispute took; a failed refund, within all refunds.
    went_back = funding_refunded_minor(
        funding=funding, kind=cause if cause.startswith("dispute:") else "refund"
    )
    amount = min(amount_minor, went_back)
    if amount <= 0:
        return None
    legs = [Leg(clearing, -amount)]
    if funded.kind == AccountKind.VENDOR_PREPAID:
        debt = vendor_debt_account(organisation_id=int(funded.organisation_id or 0), currency=funded.currency)
        owed = -LedgerAccount.objects.select_for_update().get(pk=debt.pk).balance_minor
        legs += [Leg(debt, min(owed, amount)), Leg(funded, amount - min(owed, amount))]
    else:
        legs.append(Leg(funded, amount))
    return _post(kind=TransactionKind.REFUND, key=key, memo=memo, legs=legs)


# Statements --------------------------------------------------------------------------------------------

STATEMENT_FORMAT = "tribute-statement-1"


def statement_canonical(
    *,
    user_id: int,
    currency: str,
    period_start: datetime,
    period_end: datetime,
    opening_minor: int,
    closing_minor: int,
    lines: Sequence[dict[str, object]],
    previous_digest: str,
) -> bytes:
    """The bytes a statement's digest is taken over: sorted-key compact JSON, times in UTC."""
    document = {
        "format": STATEMENT_FORMAT,
        "payee": user_id,
        "currency": currency,
        "period_start": period_start.astimezone(UTC).isoformat(),
        "period_end": period_end.astimezone(UTC).isoformat(),
        "opening_minor": opening_minor,
        "closing_minor": closing_minor,
        "lines": [
            [line["work"], line["work_title"], line["source"], line["kind"], line["amount_minor"]]
            for line in lines
        ],
        "previous_digest": previous_digest,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@transaction.atomic
def statement_generate(
    *, user: User, currency: str, period_end: datetime, period_start: datetime | None = None
) -> Statement:
    """The payee's next statement in `currency`, up to `period_end` (not in the future).

    Statements follow each other without gaps: a statement starts where the previous one ended, and its
    digest covers the previous digest, so changing any statement breaks every later one.
    """
    if not currencies.is_supported(currency):
        raise ApiError(f"Currency {currency} is not supported.", code="unsupported_currency")
    if timezone.is_naive(period_end) or (period_start is not None and timezone.is_naive(period_start)):
        raise ApiError("Times need a zone.", code="naive_datetime")
    if period_end > clock.now():
        raise ApiError("A statement cannot cover the future.", code="period_in_future")
    # Wait for every journal transaction in flight to commit, and hold back new ones until this statement
    # commits: whatever is dated before period_end is then committed and visible here, and whatever
    # commits later is dated after it (a statement never misses a settlement chunk, nor cuts one in two).
    locks.hold(locks.Serialised.LEDGER_WRITES)
    # One statement chain writer per payee. NO KEY UPDATE: rows naming the payee (a payout) may be written
    # meanwhile; only another statement of the payee waits.
    User.objects.select_for_update(no_key=True).get(pk=user.pk)
    previous = Statement.objects.filter(user=user, currency=currency).order_by("-period_end").first()
    if previous is not None:
        if period_start is not None and period_start != previous.period_end:
            raise Conflict(
                f"The next statement starts where the last one ended ({previous.period_end.isoformat()}).",
                code="statement_period_gap",
            )
        period_start = previous.period_end
    elif period_start is None:
        period_start = user.date_joined
    if period_end <= period_start:
        raise Conflict("The period is empty: it ends before it starts.", code="statement_period_empty")
    opening = selectors.payable_balance_before(user=user, currency=currency, moment=period_start)
    lines = selectors.statement_lines_from_ledger(
        user=user, currency=currency, start=period_start, end=period_end
    )
    earned = sum(int(line["amount_minor"]) for line in lines if line["kind"] == TransactionKind.SETTLEMENT)
    other = sum(int(line["amount_minor"]) for line in lines) - earned
    previous_digest = previous.digest if previous is not None else ""
    closing = opening + earned + other
    digest = hashlib.sha256(
        statement_canonical(
            user_id=user.pk,
            currency=currency,
            period_start=period_start,
            period_end=period_end,
            opening_minor=opening,
            closing_minor=closing,
            lines=lines,
            previous_digest=previous_digest,
        )
    ).hexdigest()
    statement = Statement.objects.create(
        user=user,
        currency=currency,
        period_start=period_start,
        period_end=period_end,
        opening_minor=opening,
        earned_minor=earned,
        other_minor=other,
        closing_minor=closing,
        previous=previous,
        previous_digest=previous_digest,
        digest=digest,
    )
    StatementLine.objects.bulk_create(
        [
            StatementLine(
                statement=statement,
                work_id=line["work"],
                work_title=str(line["work_title"])[:200],
                source=line["source"],
                kind=line["kind"],
                amount_minor=line["amount_minor"],
            )
            for line in lines
        ]
    )
    return statement


@dataclass(frozen=True)
class StatementCheck:
    digest_matches: bool
    chain_matches: bool
    ledger_matches: bool

    @property
    def valid(self) -> bool:
        return self.digest_matches and self.chain_matches and self.ledger_matches


def _stored_lines(statement: Statement) -> list[dict[str, object]]:
    return [
        {
            "work": line.work_id,
            "work_title": line.work_title,
            "source": line.source,
            "kind": line.kind,
            "amount_minor": line.amount_minor,
        }
        for line in statement.lines.order_by("id")
    ]


def statement_digest(statement: Statement) -> str:
    return hashlib.sha256(
        statement_canonical(
            user_id=statement.user_id,
            currency=statement.currency,
            period_start=statement.period_start,
            period_end=statement.period_end,
            opening_minor=statement.opening_minor,
            closing_minor=statement.closing_minor,
            lines=_stored_lines(statement),
            previous_digest=statement.previous_digest,
        )
    ).hexdigest()


def statement_verify(*, statement: Statement) -> StatementCheck:
    """Is the statement as issued? Its digest over its stored content, its link to the previous
    statement's digest, and its lines and balances against the ledger now."""
    previous_digest = statement.previous.digest if statement.previous is not None else ""
    user = statement.user
    ledger_lines = selectors.statement_lines_from_ledger(
        user=user, currency=statement.currency, start=statement.period_start, end=statement.period_end
    )
    opening = selectors.payable_balance_before(
        user=user, currency=statement.currency, moment=statement.period_start
    )
    stored = _stored_lines(statement)
    comparable = [{**line, "work_title": ""} for line in stored]
    return StatementCheck(
        digest_matches=statement_digest(statement) == statement.digest,
        chain_matches=statement.previous_digest == previous_digest,
        ledger_matches=(
            comparable == [{**line, "work_title": ""} for line in ledger_lines]
            and opening == statement.opening_minor
            and statement.closing_minor == opening + sum(int(str(line["amount_minor"])) for line in stored)
        ),
    )


def statement_csv(*, statement: Statement) -> str:
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer, lineterminator="\n")  # work titles are the owners' free text
    writer.writerow(["statement", statement.pk])
    writer.writerow(["payee", statement.user_id])
    writer.writerow(["currency", statement.currency])
    writer.writerow(["period_start", statement.period_start.astimezone(UTC).isoformat()])
    writer.writerow(["period_end", statement.period_end.astimezone(UTC).isoformat()])
    writer.writerow(["opening_minor", statement.opening_minor])
    writer.writerow(["earned_minor", statement.earned_minor])
    writer.writerow(["other_minor", statement.other_minor])
    writer.writerow(["closing_minor", statement.closing_minor])
    writer.writerow(["previous_digest", statement.previous_digest])
    writer.writerow(["sha256", statement.digest])
    writer.writerow([])
    writer.writerow(["work", "work_title", "source", "kind", "amount_minor", "amount"])
    for line in statement.lines.order_by("id"):
        writer.writerow(
            [
                line.work_id if line.work_id is not None else "",
                line.work_title,
                line.source,
                line.kind,
                line.amount_minor,
                currencies.format_minor(line.amount_minor, statement.currency),
            ]
        )
    return buffer.getvalue()


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
