"""A payee's earnings page as a balance page: where the money is (available, pending, in payout, paid
out, with dates), every movement with the balance after it, and a payout shown as a payout, never as a
negative earning nor as a bar of the earnings chart."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from access.services import AccessRequest, access_request
from accounts.models import ApiKey, User
from common.money import Money
from royalties import payouts
from royalties.funding import prepaid_fund
from royalties.settlement import revenue_settle
from tests import factories

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def chart(body: str) -> dict:
    found = re.search(r'<script id="earnings-data" type="application/json">(.*?)</script>', body, re.S)
    assert found
    return json.loads(found.group(1))


@pytest.fixture
def paid_creator(settings):
    """Mira earns 90% of 20 x 12.50 USD = 225.00 USD on 2 March, is paid it out in a payout for February
    made on 3 March (confirmed on 4 March), then earns 90% of 2 x 12.50 = 22.50 USD on 5 March."""
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 1_000}
    with time_machine.travel(START, tick=False):
        creator = factories.creator(username="mira", display_name="Mira")
        work = factories.work(creator, title="Harbour at dusk")
        factories.offer(creator, work, uses={"ai-train": 1_250})
        vendor = factories.vendor(username="acme")
        factories.key(vendor, "access")
        api_key = ApiKey.objects.get(user=vendor)
        organisation = vendor.organisations.get()
        prepaid_fund(organisation=organisation, amount=Money(100_000, "USD"), external_ref="top-up-1")

        def accesses(count: int, prefix: str) -> None:
            for n in range(count):
                access_request(
                    organisation=organisation,
                    api_key=api_key,
                    idempotency_key=f"{prefix}-{n}",
                    request=AccessRequest(work_id=work.pk, use_class="ai-train", territory="US"),
                )

        accesses(20, "a")
        revenue_settle()
    with time_machine.travel(START + timedelta(days=1), tick=False):
        payout = payouts.payout_create(user=creator, currency="USD", period="2026-02")
    assert payout is not None and payout.amount_minor == 22_500
    with time_machine.travel(START + timedelta(days=2), tick=False):
        payouts.payout_confirm(key=payout.key, external_id="bank-ref-1")
    with time_machine.travel(START + timedelta(days=3), tick=False):
        accesses(2, "b")
        revenue_settle()
    return {"creator": creator, "payout": payout, "work": work}


def test_the_headline_says_where_the_money_is(paid_creator):
    with time_machine.travel(START + timedelta(days=3, hours=1), tick=False):
        response = client_for(paid_creator["creator"]).get("/dashboard/earnings/")
    body = response.content.decode()
    assert "22.50 USD is available for your next payout" in body
    (where,) = response.context["where"]
    assert (where["available_minor"], where["pending_minor"], where["in_payout_minor"]) == (2_250, 0, 0)
    assert where["paid_out_minor"] == 22_500
    assert where["last_paid_at"] == START + timedelta(days=2)
    assert "last on 4 Mar 2026, 10:00 UTC" in body
    assert "225.00 USD" in body


def test_a_payout_in_progress_is_in_payout_with_its_date(settings):
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    with time_machine.travel(START, tick=False):
        creator = factories.creator(username="mira")
        work = factories.work(creator)
        factories.offer(creator, work, uses={"ai-train": 1_000})
        vendor = factories.vendor(username="acme")
        factories.key(vendor, "access")
        organisation = vendor.organisations.get()
        prepaid_fund(organisation=organisation, amount=Money(5_000, "USD"), external_ref="t")
        access_request(
            organisation=organisation,
            api_key=ApiKey.objects.get(user=vendor),
            idempotency_key="one",
            request=AccessRequest(work_id=work.pk, use_class="ai-train", territory="US"),
        )
        revenue_settle()
        payouts.payout_create(user=creator, currency="USD", period="2026-02")
        response = client_for(creator).get("/dashboard/earnings/")
    body = response.content.decode()
    (where,) = response.context["where"]
    assert (where["available_minor"], where["in_payout_minor"], where["paid_out_minor"]) == (0, 900, 0)
    assert "9.00 USD is on its way to you" in body
    assert "since 2 Mar 2026, 10:00 UTC" in body


def test_the_history_lists_earnings_and_the_payout_with_the_balance_after_each(paid_creator):
    response = client_for(paid_creator["creator"]).get("/dashboard/earnings/")
    rows = [
        (move.kind, move.amount_minor, move.balance_after_minor, move.payout.status if move.payout else None)
        for move in response.context["history"]
    ]
    assert rows == [
        ("earnings", 2_250, 2_250, None),
        ("payout", -22_500, 0, "confirmed"),
        ("earnings", 22_500, 22_500, None),
    ]
    body = response.content.decode()
    assert "Payout for 2026-02 via Manual" in body
    assert "-225.00 USD" in body


def test_a_payout_is_neither_an_earning_nor_a_bar_of_the_chart(paid_creator):
    response = client_for(paid_creator["creator"]).get("/dashboard/earnings/")
    body = response.content.decode()
    assert "not tied to a work" not in body
    assert [(row["work"], row["amount_minor"]) for row in response.context["by_work"]] == [
        (paid_creator["work"].pk, 24_750)
    ]
    data = chart(body)
    assert data["labels"] == ["2026-03-02", "2026-03-05"]
    assert data["by_work"] == [{"label": "Harbour at dusk", "data": [22_500, 2_250]}]
    assert all(value > 0 for series in data["by_source"] for value in series["data"])


def test_nobody_else_sees_a_payees_balance_or_history(paid_creator):
    other = factories.creator(username="eve")
    response = client_for(other).get("/dashboard/earnings/")
    body = response.content.decode()
    assert response.context["where"] == [] and list(response.context["history"]) == []
    assert "225.00 USD" not in body and "22.50 USD" not in body
