"""Writes to a user's payout identities: the rail they are paid on, their Stripe account's state, and a
wallet proven by signature.

Invariants:
- a wallet address is stored only after a signature over a challenge we issued recovers to it; each
  challenge links at most one wallet (its `used_at` is set by a conditional UPDATE) and only before it
  expires;
- a Stripe account id, once stored for a user, is never replaced (the first one stored wins a race);
- the Stripe state (payouts enabled, details submitted) only moves forward in Stripe's own time: an
  `account.updated` event older than the one applied last changes nothing;
- a user can choose only a rail whose identity is ready.

The Stripe calls themselves (creating the account, the onboarding link) live in the royalties app's
gateway (`royalties.rails.stripe`), above this layer; these functions store what it returns.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature
from eth_utils import to_checksum_address
from eth_utils.exceptions import ValidationError as EthValidationError

from accounts.models import PayoutProfile, SecurityEvent, User, WalletChallenge
from accounts.security import notify, security_event_record
from accounts.services import require_verified_email
from common import clock
from common.problems import ApiError, Conflict, NotFound

ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
SIGNATURE_RE = re.compile(r"^(0x)?[0-9a-fA-F]{130}$")


class StripeOff(ApiError):
    status_code = 409
    default_code = "stripe_not_configured"
    default_detail = "Stripe is not configured on this platform; choose another payout rail."


def stripe_enabled() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


# Profile -----------------------------------------------------------------------------------------------


def payout_profile_get_or_create(*, user: User) -> PayoutProfile:
    profile, _ = PayoutProfile.objects.get_or_create(user=user)
    return profile


@dataclass(frozen=True)
class RailReadiness:
    rail: str
    ready: bool
    reason: str


def rail_readiness(*, profile: PayoutProfile) -> list[RailReadiness]:
    """Each rail, whether the user may choose it now, and why not when they may not."""
    if not stripe_enabled():
        stripe_reason = "Stripe is not configured on this platform."
    elif not profile.stripe_account_id:
        stripe_reason = "Connect a Stripe account first."
    elif not profile.stripe_payouts_enabled:
        stripe_reason = "Stripe has not enabled payouts to your account yet: finish onboarding with Stripe."
    else:
        stripe_reason = ""
    chain_reason = "" if profile.wallet_ready else "Link a wallet by signing a message first."
    return [
        RailReadiness(PayoutProfile.Rail.STRIPE, not stripe_reason, stripe_reason),
        RailReadiness(PayoutProfile.Rail.CHAIN, not chain_reason, chain_reason),
        RailReadiness(PayoutProfile.Rail.MANUAL, True, ""),
    ]


@transaction.atomic
def payout_profile_rail_set(*, user: User, rail: str) -> PayoutProfile:
    """Choose the rail payouts are sent on. Refused (409 `rail_not_ready`) while its identity is not."""
    if rail not in PayoutProfile.Rail.values:
        raise ApiError(
            f"Unknown rail {rail!r}; choose one of {', '.join(PayoutProfile.Rail.values)}.",
            code="invalid_rail",
        )
    require_verified_email(user=user, action="choose where you are paid")
    profile = payout_profile_get_or_create(user=user)
    profile = PayoutProfile.objects.select_for_update().get(pk=profile.pk)
    readiness = {r.rail: r for r in rail_readiness(profile=profile)}[rail]
    if not readiness.ready:
        raise Conflict(readiness.reason, code="rail_not_ready", extra={"rail": rail})
    if profile.rail != rail:
        profile.rail = rail
        profile.updated_at = clock.now()
        profile.save(update_fields=["rail", "updated_at"])
        _payout_changed(user=user, what=f"payouts are sent by {profile.get_rail_display()}")
    return profile


# Stripe ------------------------------------------------------------------------------------------------


def payout_profile_stripe_account_set(*, user: User, account_id: str) -> PayoutProfile:
    """Store the user's Stripe account id unless one is stored already; return the profile as stored
    (whose id wins if two requests raced to create an account: Stripe returned the same one to both,
    as the creation is keyed by the user)."""
    if not account_id.startswith("acct_"):
        raise ApiError("Not a Stripe account id.", code="invalid_stripe_account")
    require_verified_email(user=user, action="connect a Stripe account to be paid to")
    profile = payout_profile_get_or_create(user=user)
    stored = PayoutProfile.objects.filter(pk=profile.pk, stripe_account_id="").update(
        stripe_account_id=account_id, updated_at=clock.now()
    )
    profile.refresh_from_db()
    if stored:
        _payout_changed(user=user, what=f"the Stripe account {account_id} is connected for payouts")
    return profile


def payout_profile_stripe_state_apply(
    *, account_id: str, payouts_enabled: bool, details_submitted: bool, at: datetime
) -> bool:
    """Apply a Stripe account's state as Stripe reported it at `at`, unless a later report was applied
    already (one conditional UPDATE: two deliveries racing cannot apply the older one last). Returns
    whether it was applied; an account nobody here holds is not an error (another platform's test)."""
    updated = (
        PayoutProfile.objects.filter(stripe_account_id=account_id)
        .filter(Q(stripe_state_at__isnull=True) | Q(stripe_state_at__lt=at))
        .update(
            stripe_payouts_enabled=payouts_enabled,
            stripe_details_submitted=details_submitted,
            stripe_state_at=at,
            updated_at=clock.now(),
        )
    )
    return updated > 0


# Wallet ------------------------------------------------------------------------------------------------


def challenge_message(
    *, user: User, domain: str, nonce: str, issued_at: datetime, expires_at: datetime
) -> str:
    return (
        f"{domain} asks you to link this wallet to your Tribute account, so payouts can be sent to it.\n"
        "\n"
        f"Account: {user.username} (#{user.pk})\n"
        f"Domain: {domain}\n"
        f"Nonce: {nonce}\n"
        f"Issued at: {issued_at.isoformat(timespec='seconds')}\n"
        f"Expires at: {expires_at.isoformat(timespec='seconds')}\n"
        "\n"
        "Signing this message is free: it sends no transaction and moves no funds."
    )


def wallet_challenge_create(*, user: User, domain: str) -> WalletChallenge:
    """A fresh message for the user to sign with the wallet they want paid to (EIP-191 personal_sign)."""
    if not domain or any(c.isspace() for c in domain):
        raise ApiError("The challenge needs the site's domain.", code="invalid_domain")
    require_verified_email(user=user, action="link a wallet to be paid to")
    now = clock.now().replace(microsecond=0)
    expires_at = now + timedelta(seconds=int(settings.WALLET_CHALLENGE_TTL_S))
    nonce = secrets.token_hex(16)
    return WalletChallenge.objects.create(
        user=user,
        nonce=nonce,
        message=challenge_message(
            user=user, domain=domain, nonce=nonce, issued_at=now, expires_at=expires_at
        ),
        created_at=now,
        expires_at=expires_at,
    )


def signer_of(*, message: str, signature: str) -> str:
    """The checksummed address that made this EIP-191 personal_sign signature over `message`."""
    if not SIGNATURE_RE.match(signature.strip()):
        raise ApiError(
            "The signature must be 65 bytes in hex (0x followed by 130 hex digits).", code="invalid_signature"
        )
    try:
        return str(Account.recover_message(encode_defunct(text=message), signature=signature.strip()))
    except (BadSignature, EthValidationError, ValueError):
        raise ApiError("The signature is not a valid Ethereum signature.", code="invalid_signature") from None


def wallet_link(*, user: User, nonce: str, address: str, signature: str) -> PayoutProfile:
    """Store `address` as the user's payout wallet if `signature` over the challenge `nonce` recovers
    to it. The challenge must be the user's, unused and unexpired; it is used up by this call.

    Errors (problem codes): challenge_not_found 404, challenge_used 409, challenge_expired 400,
    invalid_address / invalid_signature / wrong_signer 400. A wrong signer leaves the challenge open, so
    the user can sign again with the right wallet.
    """
    if not ADDRESS_RE.match(address.strip()):
        raise ApiError("The address must be 0x followed by 40 hex digits.", code="invalid_address")
    claimed = to_checksum_address(address.strip())
    challenge = WalletChallenge.objects.filter(user=user, nonce=nonce).first()
    if challenge is None:
        raise NotFound("No such challenge for your account; ask for a new one.", code="challenge_not_found")
    signer = signer_of(message=challenge.message, signature=signature)
    if signer != claimed:
        raise ApiError(
            f"The signature was made by {signer}, not by {claimed}. Sign with the wallet you are linking.",
            code="wrong_signer",
            extra={"signer": signer},
        )
    now = clock.now()
    with transaction.atomic():
        used = WalletChallenge.objects.filter(
            pk=challenge.pk, used_at__isnull=True, expires_at__gt=now
        ).update(used_at=now, address=claimed)
        if not used:
            challenge.refresh_from_db()
            if challenge.used_at is not None:
                raise Conflict("This challenge was used already; ask for a new one.", code="challenge_used")
            raise ApiError("This challenge has expired; ask for a new one.", code="challenge_expired")
        profile = payout_profile_get_or_create(user=user)
        PayoutProfile.objects.filter(pk=profile.pk).update(
            wallet_address=claimed, wallet_verified_at=now, updated_at=now
        )
        profile.refresh_from_db()
        _payout_changed(user=user, what=f"the payout wallet is now {claimed}")
    return profile


_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def _payout_changed(*, user: User, what: str) -> None:
    security_event_record(user=user, kind=SecurityEvent.Kind.PAYOUT_CHANGED, change=what)
    notify(user=user, subject="Where Tribute pays you has changed", body=f"On your Tribute account, {what}.")


# Manual rail --------------------------------------------------------------------------------------------

MANUAL_METHODS = ("bank", "email")
_IBAN_RE = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")
_BIC_RE = re.compile(r"^[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$")
HOLDER_MAX_CHARS = 140


def iban_normalised(value: str) -> str:
    """An IBAN without spaces, upper case, if its form and ISO 7064 mod-97 check digits are right; else a
    400 problem `invalid_iban`."""
    iban = "".join(value.split()).upper()
    if not _IBAN_RE.match(iban):
        raise ApiError(
            "An IBAN is a country code, two check digits and up to 30 letters or digits, e.g. DE89 3704 0044 "
            "0532 0130 00.",
            code="invalid_iban",
        )
    digits = "".join(str(int(char, 36)) for char in iban[4:] + iban[:4])
    if int(digits) % 97 != 1:
        raise ApiError(
            "This IBAN's check digits do not match: check it for a typing mistake.", code="invalid_iban"
        )
    return iban


@transaction.atomic
def manual_payee_set(
    *, user: User, method: str, holder: str, iban: str = "", bic: str = "", email: str = ""
) -> PayoutProfile:
    """Where a manual payout goes: a bank account (holder, IBAN checked by its check digits, optional BIC)
    or an address for a manual transfer by email (a payment service the operator uses). Replaces the
    previous details; the payee is told by mail and the change is in their security log."""
    require_verified_email(user=user, action="set where you are paid")
    holder = " ".join(holder.split())
    if method not in MANUAL_METHODS:
        raise ApiError("Choose a bank account or an email address.", code="invalid_method")
    if not 2 <= len(holder) <= HOLDER_MAX_CHARS or any(not char.isprintable() for char in holder):
        raise ApiError(
            f"The account holder's name has 2 to {HOLDER_MAX_CHARS} printable characters.",
            code="invalid_holder",
        )
    values = {"manual_iban": "", "manual_bic": "", "manual_email": ""}
    if method == "bank":
        values["manual_iban"] = iban_normalised(iban)
        code = "".join(bic.split()).upper()
        if code and not _BIC_RE.match(code):
            raise ApiError("A BIC has 8 or 11 letters and digits, e.g. COBADEFFXXX.", code="invalid_bic")
        values["manual_bic"] = code
    else:
        address = email.strip()
        if len(address) > 254 or not _EMAIL_RE.match(address):
            raise ApiError("Enter the email address payments are sent to.", code="invalid_email")
        values["manual_email"] = address.lower()
    profile = payout_profile_get_or_create(user=user)
    now = clock.now()
    PayoutProfile.objects.filter(pk=profile.pk).update(
        manual_method=method, manual_holder=holder, manual_updated_at=now, updated_at=now, **values
    )
    profile.refresh_from_db()
    _payout_changed(user=user, what=f"manual payouts go to {profile.manual_summary}")
    return profile
