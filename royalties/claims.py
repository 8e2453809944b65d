"""Claims that pay: the money of a monetize decision on a vendor's output.

A vendor's output that copies a work it held no licence for evidently made a use of it: `style` of a style
work, `voice` of a voice, `ai-generate` of anything else. When the work's owner decides to monetize the
claim, the vendor is charged the current terms' price for that use (or, where the terms do not price it,
the price the owner names, at most CLAIM_PRICE_MAX_MINOR):

- the charge moves from the vendor's available prepaid balance into the claim's escrow account, once per
  claim (deciding again charges nothing more); a short balance leaves the charge owed, and
  `claims_collect` takes it when the vendor has the money (never from money the vendor does not have);
- while the claim can still be disputed (CLAIM_DISPUTE_DAYS after the decision) or is disputed, the money
  stays in escrow; when the decision is final (the deadline passed, or the operator upheld it) it becomes
  revenue of the claimed work, split up its chain at settlement; when the operator dismisses the claim it
  goes back to the vendor's prepaid balance.

Every step is a claim event. The catalog's claim services decide who may do what; these wrap them so that
the decision and its money commit together.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from accounts.models import User
from catalog import tracing
from catalog.models import (
    Claim,
    ClaimCharge,
    ClaimDecision,
    ClaimEvent,
    ClaimResolution,
    ClaimStatus,
    OfferStatus,
    OfferUse,
    UseClass,
    WorkKind,
)
from common import clock
from common import currency as currencies
from common.money import Money
from common.problems import ApiError
from royalties.services import (
    InsufficientFunds,
    claim_charge_hold,
    claim_charge_release,
    claim_charge_return,
)


@dataclass(frozen=True)
class NamedPrice:
    """The price an owner names for a use the claimed work's terms do not price."""

    amount_minor: int
    currency: str


def evident_use(claim: Claim) -> str:
    """The use a vendor's output shows it made of the claimed work."""
    if claim.work.kind == WorkKind.STYLE:
        return UseClass.STYLE
    if claim.work.kind == WorkKind.VOICE:
        return UseClass.VOICE
    return UseClass.AI_GENERATE


def _charge_for(claim: Claim, named: NamedPrice | None) -> Money:
    use = evident_use(claim)
    priced = (
        OfferUse.objects.filter(
            offer__work_id=claim.work_id, offer__status=OfferStatus.CURRENT, use_class=use, price_minor__gt=0
        )
        .values_list("price_minor", "offer__currency")
        .first()
    )
    if priced is not None:
        if named is not None and (named.amount_minor, named.currency) != priced:
            raise ApiError(
                f"The terms price '{use}' at {currencies.format_minor(*priced)}; that is the charge.",
                code="price_set_by_terms",
                extra={"use": use, "price_minor": priced[0], "currency": priced[1]},
            )
        return Money(priced[0], priced[1])
    if named is None:
        raise ApiError(
            f"The terms of this work do not price '{use}': name the price the vendor owes for it.",
            code="price_required",
            extra={"use": use},
        )
    if not currencies.is_supported(named.currency):
        raise ApiError(f"Currency {named.currency} is not supported.", code="unsupported_currency")
    ceiling = int(settings.CLAIM_PRICE_MAX_MINOR)
    if not 0 < named.amount_minor <= min(ceiling, currencies.max_minor(named.currency)):
        raise ApiError(
            f"Name a price of 1 to {ceiling} minor units.",
            code="amount_out_of_range",
            extra={"max_minor": ceiling},
        )
    return Money(named.amount_minor, named.currency)


def _event(claim: Claim, statement: str) -> None:
    ClaimEvent.objects.create(claim=claim, kind=ClaimEvent.Kind.CHARGED, statement=statement)


def _try_hold(claim: Claim) -> None:
    """Move an owed charge into escrow if the vendor's balance covers it; else it stays owed."""
    amount = Money(int(claim.charge_minor or 0), claim.charge_currency)
    organisation_id = claim.subject_output.organisation_id  # type: ignore[union-attr]
    try:
        claim_charge_hold(claim_id=claim.pk, organisation_id=organisation_id, amount=amount)
    except InsufficientFunds:
        return
    claim.charge = ClaimCharge.HELD
    claim.save(update_fields=["charge", "updated_at"])
    _event(claim, f"{currencies.format_minor(amount.amount_minor, amount.currency)} held in escrow")


