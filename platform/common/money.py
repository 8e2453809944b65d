"""Exact money: integer minor units, one currency per value, and largest-remainder allocation.

Pure Python, no Django: the royalties engine and the catalog's share maths both build on it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

BPS_WHOLE = 10_000
# The largest amount one price, fee or top-up may name: a trillion major units, far inside a 64-bit column
# even once multiplied by a quota or summed over a ledger.
MAX_AMOUNT_MINOR = 10**14
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class CurrencyMismatch(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Money:
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount_minor) is not int:
            raise TypeError(f"amount_minor must be an int, got {type(self.amount_minor).__name__}")
        if not _CURRENCY.match(self.currency):
            raise ValueError(f"currency must be a 3-letter ISO 4217 code, got {self.currency!r}")

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def allocate(self, weights: Sequence[int]) -> list[Money]:
        return [Money(part, self.currency) for part in allocate(self.amount_minor, weights)]

    def __str__(self) -> str:
        return f"{self.amount_minor} {self.currency} (minor units)"


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split an integer total in proportion to non-negative integer weights.

    Largest remainder: every part is the floor of its exact share, and the units left over go one each to
    the parts with the largest remainders, ties broken by position (earlier first). So the parts always sum
    to the total, each is within one unit of its exact share, and the same input gives the same output.
    A negative total is split as the mirror image of its absolute value.
    """
    if type(total) is not int:
        raise TypeError("total must be an int")
    if not weights:
        raise ValueError("weights must not be empty")
    if any(type(w) is not int or w < 0 for w in weights):
        raise ValueError("weights must be non-negative integers")
    weight_sum = sum(weights)
    if weight_sum == 0:
        raise ValueError("weights must not all be zero")
    if total < 0:
        return [-part for part in allocate(-total, weights)]
    parts = []
    remainders = []
    for index, weight in enumerate(weights):
        quotient, remainder = divmod(total * weight, weight_sum)
        parts.append(quotient)
        remainders.append((-remainder, index))
    leftover = total - sum(parts)
    for _, index in sorted(remainders)[:leftover]:
        parts[index] += 1
    return parts
