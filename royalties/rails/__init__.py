"""The rails money leaves and enters by: Stripe (`stripe.py`) and the chain (`chain.py`).

What every rail shares: the error a rail call raises, the outcome a rail answers for a payout, and the
records reconciliation compares with our ledger. A rail never changes a payout's state: it answers an
`Outcome`, and `royalties.payouts` (the payout state machine) applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class RailError(Exception):
    """A rail refused or failed a call. `retryable` says whether the same call may be tried again later
    (a timeout, a rate limit, a node that is down) or the payout must fail (an invalid account)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class RailRecord:
    """One money movement as the rail reports it. `reference` is our own id for it (a payout key, a
    funding reference), `external_id` the rail's (a Stripe transfer id, a transaction hash)."""

    kind: str  # "payout" or "funding"
    reference: str
    external_id: str
    amount_minor: int
    currency: str
    at: datetime


class OutcomeKind(StrEnum):
    SUBMITTED = "submitted"  # the rail took the payout: `external_id` names the transfer or transaction
    RESUBMITTED = "resubmitted"  # sent again in another transaction, same payout id: only the id changes
    CONFIRMED = "confirmed"  # paid: `external_id` names the payment
    FAILED = "failed"  # will not be paid: `note` says why
    WAITING = "waiting"  # nothing to record yet; a `note` is the error to show (it is tried again later)


@dataclass(frozen=True)
class Outcome:
    """What a rail learned about one payout (by its key)."""

    key: str
    kind: OutcomeKind
    external_id: str = ""
    note: str = ""