@transaction.atomic
def claim_decide(*, claim: Claim, user: User, decision: str, price: NamedPrice | None = None) -> Claim:
    """The owner's decision (catalog.tracing.claim_decide) and, for monetize on a vendor's output, its
    charge, in one transaction: a refused charge (no price) leaves the decision unmade."""
    claim = tracing.claim_decide(claim=claim, user=user, decision=decision)
    if claim.subject_output_id is None:
        return claim
    if decision == ClaimDecision.MONETIZE and not claim.charge:
        amount = _charge_for(claim, price)
        claim.charge, claim.charge_use = ClaimCharge.OWED, evident_use(claim)
        claim.charge_minor, claim.charge_currency = amount.amount_minor, amount.currency
        claim.save(update_fields=["charge", "charge_use", "charge_minor", "charge_currency", "updated_at"])
        _event(claim, f"The vendor owes {currencies.format_minor(amount.amount_minor, amount.currency)}")
        _try_hold(claim)
    elif decision != ClaimDecision.MONETIZE and claim.charge == ClaimCharge.OWED:
        claim.charge, claim.charge_minor, claim.charge_currency, claim.charge_use = "", None, "", ""
        claim.save(update_fields=["charge", "charge_minor", "charge_currency", "charge_use", "updated_at"])
        _event(claim, "The owed charge is cancelled")
    return claim


@transaction.atomic
def claim_resolve(*, claim: Claim, operator: User, resolution: str, statement: str = "") -> Claim:
    """The operator's resolution (catalog.tracing.claim_resolve) and where the escrow goes: to the claimed
    work's owners when upheld, back to the vendor when dismissed."""
    claim = tracing.claim_resolve(claim=claim, operator=operator, resolution=resolution, statement=statement)
    if claim.charge == ClaimCharge.HELD:
        _settle(claim)
    elif claim.charge == ClaimCharge.OWED and resolution == ClaimResolution.DISMISSED:
        claim.charge = ""
        claim.save(update_fields=["charge", "updated_at"])
        _event(claim, "The owed charge is cancelled: the claim was dismissed")
    return claim


def _settle(claim: Claim) -> None:
    """A final claim's escrow goes to the winner."""
    amount = Money(int(claim.charge_minor or 0), claim.charge_currency)
    text = currencies.format_minor(amount.amount_minor, amount.currency)
    if claim.decision == ClaimDecision.MONETIZE:
        claim_charge_release(claim_id=claim.pk, work=claim.work, amount=amount)
        claim.charge = ClaimCharge.PAID
        _event(claim, f"{text} paid to the owners of the claimed work")
    else:
        claim_charge_return(
            claim_id=claim.pk,
            organisation_id=claim.subject_output.organisation_id,  # type: ignore[union-attr]
            amount=amount,
        )
        claim.charge = ClaimCharge.RETURNED
        _event(claim, f"{text} returned to the vendor")
    claim.save(update_fields=["charge", "updated_at"])


def claims_collect() -> int:
    """The periodic job: owed charges the vendor can now pay go into escrow, and escrow of decisions past
    their dispute deadline goes to the owners. Each claim in its own transaction; answers how many moved."""
    moved = 0
    candidates = Claim.objects.filter(
        subject_output__isnull=False, charge__in=[ClaimCharge.OWED, ClaimCharge.HELD]
    ).values_list("pk", flat=True)
    for claim_id in list(candidates):
        with transaction.atomic():
            claim = (
                Claim.objects.select_for_update().select_related("work", "subject_output").get(pk=claim_id)
            )
            before = claim.charge
            if claim.charge == ClaimCharge.OWED and claim.status in (
                ClaimStatus.DECIDED,
                ClaimStatus.RESOLVED,
            ):
                _try_hold(claim)
            deadline = tracing.dispute_deadline(claim)
            final = claim.status == ClaimStatus.RESOLVED or (
                claim.status == ClaimStatus.DECIDED and deadline is not None and clock.now() > deadline
            )
            if claim.charge == ClaimCharge.HELD and final:
                _settle(claim)
            moved += claim.charge != before
    return moved
