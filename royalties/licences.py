"""Licences are paid where they are granted: the one service every way to a grant goes through.

Invariants (docs/royalties.md, "Licence fees"):
- a grant with a licence fee is active only once its fee is recorded, and both happen in one database
  transaction: the fee is held on the payer's prepaid balance (a conditional UPDATE that refuses a short
  balance with 402) and recorded as revenue once per grant (unique source key `licence:<grant id>`),
  then the grant is activated by a conditional UPDATE from `pending_payment`;
- a fee that cannot be paid changes nothing: a new grant is not created, a grant waiting for payment
  keeps waiting, and no balance moves;
- accepting again, a replay or a double click returns the grant already held and charges nothing more;
- settlement later moves the held fee to the platform fee and the work's owners, up its chain.

The API (`POST /api/v1/grants`), the dashboard, the studio and the demo all call `licence_accept`; the
studio's first job on an approved grant calls `licence_pay`. Catalog's `grant_create` alone never makes an
active grant with a fee (it leaves it waiting for payment), so a path that forgets this service gives
nothing away.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from accounts.models import Organisation, User
from catalog.models import Grant, GrantStatus, Offer
from catalog.services import grant_activate_paid, grant_create
from common.problems import NotFound
from royalties.revenue import licence_fee_charge


@dataclass(frozen=True)
class LicenceAcceptance:
    grant: Grant
    created: bool
    fee_charged_minor: int


def _payer_for(user: User, organisation: Organisation | None) -> Organisation | None:
    """The organisation whose prepaid balance pays: the one named (the user must belong to it), else
    the user's first organisation (a vendor's company, a person's studio wallet)."""
    memberships = Organisation.objects.filter(membership__user=user)
    if organisation is not None:
        if not memberships.filter(pk=organisation.pk).exists():
            raise NotFound("No such organisation among yours.", code="organisation_not_found")
        return organisation
    return memberships.order_by("id").first()


@transaction.atomic
def licence_accept(
    *,
    offer: Offer,
    user: User,
    organisation: Organisation | None = None,
    paid_on_rail: str = "",
) -> LicenceAcceptance:
    """Accept `offer` for `user` and pay its licence fee, all in one database transaction.

    The fee is paid from `organisation`'s prepaid balance (by default the user's first organisation),
    or, when payment code has verified that the money already arrived on an external rail (a card
    charge), from that rail (`paid_on_rail`): no API lets a caller name a rail. A grant that waits for
    the owner's approval pays nothing yet; once approved, accepting again pays it. InsufficientFunds
    (402) when the fee cannot be paid, and then nothing changed.
    """
    payer = None
    if not paid_on_rail and (offer.licence_fee_minor > 0 or organisation is not None):
        payer = _payer_for(user, organisation)
    acceptance = grant_create(offer=offer, user=user, organisation=organisation or payer)
    grant, charged = acceptance.grant, 0
    if grant.status == GrantStatus.PENDING_PAYMENT:
        grant, charged = _pay(grant=grant, payer=payer, paid_on_rail=paid_on_rail)
    return LicenceAcceptance(grant=grant, created=acceptance.created, fee_charged_minor=charged)


@transaction.atomic
def licence_pay(
    *, grant: Grant, user: User, organisation: Organisation | None = None, paid_on_rail: str = ""
) -> LicenceAcceptance:
    """Pay the licence fee of the user's grant that waits for it (an approved grant); an active grant is
    returned as it is, charging nothing. InsufficientFunds (402) when short, changing nothing."""
    if grant.licensee_id != user.pk:
        raise NotFound("No such grant among yours.", code="grant_not_found")
    payer = None if paid_on_rail else _payer_for(user, organisation)
    paid, charged = _pay(grant=grant, payer=payer, paid_on_rail=paid_on_rail)
    return LicenceAcceptance(grant=paid, created=False, fee_charged_minor=charged)


def _pay(*, grant: Grant, payer: Organisation | None, paid_on_rail: str) -> tuple[Grant, int]:
    locked = Grant.objects.select_for_update().select_related("offer").get(pk=grant.pk)
    if locked.status != GrantStatus.PENDING_PAYMENT:
        return locked, 0  # paid by a concurrent request a moment ago, or not payable: nothing to charge
    if paid_on_rail:
        licence_fee_charge(grant=locked, rail=paid_on_rail)
        return grant_activate_paid(grant=locked), locked.fee_minor
    # A grant already held by an organisation is paid from that organisation's balance; one held by
    # nobody yet is held from now on by the organisation that pays it.
    holder = locked.organisation if locked.organisation_id is not None else payer
    licence_fee_charge(grant=locked, organisation_id=None if holder is None else holder.pk)
    activated = grant_activate_paid(grant=locked, holder=holder if locked.organisation_id is None else None)
    return activated, locked.fee_minor
