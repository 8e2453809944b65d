"""Royalty stacks over the derivative graph. Pure Python.

An edge (child -> parent, share_bps) says the parent is owed share_bps of the child's revenue. The parent
passes on its own upstream shares from what it receives, so an ancestor's cut of a descendant's revenue is
the product of the shares along each path, summed over paths. Shares are basis points, so every product
has a power of 10,000 as its denominator and is an exact finite decimal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, localcontext
from fractions import Fraction

from common.money import BPS_WHOLE

Edges = Mapping[int, Sequence[tuple[int, int]]]  # child id -> [(parent id, share_bps)]


class LineageCycle(ValueError):
    pass


def ancestors(start: Iterable[int], parents_of: Callable[[set[int]], Edges]) -> set[int]:
    """Every ancestor of the start nodes, fetched one generation at a time (one lookup per level)."""
    seen: set[int] = set()
    frontier = set(start)
    while frontier:
        edges = parents_of(frontier)
        next_frontier = {parent for links in edges.values() for parent, _ in links} - seen
        seen |= next_frontier
        frontier = next_frontier
    return seen


def royalty_stack(work: int, edges: Edges) -> dict[int, Fraction]:
    """Each ancestor's share of `work`'s revenue, as an exact fraction of the whole (1 = 100%).

    `edges` must hold the parents of `work` and of all its ancestors.
    """
    memo: dict[int, dict[int, Fraction]] = {}

    def stack_of(node: int, path: frozenset[int]) -> dict[int, Fraction]:
        if node in memo:
            return memo[node]
        result: dict[int, Fraction] = {}
        for parent, share_bps in edges.get(node, ()):
            if parent in path:
                raise LineageCycle(f"work {parent} is its own ancestor")
            share = Fraction(share_bps, BPS_WHOLE)
            result[parent] = result.get(parent, Fraction(0)) + share
            for ancestor, upstream in stack_of(parent, path | {parent}).items():
                result[ancestor] = result.get(ancestor, Fraction(0)) + share * upstream
        memo[node] = result
        return result

    return stack_of(work, frozenset({work}))


def as_bps(share: Fraction) -> Decimal:
    """An exact share in basis points as a Decimal (exact: the denominator divides a power of 10)."""
    with localcontext() as context:
        context.prec = 80
        value = Decimal(share.numerator * BPS_WHOLE) / Decimal(share.denominator)
    return value.normalize() if value != value.to_integral_value() else value.quantize(Decimal(1))
