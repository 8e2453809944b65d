"""Exact revenue splits up a chain of derivatives. Pure Python: no Django.

A revenue amount earned by a work is divided as follows. The platform fee (fee_bps of the whole) comes off
first. Each parent of the work is owed `share_bps` of the work's cut (the revenue after the fee), and passes
on its own parents' shares from what it receives, so an ancestor is owed the product of the shares along
each path to it, summed over paths (Story Protocol's "liquid absolute percentage"). What a work keeps after
its parents' shares goes to its owners by its split sheet. What each work receives is the catalog's royalty
stack (`catalog.lineage.stack`, the same engine that computes the stack shown on a work's lineage).

Every payee's exact share is a fraction with a power of 10,000 as denominator. The amount is allocated
once, over all payees at every level together, by largest remainder (`common.money.allocate`): the parts
sum exactly to the amount and each part, the fee included, is within one minor unit of its exact share.
Rounding level by level instead would let the error grow by up to a unit per generation.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import lcm

from catalog.lineage import LineageCycle, stack
from common.money import BPS_WHOLE, allocate

# The fee's payee key; owners' keys are whatever the caller uses (user ids, account keys).
FEE = "platform-fee"

Owners = Mapping[int, Sequence[tuple[Hashable, int]]]  # work -> [(payee, share_bps)], summing to 10,000
Edges = Mapping[int, Sequence[tuple[int, int]]]  # child work -> [(parent work, share_bps)]


class SplitError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Part:
    """Who is paid (`payee`) through which work (`work`; None for the platform fee)."""

    work: int | None
    payee: Hashable


def exact_shares(*, work: int, fee_bps: int, owners: Owners, edges: Edges) -> dict[Part, Fraction]:
    """Each part's exact fraction of the revenue (they sum to 1). Zero shares are left out."""
    if not 0 <= fee_bps <= BPS_WHOLE:
        raise SplitError(f"fee_bps must be between 0 and {BPS_WHOLE}")
    fee = Fraction(fee_bps, BPS_WHOLE)
    shares: dict[Part, Fraction] = {}
    if fee:
        shares[Part(None, FEE)] = fee
    # What each work receives of the revenue after the fee, children before parents.
    try:
        receives = stack(work, edges, whole=1 - fee)
    except LineageCycle as error:
        raise SplitError(str(error)) from None
    for node, cut in receives.items():
        parents = edges.get(node, ())
        parents_bps = sum(bps for _, bps in parents)
        if parents_bps > BPS_WHOLE or any(bps < 0 for _, bps in parents):
            raise SplitError(f"the parents of work {node} take more than 100%")
        kept = cut * Fraction(BPS_WHOLE - parents_bps, BPS_WHOLE)
        if not kept:
            continue
        sheet = owners.get(node)
        if not sheet:
            raise SplitError(f"work {node} has no owners in force")
        if sum(bps for _, bps in sheet) != BPS_WHOLE or any(bps <= 0 for _, bps in sheet):
            raise SplitError(f"the owners of work {node} do not hold exactly 100%")
        for payee, bps in sheet:
            part = Part(node, payee)
            shares[part] = shares.get(part, Fraction(0)) + kept * Fraction(bps, BPS_WHOLE)
    return {part: share for part, share in shares.items() if share}


@dataclass(frozen=True)
class Plan:
    """The parts of one work's revenue under fixed fee, owners and lineage, as integer weights: computing
    it once and allocating each amount with it keeps settlement fast."""

    parts: tuple[Part, ...]
    weights: tuple[int, ...]

    def split(self, amount_minor: int) -> list[int]:
        return allocate(amount_minor, self.weights)


def plan(*, work: int, fee_bps: int, owners: Owners, edges: Edges) -> Plan:
    shares = exact_shares(work=work, fee_bps=fee_bps, owners=owners, edges=edges)
    # A stable order fixes the tie-break: the fee first, then by work and payee.
    ordered = sorted(
        shares.items(), key=lambda item: (item[0].work is not None, item[0].work or 0, str(item[0].payee))
    )
    denominator = lcm(*(share.denominator for _, share in ordered))
    return Plan(
        parts=tuple(part for part, _ in ordered),
        weights=tuple(share.numerator * (denominator // share.denominator) for _, share in ordered),
    )


def split(*, amount_minor: int, work: int, fee_bps: int, owners: Owners, edges: Edges) -> dict[Part, int]:
    """The exact integer amount per part: they sum to `amount_minor`, each within one unit of exact."""
    revenue_plan = plan(work=work, fee_bps=fee_bps, owners=owners, edges=edges)
    return dict(zip(revenue_plan.parts, revenue_plan.split(amount_minor), strict=True))
