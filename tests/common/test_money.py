from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.money import CurrencyMismatch, Money, allocate


@given(
    total=st.integers(min_value=-(10**15), max_value=10**15),
    weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=40).filter(any),
)
def test_allocate_parts_sum_to_total_and_stay_within_one_unit_of_the_exact_share(total, weights) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    weight_sum = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = Fraction(total * weight, weight_sum)
        assert abs(part - exact) < 1
    assert allocate(total, weights) == parts


def test_allocate_breaks_ties_by_position() -> None:
    assert allocate(10, [1, 1, 1]) == [4, 3, 3]
    assert allocate(2, [1, 1, 1]) == [1, 1, 0]
    assert allocate(-10, [1, 1, 1]) == [-4, -3, -3]


def test_allocate_gives_zero_weights_nothing() -> None:
    assert allocate(101, [0, 5000, 0, 5000]) == [0, 51, 0, 50]


@pytest.mark.parametrize("weights", [[], [0, 0], [-1, 2]])
def test_allocate_refuses_weights_that_cannot_split(weights) -> None:
    with pytest.raises(ValueError):
        allocate(100, weights)


def test_allocate_refuses_a_float_total() -> None:
    with pytest.raises(TypeError):
        allocate(10.0, [1])  # type: ignore[arg-type]


def test_money_adds_same_currency_and_refuses_mixing() -> None:
    assert Money(150, "USD") + Money(50, "USD") == Money(200, "USD")
    with pytest.raises(CurrencyMismatch):
        Money(1, "USD") + Money(1, "EUR")
    with pytest.raises(TypeError):
        Money(1.5, "USD")  # type: ignore[arg-type]
    assert Money(100, "EUR").allocate([1, 2]) == [Money(33, "EUR"), Money(67, "EUR")]
