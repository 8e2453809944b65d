"""The split engine: pure maths, property-tested against an independent recursive computation."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.lineage import royalty_stack
from royalties.splits import FEE, Part, SplitError, exact_shares, split

# D -> C (50%); C -> A (30%), C -> B (20%); A owned 60/40 by alice/bob.
OWNERS = {
    1: [("alice", 6000), ("bob", 4000)],
    2: [("bea", 10_000)],
    3: [("carl", 10_000)],
    4: [("dan", 10_000)],
}
EDGES = {4: [(3, 5000)], 3: [(1, 3000), (2, 2000)]}


def test_a_three_level_chain_with_two_parents_splits_exactly() -> None:
    parts = split(amount_minor=10_000, work=4, fee_bps=1000, owners=OWNERS, edges=EDGES)
    assert parts == {
        Part(None, FEE): 1000,
        Part(4, "dan"): 4500,
        Part(3, "carl"): 2250,
        Part(1, "alice"): 810,
        Part(1, "bob"): 540,
        Part(2, "bea"): 900,
    }


def test_leftover_units_go_to_the_largest_remainders() -> None:
    parts = split(amount_minor=999, work=4, fee_bps=1000, owners=OWNERS, edges=EDGES)
    # exact: fee 99.9, dan 449.55, carl 224.775, alice 80.919, bob 53.946, bea 89.91
    assert parts == {
        Part(None, FEE): 100,
        Part(4, "dan"): 449,
        Part(3, "carl"): 225,
        Part(1, "alice"): 81,
        Part(1, "bob"): 54,
        Part(2, "bea"): 90,
    }


def test_a_diamond_pays_the_shared_ancestor_through_both_paths() -> None:
    owners = {n: [(f"o{n}", 10_000)] for n in (1, 2, 3, 4)}
    edges = {4: [(2, 5000), (3, 5000)], 2: [(1, 1000)], 3: [(1, 2000)]}
    shares = exact_shares(work=4, fee_bps=0, owners=owners, edges=edges)
    assert shares[Part(1, "o1")] == Fraction(1, 2) * Fraction(1, 10) + Fraction(1, 2) * Fraction(2, 10)
    assert sum(shares.values()) == 1


def test_the_stack_paid_is_the_stack_shown() -> None:
    # given a diamond over a chain, with no fee
    owners = {n: [(f"o{n}", 10_000)] for n in (1, 2, 3, 4, 5)}
    edges = {5: [(4, 4000)], 4: [(2, 5000), (3, 2500)], 2: [(1, 1000)], 3: [(1, 2000)]}
    # when the revenue is split, each ancestor's owners get the share the lineage page shows for it, less
    # what it passes on to its own parents
    paid = exact_shares(work=5, fee_bps=0, owners=owners, edges=edges)
    shown = royalty_stack(5, edges)
    for work, share in shown.items():
        passed_on = sum(Fraction(bps, 10_000) for _, bps in edges.get(work, []))
        assert paid[Part(work, f"o{work}")] == share * (1 - passed_on)
    assert set(shown) == {1, 2, 3, 4}


def test_parents_taking_everything_leave_the_derivative_owners_nothing() -> None:
    parts = split(
        amount_minor=100,
        work=2,
        fee_bps=0,
        owners={1: [("a", 10_000)], 2: [("b", 10_000)]},
        edges={2: [(1, 10_000)]},
    )
    assert parts == {Part(1, "a"): 100}


@pytest.mark.parametrize(
    ("owners", "edges"),
    [
        ({1: [("a", 9000)]}, {}),
        ({1: [("a", 10_000)], 2: [("b", 10_000)]}, {1: [(2, 6000), (2, 6000)]}),
        ({1: [("a", 10_000)], 2: [("b", 10_000)]}, {1: [(2, 100)], 2: [(1, 100)]}),
        ({}, {}),
    ],
    ids=["sheet-not-whole", "parents-over-100", "cycle", "no-owners"],
)
def test_impossible_inputs_are_refused(owners, edges) -> None:
    with pytest.raises(SplitError):
        split(amount_minor=100, work=1, fee_bps=0, owners=owners, edges=edges)


def _exact_by_recursion(amount: Fraction, work: int, owners, edges, out: dict[Part, Fraction]) -> None:
    """The definition, written the slow way: each parent gets its share of what the child received."""
    parents = edges.get(work, [])
    for parent, bps in parents:
        _exact_by_recursion(amount * Fraction(bps, 10_000), parent, owners, edges, out)
    kept = amount * Fraction(10_000 - sum(bps for _, bps in parents), 10_000)
    for payee, bps in owners[work]:
        out[Part(work, payee)] = out.get(Part(work, payee), Fraction(0)) + kept * Fraction(bps, 10_000)


@st.composite
def _dags(draw):
    """A random derivative DAG over works 0..n-1 (parents have higher numbers), with split sheets."""
    size = draw(st.integers(min_value=1, max_value=7))
    edges: dict[int, list[tuple[int, int]]] = {}
    for child in range(size - 1):
        parents = draw(
            st.lists(st.integers(min_value=child + 1, max_value=size - 1), unique=True, max_size=3)
        )
        if parents:
            budget = draw(st.integers(min_value=0, max_value=10_000))
            cuts = sorted(
                draw(st.lists(st.integers(0, budget), min_size=len(parents) - 1, max_size=len(parents) - 1))
            )
            bounds = [0, *cuts, budget]
            edges[child] = [(p, bounds[i + 1] - bounds[i]) for i, p in enumerate(parents)]
    owners = {}
    for work in range(size):
        count = draw(st.integers(min_value=1, max_value=4))
        cuts = sorted(
            draw(st.lists(st.integers(1, 9_999), min_size=count - 1, max_size=count - 1, unique=True))
        )
        bounds = [0, *cuts, 10_000]
        owners[work] = [
            (f"u{draw(st.integers(0, 5))}-{work}-{i}", bounds[i + 1] - bounds[i]) for i in range(count)
        ]
    return owners, edges


@settings(max_examples=300, deadline=None)
@given(
    world=_dags(),
    amount=st.integers(min_value=0, max_value=10**12),
    fee_bps=st.integers(min_value=0, max_value=10_000),
)
def test_parts_sum_to_the_whole_and_each_is_within_one_unit_of_its_exact_share(
    world, amount, fee_bps
) -> None:
    owners, edges = world
    parts = split(amount_minor=amount, work=0, fee_bps=fee_bps, owners=owners, edges=edges)
    assert sum(parts.values()) == amount
    exact: dict[Part, Fraction] = {}
    if fee_bps:
        exact[Part(None, FEE)] = Fraction(amount * fee_bps, 10_000)
    _exact_by_recursion(Fraction(amount * (10_000 - fee_bps), 10_000), 0, owners, edges, exact)
    for part, value in exact.items():
        assert abs(parts.get(part, 0) - value) < 1, part
    assert set(parts) <= set(exact)
    assert split(amount_minor=amount, work=0, fee_bps=fee_bps, owners=owners, edges=edges) == parts
