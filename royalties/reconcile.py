"""Reconciliation: per period and rail, compare what our ledger says left or entered by the rail with
what the rail itself reports, and store each difference for the operator.

Records are compared by (kind, reference): a payout's reference is its key, a funding's the external
reference it was credited with (`funding:<rail>:<reference>` in the journal). Differences:
- missing_on_rail: in our ledger, not on the rail;
- missing_in_ledger: on the rail, not in our ledger;
- duplicate: the rail has more than one record for one of ours;
- amount_mismatch: both have it, with other amounts (or currencies).

Windows: a record belongs to the period its time falls in; both sides are read with RECONCILE_MARGIN
on each side, so a payout recorded at 23:59 and seen by the rail at 00:01 is not reported missing, and
differences are kept only for records inside the period.

Sources: Stripe's balance transactions through `royalties.rails.stripe.balance_transactions`; the chain's
Paid events of our batches (payouts) and the token's Transfer logs to the deposit address (fundings).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Max, Min, QuerySet

from accounts.models import User
from common import clock
from contracts.chain import ChainError, payout_id_from_key
from royalties.models import (
    ChainBatch,
    ChainDeposit,
    ChainDepositStatus,
    DifferenceKind,
    JournalTransaction,
    Payout,
    PayoutRail,
    PayoutStatus,
    Receivable,
    ReceivableStatus,
    ReconciliationDifference,
    ReconciliationRun,
    TransactionKind,
)
from royalties.payouts import period_bounds, period_check
from royalties.rails import RailError, RailRecord
from royalties.selectors import receivables_summary

logger = logging.getLogger(__name__)

RECONCILE_MARGIN = timedelta(days=1)
REPORTED = "reported"
RAILS = (PayoutRail.STRIPE, PayoutRail.CHAIN, REPORTED)
# Payouts that reached the rail: these must appear there (a returned one was paid, then reversed).
SENT_STATUSES = (PayoutStatus.SUBMITTED, PayoutStatus.CONFIRMED, PayoutStatus.RETURNED)


@dataclass(frozen=True)
class Difference:
    kind: str
    record_kind: str
    reference: str
    external_id: str
    currency: str
    ledger_amount_minor: int | None
    rail_amount_minor: int | None
    detail: str
    at: datetime


def compare(ledger: Iterable[RailRecord], rail: Iterable[RailRecord]) -> list[Difference]:
    """The differences between two lists of records (pure: no database)."""
    ours: dict[tuple[str, str], list[RailRecord]] = defaultdict(list)
    theirs: dict[tuple[str, str], list[RailRecord]] = defaultdict(list)
    for record in ledger:
        ours[(record.kind, record.reference)].append(record)
    for record in rail:
        theirs[(record.kind, record.reference)].append(record)
    found: list[Difference] = []
    for key in sorted(set(ours) | set(theirs)):
        mine, seen = ours.get(key, []), theirs.get(key, [])
        if not seen:
            record = mine[0]
            found.append(
                _difference(DifferenceKind.MISSING_ON_RAIL, record, ledger_amount=record.amount_minor)
            )
            continue
        if not mine:
            for record in seen:
                found.append(
                    _difference(DifferenceKind.MISSING_IN_LEDGER, record, rail_amount=record.amount_minor)
                )
            continue
        ledger_record = mine[0]
        if len(seen) > len(mine):
            ids = ", ".join(r.external_id for r in seen)
            found.append(
                _difference(
                    DifferenceKind.DUPLICATE,
                    ledger_record,
                    ledger_amount=ledger_record.amount_minor,
                    rail_amount=sum(r.amount_minor for r in seen),
                    detail=f"{len(seen)} rail records: {ids}"[:500],
                )
            )
            continue
        rail_record = seen[0]
        if (rail_record.amount_minor, rail_record.currency) != (
            ledger_record.amount_minor,
            ledger_record.currency,
        ):
            found.append(
                _difference(
                    DifferenceKind.AMOUNT_MISMATCH,
                    ledger_record,
                    ledger_amount=ledger_record.amount_minor,
                    rail_amount=rail_record.amount_minor,
                    external_id=rail_record.external_id,
                    detail=(
                        f"ledger {ledger_record.amount_minor} {ledger_record.currency}, "
                        f"rail {rail_record.amount_minor} {rail_record.currency}"
                    ),
                )
            )
    return found


def _difference(
    kind: str,
    record: RailRecord,
    *,
    ledger_amount: int | None = None,
    rail_amount: int | None = None,
    external_id: str = "",
    detail: str = "",
) -> Difference:
    return Difference(
        kind=kind,
        record_kind=record.kind,
        reference=record.reference,
        external_id=external_id or record.external_id,
        currency=record.currency,
        ledger_amount_minor=ledger_amount,
        rail_amount_minor=rail_amount,
        detail=detail,
        at=record.at,
    )


# Our side ----------------------------------------------------------------------------------------------


def ledger_records(*, rail: str, since: datetime, until: datetime) -> list[RailRecord]:
    """What our ledger says moved on `rail` in [since, until): payouts sent and fundings credited."""
    records = [
        RailRecord(
            kind="payout",
            reference=payout.key,
            external_id=payout.external_id,
            amount_minor=payout.amount_minor,
            currency=payout.currency,
            at=payout.submitted_at or payout.created_at,
        )
        for payout in Payout.objects.filter(
            rail=rail, status__in=SENT_STATUSES, submitted_at__gte=since, submitted_at__lt=until
        ).order_by("id")
    ]
    prefix = f"funding:{rail}:"
    fundings = (
        JournalTransaction.objects.filter(
            kind=TransactionKind.FUNDING, key__startswith=prefix, created_at__gte=since, created_at__lt=until
        )
        .prefetch_related("entries")
        .order_by("id")
    )
    for txn in fundings:
        credit = next((e for e in txn.entries.all() if e.amount_minor > 0), None)
        if credit is None:
            continue
        reference = txn.key.removeprefix(prefix)
        records.append(
            RailRecord(
                kind="funding",
                reference=reference,
                external_id=reference.split(":")[0],
                amount_minor=credit.amount_minor,
                currency=credit.currency,
                at=txn.created_at,
            )
        )
    return records


# The rails' side ---------------------------------------------------------------------------------------


def stripe_records(*, since: datetime, until: datetime) -> list[RailRecord]:
    from royalties.rails import stripe as stripe_rail  # written beside us; imported when needed

    return list(stripe_rail.balance_transactions(since=since, until=until))


def chain_records(*, since: datetime, until: datetime) -> list[RailRecord]:
    """Paid events in the blocks our batches of the window were mined in (and after, up to the head),
    and Transfer logs to the deposit address in the blocks our deposits of the window came from."""
    from royalties.chain_client import chain, to_minor
    from royalties.funding import deposit_address, transfers_to

    client = chain()
    head = client.block_number()
    records: list[RailRecord] = []
    timestamps: dict[int, datetime] = {}

    def at(block: int) -> datetime:
        if block not in timestamps:
            stamp = int(client.w3.eth.get_block(block)["timestamp"])
            timestamps[block] = datetime.fromtimestamp(stamp, tz=UTC)
        return timestamps[block]

    batches = ChainBatch.objects.filter(created_at__gte=since, created_at__lt=until)
    span = batches.aggregate(low=Min("from_block"))
    if span["low"] is not None:
        keys = {
            payout_id_from_key(key): key
            for key in Payout.objects.filter(rail=PayoutRail.CHAIN).values_list("key", flat=True)
        }
        for event in client.paid_events_between(int(span["low"]), head):
            cents, _ = to_minor(event.amount)
            records.append(
                RailRecord(
                    kind="payout",
                    reference=keys.get(event.payout_id, "0x" + event.payout_id.hex()),
                    external_id=event.tx_hash,
                    amount_minor=cents,
                    currency="USD",
                    at=at(event.block_number),
                )
            )
    deposits = ChainDeposit.objects.filter(created_at__gte=since, created_at__lt=until)
    blocks = deposits.aggregate(low=Min("block_number"), high=Max("block_number"))
    if blocks["low"] is not None and blocks["high"] is not None:
        # Transfers the deposit watcher skipped (not a funding), read once rather than per transfer.
        low, high = int(blocks["low"]), int(blocks["high"])
        skipped = {
            f"{tx_hash}:{log_index}"
            for tx_hash, log_index in ChainDeposit.objects.filter(
                status=ChainDepositStatus.SKIPPED, block_number__gte=low, block_number__lte=high
            ).values_list("tx_hash", "log_index")
        }
        for transfer in transfers_to(client, deposit_address(), low, high):
            cents, _ = to_minor(transfer["amount"])
            if cents == 0:
                continue
            reference = f"{transfer['tx_hash']}:{transfer['log_index']}"
            if reference in skipped:
                continue
            records.append(
                RailRecord(
                    kind="funding",
                    reference=reference,
                    external_id=transfer["tx_hash"],
                    amount_minor=cents,
                    currency="USD",
                    at=at(transfer["block_number"]),
                )
            )
    return records


# The job -----------------------------------------------------------------------------------------------


def reconcile(*, period: str, rail: str) -> ReconciliationRun:
    """Compare one rail with our ledger for one period and store the differences. A run again replaces
    nothing: each run keeps its own differences (the staff page shows the unresolved ones of the latest)."""
    if rail not in RAILS:
        raise ValueError(f"reconciliation covers {', '.join(RAILS)}, not {rail!r}")
    period = period_check(period, any_kind=True)
    if rail == REPORTED:
        return _reconcile_reported(period=period)
    start, end = period_bounds(period)
    since, until = start - RECONCILE_MARGIN, min(end + RECONCILE_MARGIN, clock.now())
    run = ReconciliationRun.objects.create(period=period, rail=rail, window_start=start, window_end=end)
    try:
        ours = ledger_records(rail=rail, since=since, until=until)
        theirs = (
            stripe_records(since=since, until=until)
            if rail == PayoutRail.STRIPE
            else chain_records(since=since, until=until)
        )
    except (RailError, ChainError) as error:
        ReconciliationRun.objects.filter(pk=run.pk).update(error=str(error)[:500], finished_at=clock.now())
        run.refresh_from_db()
        return run
    found = [d for d in compare(ours, theirs) if start <= d.at < end]
    with transaction.atomic():
        ReconciliationDifference.objects.bulk_create(
            [
                ReconciliationDifference(
                    run=run,
                    rail=rail,
                    kind=d.kind,
                    record_kind=d.record_kind,
                    reference=d.reference[:200],
                    external_id=d.external_id[:200],
                    currency=d.currency,
                    ledger_amount_minor=d.ledger_amount_minor,
                    rail_amount_minor=d.rail_amount_minor,
                    detail=d.detail,
                )
                for d in found
            ]
        )
        ReconciliationRun.objects.filter(pk=run.pk).update(
            ledger_records=len([r for r in ours if start <= r.at < end]),
            rail_records=len([r for r in theirs if start <= r.at < end]),
            differences_found=len(found),
            finished_at=clock.now(),
        )
    run.refresh_from_db()
    if found:
        logger.warning("reconciliation of %s for %s: %d differences", rail, period, len(found))
    return run


def _reconcile_reported(*, period: str) -> ReconciliationRun:
    """The `reported` rail: revenue reported to us is a receivable until its payer's money arrives. As of
    now, every receivable reported before the period's end that is still open past its due date is
    `overdue` (so a late payer shows in every run until it pays), and money a payer sent that no
    receivable matched is `unapplied` (one difference per payer and currency)."""
    start, end = period_bounds(period)
    now = clock.now()
    run = ReconciliationRun.objects.create(period=period, rail=REPORTED, window_start=start, window_end=end)
    reported = Receivable.objects.filter(created_at__lt=end)
    found = [
        ReconciliationDifference(
            run=run,
            rail=REPORTED,
            kind=DifferenceKind.OVERDUE,
            record_kind="receivable",
            reference=receivable.source_key[:200],
            external_id=receivable.distributor,
            currency=receivable.currency,
            ledger_amount_minor=receivable.amount_minor,
            rail_amount_minor=None,
            detail=f"due {receivable.due_at.astimezone(UTC):%Y-%m-%d}, open",
        )
        for receivable in reported.filter(status=ReceivableStatus.OPEN, due_at__lt=now).order_by("id")
    ]
    found += [
        ReconciliationDifference(
            run=run,
            rail=REPORTED,
            kind=DifferenceKind.UNAPPLIED,
            record_kind="receipt",
            reference=f"{group['reporter']}:{group['distributor']}",
            external_id=group["distributor"],
            currency=group["currency"],
            ledger_amount_minor=None,
            rail_amount_minor=group["unapplied_minor"],
            detail=f"{group['unapplied_minor']} received, matched to no receivable",
        )
        for group in receivables_summary(now=now)
        if group["unapplied_minor"]
    ]
    with transaction.atomic():
        ReconciliationDifference.objects.bulk_create(found)
        ReconciliationRun.objects.filter(pk=run.pk).update(
            ledger_records=reported.count(),
            rail_records=reported.filter(status=ReceivableStatus.MATCHED).count(),
            differences_found=len(found),
            finished_at=now,
        )
    run.refresh_from_db()
    return run


def reconcile_all(*, period: str) -> list[ReconciliationRun]:
    """Every configured rail for one period: the chain when chain payouts are on, Stripe when it is, and
    the reported rail (receivables) always."""
    from accounts.payout_identity import stripe_enabled
    from royalties.payouts import chain_configured

    runs = [reconcile(period=period, rail=REPORTED)]
    if chain_configured():
        runs.append(reconcile(period=period, rail=PayoutRail.CHAIN))
    if stripe_enabled():
        runs.append(reconcile(period=period, rail=PayoutRail.STRIPE))
    return runs


def differences_open() -> QuerySet[ReconciliationDifference]:
    """Unresolved differences, newest first."""
    return ReconciliationDifference.objects.filter(resolved_at__isnull=True).select_related("run")


@transaction.atomic
def difference_resolve(
    *, difference: ReconciliationDifference, user: User | None, note: str
) -> ReconciliationDifference:
    """The operator explains a difference (and corrects the ledger by a reversal if it needs one)."""
    difference = ReconciliationDifference.objects.select_for_update().get(pk=difference.pk)
    if difference.resolved_at is None:
        difference.resolved_at = clock.now()
        difference.resolved_by = user
        difference.resolution = note.strip()[:300] or "resolved"
        difference.save(update_fields=["resolved_at", "resolved_by", "resolution"])
    return difference
