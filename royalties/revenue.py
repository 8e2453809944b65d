"""Recording revenue: accesses, licence fees, sales, claims' charges and dataset sales.

A revenue item is recorded once (unique source key) and its price held on the payer's account until
settlement splits it; a refused recording changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.models import Organisation
from catalog.models import Grant, Offer, OfferStatus, Work
from catalog.selectors import monetizing_claim_on
from common import clock, rows
from common import currency as currencies
from common.money import Money
from common.problems import ApiError, Conflict
from royalties import selectors
from royalties.ledger import (
    InsufficientFunds,
    Leg,
    account_ensure,
    account_hold,
    amount_check,
    clearing_account,
    escrow_account,
    payee_spec,
    prepaid_account,
    transaction_post,
)
from royalties.models import (
    JournalTransaction,
    LedgerAccount,
    RevenueItem,
    RevenueSource,
    TransactionKind,
)


def offer_fee_bps(offer: Offer | None) -> int:
    if offer is not None and offer.platform_fee_bps is not None:
        return offer.platform_fee_bps
    return int(settings.PLATFORM_FEE_BPS)


def current_offer(work_id: int) -> Offer | None:
    return Offer.objects.filter(work_id=work_id, status=OfferStatus.CURRENT).first()


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
    amount_check(amount, what="Revenue")
    if fresh_key:  # the access charge's general path, hot on SQLite: a prepared insert (common.rows)
        return _insert_revenue(
            source, source_key, work_id, amount, fee_bps, arose_at, payer_key, payer, hot_path=True
        )
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
    hot_path: bool = False,
) -> RevenueItem:
    if payer_key is not None:
        payer_id = account_hold(key=payer_key, amount_minor=amount.amount_minor)
        if payer_id is None:
            raise InsufficientFunds(
                "The prepaid balance is not enough for this access; top it up.",
                extra={"price_minor": amount.amount_minor, "currency": amount.currency},
            )
    else:
        assert payer is not None
        payer_id = payer.pk
    values = revenue_item_values(source, source_key, work_id, amount, fee_bps, arose_at)
    if hot_path:
        return rows.insert(RevenueItem(**values, payer_id=payer_id))
    return RevenueItem.objects.create(**values, payer_id=payer_id)


def revenue_item_values(
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
        return revenue_item_values(
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
        fee_bps=offer_fee_bps(offer),
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
        amount_check(fee.amount, what="Revenue")
    total = sum(fee.amount.amount_minor for fee in made)
    payer_id = account_hold(key=made[0].payer_key, amount_minor=total)
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
        "fee_bps": offer_fee_bps(grant.offer),
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


def claim_charge_hold(*, claim_id: int, organisation_id: int, amount: Money) -> JournalTransaction:
    """Move a claim's charge from the vendor's available prepaid balance into the claim's escrow, once
    per claim (InsufficientFunds, changing nothing, when the balance is short). Call inside a transaction."""
    amount_check(amount, what="A claim's charge")
    key = f"claim-hold:{claim_id}"
    existing = JournalTransaction.objects.filter(key=key).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        return transaction_post(
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
        fee_bps=offer_fee_bps(current_offer(work.pk)),
        arose_at=clock.now(),
        payer_key=selectors.escrow_key(claim_id, amount.currency),
    )


def claim_charge_return(*, claim_id: int, organisation_id: int, amount: Money) -> JournalTransaction:
    """The claim was dismissed: its escrow goes back to the vendor's prepaid balance, once per claim."""
    key = f"claim-return:{claim_id}"
    existing = JournalTransaction.objects.filter(key=key).first()
    if existing is not None:
        return existing
    return transaction_post(
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
        fee_bps=offer_fee_bps(offer),
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
    key_for_payee, fields = payee_spec(spec, amount.currency)
    payee = account_ensure(key=key_for_payee, **fields)  # type: ignore[arg-type]
    return transaction_post(
        kind=TransactionKind.SETTLEMENT,
        key=key,
        memo=memo,
        legs=[
            Leg(prepaid, -amount.amount_minor, None, RevenueSource.DATASET),
            Leg(payee, amount.amount_minor, None, RevenueSource.DATASET),
        ],
    )


def earning_work_of(work_id: int) -> int:
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
    earning_work = earning_work_of(work.pk)
    return _record(
        source=RevenueSource.SALE if earning_work == work.pk else RevenueSource.CLAIM,
        source_key=f"sale:{sale_ref}",
        work_id=earning_work,
        amount=amount,
        fee_bps=offer_fee_bps(current_offer(earning_work)),
        arose_at=clock.now(),
        payer_key=selectors.prepaid_key(buyer.pk, amount.currency),
    )
