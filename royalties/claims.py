"""Claims that pay: the money a claim's decision moves, once the decision is final.

A vendor's output that copies a work it held no licence for evidently made a use of it: `style` of a style
work, `voice` of a voice, `ai-generate` of anything else. When the work's owner decides to monetize the
claim, the vendor is charged the current terms' price for that use (or, where the terms do not price it,
the price the owner names, at most CLAIM_PRICE_MAX_MINOR):

- the charge moves from the vendor's available prepaid balance into the claim's escrow account, once per
  claim (deciding again charges nothing more); a short balance leaves the charge owed, and
  `claims_collect` takes it when the vendor has the money (never from money the vendor does not have);
- the money stays in escrow while the decision can be disputed (CLAIM_DISPUTE_DAYS), while it is
  disputed, and while the operator's resolution can be appealed (once, within as long). When the outcome
  is final it becomes revenue of the claimed work, split up its chain at settlement, or goes back to the
  vendor if the claim was dismissed.

Media uploaded to Tribute has revenue of its own: from the claim's date on it waits unsettled while the
claim is pending (settlement leaves it), and a final monetize decision re-routes it to the
claimed work; a dismissal for good leaves it to the upload's work.

Every step is a claim event. The catalog's claim services decide who may do what; these wrap them so that
the decision and its money commit together.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from accounts.models import User
from catalog import tracing
from catalog.models import (
    Claim,
    ClaimCharge,
    ClaimDecision,
    ClaimEvent,
    ClaimResolution,
    OfferStatus,
    OfferUse,
    UseClass,
    WorkKind,
)
from catalog.selectors import claim_is_final
from common import currency as currencies
from common.money import Money
from common.problems import ApiError
from royalties.ledger import InsufficientFunds
from royalties.revenue import claim_charge_hold, claim_charge_release, claim_charge_return
from royalties.settlement import claim_revenue_reroute


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
    """The operator's resolution (catalog.tracing.claim_resolve); its money moves once it is final: at
    once after an appeal, else when the time to appeal has passed (`claims_collect`)."""
    claim = tracing.claim_resolve(claim=claim, operator=operator, resolution=resolution, statement=statement)
    _finish_if_final(claim)
    return claim


def _monetize_in_force(claim: Claim) -> bool:
    return claim.decision == ClaimDecision.MONETIZE and claim.resolution != ClaimResolution.DISMISSED


def _finish_if_final(claim: Claim) -> bool:
    """A final claim's money goes to the winner: a vendor's escrow is paid to the claimed work or returned,
    an owed charge of a void decision is cancelled, and an upload's held revenue is re-routed to the
    claimed work. Answers whether anything moved."""
    if not claim_is_final(claim):
        return False
    if claim.charge == ClaimCharge.HELD:
        amount = Money(int(claim.charge_minor or 0), claim.charge_currency)
        text = currencies.format_minor(amount.amount_minor, amount.currency)
    if claim.charge == ClaimCharge.HELD and _monetize_in_force(claim):
        claim_charge_release(claim_id=claim.pk, work=claim.work, amount=amount)
        claim.charge = ClaimCharge.PAID
        _event(claim, f"{text} paid to the owners of the claimed work")
    elif claim.charge == ClaimCharge.HELD:
        claim_charge_return(
            claim_id=claim.pk,
            organisation_id=claim.subject_output.organisation_id,  # type: ignore[union-attr]
            amount=amount,
        )
        claim.charge = ClaimCharge.RETURNED
        _event(claim, f"{text} returned to the vendor")
    elif claim.charge == ClaimCharge.OWED and not _monetize_in_force(claim):
        claim.charge = ""
        _event(claim, "The owed charge is cancelled")
    elif claim.subject_work_id is not None and _monetize_in_force(claim):
        moved = claim_revenue_reroute(
            subject_work_id=claim.subject_work_id, claimed_work_id=claim.work_id, since=claim.created_at
        )
        if moved:
            _event(claim, f"{moved} revenue items of the copy re-routed to the claimed work")
        return bool(moved)
    else:
        return False
    claim.save(update_fields=["charge", "updated_at"])
    return True


def claims_collect() -> int:
    """The periodic job (every 10 minutes): open claims left undecided lapse; owed charges the vendor can
    now pay go into escrow; final claims move their money (`_finish_if_final`). Each claim in its own
    transaction; answers how many claims moved money."""
    tracing.claims_lapse()
    moved = 0
    candidates = Claim.objects.filter(
        Q(subject_output__isnull=False, charge__in=[ClaimCharge.OWED, ClaimCharge.HELD])
        | Q(subject_work__isnull=False, decision=ClaimDecision.MONETIZE)
    ).exclude(resolution=ClaimResolution.DISMISSED, charge="")
    for claim_id in list(candidates.values_list("pk", flat=True)):
        with transaction.atomic():
            claim = (
                Claim.objects.select_for_update(of=("self",))
                .select_related("work", "subject_output")
                .get(pk=claim_id)
            )
            before = claim.charge
            if claim.charge == ClaimCharge.OWED and _monetize_in_force(claim):
                _try_hold(claim)
            finished = _finish_if_final(claim)
            moved += finished or claim.charge != before
    return moved
