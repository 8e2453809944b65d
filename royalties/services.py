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
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Organisation, User
from catalog.models import Grant, Offer, OfferStatus, Work
from catalog.selectors import monetizing_claim_on
from common import clock, rows
from common import currency as currencies
from common.csvsafe import SafeCsvWriter
from common.money import Money
from common.problems import ApiError, Conflict, NotFound
from royalties import selectors, splits
from royalties.models import (
    NON_NEGATIVE_KINDS,
    AccountKind,
    Entry,
    JournalTransaction,
    LedgerAccount,
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
    _check_balanced((leg.amount_minor, leg.account.currency) for leg in legs)
    txn = JournalTransaction.objects.create(kind=kind, key=key, memo=memo[:300], reverses=reverses)
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
        if rows.update(balance_minor=F("balance_minor") + delta) != 1:
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


@transaction.atomic
def prepaid_fund(
    *, organisation: Organisation, amount: Money, external_ref: str, rail: str = "manual"
) -> JournalTransaction:
    """Credit a vendor's prepaid balance with money received on `rail` (idempotent by external_ref).

    The same reference again returns the first transaction; with another amount or organisation it is a
    conflict. Money moves from the rail's clearing account, so the rail can be reconciled against it.
    """
    if amount.amount_minor <= 0:
        raise ApiError("A top-up must be a positive amount.", code="invalid_amount")
    if not currencies.is_supported(amount.currency):
        raise ApiError(f"Currency {amount.currency} is not supported.", code="unsupported_currency")
    if not external_ref:
        raise ApiError("A top-up needs the rail's reference.", code="missing_reference")
    key = f"funding:{rail}:{external_ref}"
    prepaid = prepaid_account(organisation_id=organisation.pk, currency=amount.currency)
    existing = _existing_funding(key, prepaid, amount)
    if existing is not None:
        return existing
    clearing = clearing_account(rail=rail, currency=amount.currency)
    try:
        with transaction.atomic():
            return _post(
                kind=TransactionKind.FUNDING,
                key=key,
                memo=f"Top-up of {organisation.name} via {rail} ({external_ref})",
                legs=[Leg(clearing, -amount.amount_minor), Leg(prepaid, amount.amount_minor)],
            )
    except IntegrityError:
        replay = _existing_funding(key, prepaid, amount)
        if replay is None:
            raise
        return replay


def _existing_funding(key: str, prepaid: LedgerAccount, amount: Money) -> JournalTransaction | None:
    txn = JournalTransaction.objects.filter(key=key).first()
    if txn is None:
        return None
    if not txn.entries.filter(account=prepaid, amount_minor=amount.amount_minor).exists():
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
    if not currencies.is_supported(amount.currency):
        raise ApiError(f"Currency {amount.currency} is not supported.", code="unsupported_currency")
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


@transaction.atomic
def licence_fee_record(*, grant: Grant, rail: str = "manual", external_ref: str = "") -> RevenueItem | None:
    """The licence fee owed under a grant, once per grant.

    A grant held for an organisation is paid from its prepaid balance; a person's grant is paid on a rail
    (card, chain), whose reference the payments code passes.
    """
    grant = Grant.objects.select_related("offer").get(pk=grant.pk)
    if grant.fee_minor == 0:
        return None
    amount = Money(grant.fee_minor, grant.currency)
    common = {
        "source": RevenueSource.LICENCE_FEE,
        "source_key": f"licence:{grant.pk}",
        "work_id": grant.offer.work_id,
        "amount": amount,
        "fee_bps": _fee_bps(grant.offer),
        "arose_at": clock.now(),
    }
    if grant.organisation_id is not None:
        return _record(**common, payer_key=selectors.prepaid_key(grant.organisation_id, grant.currency))  # type: ignore[arg-type]
    payer = clearing_account(rail=rail, currency=grant.currency)
    return _record(**common, payer=payer)  # type: ignore[arg-type]


@transaction.atomic
def claim_revenue_record(
    *, work: Work, amount: Money, claim_ref: str, arose_at: datetime | None = None, rail: str = "claims"
) -> RevenueItem:
    """Revenue of an item under a monetize claim on `work`, once per `claim_ref` (the claim's own line)."""
    return _record(
        source=RevenueSource.CLAIM,
        source_key=f"claim:{claim_ref}",
        work_id=work.pk,
        amount=amount,
        fee_bps=_fee_bps(_current_offer(work.pk)),
        arose_at=arose_at or clock.now(),
        payer=clearing_account(rail=rail, currency=amount.currency),
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
    items: list[RevenueItem]


@transaction.atomic
def revenue_report_record(*, user: User, distributor: str, lines: Sequence[ReportLine]) -> ReportResult:
    """Sales of the user's own works reported by a distributor: all lines or none.

    A work whose media stands under a monetize claim earns for the claimed work instead (source `claim`).

    Each line is recorded once per (reporter, distributor, line id): sending the same statement again
    records nothing new; a known line id with other values is a conflict. The money is expected on the
    `reported` rail (the distributor pays the platform), where reconciliation matches it.
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
    fees: dict[int, int] = {}
    earner: dict[int, int] = {}
    items: list[RevenueItem] = []
    created = 0
    for line in lines:
        if line.work_id not in managed:
            raise NotFound(
                f"Line {line.line_id}: work {line.work_id} is not one you manage.", code="work_not_found"
            )
        if not line.line_id or len(line.line_id) > 100:
            raise ApiError("Line ids are 1 to 100 characters.", code="invalid_line_id")
        if line.arose_at is not None and line.arose_at > now:
            raise ApiError(f"Line {line.line_id}: the sale is in the future.", code="invalid_arose_at")
        if line.work_id not in earner:
            earner[line.work_id] = _earning_work(line.work_id)
        earning_work = earner[line.work_id]
        if earning_work not in fees:
            fees[earning_work] = _fee_bps(_current_offer(earning_work))
        key = f"report:{user.pk}:{distributor}:{line.line_id}"
        before = RevenueItem.objects.filter(source_key=key).exists()
        item = _record(
            source=RevenueSource.REPORTED if earning_work == line.work_id else RevenueSource.CLAIM,
            source_key=key,
            work_id=earning_work,
            amount=Money(line.amount_minor, line.currency),
            fee_bps=fees[earning_work],
            arose_at=line.arose_at or now,
            payer=clearing_account(rail="reported", currency=line.currency),
        )
        created += 0 if before else 1
        items.append(item)
    return ReportResult(created=created, duplicates=len(lines) - created, items=items)


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


def revenue_settle(*, chunk_size: int = SETTLEMENT_CHUNK, max_chunks: int | None = None) -> SettleResult:
    """Turn unsettled revenue into journal transactions, exactly once, one database transaction per chunk.

    Each chunk selects up to `chunk_size` unsettled items (on PostgreSQL locked with SKIP LOCKED, so
    concurrent workers take different items; SQLite's IMMEDIATE transactions serialise them), marks them
    settled with a conditional UPDATE, appends one balanced transaction with the aggregated entries, and
    moves the cached balances. A crash loses at most the chunk in flight, which rolls back whole and is
    taken by the next run. Running it again settles nothing twice.
    """
    items = chunks = 0
    while max_chunks is None or chunks < max_chunks:
        try:
            count = _settle_chunk(limit=chunk_size)
        except SettlementRace:
            logger.info("settlement chunk raced with another worker; retrying")
            continue
        if count == 0:
            break
        items += count
        chunks += 1
    return SettleResult(items=items, transactions=chunks)


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
def _settle_chunk(*, limit: int) -> int:
    pending = RevenueItem.objects.filter(settlement__isnull=True).order_by("id")
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
    txn = JournalTransaction.objects.create(
        kind=TransactionKind.SETTLEMENT,
        key=f"settlement:{ids[0]}-{ids[-1]}:{len(ids)}",
        memo=f"Settlement of {len(ids)} revenue items",
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
    _insert_entries(rows_out)

    balance: dict[int, int] = defaultdict(int)
    held: dict[int, int] = defaultdict(int)
    for row in rows_out:
        balance[row[1]] += row[2]
    for (payer_id, _, _), total in debits.items():
        if payer_kinds[payer_id] in NON_NEGATIVE_KINDS:
            held[payer_id] += total  # the hold placed when the revenue was recorded is released
    _apply_deltas(balance, held)
    return len(ids)


# Reversal ----------------------------------------------------------------------------------------------


@transaction.atomic
def transaction_reverse(*, transaction: JournalTransaction, reason: str) -> JournalTransaction:
    """Append the mirror image of a transaction (once: reversing again returns the same reversal).

    Refused, changing nothing, when an account that must stay non-negative no longer holds what the
    reversal takes back (a payee already paid out, a vendor who spent the top-up).
    """
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
    return _post(
        kind=TransactionKind.REVERSAL,
        key=f"reversal:{original.pk}",
        memo=f"Reverses #{original.pk}: {reason}",
        legs=legs,
        reverses=original,
    )


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
    User.objects.select_for_update().get(pk=user.pk)  # one statement chain writer per payee
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
    return LedgerProblems(
        balance_differences=balance_differences,
        held_differences=held_differences,
        unbalanced=selectors.unbalanced_transactions(),
        negative=negative,
        currency_mismatches=selectors.mismatched_entry_currencies(),
    )
