"""A block decision takes effect: a blocked copy leaves the catalogue and sale, its licences and accesses
are refused; a block on a vendor's output suspends that vendor's access to the claimed work. Lifting the
block restores both."""

from __future__ import annotations

import uuid

import pytest

from catalog import tracing
from catalog.models import Claim, Grant, GrantStatus, WorkStatus
from catalog.services import asset_upload
from common.money import Money, allocate
from royalties import claims
from royalties.funding import prepaid_fund
from royalties.ledger import ledger_check
from royalties.models import LedgerAccount, RevenueItem
from royalties.selectors import payable_key
from royalties.settlement import revenue_settle
from studio.services import release_set, wallet_fund
from tests import factories

pytestmark = pytest.mark.django_db


def _access(client, work) -> tuple[int, str]:
    response = client.post(
        "/api/v1/access",
        {"work": work.pk, "use": "ai-generate", "territory": "US"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )
    return response.status_code, response.json().get("code", "")


def _vendor(name: str, with_key):
    vendor = factories.vendor(organisation_name=name)
    prepaid_fund(
        organisation=vendor.organisations.get(), amount=Money(1_000, "USD"), external_ref=f"{name}-1"
    )
    return vendor, with_key(factories.key(vendor, "access"))


@pytest.fixture
def copied(with_key):
    painter, copier = factories.creator(), factories.creator()
    original = factories.work(painter, title="Original")
    factories.offer(painter, original, uses={"ai-generate": 2})
    copy = factories.work(copier, title="Copy")
    asset = asset_upload(work=copy, user=copier, data=factories.png_bytes(), filename="copy.png").asset
    factories.offer(copier, copy, uses={"ai-generate": 2}, commercial_use=True)
    release = release_set(user=copier, work=copy, price_minor=100, currency="USD")
    claim = Claim.objects.create(
        work=original,
        respondent=copier,
        subject_asset=asset,
        subject_sha256=asset.blob_id,
        match_kind="image",
        score=50,
        confidence=0.99,
    )
    _, client = _vendor("Acme", with_key)
    assert _access(client, copy) == (200, "")  # a licence on the copy, made on first use
    return {
        "painter": painter,
        "copier": copier,
        "copy": copy,
        "release": release,
        "claim": claim,
        "client": client,
    }


def test_a_blocked_copy_cannot_be_bought_licensed_or_accessed_and_unblocking_restores_it(
    copied, as_user, with_key
) -> None:
    buyer = factories.fan()
    wallet_fund(user=buyer, amount=Money(1_000, "USD"), external_ref="buyer-1")
    _, newcomer = _vendor("Globex", with_key)
    decide = f"/api/v1/claims/{copied['claim'].pk}/decide"
    purchase = f"/api/v1/releases/{copied['release'].pk}/purchase"

    blocked = as_user(copied["painter"]).post(decide, {"decision": "block"}, format="json")

    assert blocked.status_code == 200
    copied["copy"].refresh_from_db()
    assert copied["copy"].status == WorkStatus.BLOCKED
    bought = as_user(buyer).post(purchase)
    assert (bought.status_code, bought.json()["code"]) == (409, "work_blocked")
    assert _access(copied["client"], copied["copy"]) == (403, "work_blocked")  # an existing licence
    assert _access(newcomer, copied["copy"]) == (403, "work_blocked")  # a new one
    assert Grant.objects.get(offer__work=copied["copy"]).status == GrantStatus.SUSPENDED
    republished = as_user(copied["copier"]).post(
        f"/api/v1/works/{copied['copy'].pk}/offers",
        {"currency": "USD", "uses": {"ai-generate": 1}},
        format="json",
    )
    assert republished.status_code == 409 and republished.json()["code"] == "work_blocked"
    catalogue = as_user(buyer).get("/api/v1/works").json()
    assert copied["copy"].pk not in [work["id"] for work in catalogue["results"]]

    lifted = as_user(copied["painter"]).post(decide, {"decision": "track"}, format="json")

    assert lifted.status_code == 200
    copied["copy"].refresh_from_db()
    assert copied["copy"].status == WorkStatus.PUBLISHED
    assert Grant.objects.get(offer__work=copied["copy"]).status == GrantStatus.ACTIVE
    assert _access(copied["client"], copied["copy"]) == (200, "")
    assert _access(newcomer, copied["copy"]) == (200, "")
    assert as_user(buyer).post(purchase).status_code == 201
    assert [event.kind for event in Claim.objects.get().events.all()] == [
        "decided",
        "blocked",
        "decided",
        "unblocked",
    ]


def test_a_block_on_a_vendors_output_suspends_its_access_to_the_work_until_dismissed(with_key) -> None:
    painter = factories.creator()
    operator = factories.creator()
    operator.is_staff = True
    operator.save(update_fields=["is_staff"])
    work = factories.work(painter, title="Garden")
    factories.offer(painter, work, uses={"ai-generate": 2})
    vendor, client = _vendor("Acme", with_key)
    _, other = _vendor("Globex", with_key)
    assert _access(client, work) == (200, "")
    output = tracing.output_register(
        organisation=vendor.organisations.get(),
        user=vendor,
        data=factories.png_bytes(color=(1, 2, 3)),
        filename="out.png",
        receipts={},
    ).output
    claim = Claim.objects.create(
        work=work,
        respondent=vendor,
        subject_output=output,
        subject_sha256=output.blob_id,
        match_kind="image",
        score=50,
        confidence=0.99,
    )

    claims.claim_decide(claim=claim, user=painter, decision="block")

    assert _access(client, work) == (403, "access_blocked")
    assert _access(other, work) == (200, "")  # only the respondent is refused
    tracing.claim_dispute(claim=claim, user=vendor, statement="The output is our own.")
    assert _access(client, work) == (403, "access_blocked")  # a dispute does not lift the block

    claims.claim_resolve(claim=claim, operator=operator, resolution="dismissed")

    assert _access(client, work) == (200, "")
    assert (
        Grant.objects.filter(organisation=vendor.organisations.get(), status=GrantStatus.ACTIVE).count() == 1
    )


def test_revenue_of_a_blocked_copy_waits_until_the_block_is_lifted(copied, settings) -> None:
    payable = payable_key(copied["copier"].pk, "USD")
    claims.claim_decide(claim=copied["claim"], user=copied["painter"], decision="block")

    revenue_settle()  # the access made before the block is pending: it waits

    assert not LedgerAccount.objects.filter(key=payable).exists()
    assert RevenueItem.objects.filter(work=copied["copy"], settlement__isnull=True).count() == 1

    claims.claim_decide(claim=copied["claim"], user=copied["painter"], decision="track")
    revenue_settle()

    _, rest = allocate(2, [settings.PLATFORM_FEE_BPS, 10_000 - settings.PLATFORM_FEE_BPS])
    assert LedgerAccount.objects.get(key=payable).balance_minor == rest
    assert ledger_check().clean
