"""Reads of the ledger: balances, earnings, statements, and the split inputs in force at a moment."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from django.db.models import F, Max, Min, Q, QuerySet, Sum
from django.shortcuts import get_object_or_404

from accounts.models import Organisation, User
from catalog.models import SplitShare, SplitSheet, WorkParent
from royalties.models import (
    AccountKind,
    Entry,
    Holdback,
    JournalTransaction,
    LedgerAccount,
    Payout,
    PayoutStatus,
    Receivable,
    ReceivableStatus,
    RevenueItem,
    Statement,
    StatementLine,
    TransactionKind,
)

# Account keys --------------------------------------------------------------------------------------------


def prepaid_key(organisation_id: int, currency: str) -> str:
    return f"vendor_prepaid:org:{organisation_id}:{currency}"


def payable_key(user_id: int, currency: str) -> str:
    return f"payable:user:{user_id}:{currency}"


def fee_key(currency: str) -> str:
    return f"platform_fee:{currency}"


def clearing_key(rail: str, currency: str) -> str:
    return f"clearing:{rail}:{currency}"


def suspense_key(currency: str) -> str:
    return f"suspense:{currency}"


def receipts_key(reporter_id: int, distributor: str, currency: str) -> str:
    return f"receipts:user:{reporter_id}:{distributor}:{currency}"


def vendor_debt_key(organisation_id: int, currency: str) -> str:
    return f"vendor_debt:org:{organisation_id}:{currency}"


def escrow_key(claim_id: int, currency: str) -> str:
    return f"escrow:claim:{claim_id}:{currency}"


def clawback_key(user_id: int, currency: str) -> str:
    return f"clawback:user:{user_id}:{currency}"


# Balances ------------------------------------------------------------------------------------------------


def prepaid_available(*, organisation: Organisation, currency: str) -> int:
    """What a vendor can still spend: its prepaid balance less what unsettled accesses hold."""
    row = (
        LedgerAccount.objects.filter(key=prepaid_key(organisation.pk, currency))
        .values_list("balance_minor", "held_minor")
        .first()
    )
    return 0 if row is None else row[0] - row[1]


class BalanceRow(TypedDict):
    currency: str
    balance_minor: int
    held_minor: int
    available_minor: int


class EarningRow(TypedDict):
    currency: str
    work: int | None
    work_title: str
    source: str
    amount_minor: int


class Earnings(TypedDict):
    balances: list[BalanceRow]
    by_work: list[EarningRow]


def earnings_of(*, user: User) -> Earnings:
    """The user's payable balance per currency, and what the ledger credited them by work and source."""
    accounts = LedgerAccount.objects.filter(user=user, kind=AccountKind.PAYABLE).order_by("currency")
    by_work = (
        Entry.objects.filter(account__user=user, account__kind=AccountKind.PAYABLE)
        .exclude(transaction__kind=TransactionKind.PAYOUT)  # a payout moves earnings; it earns nothing
        .values("currency", "work", "work__title", "source")
        .annotate(total=Sum("amount_minor"))
        .order_by("currency", "work", "source")
    )
    return {
        "balances": [
            {
                "currency": a.currency,
                "balance_minor": a.balance_minor,
                "held_minor": a.held_minor,
                "available_minor": a.available_minor,
            }
            for a in accounts
        ],
        "by_work": [
            {
                "currency": row["currency"],
                "work": row["work"],
                "work_title": row["work__title"] or "",
                "source": row["source"],
                "amount_minor": row["total"],
            }
            for row in by_work
        ],
    }


class PayeeBalance(TypedDict):
    """Where a payee's money is, in one currency (Stripe's balance page): available for the next payout,
    pending (reserved, not yet available), in a payout on its way, and paid out."""

    currency: str
    available_minor: int
    pending_minor: int
    in_payout_minor: int
    in_payout_since: datetime | None
    paid_out_minor: int
    last_paid_at: datetime | None


_IN_PAYOUT = (PayoutStatus.CREATED, PayoutStatus.SUBMITTED)


