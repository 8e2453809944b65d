"""Earnings, statements (JSON, CSV, digest chain) and reported revenue over the API; the commands and
the scheduled task."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from common.money import Money
from royalties import tasks
from royalties.models import LedgerAccount, Receivable, RevenueItem, Statement, StatementLine
from royalties.reports import receipt_record
from royalties.revenue import access_fee_record
from royalties.settlement import revenue_settle
from royalties.statements import statement_canonical, statement_generate, statement_verify
from tests import factories
from tests.royalties.builders import funded_vendor, payable, three_level_chain

pytestmark = pytest.mark.django_db


@pytest.fixture
def settled():
    chain = three_level_chain()
    organisation = funded_vendor()
    access_fee_record(
        organisation=organisation, offer=chain.offer_d, amount=Money(10_000, "USD"), access_key="k1"
    )
    revenue_settle()
    return chain


def test_earnings_show_the_payable_balance_and_the_credits_by_work_and_source(as_user, settled) -> None:
    body = as_user(settled.alice).get("/api/v1/earnings").json()
    assert body["balances"] == [
        {"currency": "USD", "balance_minor": 810, "held_minor": 0, "available_minor": 810}
    ]
    assert body["by_work"] == [
        {"currency": "USD", "work": settled.a.pk, "work_title": "A", "source": "access", "amount_minor": 810}
    ]
    assert as_user(factories.fan()).get("/api/v1/earnings").json() == {"balances": [], "by_work": []}


def test_a_statement_totals_match_the_ledger_and_download_as_csv(as_user, settled) -> None:
    client = as_user(settled.carl)
    end = timezone.now()
    response = client.post(
        "/api/v1/statements", {"currency": "USD", "period_end": end.isoformat()}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["opening_minor"], body["earned_minor"], body["closing_minor"]) == (0, 2250, 2250)
    assert body["lines"] == [
        {
            "work": settled.c.pk,
            "work_title": "C",
            "source": "access",
            "kind": "settlement",
            "amount_minor": 2250,
        }
    ]
    assert body["closing_minor"] == payable(settled.carl)
    assert body["previous_digest"] == ""

    download = client.get(f"/api/v1/statements/csv?id={body['id']}")
    assert download.status_code == 200
    assert download["Content-Type"] == "text/csv"
    rows = list(csv.reader(io.StringIO(download.content.decode())))
    assert ["sha256", body["digest"]] in rows
    assert rows[-1] == [str(settled.c.pk), "C", "access", "settlement", "2250", "22.50 USD"]


def test_statements_chain_their_digests_and_any_change_is_detected(settled) -> None:
    start = settled.carl.date_joined
    first = statement_generate(
        user=settled.carl, currency="USD", period_start=start, period_end=timezone.now()
    )
    access_fee_record(
        organisation=funded_vendor(username="v2"),
        offer=settled.offer_d,
        amount=Money(2_000, "USD"),
        access_key="k2",
    )
    revenue_settle()
    second = statement_generate(user=settled.carl, currency="USD", period_end=timezone.now())

    assert second.previous_id == first.pk and second.previous_digest == first.digest
    assert (second.period_start, second.opening_minor, second.earned_minor, second.closing_minor) == (
        first.period_end,
        2250,
        450,
        2700,
    )
    expected = hashlib.sha256(
        statement_canonical(
            user_id=settled.carl.pk,
            currency="USD",
            period_start=second.period_start,
            period_end=second.period_end,
            opening_minor=2250,
            closing_minor=2700,
            lines=[
                {
                    "work": settled.c.pk,
                    "work_title": "C",
                    "source": "access",
                    "kind": "settlement",
                    "amount_minor": 450,
                }
            ],
            previous_digest=first.digest,
        )
    ).hexdigest()
    assert second.digest == expected
    assert statement_verify(statement=second).valid

    StatementLine.objects.filter(statement=first).update(amount_minor=9_999)  # tampering
    assert not statement_verify(statement=first).digest_matches
    assert not statement_verify(statement=first).ledger_matches


def test_a_statement_must_start_where_the_previous_one_ended(as_user, settled) -> None:
    statement_generate(user=settled.carl, currency="USD", period_end=timezone.now())
    client = as_user(settled.carl)
    response = client.post(
        "/api/v1/statements",
        {
            "currency": "USD",
            "period_start": (timezone.now() - timedelta(days=400)).isoformat(),
            "period_end": timezone.now().isoformat(),
        },
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["code"] == "statement_period_gap"
    future = client.post(
        "/api/v1/statements",
        {"currency": "USD", "period_end": (timezone.now() + timedelta(days=1)).isoformat()},
        format="json",
    )
    assert future.json()["code"] == "period_in_future"
    assert Statement.objects.count() == 1


def test_nobody_else_can_download_a_statement(as_user, settled) -> None:
    statement = statement_generate(user=settled.carl, currency="USD", period_end=timezone.now())
    assert as_user(settled.dan).get(f"/api/v1/statements/csv?id={statement.pk}").status_code == 404
    assert as_user(settled.dan).get("/api/v1/statements").json()["results"] == []
    assert as_user(settled.carl).get("/api/v1/statements/csv?id=x").status_code == 400


def test_a_manager_reports_sales_once_per_line_id_and_they_settle_up_the_chain(as_user, settled) -> None:
    client = as_user(settled.dan)
    report: dict[str, Any] = {
        "distributor": "Bandcamp",
        "lines": [
            {"line_id": "S-1", "work": settled.d.pk, "amount_minor": 10_000, "currency": "USD"},
            {"line_id": "S-2", "work": settled.d.pk, "amount_minor": 999, "currency": "USD"},
        ],
    }
    first = client.post("/api/v1/revenue-reports", report, format="json")
    again = client.post("/api/v1/revenue-reports", report, format="json")
    assert (first.status_code, first.json()["created"]) == (201, 2)
    assert (again.status_code, again.json()["created"], again.json()["duplicates"]) == (200, 0, 2)

    changed = {**report, "lines": [{**report["lines"][0], "amount_minor": 1}]}
    conflict = client.post("/api/v1/revenue-reports", changed, format="json")
    assert (conflict.status_code, conflict.json()["code"]) == (409, "revenue_key_reused")

    revenue_settle()
    assert payable(settled.dan) == 4500  # reported, not received: nothing is payable yet
    assert [r["status"] for r in first.json()["items"]] == ["open", "open"]

    receipt_record(
        reporter=settled.dan,
        distributor="bandcamp",
        amount=Money(10_999, "USD"),
        rail="bank",
        reference="BANK-REF-1",
    )
    revenue_settle()
    assert payable(settled.dan) == 4500 + 4500 + 449
    assert payable(settled.bob) == 540 + 540 + 54


def test_reporting_sales_of_someone_elses_work_is_refused_and_records_nothing(as_user, settled) -> None:
    response = as_user(settled.dan).post(
        "/api/v1/revenue-reports",
        {
            "distributor": "shop",
            "lines": [{"line_id": "x", "work": settled.a.pk, "amount_minor": 5, "currency": "USD"}],
        },
        format="json",
    )
    assert (response.status_code, response.json()["code"]) == (404, "work_not_found")
    assert Receivable.objects.count() == 0


def test_a_distributor_statement_uploads_as_csv_idempotently(as_user, settled, tmp_path) -> None:
    data = (
        "line_id,work,amount_minor,currency,arose_at\n"
        f"R1,{settled.d.pk},1000,USD,{timezone.now().isoformat()}\n"
        f"R2,{settled.d.pk},2000,USD,\n"
    ).encode()
    client = as_user(settled.dan)
    upload = client.post(
        "/api/v1/revenue-reports/csv",
        {"distributor": "shop", "file": SimpleUploadedFile("s.csv", data, content_type="text/csv")},
        format="multipart",
    )
    assert (upload.status_code, upload.json().get("created")) == (201, 2), upload.json()
    path = tmp_path / "s.csv"
    path.write_bytes(data + f"R3,{settled.d.pk},3000,USD,\n".encode())
    out = io.StringIO()
    call_command("import_revenue_report", str(path), user="dan", distributor="shop", stdout=out)
    assert out.getvalue().strip() == "1 lines recorded, 2 already known"
    assert Receivable.objects.filter(source="reported", status="open").count() == 3
    assert RevenueItem.objects.filter(source="reported").count() == 0

    bad = client.post(
        "/api/v1/revenue-reports/csv",
        {"distributor": "shop", "file": SimpleUploadedFile("b.csv", b"line_id,work\nx,1\n")},
        format="multipart",
    )
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_csv")


def test_check_ledger_reports_a_cached_balance_that_drifted(settled) -> None:
    out = io.StringIO()
    call_command("check_ledger", stdout=out)
    assert out.getvalue().strip() == "ledger consistent"
    key = f"payable:user:{settled.dan.pk}:USD"
    LedgerAccount.objects.filter(key=key).update(balance_minor=1)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("check_ledger", stdout=out)
    assert exited.value.code == 1
    assert f"balance differs: {key} cached 1, entries say 4500" in out.getvalue()


def test_the_settle_command_and_the_scheduled_task_settle_once() -> None:
    chain = three_level_chain()
    organisation = funded_vendor()
    access_fee_record(
        organisation=organisation, offer=chain.offer_d, amount=Money(10_000, "USD"), access_key="a"
    )
    access_fee_record(
        organisation=organisation, offer=chain.offer_d, amount=Money(10_000, "USD"), access_key="b"
    )
    out = io.StringIO()
    call_command("settle", stdout=out)
    assert out.getvalue().strip() == "settled 2 revenue items in 1 transactions"
    assert tasks.settle.run() == 0
    assert payable(chain.dan) == 9_000
    scheduled = PeriodicTask.objects.get(task="royalties.settle")
    assert (scheduled.enabled, scheduled.interval.every, scheduled.interval.period) == (True, 5, "minutes")
