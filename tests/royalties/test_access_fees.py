"""Accesses charged together (a retrieval's passages): one hold of their total, one revenue item each; a
short balance or mixed currencies record nothing."""

from __future__ import annotations

import pytest
from django.db import transaction

from common.money import Money
from common.problems import ApiError
from royalties.ledger import InsufficientFunds
from royalties.models import RevenueItem
from royalties.revenue import access_fees_record
from royalties.selectors import prepaid_available
from tests import factories
from tests.royalties.builders import funded_vendor, publish

pytestmark = pytest.mark.django_db


def _offers(count: int):
    owner = factories.creator()
    return [publish(owner, factories.work(owner, title=f"Text {n}")) for n in range(count)]


def test_fees_charged_together_hold_their_total_and_record_one_item_each() -> None:
    organisation = funded_vendor(1_000)
    offers = _offers(3)

    recorded = access_fees_record(
        organisation=organisation,
        fees=[
            (offers[0], Money(7, "USD"), "r:1:0"),
            (offers[1], Money(0, "USD"), "r:1:1"),
            (offers[2], Money(11, "USD"), "r:1:2"),
        ],
    )

    assert recorded == 2  # the free one records nothing
    items = RevenueItem.objects.order_by("source_key")
    assert [(i.source_key, i.work_id, i.amount_minor) for i in items] == [
        ("access:r:1:0", offers[0].work_id, 7),
        ("access:r:1:2", offers[2].work_id, 11),
    ]
    assert prepaid_available(organisation=organisation, currency="USD") == 1_000 - 18


@pytest.mark.parametrize(
    ("amounts", "error"),
    [
        ([Money(600, "USD"), Money(401, "USD")], InsufficientFunds),
        ([Money(1, "USD"), Money(1, "EUR")], ApiError),
    ],
)
def test_a_short_balance_or_mixed_currencies_record_nothing(amounts, error) -> None:
    organisation = funded_vendor(1_000)
    offers = _offers(2)

    with pytest.raises(error), transaction.atomic():
        access_fees_record(
            organisation=organisation,
            fees=[
                (offer, amount, f"r:2:{n}")
                for n, (offer, amount) in enumerate(zip(offers, amounts, strict=True))
            ],
        )

    assert RevenueItem.objects.count() == 0
    assert prepaid_available(organisation=organisation, currency="USD") == 1_000