def payee_balances_of(*, user: User) -> list[PayeeBalance]:
    accounts = LedgerAccount.objects.filter(user=user, kind=AccountKind.PAYABLE).order_by("currency")
    payouts = Payout.objects.filter(user=user)
    rows: list[PayeeBalance] = []
    for account in accounts:
        of_currency = payouts.filter(currency=account.currency)
        moving = of_currency.filter(status__in=_IN_PAYOUT)
        paid = of_currency.filter(status=PayoutStatus.CONFIRMED)
        moving_total = moving.aggregate(total=Sum("amount_minor"), since=Min("created_at"))
        paid_total = paid.aggregate(total=Sum("amount_minor"), last=Max("settled_at"))
        rows.append(
            {
                "currency": account.currency,
                "available_minor": account.available_minor,
                "pending_minor": account.held_minor,
                "in_payout_minor": moving_total["total"] or 0,
                "in_payout_since": moving_total["since"],
                "paid_out_minor": paid_total["total"] or 0,
                "last_paid_at": paid_total["last"],
            }
        )
    return rows


@dataclass(frozen=True)
class BalanceMovement:
    """One line of a payee's balance history: the earnings settled on a day, or one step of a payout
    (sent, returned, failed), with the payable balance after it."""

    at: datetime
    kind: str  # "earnings" | "payout" | "payout_back" | "adjustment"
    amount_minor: int
    balance_after_minor: int
    payout: Payout | None = None


def payee_history_of(*, user: User, currency: str) -> list[BalanceMovement]:
    """Every movement of the user's payable balance in `currency`, newest first. Earnings are summed per
    day; each payout is its own line, so a payout never reads as a negative earning."""
    entries = (
        Entry.objects.filter(
            account__user=user, account__kind=AccountKind.PAYABLE, account__currency=currency
        )
        .values("transaction__kind", "transaction__key", "transaction__created_at", "amount_minor")
        .order_by("transaction__created_at", "id")
    )
    steps: list[tuple[datetime, str, int, str]] = []
    for row in entries:
        kind = row["transaction__kind"]
        if kind == TransactionKind.PAYOUT:
            movement = "payout" if row["amount_minor"] < 0 else "payout_back"
        elif kind in (TransactionKind.SETTLEMENT, TransactionKind.CLAIM):
            movement = "earnings"
        else:
            movement = "adjustment"
        steps.append((row["transaction__created_at"], movement, row["amount_minor"], row["transaction__key"]))
    payout_keys = {key.rsplit(":", 1)[0] for _, movement, _, key in steps if movement.startswith("payout")}
    payouts = {payout.key: payout for payout in Payout.objects.filter(user=user, key__in=payout_keys)}
    history: list[BalanceMovement] = []
    balance = 0
    for at, movement, amount, key in steps:
        balance += amount
        previous = history[-1] if history else None
        same_day = previous is not None and previous.at.date() == at.date()
        if movement == "earnings" and previous is not None and previous.kind == "earnings" and same_day:
            history[-1] = BalanceMovement(at, "earnings", previous.amount_minor + amount, balance)
            continue
        history.append(BalanceMovement(at, movement, amount, balance, payouts.get(key.rsplit(":", 1)[0])))
    history.reverse()
    return history


def account_balances_from_entries(account_ids: list[int] | None = None) -> dict[int, int]:
    entries = Entry.objects.all() if account_ids is None else Entry.objects.filter(account_id__in=account_ids)
    return dict(entries.values("account").annotate(total=Sum("amount_minor")).values_list("account", "total"))


def held_from_unsettled_items() -> dict[int, int]:
    """What is held per account: on payers' accounts (prepaid, receipts, escrow), the unsettled revenue
    they pay; on payables, the holdbacks not yet released."""
    held: dict[int, int] = defaultdict(int)
    for payer, total in (
        RevenueItem.objects.filter(
            settlement__isnull=True,
            payer__kind__in=[AccountKind.VENDOR_PREPAID, AccountKind.RECEIPTS, AccountKind.ESCROW],
        )
        .values("payer")
        .annotate(total=Sum("amount_minor"))
        .values_list("payer", "total")
    ):
        held[payer] += int(total)
    for account, total in (
        Holdback.objects.filter(remaining_minor__gt=0)
        .values("account")
        .annotate(total=Sum("remaining_minor"))
        .values_list("account", "total")
    ):
        held[account] += int(total)
    return dict(held)


