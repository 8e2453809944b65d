"""Claims that pay: a monetized vendor output charges the vendor, through escrow, exactly once; a dispute
keeps the money in escrow until the operator gives it to the winner; nothing is taken that the vendor
does not have."""

from __future__ import annotations

from datetime import timedelta

import pytest

from catalog import tracing
from catalog.models import Claim, ClaimCharge, ClaimStatus
from common import clock
from common.money import Money
from royalties import claims
from royalties.funding import prepaid_fund
from royalties.ledger import ledger_check
from royalties.models import LedgerAccount
from royalties.selectors import escrow_key, payable_key, prepaid_key
from royalties.settlement import revenue_settle
from tests import factories

pytestmark = pytest.mark.django_db
PRICE = 300  # the terms' ai-generate price, in cents


def _balance(key: str) -> tuple[int, int]:
    account = LedgerAccount.objects.filter(key=key).first()
    return (account.balance_minor, account.held_minor) if account else (0, 0)


@pytest.fixture
def world():
    painter, vendor, operator = factories.creator(), factories.vendor(), factories.creator()
    operator.is_staff = True
    operator.save(update_fields=["is_staff"])
    organisation = vendor.organisations.get()
    work = factories.work(painter, title="Garden")
    factories.offer(painter, work, uses={"ai-generate": PRICE})
    output = tracing.output_register(
        organisation=organisation,
        user=vendor,
        data=factories.png_bytes(color=(10, 200, 40)),
        filename="generated.png",
        receipts={},
    ).output
    claim = Claim.objects.create(
        work=work,
        respondent=vendor,
        subject_output=output,
        subject_sha256=output.blob_id,
        match_kind="image",
        score=40,
        confidence=0.99,
    )
    return {
        "painter": painter,
        "vendor": vendor,
        "operator": operator,
        "organisation": organisation,
        "work": work,
        "claim": claim,
    }


def _fund(world, amount: int, ref: str = "topup-1") -> None:
    prepaid_fund(organisation=world["organisation"], amount=Money(amount, "USD"), external_ref=ref)


def _past_the_dispute_deadline(time_machine, settings) -> None:
    time_machine.move_to(clock.now() + timedelta(days=settings.CLAIM_DISPUTE_DAYS, hours=1))


def test_a_monetized_output_moves_the_offers_price_from_the_vendor_to_the_creator_once(
    world, as_user, time_machine, settings
) -> None:
    _fund(world, 1_000)
    prepaid = prepaid_key(world["organisation"].pk, "USD")
    client = as_user(world["painter"])

    first = client.post(f"/api/v1/claims/{world['claim'].pk}/decide", {"decision": "monetize"}, format="json")
    second = client.post(
        f"/api/v1/claims/{world['claim'].pk}/decide", {"decision": "monetize"}, format="json"
    )

    assert (first.status_code, second.status_code) == (200, 200), first.content
    assert (first.json()["charge"], first.json()["charge_minor"], first.json()["charge_use"]) == (
        "held",
        PRICE,
        "ai-generate",
    )
    assert _balance(prepaid) == (1_000 - PRICE, 0)
    assert _balance(escrow_key(world["claim"].pk, "USD")) == (PRICE, 0)

    _past_the_dispute_deadline(time_machine, settings)
    assert claims.claims_collect() == 1
    assert claims.claims_collect() == 0  # again: nothing moves twice
    revenue_settle()

    assert _balance(payable_key(world["painter"].pk, "USD"))[0] == PRICE - PRICE // 10  # after the 10% fee
    assert _balance(prepaid) == (1_000 - PRICE, 0)
    assert _balance(escrow_key(world["claim"].pk, "USD")) == (0, 0)
    assert Claim.objects.get().charge == ClaimCharge.PAID
    assert ledger_check().clean


def test_a_short_balance_leaves_the_charge_owed_until_the_vendor_tops_up(world) -> None:
    _fund(world, PRICE - 1)

    claim = claims.claim_decide(claim=world["claim"], user=world["painter"], decision="monetize")

    assert claim.charge == ClaimCharge.OWED
    assert _balance(prepaid_key(world["organisation"].pk, "USD")) == (PRICE - 1, 0)  # nothing taken
    assert claims.claims_collect() == 0  # still short
    _fund(world, 1, ref="topup-2")
    assert claims.claims_collect() == 1
    assert Claim.objects.get().charge == ClaimCharge.HELD
    assert _balance(prepaid_key(world["organisation"].pk, "USD")) == (0, 0)
    assert ledger_check().clean


