"""Settlement: unsettled revenue becomes journal transactions, exactly once, one database transaction per
chunk, split by the royalty stack in force when the revenue arose (docs/royalties.md).
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, QuerySet

from catalog.models import Work, WorkStatus
from catalog.selectors import claims_holding_revenue
from common import clock, locks
from common import currency as currencies
from royalties import selectors, splits
from royalties.ledger import (
    AmountOutOfRange,
    LedgerImbalance,
    accounts_ensure,
    balanced_check,
    balances_move,
    entries_insert,
    payee_spec,
)
from royalties.models import (
    NON_NEGATIVE_KINDS,
    AccountKind,
    Holdback,
    JournalTransaction,
    LedgerAccount,
    ParkedRevenue,
    RevenueItem,
    RevenueSource,
    TransactionKind,
)

logger = logging.getLogger(__name__)

SETTLEMENT_CHUNK = 10_000


@dataclass(frozen=True)
class SettleResult:
    items: int
    transactions: int


class SettlementRace(RuntimeError):
    """Another settlement took some of this chunk's items: this chunk rolls back and is retried."""


SETTLEMENT_RACE_RETRIES = 8
RACE_PAUSE_MAX_S = 1.0

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
            if not _retry_after_race(races):
                break
            continue
        except _ITEM_ERRORS as error:
            logger.warning("settlement chunk failed (%s); isolating the items at fault", error)
            count, raced = _settle_isolating(limit=chunk_size, excluded=parked)
            if count == 0 and raced:  # nothing settled because others took the items: a race too
                races += 1
                if not _retry_after_race(races):
                    break
                continue
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


def _retry_after_race(races: int) -> bool:
    """After the `races`-th race in a row: False once SETTLEMENT_RACE_RETRIES retries are spent (the next
    run goes on); otherwise pause (20 ms, doubling each time, at most RACE_PAUSE_MAX_S) and answer True."""
    if races > SETTLEMENT_RACE_RETRIES:
        logger.warning("settlement raced %d times in a row; the next run goes on", races)
        return False
    logger.info("settlement chunk raced with another worker; retrying")
    time.sleep(min(0.01 * 2**races, RACE_PAUSE_MAX_S))
    return True


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


def _settle_isolating(*, limit: int, excluded: set[int]) -> tuple[int, bool]:
    """Settle the next chunk's items in halves, parking each single item that still fails. Adds the
    parked ids to `excluded`; answers how many items settled, and whether another worker took some."""
    settled = 0
    raced = False
    pending = [_next_ids(limit=limit, excluded=excluded)]
    while pending:
        ids = pending.pop()
        if not ids:
            continue
        try:
            settled += _settle_chunk(limit=len(ids), excluded=excluded, only=ids)
        except SettlementRace:
            raced = True  # another worker took some of them
            continue
        except _ITEM_ERRORS as error:
            if len(ids) == 1:
                _park(ids[0], error)
                excluded.add(ids[0])
            else:
                middle = len(ids) // 2
                pending += [ids[middle:], ids[:middle]]
    return settled, raced


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


def revenue_items_settle(*, item_ids: Sequence[int]) -> int:
    """Settle these unsettled items now, in one chunk (a refund needs to know whom they were split to).
    Answers how many settled; raises as a chunk does (nothing is parked here)."""
    return _settle_chunk(limit=len(item_ids), only=item_ids)


class Plans:
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

    plans = Plans(selectors.lineage_for({row[1] for row in rows}))
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
                account_key, spec = payee_spec(payee, currency)  # type: ignore[arg-type]
                specs[account_key] = spec
                spec_of[(payee, currency)] = account_key
            credits[(account_key, part.work, source)] += part_amount

    account_ids = accounts_ensure(specs)
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
    balanced_check((row[2], row[3]) for row in rows_out)

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
    entries_insert(rows_out)
    balances_move(balance, held)
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