def unbalanced_transactions() -> list[tuple[int, str, int]]:
    """(transaction id, currency, sum) for every transaction whose entries do not sum to zero."""
    return list(
        Entry.objects.values("transaction", "currency")
        .annotate(total=Sum("amount_minor"))
        .exclude(total=0)
        .values_list("transaction", "currency", "total")
    )


def transactions_without_entries() -> QuerySet[JournalTransaction]:
    return JournalTransaction.objects.filter(entries__isnull=True)


def mismatched_entry_currencies() -> int:
    return Entry.objects.exclude(currency=F("account__currency")).count()


# Statements ----------------------------------------------------------------------------------------------


def statements_of(*, user: User) -> QuerySet[Statement]:
    return Statement.objects.filter(user=user).prefetch_related("lines")


def statement_get_visible(*, user: User, statement_id: int) -> Statement:
    return get_object_or_404(statements_of(user=user), pk=statement_id)


def statement_lines_from_ledger(
    *, user: User, currency: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """The payee's payable entries in [start, end), summed per work, source and transaction kind."""
    rows = (
        Entry.objects.filter(
            account__user=user,
            account__kind=AccountKind.PAYABLE,
            account__currency=currency,
            transaction__created_at__gte=start,
            transaction__created_at__lt=end,
        )
        .values("work", "work__title", "source", "transaction__kind")
        .annotate(total=Sum("amount_minor"))
        .order_by("transaction__kind", "work", "source")
    )
    return [
        {
            "work": row["work"],
            "work_title": row["work__title"] or "",
            "source": row["source"],
            "kind": row["transaction__kind"],
            "amount_minor": row["total"],
        }
        for row in rows
        if row["total"]
    ]


def payable_balance_before(*, user: User, currency: str, moment: datetime) -> int:
    total = Entry.objects.filter(
        account__user=user,
        account__kind=AccountKind.PAYABLE,
        account__currency=currency,
        transaction__created_at__lt=moment,
    ).aggregate(total=Sum("amount_minor"))["total"]
    return int(total or 0)


def statement_lines(*, statement: Statement) -> QuerySet[StatementLine]:
    return statement.lines.order_by("id")


# Split inputs --------------------------------------------------------------------------------------------


@dataclass
class Lineage:
    """Everything that decides how the revenue of a set of works splits, with the times it changed.

    Loaded once per settlement chunk: the parent edges of the works and all their ancestors (with when
    each edge was made), and every split sheet that was ever active for them (with its owners).
    """

    edges: dict[int, list[tuple[int, int, datetime]]] = field(default_factory=dict)
    sheets: dict[int, list[tuple[datetime, datetime | None, list[tuple[int | None, str, int]]]]] = field(
        default_factory=dict
    )

    def closure(self, work: int) -> set[int]:
        seen = {work}
        frontier = [work]
        while frontier:
            node = frontier.pop()
            for parent, _, _ in self.edges.get(node, ()):
                if parent not in seen:
                    seen.add(parent)
                    frontier.append(parent)
        return seen

    def change_times(self, work: int) -> list[datetime]:
        times: set[datetime] = set()
        for node in self.closure(work):
            times.update(made for _, _, made in self.edges.get(node, ()))
            for activated, superseded, _ in self.sheets.get(node, ()):
                times.add(activated)
                if superseded is not None:
                    times.add(superseded)
        return sorted(times)

    def edges_at(self, moment: datetime) -> dict[int, list[tuple[int, int]]]:
        return {
            child: [(parent, bps) for parent, bps, made in links if made <= moment]
            for child, links in self.edges.items()
        }

    def owners_at(self, work: int, moment: datetime) -> list[tuple[int | None, str, int]]:
        """The owners on the sheet in force at `moment`; before the first sheet, the first sheet's."""
        sheets = self.sheets.get(work, [])
        for activated, superseded, owners in sheets:
            if activated <= moment and (superseded is None or moment < superseded):
                return owners
        return sheets[0][2] if sheets else []


def lineage_for(work_ids: set[int]) -> Lineage:
    lineage = Lineage()
    frontier = set(work_ids)
    seen = set(work_ids)
    while frontier:
        rows = WorkParent.objects.filter(child_id__in=frontier).values_list(
            "child_id", "parent_id", "share_bps", "created_at"
        )
        frontier = set()
        for child, parent, bps, made in rows:
            lineage.edges.setdefault(child, []).append((parent, bps, made))
            if parent not in seen:
                seen.add(parent)
                frontier.add(parent)
    sheets = list(
        SplitSheet.objects.filter(work_id__in=seen, activated_at__isnull=False)
        .order_by("work_id", "activated_at", "id")
        .values_list("id", "work_id", "activated_at", "superseded_at")
    )
    owners: dict[int, list[tuple[int | None, str, int]]] = defaultdict(list)
    for sheet_id, user_id, email, bps in (
        SplitShare.objects.filter(sheet_id__in=[s[0] for s in sheets])
        .order_by("sheet_id", "id")
        .values_list("sheet_id", "user_id", "email", "share_bps")
    ):
        owners[sheet_id].append((user_id, email, bps))
    for sheet_id, work_id, activated, superseded in sheets:
        if activated is None:  # excluded by the query; narrows the type
            continue
        lineage.sheets.setdefault(work_id, []).append((activated, superseded, owners[sheet_id]))
    return lineage


def unsettled_exists() -> bool:
    return RevenueItem.objects.filter(settlement__isnull=True).exists()


def revenue_unsettled_total(*, currency: str) -> int:
    total = RevenueItem.objects.filter(Q(settlement__isnull=True), currency=currency).aggregate(
        total=Sum("amount_minor")
    )["total"]
    return int(total or 0)


def platform_fee_total(*, currency: str) -> int:
    row = LedgerAccount.objects.filter(key=fee_key(currency)).values_list("balance_minor", flat=True).first()
    return int(row or 0)


# Receivables ---------------------------------------------------------------------------------------------


class ReceivableGroup(TypedDict):
    reporter: int
    distributor: str
    currency: str
    open_minor: int
    overdue_minor: int
    matched_minor: int
    unapplied_minor: int


def receivables_summary(*, now: datetime) -> list[ReceivableGroup]:
    """Per (reporter, distributor, currency): what is receivable (open), overdue (open past its due
    date), matched to money received, and received but not matched (unapplied)."""
    groups: dict[tuple[int, str, str], ReceivableGroup] = {}

    def group(reporter: int, distributor: str, currency: str) -> ReceivableGroup:
        return groups.setdefault(
            (reporter, distributor, currency),
            {
                "reporter": reporter,
                "distributor": distributor,
                "currency": currency,
                "open_minor": 0,
                "overdue_minor": 0,
                "matched_minor": 0,
                "unapplied_minor": 0,
            },
        )

    rows = Receivable.objects.values_list(
        "reporter_id", "distributor", "currency", "status", "due_at", "amount_minor"
    )
    for reporter, distributor, currency, status, due_at, amount in rows:
        row = group(reporter, distributor, currency)
        if status == ReceivableStatus.MATCHED:
            row["matched_minor"] += amount
        else:
            row["open_minor"] += amount
            if due_at < now:
                row["overdue_minor"] += amount
    for key, balance, held in LedgerAccount.objects.filter(kind=AccountKind.RECEIPTS).values_list(
        "key", "balance_minor", "held_minor"
    ):
        _, _, reporter_id, distributor_name, code = key.split(":")
        if balance - held:
            group(int(reporter_id), distributor_name, code)["unapplied_minor"] += balance - held
    return [groups[k] for k in sorted(groups)]


def receivables_of(*, user: User) -> QuerySet[Receivable]:
    return Receivable.objects.filter(reporter=user).order_by("-id")