@pytest.mark.parametrize("resolution", ["upheld", "dismissed"])
def test_a_disputed_charge_stays_in_escrow_and_goes_to_the_winner(
    world, resolution, time_machine, settings
) -> None:
    _fund(world, 1_000)
    claims.claim_decide(claim=world["claim"], user=world["painter"], decision="monetize")
    tracing.claim_dispute(claim=world["claim"], user=world["vendor"], statement="We licensed this elsewhere.")

    _past_the_dispute_deadline(time_machine, settings)
    assert claims.claims_collect() == 0  # a dispute holds the money past the deadline
    assert _balance(escrow_key(world["claim"].pk, "USD")) == (PRICE, 0)

    claims.claim_resolve(claim=world["claim"], operator=world["operator"], resolution=resolution)
    assert claims.claims_collect() == 0  # the resolution may still be appealed
    assert _balance(escrow_key(world["claim"].pk, "USD")) == (PRICE, 0)
    _past_the_dispute_deadline(time_machine, settings)
    assert claims.claims_collect() == 1
    revenue_settle()

    painter = _balance(payable_key(world["painter"].pk, "USD"))[0]
    vendor = _balance(prepaid_key(world["organisation"].pk, "USD"))[0]
    if resolution == "upheld":
        assert (painter, vendor) == (PRICE - PRICE // 10, 1_000 - PRICE)
    else:
        assert (painter, vendor) == (0, 1_000)
    assert _balance(escrow_key(world["claim"].pk, "USD")) == (0, 0)
    assert ledger_check().clean


def test_terms_without_a_price_for_the_use_need_a_named_price_within_bounds(world, as_user, settings) -> None:
    factories.offer(world["painter"], world["work"], uses={"ai-train": 5})  # no ai-generate any more
    _fund(world, 1_000)
    client = as_user(world["painter"])
    url = f"/api/v1/claims/{world['claim'].pk}/decide"

    unnamed = client.post(url, {"decision": "monetize"}, format="json")
    too_dear = client.post(
        url, {"decision": "monetize", "price_minor": settings.CLAIM_PRICE_MAX_MINOR + 1}, format="json"
    )
    named = client.post(url, {"decision": "monetize", "price_minor": 450, "currency": "USD"}, format="json")

    assert (unnamed.status_code, unnamed.json()["code"]) == (400, "price_required")
    assert (too_dear.status_code, too_dear.json()["code"]) == (400, "amount_out_of_range")
    assert named.status_code == 200 and named.json()["charge_minor"] == 450
    assert _balance(prepaid_key(world["organisation"].pk, "USD")) == (550, 0)
    # the refused attempts recorded no decision
    assert [event.kind for event in Claim.objects.get().events.all()].count("decided") == 1


def test_a_charged_decision_stands_and_a_late_dispute_is_refused(
    world, as_user, time_machine, settings
) -> None:
    _fund(world, 1_000)
    claims.claim_decide(claim=world["claim"], user=world["painter"], decision="monetize")

    changed = as_user(world["painter"]).post(
        f"/api/v1/claims/{world['claim'].pk}/decide", {"decision": "track"}, format="json"
    )
    _past_the_dispute_deadline(time_machine, settings)
    late = as_user(world["vendor"]).post(
        f"/api/v1/claims/{world['claim'].pk}/dispute", {"statement": "Too late?"}, format="json"
    )

    assert (changed.status_code, changed.json()["code"]) == (409, "claim_charged")
    assert (late.status_code, late.json()["code"]) == (409, "dispute_deadline_passed")
    assert Claim.objects.get().status == ClaimStatus.DECIDED


def test_only_the_operator_resolves_and_only_the_owner_decides(world, as_user) -> None:
    _fund(world, 1_000)
    claim_url = f"/api/v1/claims/{world['claim'].pk}"

    by_vendor = as_user(world["vendor"]).post(f"{claim_url}/decide", {"decision": "monetize"}, format="json")
    by_owner = as_user(world["painter"]).post(f"{claim_url}/resolve", {"resolution": "upheld"}, format="json")

    assert by_vendor.status_code == 404
    assert by_owner.status_code == 403
    assert _balance(prepaid_key(world["organisation"].pk, "USD")) == (1_000, 0)


def test_a_resolution_is_appealed_once_by_the_party_it_went_against_and_then_is_final(world, as_user) -> None:
    _fund(world, 1_000)
    claims.claim_decide(claim=world["claim"], user=world["painter"], decision="monetize")
    tracing.claim_dispute(claim=world["claim"], user=world["vendor"], statement="Our own model's work.")
    claims.claim_resolve(claim=world["claim"], operator=world["operator"], resolution="upheld")
    url = f"/api/v1/claims/{world['claim'].pk}/appeal"

    by_winner = as_user(world["painter"]).post(url, {"statement": "Agreed."}, format="json")
    appeal = as_user(world["vendor"]).post(
        url, {"statement": "New evidence: our training logs."}, format="json"
    )

    assert (by_winner.status_code, by_winner.json()["code"]) == (409, "not_appellant")
    assert appeal.status_code == 200 and (appeal.json()["status"], appeal.json()["appealed"]) == (
        "disputed",
        True,
    )
    claims.claim_resolve(claim=world["claim"], operator=world["operator"], resolution="dismissed")
    # a resolution after an appeal is final at once: the escrow goes back to the vendor now
    assert _balance(prepaid_key(world["organisation"].pk, "USD")) == (1_000, 0)
    assert Claim.objects.get().charge == ClaimCharge.RETURNED
    again = as_user(world["painter"]).post(url, {"statement": "Once more."}, format="json")
    assert (again.status_code, again.json()["code"]) == (409, "appeal_used")
    assert ledger_check().clean
