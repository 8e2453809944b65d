"""Reported revenue is a receivable from a named payer: nothing is payable until money covering it arrives
and is matched; its sale date is bounded and cannot cut a parent or a co-owner out of the split."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.sites import site
from django.test import RequestFactory

from common.money import Money
from common.problems import ApiError, Conflict
from royalties import payouts, reconcile
from royalties.admin import ReceivableAdmin
from royalties.ledger import ledger_check
from royalties.models import (
    Entry,
    JournalTransaction,
    Payout,
    Receivable,
    ReceivableStatus,
    RevenueItem,
)
from royalties.reports import ReportLine, receipt_record, receivable_date_confirm, revenue_report_record
from royalties.settlement import revenue_settle
from tests import factories
from tests.royalties.builders import balance, co_own, payable, publish, three_level_chain

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_a_creator_self_reporting_a_hundred_million_gets_no_payable_and_no_payout_until_money_arrives(
    as_user, settings
) -> None:
    creator = factories.creator(username="greedy")
    work = factories.work(creator)
    client = as_user(creator)

    response = client.post(
        "/api/v1/revenue-reports",
        {
            "distributor": "Shop",
            "lines": [{"line_id": "L1", "work": work.pk, "amount_minor": 100_000_000, "currency": "USD"}],
        },
        format="json",
    )
    revenue_settle()
    run = payouts.payout_run()

    assert response.status_code == 201
    assert response.json()["items"][0]["status"] == "open"
    assert payable(creator) == 0
    assert run.created == []
    assert Payout.objects.count() == 0
    assert RevenueItem.objects.count() == 0
    assert Entry.objects.count() == 0
    assert balance("clearing:reported:USD") == 0
    assert ledger_check().clean


def test_money_received_from_the_distributor_is_matched_oldest_first_and_only_then_paid() -> None:
    creator = factories.creator(username="honest")
    work = factories.work(creator)
    revenue_report_record(
        user=creator,
        distributor="shop",
        lines=[ReportLine("L1", work.pk, 6_000, "USD"), ReportLine("L2", work.pk, 4_000, "USD")],
    )

    first = receipt_record(
        reporter=creator, distributor="shop", amount=Money(7_000, "USD"), rail="bank", reference="B-1"
    )
    revenue_settle()

    assert [r.source_key for r in first.matched] == [f"report:{creator.pk}:shop:L1"]
    assert payable(creator) == 5_400  # 6,000 less the 10% fee
    assert balance(f"receipts:user:{creator.pk}:shop:USD") == 1_000  # received, not yet matched

    second = receipt_record(
        reporter=creator, distributor="shop", amount=Money(3_000, "USD"), rail="bank", reference="B-2"
    )
    revenue_settle()

    assert [r.source_key for r in second.matched] == [f"report:{creator.pk}:shop:L2"]
    assert payable(creator) == 9_000
    assert balance(f"receipts:user:{creator.pk}:shop:USD") == 0
    assert balance("clearing:bank:USD") == -10_000
    assert ledger_check().clean


def test_a_receipt_is_recorded_once_per_reference_and_a_reused_reference_with_another_amount_is_refused() -> (
    None
):
    creator = factories.creator()
    work = factories.work(creator)
    revenue_report_record(user=creator, distributor="shop", lines=[ReportLine("L1", work.pk, 500, "USD")])
    receipt_record(reporter=creator, distributor="shop", amount=Money(500, "USD"), rail="bank", reference="R")

    again = receipt_record(
        reporter=creator, distributor="shop", amount=Money(500, "USD"), rail="bank", reference="R"
    )
    with pytest.raises(Conflict):
        receipt_record(
            reporter=creator, distributor="shop", amount=Money(900, "USD"), rail="bank", reference="R"
        )

    assert again.matched == []
    assert JournalTransaction.objects.filter(key="funding:bank:R").count() == 1
    assert balance("clearing:bank:USD") == -500


def test_money_from_one_creators_distributor_is_never_matched_to_another_creators_reports() -> None:
    honest, greedy = factories.creator(username="h"), factories.creator(username="g")
    revenue_report_record(
        user=greedy, distributor="shop", lines=[ReportLine("L1", factories.work(greedy).pk, 500, "USD")]
    )

    receipt_record(reporter=honest, distributor="shop", amount=Money(500, "USD"), rail="bank", reference="X")

    assert Receivable.objects.get().status == ReceivableStatus.OPEN
    assert RevenueItem.objects.count() == 0


def test_a_sale_dated_before_the_work_existed_is_refused_and_records_nothing(as_user) -> None:
    chain = three_level_chain()

    response = as_user(chain.dan).post(
        "/api/v1/revenue-reports",
        {
            "distributor": "shop",
            "lines": [
                {
                    "line_id": "old",
                    "work": chain.d.pk,
                    "amount_minor": 10_000,
                    "currency": "USD",
                    "arose_at": "2020-01-01T00:00:00Z",
                }
            ],
        },
        format="json",
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_arose_at")
    assert Receivable.objects.count() == 0
    assert RevenueItem.objects.count() == 0


def test_a_sale_older_than_the_window_is_refused(time_machine, settings) -> None:
    settings.REPORT_MAX_AGE_DAYS = 30
    time_machine.move_to(T0)
    creator = factories.creator()
    work = factories.work(creator)
    time_machine.move_to(T0 + timedelta(days=90))

    with pytest.raises(ApiError) as refused:
        revenue_report_record(
            user=creator,
            distributor="shop",
            lines=[ReportLine("L1", work.pk, 500, "USD", arose_at=T0 + timedelta(days=1))],
        )

    assert refused.value.problem_code == "invalid_arose_at"
    assert Receivable.objects.count() == 0


def test_a_backdated_report_is_split_by_the_owners_in_force_when_it_was_reported(time_machine) -> None:
    time_machine.move_to(T0)
    alice, bob = factories.creator(username="alice"), factories.creator(username="bob")
    work = factories.work(alice)
    publish(alice, work)
    time_machine.move_to(T0 + timedelta(days=10))
    co_own(work, alice, [(alice, 7000), (bob, 3000)])
    time_machine.move_to(T0 + timedelta(days=20))

    revenue_report_record(
        user=alice,
        distributor="shop",
        lines=[ReportLine("L1", work.pk, 10_000, "USD", arose_at=T0 + timedelta(days=1))],
    )
    receipt_record(
        reporter=alice, distributor="shop", amount=Money(10_000, "USD"), rail="bank", reference="B"
    )
    revenue_settle()

    receivable = Receivable.objects.get()
    assert (receivable.sale_at, receivable.split_at) == (T0 + timedelta(days=1), T0 + timedelta(days=20))
    assert (payable(alice), payable(bob)) == (6_300, 2_700)


def test_an_operator_may_confirm_the_earlier_date_and_only_within_the_bounds(time_machine) -> None:
    time_machine.move_to(T0)
    alice, bob = factories.creator(username="alice"), factories.creator(username="bob")
    work = factories.work(alice)
    time_machine.move_to(T0 + timedelta(days=10))
    co_own(work, alice, [(alice, 7000), (bob, 3000)])
    time_machine.move_to(T0 + timedelta(days=20))
    revenue_report_record(
        user=alice,
        distributor="shop",
        lines=[ReportLine("L1", work.pk, 10_000, "USD", arose_at=T0 + timedelta(days=1))],
    )
    receivable = Receivable.objects.get()
    operator = factories.creator(username="op", is_staff=True)

    with pytest.raises(ApiError):
        receivable_date_confirm(receivable=receivable, operator=operator, sale_at=T0 - timedelta(days=1))
    receivable_date_confirm(receivable=receivable, operator=operator, sale_at=T0 + timedelta(days=1))
    receipt_record(
        reporter=alice, distributor="shop", amount=Money(10_000, "USD"), rail="bank", reference="B"
    )
    revenue_settle()

    assert (payable(alice), payable(bob)) == (9_000, 0)  # the sheet in force on the confirmed date


def test_backdating_cannot_cut_out_a_parent(as_user) -> None:
    chain = three_level_chain()
    link_made = chain.d.parent_links.get().created_at

    revenue_report_record(
        user=chain.dan,
        distributor="shop",
        lines=[ReportLine("L1", chain.d.pk, 10_000, "USD", arose_at=link_made)],
    )
    with pytest.raises(ApiError):
        revenue_report_record(
            user=chain.dan,
            distributor="shop",
            lines=[ReportLine("L2", chain.d.pk, 10_000, "USD", arose_at=link_made - timedelta(seconds=1))],
        )
    receipt_record(
        reporter=chain.dan, distributor="shop", amount=Money(10_000, "USD"), rail="bank", reference="B"
    )
    revenue_settle()

    assert (payable(chain.dan), payable(chain.carl)) == (4_500, 2_250)


def test_reconciliation_of_the_reported_rail_shows_overdue_receivables_and_unapplied_money(
    time_machine, settings
) -> None:
    settings.RECEIVABLE_DUE_DAYS = 30
    time_machine.move_to(T0)
    creator = factories.creator()
    work = factories.work(creator)
    revenue_report_record(user=creator, distributor="shop", lines=[ReportLine("L1", work.pk, 500, "USD")])
    receipt_record(reporter=creator, distributor="other", amount=Money(70, "USD"), rail="bank", reference="Z")
    early = reconcile.reconcile(period="2026-06", rail="reported")
    time_machine.move_to(T0 + timedelta(days=31))

    late = reconcile.reconcile(period="2026-06", rail="reported")

    assert [d.kind for d in early.differences.all()] == ["unapplied"]
    assert sorted(
        (d.kind, d.reference, d.ledger_amount_minor, d.rail_amount_minor) for d in late.differences.all()
    ) == [
        ("overdue", f"report:{creator.pk}:shop:L1", 500, None),
        ("unapplied", f"{creator.pk}:other", None, 70),
    ]


def test_the_operator_confirms_a_bank_receipt_for_selected_receivables_in_the_admin(
    rf: RequestFactory,
) -> None:
    creator = factories.creator()
    work = factories.work(creator)
    revenue_report_record(
        user=creator,
        distributor="shop",
        lines=[ReportLine("L1", work.pk, 500, "USD"), ReportLine("L2", work.pk, 700, "USD")],
    )
    operator = factories.creator(username="op", is_staff=True, is_superuser=True)
    request = rf.post("/", {"reference": "BANK-77"})
    request.user = operator
    admin = ReceivableAdmin(Receivable, site)
    admin.message_user = lambda *args, **kwargs: None  # type: ignore[method-assign]

    admin.confirm_bank_receipt(request, Receivable.objects.filter(source_key__endswith=":L2"))
    admin.confirm_bank_receipt(request, Receivable.objects.filter(source_key__endswith=":L2"))

    statuses = dict(Receivable.objects.values_list("source_key", "status"))
    assert statuses == {f"report:{creator.pk}:shop:L1": "open", f"report:{creator.pk}:shop:L2": "matched"}
    assert balance("clearing:bank:USD") == -700
    assert JournalTransaction.objects.filter(key="funding:bank:BANK-77").count() == 1


def test_the_operator_confirms_a_reported_sale_date_in_the_admin(rf: RequestFactory, time_machine) -> None:
    time_machine.move_to(T0)
    alice, bob = factories.creator(username="alice"), factories.creator(username="bob")
    work = factories.work(alice)
    time_machine.move_to(T0 + timedelta(days=10))
    co_own(work, alice, [(alice, 7000), (bob, 3000)])
    time_machine.move_to(T0 + timedelta(days=20))
    revenue_report_record(
        user=alice,
        distributor="shop",
        lines=[ReportLine("L1", work.pk, 10_000, "USD", arose_at=T0 + timedelta(days=1))],
    )
    operator = factories.creator(username="op", is_staff=True, is_superuser=True)
    request = rf.post("/", {})
    request.user = operator
    admin = ReceivableAdmin(Receivable, site)
    admin.message_user = lambda *args, **kwargs: None  # type: ignore[method-assign]

    admin.confirm_sale_date(request, Receivable.objects.all())
    receipt_record(
        reporter=alice, distributor="shop", amount=Money(10_000, "USD"), rail="bank", reference="B"
    )
    revenue_settle()

    receivable = Receivable.objects.get()
    assert (receivable.split_at, receivable.date_confirmed_by) == (T0 + timedelta(days=1), operator)
    assert (payable(alice), payable(bob)) == (9_000, 0)
