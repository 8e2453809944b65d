"""Revenue of an item under a monetize claim goes to the owners of the work it copies."""

import pytest

from catalog.models import Claim, ClaimStatus
from catalog.services import asset_upload
from common.money import Money
from royalties.models import RevenueItem
from royalties.reports import ReportLine, receipt_record, revenue_report_record
from royalties.selectors import earnings_of
from royalties.settlement import revenue_settle
from tests import factories

pytestmark = pytest.mark.django_db


def _claimed_work(decision: str, status: str = ClaimStatus.DECIDED):
    painter, copier = factories.creator(), factories.creator()
    original = factories.work(painter, title="Original")
    copy = factories.work(copier, title="Copy")
    asset = asset_upload(work=copy, user=copier, data=factories.png_bytes(), filename="copy.png").asset
    Claim.objects.create(
        work=original,
        respondent=copier,
        subject_asset=asset,
        subject_sha256=asset.blob_id,
        match_kind="image",
        score=50,
        confidence=0.99,
        status=status,
        decision=decision,
    )
    return painter, copier, copy


def _received(reporter) -> None:
    receipt_record(
        reporter=reporter, distributor="shop", amount=Money(1_000, "USD"), rail="bank", reference="shop-1"
    )


def _payable(user) -> dict[str, int]:
    return {row["currency"]: row["balance_minor"] for row in earnings_of(user=user)["balances"]}


def test_sales_of_a_monetized_copy_are_paid_to_the_original_works_owners() -> None:
    painter, copier, copy = _claimed_work("monetize")

    result = revenue_report_record(
        user=copier, distributor="shop", lines=[ReportLine("L1", copy.pk, 1_000, "USD")]
    )
    _received(copier)
    revenue_settle()

    [item] = result.items
    assert (item.source, item.work.title) == ("claim", "Original")
    assert _payable(painter) == {"USD": 900}  # after the 10% platform fee
    assert _payable(copier) == {}


def test_a_claim_that_does_not_monetize_leaves_the_sales_with_the_seller() -> None:
    painter, copier, copy = _claimed_work("track", ClaimStatus.DECIDED)

    revenue_report_record(user=copier, distributor="shop", lines=[ReportLine("L1", copy.pk, 1_000, "USD")])
    _received(copier)
    revenue_settle()

    assert _payable(copier) == {"USD": 900}
    assert _payable(painter) == {}


def test_an_open_claim_holds_the_sales_until_it_is_decided() -> None:
    painter, copier, copy = _claimed_work("", ClaimStatus.OPEN)

    revenue_report_record(user=copier, distributor="shop", lines=[ReportLine("L1", copy.pk, 1_000, "USD")])
    _received(copier)
    revenue_settle()

    assert _payable(copier) == {} and _payable(painter) == {}
    assert RevenueItem.objects.filter(work=copy, settlement__isnull=True).count() == 1
