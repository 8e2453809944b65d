"""The ledger calls a dataset sale makes, in one place.

The royalties app has no public service for dataset revenue yet, so this module uses its recording
primitives directly (`_record`, `_post`, `_fee_bps`, kept to this file): each work's part of a sale is one
revenue item (source `dataset`), held on the vendor's prepaid balance by the same conditional UPDATE the
access API uses and split later by settlement along the work's split sheet and lineage; the curator's part
is posted at once from the vendor's prepaid balance to the curator's payable (or the platform's fee
account when the platform curates). Call these inside the sale's database transaction.
"""

from __future__ import annotations

from datetime import datetime

from accounts.models import Organisation
from catalog.models import Offer
from common.money import Money
from royalties import selectors
from royalties.models import AccountKind, RevenueItem, RevenueSource, TransactionKind
from royalties.services import (
    InsufficientFunds,
    Leg,
    _account,
    _fee_bps,
    _post,
    _record,
    prepaid_account,
)

__all__ = ["InsufficientFunds", "curator_share_post", "work_share_record"]


def work_share_record(
    *, organisation: Organisation, key: str, work_id: int, offer: Offer, amount: Money, arose_at: datetime
) -> RevenueItem:
    """One work's part of a sale, held on the vendor's prepaid balance (InsufficientFunds when short)."""
    return _record(
        source=RevenueSource.DATASET,
        source_key=key,
        work_id=work_id,
        amount=amount,
        fee_bps=_fee_bps(offer),
        arose_at=arose_at,
        payer_key=selectors.prepaid_key(organisation.pk, amount.currency),
    )


def curator_share_post(
    *, organisation: Organisation, key: str, curator_id: int | None, amount: Money, memo: str
) -> None:
    """Move the curator's part from the vendor's available prepaid balance to the curator (or the
    platform's fee account), conditionally: InsufficientFunds when the balance is short."""
    prepaid = prepaid_account(organisation_id=organisation.pk, currency=amount.currency)
    if curator_id is None:
        payee = _account(
            key=selectors.fee_key(amount.currency), kind=AccountKind.PLATFORM_FEE, currency=amount.currency
        )
    else:
        payee = _account(
            key=selectors.payable_key(curator_id, amount.currency),
            kind=AccountKind.PAYABLE,
            currency=amount.currency,
            user_id=curator_id,
        )
    _post(
        kind=TransactionKind.SETTLEMENT,
        key=key,
        memo=memo,
        legs=[
            Leg(prepaid, -amount.amount_minor, None, RevenueSource.DATASET),
            Leg(payee, amount.amount_minor, None, RevenueSource.DATASET),
        ],
    )
