"""Money is bounded at every input (one documented maximum per currency), sums are checked against the
64-bit columns before anything is written, and settlement parks what it cannot settle instead of letting
it block everyone else."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from common import currency
from common.money import Money
from common.problems import ApiError
from royalties import settlement
from royalties.funding import prepaid_fund
from royalties.ledger import clearing_account, ledger_check
from royalties.models import (
    Entry,
    JournalTransaction,
    LedgerAccount,
    ParkedRevenue,
    Receivable,
    RevenueItem,
    RevenueSource,
)
from royalties.revenue import access_fee_record
from royalties.settlement import SETTLEMENT_RACE_RETRIES, SettlementRace, parked_retry, revenue_settle
from tests import factories
from tests.royalties.builders import funded_vendor, payable, publish

pytestmark = pytest.mark.django_db

TOO_BIG = 2**63


def test_the_maximum_is_one_hundred_billion_whole_units_of_each_currency() -> None:
    assert currency.max_minor("USD") == 10**13
    assert currency.max_minor("JPY") == 10**11
    assert currency.amount_in_bounds(10**13, "USD") and not currency.amount_in_bounds(10**13 + 1, "USD")
    assert not currency.amount_in_bounds(0, "USD") and currency.amount_in_bounds(0, "USD", allow_zero=True)


@pytest.mark.parametrize("amount", [TOO_BIG, 10**13 + 1])
def test_an_oversized_amount_in_a_json_report_answers_400_and_records_nothing(as_user, amount: int) -> None:
    creator = factories.creator()
    work = factories.work(creator)

    response = as_user(creator).post(
        "/api/v1/revenue-reports",
        {
            "distributor": "shop",
            "lines": [{"line_id": "L1", "work": work.pk, "amount_minor": amount, "currency": "USD"}],
        },
        format="json",
    )

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert Receivable.objects.count() == 0


def test_an_oversized_amount_in_a_csv_report_answers_400_and_records_nothing(as_user) -> None:
    creator = factories.creator()
    work = factories.work(creator)
    data = f"line_id,work,amount_minor,currency\nL1,{work.pk},{TOO_BIG},USD\n".encode()

    response = as_user(creator).post(
        "/api/v1/revenue-reports/csv",
        {"distributor": "shop", "file": SimpleUploadedFile("s.csv", data, content_type="text/csv")},
        format="multipart",
    )

    assert (response.status_code, response.json()["code"]) == (400, "amount_out_of_range")
    assert Receivable.objects.count() == 0


@pytest.mark.parametrize(
    ("terms", "code"),
    [
        # Past the 64-bit column: the request schema refuses it before the service sees it.
        ({"uses": {"ai-train": TOO_BIG}}, "validation_error"),
        ({"uses": {"ai-train": 5}, "licence_fee_minor": TOO_BIG}, "validation_error"),
        # Within the column but past the currency's maximum: the service's bound.
        ({"uses": {"ai-train": 10**13 + 1}}, "amount_out_of_range"),
    ],
)
def test_an_oversized_offer_price_or_licence_fee_answers_400(as_user, terms: dict, code: str) -> None:
    creator = factories.creator()
    work = factories.work(creator)

    response = as_user(creator).post(
        f"/api/v1/works/{work.pk}/offers", {"currency": "USD", **terms}, format="json"
    )

    assert (response.status_code, response.json()["code"]) == (400, code)
    assert work.offers.count() == 0


def test_an_oversized_dataset_price_answers_400(as_user) -> None:
    curator = factories.creator()

    response = as_user(curator).post(
        "/api/v1/datasets",
        {"title": "Photos", "kind": "image", "price_minor": TOO_BIG, "commercial_use": True},
        format="json",
    )

    assert (response.status_code, response.json()["code"]) == (400, "amount_out_of_range")


def test_an_oversized_top_up_is_refused_and_changes_nothing() -> None:
    organisation = funded_vendor(1_000)

    with pytest.raises(ApiError) as refused:
        prepaid_fund(organisation=organisation, amount=Money(TOO_BIG, "USD"), external_ref="huge")

    assert refused.value.problem_code == "amount_out_of_range"
    assert JournalTransaction.objects.filter(key="funding:manual:huge").count() == 0


def _oversized_item(work_id: int, key: str) -> RevenueItem:
    """Revenue recorded before amounts were bounded (the services refuse such amounts now)."""
    return RevenueItem.objects.create(
        source=RevenueSource.CLAIM,
        source_key=key,
        work_id=work_id,
        amount_minor=5 * 10**18,
        currency="USD",
        fee_bps=1000,
        arose_at=factories.work(factories.creator()).created_at,
        payer=clearing_account(rail="legacy", currency="USD"),
    )


def test_two_five_quintillion_lines_do_not_block_other_creators_settlement() -> None:
    big_owner = factories.creator(username="big")
    big_work = factories.work(big_owner)
    _oversized_item(big_work.pk, "legacy:1")
    _oversized_item(big_work.pk, "legacy:2")
    others = [factories.creator(username=f"c{i}") for i in range(3)]
    organisation = funded_vendor(100_000)
    for n, creator in enumerate(others):
        offer = publish(creator, factories.work(creator))
        access_fee_record(
            organisation=organisation, offer=offer, amount=Money(1_000, "USD"), access_key=f"a{n}"
        )

    result = revenue_settle()

    assert [payable(creator) for creator in others] == [900, 900, 900]
    [parked] = ParkedRevenue.objects.all()
    assert parked.item.source_key == "legacy:2" and "AmountOutOfRange" in parked.error
    assert result.items == 4
    assert RevenueItem.objects.filter(settlement__isnull=True).count() == 1
    assert ledger_check().clean
    assert all(
        abs(balance) <= currency.COLUMN_MAX
        for balance in LedgerAccount.objects.values_list("balance_minor", flat=True)
    )

    again = revenue_settle()  # parked items wait for the operator: the next run is not held up by them
    assert again.items == 0
    assert parked_retry(parked_ids=[parked.pk]) == 0
    assert ParkedRevenue.objects.get().item_id == parked.item_id  # parked again, with its error


def test_a_chunk_that_keeps_racing_is_retried_a_bounded_number_of_times(monkeypatch) -> None:
    calls = {"n": 0}

    def always_raced(**kwargs) -> int:
        calls["n"] += 1
        raise SettlementRace("taken by another worker")

    monkeypatch.setattr(settlement, "_settle_chunk", always_raced)
    monkeypatch.setattr(settlement.time, "sleep", lambda seconds: None)

    result = revenue_settle()

    assert calls["n"] == SETTLEMENT_RACE_RETRIES + 1
    assert (result.items, result.transactions) == (0, 0)
    assert Entry.objects.count() == 0
