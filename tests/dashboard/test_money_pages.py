"""The money pages: a payee's earnings, chart and statements; a vendor's balance, usage, receipts, outputs
and spend caps. Data is made through the services; each party sees exactly its own figures and nobody
else's, and a page for another role answers 403."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from access.models import AccessEvent, SpendCap
from access.services import AccessRequest, access_request
from accounts.models import ApiKey, User
from catalog import tracing
from catalog.models import Output
from common.money import Money
from royalties.funding import prepaid_fund
from royalties.models import Statement
from royalties.settlement import revenue_settle
from royalties.statements import statement_csv, statement_generate
from tests import factories

pytestmark = pytest.mark.django_db


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(response) -> str:
    return response.content.decode()


def json_script(body: str, element_id: str) -> Any:
    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', body, re.S)
    assert found, element_id
    return json.loads(found.group(1))


def _vendor_with_accesses(username: str, organisation_name: str, work, *, fund_minor: int, accesses: int):
    vendor = factories.vendor(username=username, organisation_name=organisation_name)
    factories.key(vendor, "access", "outputs")
    api_key = ApiKey.objects.get(user=vendor)
    organisation = vendor.organisations.get()
    prepaid_fund(organisation=organisation, amount=Money(fund_minor, "USD"), external_ref=f"{username}-1")
    events = []
    for n in range(accesses):
        result = access_request(
            organisation=organisation,
            api_key=api_key,
            idempotency_key=f"{username}-{n}",
            request=AccessRequest(work_id=work.pk, use_class="ai-train", territory="US"),
        )
        events.append(AccessEvent.objects.get(pk=result.event_id))
    return vendor, organisation, api_key, events


@pytest.fixture
def market():
    """A creator's work priced at 2.50 USD per training access; Acme pays for two, Globex for one, and
    settlement pays the creator 90% of 7.50 USD."""
    creator = factories.creator(username="mira", display_name="Mira")
    work = factories.work(creator, title="Harbour at dusk")
    factories.offer(creator, work, uses={"ai-train": 250})
    acme, acme_org, acme_key, acme_events = _vendor_with_accesses(
        "acme", "Acme AI", work, fund_minor=10_000, accesses=2
    )
    globex, globex_org, _, globex_events = _vendor_with_accesses(
        "globex", "Globex Labs", work, fund_minor=3_000, accesses=1
    )
    revenue_settle()
    return {
        "creator": creator,
        "work": work,
        "acme": acme,
        "acme_org": acme_org,
        "acme_key": acme_key,
        "acme_events": acme_events,
        "globex": globex,
        "globex_org": globex_org,
        "globex_events": globex_events,
    }


# Earnings ----------------------------------------------------------------------------------------------


def test_the_earnings_page_shows_the_payable_balance_the_table_and_the_chart_from_the_ledger(market) -> None:
    response = client_for(market["creator"]).get("/dashboard/earnings/")

    assert response.status_code == 200
    body = page(response)
    assert 'data-balance="available"' in body and "6.75 USD" in body  # 90% of 3 x 2.50
    assert response.context["by_work"].object_list == [
        {
            "currency": "USD",
            "work": market["work"].pk,
            "work_title": "Harbour at dusk",
            "source": "access",
            "amount_minor": 675,
        }
    ]
    assert "Access fee" in body
    today = timezone.localdate().isoformat()
    assert json_script(body, "earnings-data") == {
        "currency": "USD",
        "digits": 2,
        "labels": [today],
        "by_work": [{"label": "Harbour at dusk", "data": [675]}],
        "by_source": [{"label": "Access fee", "data": [675]}],
    }
    assert "chart-4.6.1.umd.min.js" in body
    assert "No statements yet." in body and "Generate statement" in body


def test_a_payee_with_no_earnings_is_told_what_to_do(market) -> None:
    body = page(client_for(factories.fan(username="sol")).get("/dashboard/earnings/"))

    assert 'data-empty="earnings"' in body
    assert "publish licence terms" in body
    assert "Generate statement" not in body and "earnings-data" not in body


def test_generate_statement_issues_the_next_statement_and_lists_it_verified(market) -> None:
    client = client_for(market["creator"])

    response = client.post("/dashboard/statements/new/", {"currency": "USD"})

    assert response.status_code == 302
    statement = Statement.objects.get(user=market["creator"])
    assert (statement.currency, statement.opening_minor, statement.earned_minor, statement.closing_minor) == (
        "USD",
        0,
        675,
        675,
    )
    body = page(client.get("/dashboard/earnings/"))
    assert f'data-statement="{statement.pk}"' in body
    assert statement.digest in body
    assert 'data-verified="true"' in body
    assert f"/dashboard/statements/{statement.pk}/csv/" in body


def test_generate_statement_refuses_a_currency_the_payee_has_not_earned_in(market) -> None:
    response = client_for(market["creator"]).post(
        "/dashboard/statements/new/", {"currency": "EUR"}, follow=True
    )

    assert "Choose a currency you have earned in." in page(response)
    assert Statement.objects.count() == 0


def test_the_statement_csv_downloads_for_its_owner_and_is_404_for_anyone_else(market) -> None:
    statement = statement_generate(user=market["creator"], currency="USD", period_end=timezone.now())
    url = f"/dashboard/statements/{statement.pk}/csv/"

    response = client_for(market["creator"]).get(url)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == f'attachment; filename="statement-{statement.pk}.csv"'
    assert page(response) == statement_csv(statement=statement)
    assert f"sha256,{statement.digest}" in page(response)
    for other in (factories.creator(username="eve"), market["acme"]):
        refused = client_for(other).get(url)
        assert refused.status_code == 404
        assert statement.digest not in page(refused)
    assert Client().get(url).status_code == 302  # anonymous: log in first


# Vendor pages ------------------------------------------------------------------------------------------


def test_the_balance_page_shows_what_the_organisation_can_spend_and_how_to_top_up(market, settings) -> None:
    settings.STRIPE_SECRET_KEY = (
        "sk_test_dashboard"  # card top-ups on (tests/dashboard/test_vendor_console.py: off)
    )
    SpendCap.objects.create(organisation=market["acme_org"], currency="USD", cap_minor=5_000)
    SpendCap.objects.create(organisation=market["globex_org"], currency="USD", cap_minor=1_234)

    response = client_for(market["acme"]).get("/dashboard/balance/")

    assert response.status_code == 200
    body = page(response)
    assert [
        (row["organisation"].name, row["currency"], row["available_minor"])
        for row in response.context["balances"]
    ] == [("Acme AI", "USD", 9_500)]
    assert "95.00 USD" in body
    assert (
        '<a class="button" href="/dashboard/balance/top-up/" data-topup-card aria-describedby="card-note">'
        "Top up by card</a>" in body
    )
    token = response.context["token"]
    assert token is not None and f"<code>{token.network}</code>" in body and token.name in body
    assert "50.00 USD" in body  # Acme's cap
    assert "12.34 USD" not in body and "Globex" not in body and "27.50 USD" not in body


def test_the_usage_page_charts_and_tables_the_organisations_accesses_and_spend(market) -> None:
    response = client_for(market["acme"]).get("/dashboard/usage/")

    assert response.status_code == 200
    body = page(response)
    today = timezone.localdate().isoformat()
    assert json_script(body, "usage-data") == {
        "labels": [today],
        "accesses": [2],
        "spend": {"USD": [500]},
        "digits": {"USD": 2},
    }
    assert response.context["page"].object_list == [
        {
            "work": market["work"].pk,
            "work_title": "Harbour at dusk",
            "use_class": "ai-train",
            "currency": "USD",
            "accesses": 2,
            "spend_minor": 500,
        }
    ]
    assert "5.00 USD" in body


def test_a_vendor_without_accesses_is_told_how_to_make_one() -> None:
    vendor = factories.vendor(username="initech", organisation_name="Initech")
    client = client_for(vendor)

    usage = page(client.get("/dashboard/usage/"))
    receipts = page(client.get("/dashboard/receipts/"))
    outputs = page(client.get("/dashboard/outputs/"))
    balance = page(client.get("/dashboard/balance/"))

    expected = (
        "No accesses yet: call <code>POST /api/v1/access</code> with a key that has the "
        "<code>access</code> scope"
    )
    assert expected in usage and expected in receipts
    assert 'data-empty="outputs"' in outputs and "POST /api/v1/outputs" in outputs
    assert 'data-empty="balance"' in balance and "No spend caps" in balance


def test_the_receipts_page_lists_the_organisations_accesses_newest_first_with_their_receipts(market) -> None:
    response = client_for(market["acme"]).get("/dashboard/receipts/")

    assert response.status_code == 200
    body = page(response)
    first, second = market["acme_events"]
    listed = [event.access_id for event, _ in response.context["rows"]]
    assert listed == [second.access_id, first.access_id]
    for event in (first, second):
        receipt = json.loads(bytes(event.response_body))["receipt"]
        assert receipt.count(".") == 2  # a compact JWS
        assert f'value="{receipt}"' in body
        assert str(event.access_id) in body
    assert "2.50 USD" in body and "ai-train" in body
    assert str(market["globex_events"][0].access_id) not in body


def test_receipts_paginate(market) -> None:
    for n in range(10):
        access_request(
            organisation=market["acme_org"],
            api_key=market["acme_key"],
            idempotency_key=f"more-{n}",
            request=AccessRequest(work_id=market["work"].pk, use_class="ai-train", territory="US"),
        )
    client = client_for(market["acme"])

    first = client.get("/dashboard/receipts/")
    second = client.get("/dashboard/receipts/?page=2")

    assert len(first.context["rows"]) == 10 and len(second.context["rows"]) == 2
    assert "Page 1 of 2 · 12 in all" in page(first)
    assert second.context["rows"][-1][0].access_id == market["acme_events"][0].access_id


def test_the_outputs_page_shows_each_outputs_result(market) -> None:
    first = market["acme_events"][0]
    tracing.output_register(
        organisation=market["acme_org"],
        user=market["acme"],
        data=factories.png_bytes(color=(10, 200, 40)),
        filename="generated.png",
        receipts={str(first.access_id): market["work"].pk},
    )
    tracing.output_register(
        organisation=market["globex_org"],
        user=market["globex"],
        data=factories.png_bytes(color=(40, 10, 200)),
        filename="globex-secret.png",
        receipts={},
    )

    response = client_for(market["acme"]).get("/dashboard/outputs/")

    assert response.status_code == 200
    body = page(response)
    (row,) = response.context["rows"]
    assert row["output"].filename == "generated.png"
    assert (row["confirmed"], row["unconfirmed"], row["uncovered"], row["claims"]) == (
        [],
        [(market["work"].pk, "Harbour at dusk")],
        [],
        [],
    )
    assert "1 receipt named" in body
    assert "globex-secret.png" not in body
    assert Output.objects.count() == 2


def test_a_vendor_never_sees_another_organisations_figures(market) -> None:
    client = client_for(market["globex"])
    acme_ids = [str(event.access_id) for event in market["acme_events"]]

    balance = page(client.get("/dashboard/balance/"))
    receipts = page(client.get("/dashboard/receipts/"))
    usage = client.get("/dashboard/usage/")

    assert "27.50 USD" in balance and "95.00 USD" not in balance and "Acme" not in balance
    assert all(access_id not in receipts for access_id in acme_ids)
    assert [row["accesses"] for row in usage.context["page"].object_list] == [1]


@pytest.mark.parametrize(
    "url", ["/dashboard/balance/", "/dashboard/usage/", "/dashboard/receipts/", "/dashboard/outputs/"]
)
def test_creators_and_fans_get_403_on_vendor_pages(market, url: str) -> None:
    for user in (market["creator"], factories.fan(username="sol")):
        response = client_for(user).get(url)
        assert response.status_code == 403, (user.role, url)
        body = page(response)
        assert "is for AI vendor accounts." in body
        # Amounts read "27.50 USD"; a bare "USD" can turn up inside the page's random CSRF token.
        assert "Harbour at dusk" not in body and not re.search(r"\d USD", body)


def test_the_vendor_nav_points_to_the_money_pages(market) -> None:
    body = page(client_for(market["acme"]).get("/dashboard/"))

    for url in ("/dashboard/balance/", "/dashboard/usage/", "/dashboard/receipts/", "/dashboard/outputs/"):
        assert f'href="{url}"' in body
