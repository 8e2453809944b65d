"""Reversals, refunds and chargebacks, and what makes them whole: holdbacks and clawbacks.

A correction is a new transaction (the mirror image, or the part of it that can still be taken), never an
edit; each is made once per cause.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Sequence

from django.db import transaction
from django.db.models import F, Sum

from common import clock
from common import currency as currencies
from common.money import allocate
from common.problems import ApiError, Conflict
from royalties import selectors, splits
from royalties.ledger import (
    InsufficientFunds,
    Leg,
    account_ensure,
    clawback_account,
    payee_spec,
    prepaid_account,
    transaction_post,
    vendor_debt_account,
)
from royalties.models import (
    AccountKind,
    Entry,
    Holdback,
    JournalTransaction,
    LedgerAccount,
    Receivable,
    ReceivableStatus,
    RevenueItem,
    TransactionKind,
)
from royalties.settlement import Plans, revenue_items_settle

# Reversals, holdbacks and clawbacks -------------------------------------------------------------------


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
    return transaction_post(
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
    transaction_post(
        kind=TransactionKind.ADJUSTMENT,
        key=f"clawback:{user_id}:{currency}:{secrets.token_hex(8)}",
        memo=f"Clawback of {currencies.format_minor(take, currency)} recovered from later earnings",
        legs=[Leg(payable, -take), Leg(owed_account, take)],
    )
    return take


# Refunds and chargebacks -------------------------------------------------------------------------------


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
    return transaction_post(kind=TransactionKind.REFUND, key=key, memo=memo, legs=legs)


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
        revenue_items_settle(item_ids=unsettled)
    if not matched:
        raise InsufficientFunds("The receipt's money is neither unused nor matched: for the operator.")
    revenues = [r.revenue for r in matched if r.revenue is not None]
    shares = allocate(rest, [item.amount_minor for item in revenues])
    return legs + _covered(_fee_within_earned(_takeback_legs(revenues, shares)))


def _takeback_legs(revenues: Sequence[RevenueItem], amounts: Sequence[int]) -> list[Leg]:
    """Take `amounts` back from whom each settled revenue item was split to (the platform fee, the parents'
    shares up the chain, the owners), split by the plan that split the item."""
    plans = Plans(selectors.lineage_for({item.work_id for item in revenues}))
    legs: list[Leg] = []
    for item, share in zip(revenues, amounts, strict=True):
        if not share:
            continue
        plan = plans.get(item.work_id, item.arose_at, item.fee_bps)
        for part, part_amount in zip(plan.parts, plan.split(share), strict=True):
            if not part_amount:
                continue
            payee = ("fee", None) if part.payee == splits.FEE else part.payee
            account_key, spec = payee_spec(payee, item.currency)  # type: ignore[arg-type]
            account = account_ensure(key=account_key, **spec)  # type: ignore[arg-type]
            legs.append(Leg(account, -part_amount, part.work, item.source))
    return legs


def _fee_within_earned(legs: list[Leg]) -> list[Leg]:
    """The platform gives back at most the fees it holds: each refund is split on its own, so over several
    chargebacks of the same revenue the fee's rounded parts could add up to more than the fee earned. What
    the fee cannot give back is taken from the largest payee part instead (their clawback if already paid),
    so no payee keeps money that no payer paid."""
    fee_legs = [i for i, leg in enumerate(legs) if leg.account.kind == AccountKind.PLATFORM_FEE]
    payee_legs = [i for i, leg in enumerate(legs) if leg.account.kind != AccountKind.PLATFORM_FEE]
    if not fee_legs or not payee_legs:
        return legs
    out = list(legs)
    for i in fee_legs:
        leg = out[i]
        held = LedgerAccount.objects.select_for_update().get(pk=leg.account.pk).balance_minor
        already = sum(
            -out[j].amount_minor for j in fee_legs[: fee_legs.index(i)] if out[j].account.pk == leg.account.pk
        )
        excess = -leg.amount_minor - max(0, held - already)
        if excess <= 0:
            continue
        out[i] = Leg(leg.account, leg.amount_minor + excess, leg.work_id, leg.source)
        largest = min(payee_legs, key=lambda j: out[j].amount_minor)
        other = out[largest]
        out[largest] = Leg(other.account, other.amount_minor - excess, other.work_id, other.source)
    return [leg for leg in out if leg.amount_minor]


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
    return transaction_post(kind=TransactionKind.REFUND, key=key, memo=memo, legs=legs)


# Accesses taken back -----------------------------------------------------------------------------------


class RefundNotYet(Conflict):
    """The access's revenue cannot be settled now (its work is blocked, a claim holds its revenue, or
    settlement parked it), so whom to take the refund back from is not known yet: nothing changed; the
    refund is asked again later."""


def access_refund_key(access_key: str) -> str:
    return f"refund:access:{access_key}"


@transaction.atomic
def access_refund(*, access_key: str, memo: str) -> JournalTransaction | None:
    """A paid access is taken back because what it paid for was never delivered (a studio job that failed
    after its charge): its price goes back to the prepaid balance that paid it, once per access (journal
    key `refund:access:<access key>`; asking again returns the same refund). None for a free access, which
    recorded no revenue and so took no money.

    The access's revenue is settled first if it was not yet (alone, so the refund is the mirror image of
    its settlement), then taken back from the payees it was split to, as a distributor receipt's refund
    is: the fee (at most what the fee holds), the parents' shares up the chain and the owners, from their
    payable and their holdbacks, and what a payee was already paid becomes their clawback. Raises
    RefundNotYet, changing nothing, while the revenue cannot be settled. Entries are only ever added.
    """
    item = RevenueItem.objects.select_for_update().filter(source_key=f"access:{access_key}").first()
    if item is None:
        return None
    key = access_refund_key(access_key)
    existing = JournalTransaction.objects.filter(key=key).first()
    if existing is not None:
        return existing
    if item.settlement_id is None:
        revenue_items_settle(item_ids=[item.pk])
        item.refresh_from_db(fields=["settlement"])
        if item.settlement_id is None:
            raise RefundNotYet(
                "This access's revenue is held (its work is blocked or claimed) and cannot be refunded yet.",
                code="refund_not_yet",
            )
    payer = LedgerAccount.objects.get(pk=item.payer_id)
    takeback = _covered(_fee_within_earned(_takeback_legs([item], [item.amount_minor])))
    return transaction_post(
        kind=TransactionKind.REFUND,
        key=key,
        memo=memo,
        legs=[Leg(payer, item.amount_minor, item.work_id, item.source), *takeback],
    )
