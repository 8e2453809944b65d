"""Revenue of an uploaded copy under a claim: held from the claim's date while the claim is pending,
re-routed to the claimed work when a monetize decision is final, left to the copy when the claim is
dismissed for good; an open claim left undecided lapses."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from catalog import tracing
from catalog.models import Claim, ClaimStatus
from catalog.services import asset_upload
from common import clock
from common.money import Money, allocate
from royalties import claims
from royalties.funding import prepaid_fund
from royalties.ledger import ledger_check
from royalties.models import LedgerAccount, RevenueItem
from royalties.selectors import payable_key
from royalties.settlement import revenue_settle
from tests import factories

pytestmark = pytest.mark.django_db
PRICE = 100


def _payable(user) -> int:
    account = LedgerAccount.objects.filter(key=payable_key(user.pk, "USD")).first()
    return account.balance_minor if account else 0


@pytest.fixture
def world(with_key, time_machine):
    """Acme accesses Sol's copy of Mira's photo once before the claim opens and once after."""
    start = clock.now()
    time_machine.move_to(start)
    mira, sol, operator = factories.creator(), factories.creator(), factories.creator()
    operator.is_staff = True
    operator.save(update_fields=["is_staff"])
    original = factories.work(mira, title="Original")
    copy = factories.work(sol, title="Copy")
    asset = asset_upload(work=copy, user=sol, data=factories.png_bytes(), filename="copy.png").asset
    factories.offer(sol, copy, uses={"ai-generate": PRICE})
    vendor = factories.vendor()
    prepaid_fund(organisation=vendor.organisations.get(), amount=Money(10_000, "USD"), external_ref="acme")
    client = with_key(factories.key(vendor, "access"))

    def access() -> None:
        response = client.post(
            "/api/v1/access",
            {"work": copy.pk, "use": "ai-generate", "territory": "US"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
        )
        assert response.status_code == 200, response.content

    access()
    time_machine.move_to(start + timedelta(hours=1))
    claim = Claim.objects.create(
        work=original,
        respondent=sol,
        subject_asset=asset,
        subject_sha256=asset.blob_id,
        match_kind="image",
        score=50,
        confidence=0.99,
    )
    time_machine.move_to(start + timedelta(hours=2))
    access()
    return {"mira": mira, "sol": sol, "operator": operator, "copy": copy, "claim": claim, "start": start}


def _net(amount: int, settings) -> int:
    return allocate(amount, [settings.PLATFORM_FEE_BPS, 10_000 - settings.PLATFORM_FEE_BPS])[1]


def _later(time_machine, world, days: float) -> None:
    time_machine.move_to(world["start"] + timedelta(days=days))


def test_a_final_monetize_decision_reroutes_the_copys_revenue_from_the_claims_date(
    world, time_machine, settings
) -> None:
    revenue_settle()
    assert (_payable(world["sol"]), _payable(world["mira"])) == (_net(PRICE, settings), 0)  # before the claim

    claims.claim_decide(claim=world["claim"], user=world["mira"], decision="monetize")
    revenue_settle()
    assert _payable(world["mira"]) == 0  # still disputable: held
    assert RevenueItem.objects.filter(settlement__isnull=True).count() == 1

    _later(time_machine, world, settings.CLAIM_DISPUTE_DAYS + 1)
    assert claims.claims_collect() == 1
    revenue_settle()

    assert (_payable(world["sol"]), _payable(world["mira"])) == (_net(PRICE, settings), _net(PRICE, settings))
    assert RevenueItem.objects.get(work=world["claim"].work).source == "claim"
    assert ledger_check().clean


def test_a_dismissed_claim_leaves_the_held_revenue_to_the_copy_once_it_cannot_be_appealed(
    world, time_machine, settings
) -> None:
    claims.claim_decide(claim=world["claim"], user=world["mira"], decision="monetize")
    tracing.claim_dispute(claim=world["claim"], user=world["sol"], statement="I took this photograph.")
    claims.claim_resolve(claim=world["claim"], operator=world["operator"], resolution="dismissed")
    revenue_settle()
    assert _payable(world["sol"]) == _net(PRICE, settings)  # the access before the claim only

    _later(time_machine, world, settings.CLAIM_DISPUTE_DAYS + 1)
    claims.claims_collect()
    revenue_settle()

    assert (_payable(world["sol"]), _payable(world["mira"])) == (2 * _net(PRICE, settings), 0)
    assert ledger_check().clean


def test_an_open_claim_left_undecided_lapses_and_releases_the_copys_revenue(
    world, time_machine, settings
) -> None:
    _later(time_machine, world, settings.CLAIM_DECIDE_DAYS + 1)
    claims.claims_collect()
    claim = Claim.objects.get()
    assert (claim.status, claim.resolution) == (ClaimStatus.RESOLVED, "dismissed")
    assert claim.events.last().statement == f"Not decided within {settings.CLAIM_DECIDE_DAYS} days."

    _later(time_machine, world, settings.CLAIM_DECIDE_DAYS + settings.CLAIM_DISPUTE_DAYS + 2)
    revenue_settle()

    assert _payable(world["sol"]) == 2 * _net(PRICE, settings)
