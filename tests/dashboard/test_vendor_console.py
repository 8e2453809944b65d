"""The vendor console answers "what did I spend?": spend over a chosen window and per key, a balance
history of every movement with the balance after it, true last-used times of keys, spend caps the vendor
sets (enforced by the access path), funding guidance when cards are off, and a quickstart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from access.models import SpendCap
from access.services import AccessRequest, access_request
from accounts.models import ApiKey, User
from common.money import Money
from royalties import selectors as royalty_selectors
from royalties.funding import prepaid_fund
from royalties.licences import licence_accept
from royalties.settlement import revenue_settle
from tests import factories

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def console():
    """Acme tops up 100.00 USD; its "training" key makes 3 accesses at 2.50 on 2 March and 2 on 20 March;
    its "eval" key makes 1 on 20 March; it licenses a song for a 2.99 USD fee on 20 March."""
    with time_machine.travel(START, tick=False):
        creator = factories.creator(username="mira")
        work = factories.work(creator, title="Harbour at dusk")
        factories.offer(creator, work, uses={"ai-train": 250})
        song = factories.work(creator, title="Harbour hymn", kind="audio")
        song_offer = factories.offer(creator, song, uses={"ai-generate": 10}, licence_fee_minor=299)
        vendor = factories.vendor(username="acme", organisation_name="Acme AI")
        organisation = vendor.organisations.get()
        training_secret = factories.key(vendor, "access")
        training = ApiKey.objects.get(user=vendor)
        ApiKey.objects.filter(pk=training.pk).update(name="training")
        factories.key(vendor, "access")
        evaluation = ApiKey.objects.exclude(pk=training.pk).get(user=vendor)
        ApiKey.objects.filter(pk=evaluation.pk).update(name="eval")
        training.refresh_from_db()
        evaluation.refresh_from_db()
        prepaid_fund(organisation=organisation, amount=Money(10_000, "USD"), external_ref="top-up-1")

    def access(key: ApiKey, n: str) -> None:
        access_request(
            organisation=organisation,
            api_key=key,
            idempotency_key=n,
            request=AccessRequest(work_id=work.pk, use_class="ai-train", territory="US"),
        )

    for n in range(3):
        with time_machine.travel(START + timedelta(minutes=n * 10), tick=False):
            access(training, f"a{n}")
    later = START + timedelta(days=18)
    with time_machine.travel(later, tick=False):
        access(training, "b0")
        access(training, "b1")
        access(evaluation, "c0")
        licence_accept(offer=song_offer, user=vendor, organisation=organisation)
    return {
        "vendor": vendor,
        "organisation": organisation,
        "training": training,
        "training_secret": training_secret,
        "evaluation": evaluation,
        "work": work,
        "later": later,
    }


def test_keys_show_their_true_last_use_even_when_used_through_the_service(console):
    training = ApiKey.objects.get(pk=console["training"].pk)
    assert training.last_used_at == console["later"]
    with time_machine.travel(console["later"] + timedelta(hours=1), tick=False):
        body = client_for(console["vendor"]).get("/dashboard/keys/").content.decode()
    assert "never" not in body
    assert "1\xa0hour ago" in body


def test_last_used_is_written_at_most_once_a_minute_per_key(console, django_assert_num_queries):
    training = console["training"]
    at = console["later"] + timedelta(days=1)
    with time_machine.travel(at, tick=False):
        access_request(
            organisation=console["organisation"],
            api_key=training,
            idempotency_key="d0",
            request=AccessRequest(work_id=console["work"].pk, use_class="ai-train", territory="US"),
        )
    assert ApiKey.objects.get(pk=training.pk).last_used_at == at
    with time_machine.travel(at + timedelta(seconds=30), tick=False):
        access_request(
            organisation=console["organisation"],
            api_key=training,
            idempotency_key="d1",
            request=AccessRequest(work_id=console["work"].pk, use_class="ai-train", territory="US"),
        )
    assert ApiKey.objects.get(pk=training.pk).last_used_at == at  # within the minute: not written again
    with time_machine.travel(at + timedelta(seconds=61), tick=False):
        access_request(
            organisation=console["organisation"],
            api_key=training,
            idempotency_key="d2",
            request=AccessRequest(work_id=console["work"].pk, use_class="ai-train", territory="US"),
        )
    assert ApiKey.objects.get(pk=training.pk).last_used_at == at + timedelta(seconds=61)


def test_the_balance_history_lists_every_movement_with_the_balance_after_it(console):
    with time_machine.travel(console["later"] + timedelta(hours=1), tick=False):
        response = client_for(console["vendor"]).get("/dashboard/balance/")
    (history,) = response.context["histories"]
    rows = [
        (move["kind"], move["work_title"], move["count"], move["amount_minor"], move["balance_after_minor"])
        for move in history["page"]
    ]
    assert rows == [
        ("licence_fee", "Harbour hymn", 1, -299, 8_201),
        ("access", "Harbour at dusk", 3, -750, 8_500),
        ("access", "Harbour at dusk", 3, -750, 9_250),
        ("top_up", "", 1, 10_000, 10_000),
    ]
    body = response.content.decode()
    assert "Licence fee: Harbour hymn" in body and "-2.99 USD" in body and "82.01 USD" in body
    assert "(3 accesses)" in body


def test_the_history_is_unchanged_by_settlement_and_ends_at_the_available_balance(console):
    before = client_for(console["vendor"]).get("/dashboard/balance/").context["histories"][0]["movements"]
    revenue_settle()
    after = client_for(console["vendor"]).get("/dashboard/balance/").context["histories"][0]["movements"]
    assert after == before
    available = royalty_selectors.prepaid_available(organisation=console["organisation"], currency="USD")
    assert after[0]["balance_after_minor"] == available == 8_201


def test_usage_over_a_chosen_window_with_spend_per_key(console):
    client = client_for(console["vendor"])
    with time_machine.travel(console["later"] + timedelta(hours=1), tick=False):
        week = client.get("/dashboard/usage/?days=7")
        quarter = client.get("/dashboard/usage/?days=90")
        odd = client.get("/dashboard/usage/?days=13")
    assert week.context["days"] == 7 and week.context["totals"] == [("USD", 750)]
    assert quarter.context["totals"] == [("USD", 1_500)]
    assert odd.context["days"] == 90
    assert [(row["name"], row["accesses"], row["spend_minor"]) for row in week.context["by_key"]] == [
        ("training", 2, 500),
        ("eval", 1, 250),
    ]
    assert [(row["name"], row["accesses"], row["spend_minor"]) for row in quarter.context["by_key"]] == [
        ("training", 5, 1_250),
        ("eval", 1, 250),
    ]
    body = week.content.decode()
    assert "7.50 USD" in body and "spent in the last 7 days" in body
    assert quarter.context["chart"]["spend"] == {"USD": [750, 750]}


def test_a_vendor_sets_a_key_cap_and_the_access_api_refuses_past_it(console, with_key):
    client = client_for(console["vendor"])
    response = client.post(
        "/dashboard/balance/caps/",
        {"applies_to": f"key:{console['training'].pk}", "currency": "USD", "amount": "3.00"},
    )
    assert response.status_code == 302
    cap = SpendCap.objects.get(api_key=console["training"])
    assert (cap.cap_minor, cap.currency, cap.organisation_id) == (300, "USD", console["organisation"].pk)
    api = with_key(console["training_secret"])
    body = {"work": console["work"].pk, "use": "ai-train", "territory": "US"}
    first = api.post("/api/v1/access", body, format="json", HTTP_IDEMPOTENCY_KEY="cap-1")
    assert first.status_code == 200
    available = royalty_selectors.prepaid_available(organisation=console["organisation"], currency="USD")
    refused = api.post("/api/v1/access", body, format="json", HTTP_IDEMPOTENCY_KEY="cap-2")
    assert refused.status_code == 403
    assert refused.json()["code"] == "spend_cap_reached"
    assert (
        royalty_selectors.prepaid_available(organisation=console["organisation"], currency="USD") == available
    )
    assert SpendCap.objects.get(pk=cap.pk).spent_minor == 250


@time_machine.travel(START + timedelta(days=20), tick=False)
def test_a_cap_below_this_months_spending_is_refused_and_changes_nothing(console):
    client = client_for(console["vendor"])
    target = {"applies_to": f"org:{console['organisation'].pk}", "currency": "USD"}
    assert client.post("/dashboard/balance/caps/", {**target, "amount": "10.00"}).status_code == 302
    SpendCap.objects.filter(api_key__isnull=True).update(spent_minor=500, period="2026-03")
    refused = client.post("/dashboard/balance/caps/", {**target, "amount": "4.00"})
    assert refused.status_code == 400
    assert "already spent 5.00 USD" in refused.content.decode()
    assert SpendCap.objects.get(api_key__isnull=True).cap_minor == 1_000
    assert client.post("/dashboard/balance/caps/", {**target, "amount": ""}).status_code == 302
    assert not SpendCap.objects.filter(api_key__isnull=True).exists()


def test_another_vendor_cannot_cap_or_see_this_organisations_keys(console):
    other = factories.vendor(username="globex", organisation_name="Globex")
    client = client_for(other)
    response = client.post(
        "/dashboard/balance/caps/",
        {"applies_to": f"key:{console['training'].pk}", "currency": "USD", "amount": "0"},
    )
    assert response.status_code == 400
    assert not SpendCap.objects.exists()
    page = client.get("/dashboard/balance/").content.decode()
    assert "training" not in page and "Harbour" not in page
    assert (
        client_for(factories.creator(username="eve"))
        .post(
            "/dashboard/balance/caps/", {"applies_to": f"org:{console['organisation'].pk}", "currency": "USD"}
        )
        .status_code
        == 403
    )


def test_with_stripe_off_the_balance_page_says_how_to_fund_it(console, settings):
    settings.STRIPE_SECRET_KEY = ""
    body = client_for(console["vendor"]).get("/dashboard/balance/").content.decode()
    assert "data-stripe-off" in body
    assert f"TRIBUTE-ORG-{console['organisation'].pk}" in body
    assert "Top up by card</a>" not in body


def test_the_quickstart_shows_the_first_calls(console):
    body = client_for(console["vendor"]).get("/dashboard/quickstart/").content.decode()
    assert "curl -X POST" in body and "/api/v1/access" in body and "Idempotency-Key" in body
    assert 'href="/api/docs/"' in body


def test_the_vendor_navigation_has_the_quickstart_and_the_api_docs(console):
    body = client_for(console["vendor"]).get("/dashboard/").content.decode()
    assert 'href="/dashboard/quickstart/"' in body and ">Quickstart</a>" in body
    assert 'href="/api/docs/">API docs</a>' in body
