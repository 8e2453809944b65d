"""Distributor reports: sales reported as receivables from a named payer, the payer's receipts, and
the matching that turns covered receivables into revenue; and the CSV statement format they come in.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import User
from catalog.models import Work, WorkParent
from common import clock
from common.money import Money
from common.problems import ApiError, Conflict, NotFound
from royalties.ledger import (
    Leg,
    account_hold,
    amount_check,
    clearing_account,
    funding_existing,
    receipts_account,
    receipts_key,
    transaction_post,
)
from royalties.models import (
    JournalTransaction,
    Receivable,
    ReceivableStatus,
    RevenueItem,
    RevenueSource,
    TransactionKind,
)
from royalties.revenue import current_offer, earning_work_of, offer_fee_bps, revenue_item_values

REPORT_MAX_LINES = 10_000


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
        amount_check(amount, what=f"Line {line.line_id}: the amount")
        sale_at = line.arose_at or now
        _check_sale_at(line_id=line.line_id, work_id=line.work_id, sale_at=sale_at, now=now)
        if line.work_id not in earner:
            earner[line.work_id] = earning_work_of(line.work_id)
        earning_work = earner[line.work_id]
        if earning_work not in fees:
            fees[earning_work] = offer_fee_bps(current_offer(earning_work))
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
    amount_check(amount, what="A receipt")
    if not reference.strip():
        raise ApiError("A receipt needs the payment's reference.", code="missing_reference")
    reference = reference.strip()[:150]
    key = f"funding:{rail}:{reference}"
    account = receipts_account(reporter_id=reporter.pk, distributor=distributor, currency=amount.currency)
    receipt = funding_existing(key, [account], amount)
    if receipt is None:
        receipt = transaction_post(
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
        payer_id = account_hold(key=key, amount_minor=receivable.amount_minor)
        if payer_id is None:
            break
        revenue = RevenueItem.objects.create(
            **revenue_item_values(
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
