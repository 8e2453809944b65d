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


def stack(work: int, edges: Edges, *, whole: Fraction = Fraction(1)) -> dict[int, Fraction]:
    """What each work reachable from `work` through parent edges receives of `whole` of `work`'s revenue.

    `work` itself receives `whole`; each parent receives its `share_bps` of what each child receives, summed
    over every path. The works come in an order where each one follows every work it receives through
    (children before parents). A work that is its own ancestor raises LineageCycle.

    The one royalty-stack engine: the stack shown (`royalty_stack`, the catalog's lineage pages) and the
    stack paid (`royalties.splits`, settlement) are both this. `edges` must hold the parents of `work` and
    of all its ancestors.
    """
    order = _children_first(work, edges)
    receives = dict.fromkeys(order, Fraction(0))
    receives[work] = whole
    for node in order:
        cut = receives[node]
        for parent, share_bps in edges.get(node, ()):
            receives[parent] += cut * Fraction(share_bps, BPS_WHOLE)
    return receives


def _children_first(work: int, edges: Edges) -> list[int]:
    """The works reachable from `work` through parent edges, each after every child that reaches it."""
    order: list[int] = []
    state: dict[int, bool] = {}  # False: on the current path; True: done

    def visit(node: int) -> None:
        state[node] = False
        for parent, _ in edges.get(node, ()):
            done = state.get(parent)
            if done is False:
                raise LineageCycle(f"work {parent} is its own ancestor")
            if done is None:
                visit(parent)
        state[node] = True
        order.append(node)

    visit(work)
    order.reverse()
    return order


def royalty_stack(work: int, edges: Edges) -> dict[int, Fraction]:
    """Each ancestor's share of `work`'s revenue, as an exact fraction of the whole (1 = 100%)."""
    return {node: share for node, share in stack(work, edges).items() if node != work}


def as_bps(share: Fraction) -> Decimal:
    """An exact share in basis points as a Decimal (exact: the denominator divides a power of 10)."""
    with localcontext() as context:
        context.prec = 80
        value = Decimal(share.numerator * BPS_WHOLE) / Decimal(share.denominator)
    return value.normalize() if value != value.to_integral_value() else value.quantize(Decimal(1))
