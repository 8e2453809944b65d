"""What people start on Stripe: a payee's Connect Express onboarding, and a vendor's prepaid top-up.

The gateway (`royalties.rails.stripe`) makes the calls; the payout identity itself is stored by
`accounts.payout_identity`. The money of a top-up arrives later, by webhook (`royalties.webhooks`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from accounts import payout_identity
from accounts.models import Membership, Organisation, PayoutProfile, User
from accounts.payout_identity import StripeOff
from accounts.selectors import organisations_of
from common import clock
from common import currency as currencies
from common.money import Money
from common.problems import ApiError, Conflict, NotFound
from royalties.rails import RailError
from royalties.rails import stripe as gateway

TOPUP_MIN_MINOR = 100
TOPUP_MAX_MINOR = 99_999_999  # Stripe's limit for one payment (8 digits in minor units)
IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{8,100}$")


class StripeUnavailable(ApiError):
    status_code = 503
    default_code = "stripe_unavailable"
    default_detail = "Stripe could not be reached; try again in a minute."


def _raise_for(error: RailError) -> None:
    if isinstance(error, gateway.StripeNotConfigured):
        raise StripeOff() from error
    if error.retryable:
        raise StripeUnavailable(str(error)) from error
    raise ApiError(str(error), code="stripe_refused", status_code=502) from error


def _require_stripe() -> None:
    if not gateway.is_configured():
        raise StripeOff()


# Onboarding --------------------------------------------------------------------------------------------


def stripe_onboarding_start(*, user: User, return_url: str, refresh_url: str) -> str:
    """The URL of Stripe's onboarding for this user's Express account, made on the first call (once per
    user: the creation is keyed by the user, and the first id stored is kept). A link is single-use and
    short-lived, so each call makes a new one."""
    _require_stripe()
    profile = payout_identity.payout_profile_get_or_create(user=user)
    try:
        if not profile.stripe_account_id:
            profile = payout_identity.payout_profile_stripe_account_set(
                user=user, account_id=gateway.account_create(user)
            )
        return gateway.account_link(profile.stripe_account_id, return_url=return_url, refresh_url=refresh_url)
    except RailError as error:
        _raise_for(error)
        raise  # unreachable: _raise_for always raises


def stripe_account_refresh(*, user: User) -> PayoutProfile:
    """Ask Stripe for the account's state now (when the user comes back from onboarding, before the
    `account.updated` webhook may have arrived) and store it as of now."""
    profile = payout_identity.payout_profile_get_or_create(user=user)
    if not profile.stripe_account_id or not gateway.is_configured():
        return profile
    try:
        state = gateway.account_state(profile.stripe_account_id)
    except RailError as error:
        _raise_for(error)
        raise
    payout_identity.payout_profile_stripe_state_apply(
        account_id=state.account_id,
        payouts_enabled=state.payouts_enabled,
        details_submitted=state.details_submitted,
        at=clock.now(),
    )
    profile.refresh_from_db()
    return profile


# Top-ups -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopUpStarted:
    reference: str
    method: str
    organisation: Organisation
    amount: Money
    payment_intent_id: str = ""
    client_secret: str = ""
    checkout_url: str = ""
    checkout_session_id: str = ""


METHODS = ("checkout", "payment_intent")


def topup_organisation(*, user: User, organisation_id: int | None) -> Organisation:
    """The organisation a user tops up: the one named (a membership is required), else their first."""
    memberships = organisations_of(user=user).order_by("id")
    if organisation_id is not None:
        organisation = memberships.filter(pk=organisation_id).first()
        if organisation is None:
            raise NotFound("No such organisation among yours.", code="organisation_not_found")
        return organisation
    organisation = memberships.first()
    if organisation is None:
        raise ApiError("Only members of an organisation can top up a balance.", code="no_organisation")
    return organisation


def topup_reference(*, organisation: Organisation, idempotency_key: str | None) -> str:
    """Our reference for a top-up, also the Stripe Idempotency-Key: the client's key, scoped to the
    organisation, so retrying the same request returns the same payment instead of a second one."""
    if idempotency_key is None or idempotency_key == "":
        return f"topup-{organisation.pk}-{uuid.uuid4().hex}"
    if not IDEMPOTENCY_KEY_RE.match(idempotency_key):
        raise ApiError(
            "An Idempotency-Key is 8 to 100 letters, digits or . _ : -.", code="invalid_idempotency_key"
        )
    return f"topup-{organisation.pk}-{idempotency_key}"


def topup_start(
    *,
    user: User,
    organisation: Organisation,
    amount: Money,
    method: str,
    idempotency_key: str | None = None,
    success_url: str = "",
    cancel_url: str = "",
) -> TopUpStarted:
    """Start a prepaid top-up on Stripe: a Checkout page (the dashboard's way) or a PaymentIntent (for a
    client that confirms it with Stripe.js). Nothing is credited here: the webhook credits the balance
    when Stripe says the money arrived."""
    _require_stripe()
    if not Membership.objects.filter(organisation=organisation, user=user).exists():
        raise NotFound("No such organisation among yours.", code="organisation_not_found")
    if method not in METHODS:
        raise ApiError(f"Choose a method: {', '.join(METHODS)}.", code="invalid_method")
    if not currencies.is_supported(amount.currency):
        raise ApiError(f"Currency {amount.currency} is not supported.", code="unsupported_currency")
    if not TOPUP_MIN_MINOR <= amount.amount_minor <= TOPUP_MAX_MINOR:
        raise ApiError(
            f"A top-up is between {currencies.format_minor(TOPUP_MIN_MINOR, amount.currency)} and "
            f"{currencies.format_minor(TOPUP_MAX_MINOR, amount.currency)}.",
            code="invalid_amount",
        )
    reference = topup_reference(organisation=organisation, idempotency_key=idempotency_key)
    try:
        if method == "checkout":
            if not success_url or not cancel_url:
                raise ApiError("A Checkout top-up needs success_url and cancel_url.", code="missing_urls")
            session = gateway.checkout_session_create(
                organisation, amount, reference=reference, success_url=success_url, cancel_url=cancel_url
            )
            return TopUpStarted(
                reference=reference,
                method=method,
                organisation=organisation,
                amount=amount,
                checkout_url=session.url,
                checkout_session_id=session.session_id,
            )
        intent = gateway.payment_intent_create(organisation, amount, reference=reference)
    except RailError as error:
        if isinstance(error, gateway.IdempotencyKeyReused):
            raise Conflict(
                "This Idempotency-Key was used for another top-up.", code="idempotency_key_reused"
            ) from error
        _raise_for(error)
        raise
    return TopUpStarted(
        reference=reference,
        method=method,
        organisation=organisation,
        amount=amount,
        payment_intent_id=intent.payment_intent_id,
        client_secret=intent.client_secret,
    )
