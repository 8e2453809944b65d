"""The rails money leaves and enters by: Stripe (`stripe.py`) and the chain (`chain.py`).

What every rail shares: the error a rail call raises, and the records reconciliation compares with our
ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
