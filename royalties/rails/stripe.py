"""The one module that talks to Stripe. Everything else calls the functions here.

- One `StripeClient` per configuration, with the API version pinned (`API_VERSION`), a timeout on every
  request, and the SDK's own network retries (which resend the same Idempotency-Key).
- Every call that moves or requests money carries an idempotency key made from our own row: the payout's
  `key` for a transfer, the top-up reference for a PaymentIntent or Checkout Session, the user for an
  Express account. A retry, by the SDK or by our jobs, can then never make a second one.
- Every SDK error becomes a `RailError` whose `retryable` says whether trying the same call later can
  succeed (network, rate limit, Stripe's 5xx, our own key or permissions) or not (a refused request).

Stripe is off while `STRIPE_SECRET_KEY` is empty: `is_configured()` says so, and a call raises
`StripeNotConfigured`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import stripe
from django.conf import settings

from accounts.models import Organisation, User
from common import currency as currencies
from common.money import Money
from royalties.models import Payout
from royalties.rails import Outcome, OutcomeKind, RailError, RailRecord

logger = logging.getLogger(__name__)

# The API version every request is made with. The SDK (16.x) is generated for this version; upgrading
# either is a deliberate change: read Stripe's changelog, re-record tests/royalties/stripe_responses/.
API_VERSION = "2026-10-28.endive"
CONNECT_TIMEOUT_S = 5
# Metadata keys we put on Stripe objects, and read back in webhooks and reconciliation.
META_PAYOUT = "tribute_payout_key"
META_TOPUP = "tribute_topup_reference"
META_ORGANISATION = "tribute_organisation_id"
META_USER = "tribute_user_id"
# A distributor paying a reporter's receivables (a receipt, not a top-up).
META_REPORTER = "tribute_reporter"
META_DISTRIBUTOR = "tribute_distributor"
PAGE_LIMIT = 100


class StripeNotConfigured(RailError):
    def __init__(self) -> None:
        super().__init__("Stripe is not configured (STRIPE_SECRET_KEY is empty).", retryable=False)


class IdempotencyKeyReused(RailError):
    """Stripe saw this idempotency key before with other parameters: a bug or a reused client key."""


def is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


@lru_cache(maxsize=4)
def _client_for(api_key: str, api_base: str, timeout_s: int, retries: int) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        stripe_version=API_VERSION,
        base_addresses={"api": api_base or stripe.DEFAULT_API_BASE},
        max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=(CONNECT_TIMEOUT_S, timeout_s)),
    )


def client() -> stripe.StripeClient:
    if not is_configured():
        raise StripeNotConfigured()
    return _client_for(
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE,
        settings.STRIPE_TIMEOUT_S,
        settings.STRIPE_MAX_NETWORK_RETRIES,
    )


def _retryable(error: stripe.StripeError) -> bool:
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError | stripe.APIError):
        return True
    # A wrong or revoked key, or a key without the permission: nothing is wrong with the payout itself;
    # the same call succeeds once the operator fixes the configuration.
    if isinstance(error, stripe.AuthenticationError | stripe.PermissionError):
        return True
    status = error.http_status or 0
    return status == 429 or status >= 500


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    try:
        yield
    except stripe.StripeError as error:
        retryable = _retryable(error)
        detail = error.user_message or str(error) or type(error).__name__
        code = f" [{error.code}]" if error.code else ""
        request_id = f" (request {error.request_id})" if error.request_id else ""
        logger.warning("Stripe %s failed%s: %s%s", operation, code, detail, request_id)
        message = f"Stripe {operation} failed{code}: {detail}"
        if isinstance(error, stripe.IdempotencyError):
            raise IdempotencyKeyReused(message, retryable=False) from error
        raise RailError(message, retryable=retryable) from error


def _lower_currency(code: str) -> str:
    if not currencies.is_supported(code):
        raise RailError(f"Currency {code} is not supported.", retryable=False)
    return code.lower()


# Payouts -----------------------------------------------------------------------------------------------


def payout_send(payout: Payout) -> Outcome:
    """Send one payout (`transfer_send`) and answer the outcome: submitted with the transfer id, failed
    when Stripe refused it, waiting when the call may succeed later."""
    try:
        transfer_id = transfer_send(payout)
    except RailError as error:
        if error.retryable:
            return Outcome(payout.key, OutcomeKind.WAITING, note=f"Stripe: {error}")
        return Outcome(payout.key, OutcomeKind.FAILED, note=f"Stripe refused the transfer: {error}")
    return Outcome(payout.key, OutcomeKind.SUBMITTED, external_id=transfer_id)


def transfer_send(payout: Payout) -> str:
    """Send the payout to its connected account as one transfer; return the transfer id.

    The Idempotency-Key is the payout's key, so sending the same payout again (a retried job, a crash
    before we stored the answer) returns the first transfer instead of making a second one.
    """
    if not payout.destination.startswith("acct_"):
        raise RailError(f"Payout {payout.key} has no Stripe account to pay.", retryable=False)
    if payout.amount_minor <= 0:
        raise RailError(f"Payout {payout.key} has no positive amount.", retryable=False)
    params: dict[str, Any] = {
        "amount": payout.amount_minor,
        "currency": _lower_currency(payout.currency),
        "destination": payout.destination,
        "description": f"Tribute payout {payout.period}",
        "transfer_group": f"tribute-payout-{payout.period}",
        "metadata": {META_PAYOUT: payout.key, META_USER: str(payout.user_id)},
    }
    with _translated("transfer"):
        transfer = client().v1.transfers.create(params=params, options={"idempotency_key": payout.key})  # type: ignore[arg-type]
    return str(transfer.id)


# Connect Express ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountState:
    account_id: str
    payouts_enabled: bool
    details_submitted: bool


def account_create(user: User) -> str:
    """Create the user's Express account; return its id. Keyed by the user, so a retry (a double click,
    a crash before the id was stored) gets the same account back from Stripe."""
    params: dict[str, Any] = {
        "type": "express",
        "email": user.email,
        "capabilities": {"transfers": {"requested": True}},
        "business_profile": {"product_description": "Creator royalties paid by Tribute"},
        "metadata": {META_USER: str(user.pk)},
    }
    with _translated("account creation"):
        account = client().v1.accounts.create(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"tribute-account-user-{user.pk}"},
        )
    return str(account.id)


def account_link(account_id: str, *, return_url: str, refresh_url: str) -> str:
    """A single-use onboarding link for the account (it expires within minutes: make one per click)."""
    params: dict[str, Any] = {
        "account": account_id,
        "type": "account_onboarding",
        "return_url": return_url,
        "refresh_url": refresh_url,
    }
    with _translated("account link"):
        link = client().v1.account_links.create(params=params)  # type: ignore[arg-type]
    return str(link.url)


def account_state(account_id: str) -> AccountState:
    with _translated("account retrieval"):
        account = client().v1.accounts.retrieve(account_id).to_dict()
    return AccountState(
        account_id=str(account["id"]),
        payouts_enabled=bool(account.get("payouts_enabled")),
        details_submitted=bool(account.get("details_submitted")),
    )


# Funding -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentIntentStarted:
    payment_intent_id: str
    client_secret: str
    status: str


@dataclass(frozen=True)
class CheckoutStarted:
    session_id: str
    url: str


def _topup_metadata(organisation: Organisation, reference: str) -> dict[str, str]:
    return {META_TOPUP: reference, META_ORGANISATION: str(organisation.pk)}


def payment_intent_create(
    organisation: Organisation, amount: Money, *, reference: str
) -> PaymentIntentStarted:
    """A PaymentIntent for a prepaid top-up, to confirm with Stripe.js or any Stripe client. The
    `payment_intent.succeeded` webhook credits the balance (once, by the PaymentIntent id)."""
    params: dict[str, Any] = {
        "amount": amount.amount_minor,
        "currency": _lower_currency(amount.currency),
        "automatic_payment_methods": {"enabled": True},
        "description": f"Tribute prepaid top-up for {organisation.name}",
        "metadata": _topup_metadata(organisation, reference),
    }
    with _translated("payment intent"):
        intent = client().v1.payment_intents.create(params=params, options={"idempotency_key": reference})  # type: ignore[arg-type]
    return PaymentIntentStarted(
        payment_intent_id=str(intent.id),
        client_secret=str(intent.client_secret or ""),
        status=str(intent.status),
    )


def checkout_session_create(
    organisation: Organisation, amount: Money, *, reference: str, success_url: str, cancel_url: str
) -> CheckoutStarted:
    """A Stripe-hosted payment page for a top-up. The PaymentIntent it makes carries the same metadata,
    so `checkout.session.completed` and `payment_intent.succeeded` both credit the same reference."""
    metadata = _topup_metadata(organisation, reference)
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": _lower_currency(amount.currency),
                    "unit_amount": amount.amount_minor,
                    "product_data": {"name": "Tribute prepaid balance"},
                },
            }
        ],
        "client_reference_id": reference,
        "metadata": metadata,
        "payment_intent_data": {
            "metadata": metadata,
            "description": f"Tribute top-up for {organisation.name}",
        },
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    with _translated("checkout session"):
        session = client().v1.checkout.sessions.create(params=params, options={"idempotency_key": reference})  # type: ignore[arg-type]
    return CheckoutStarted(session_id=str(session.id), url=str(session.url or ""))


# Reconciliation ----------------------------------------------------------------------------------------


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, stripe.StripeObject):
        return value.to_dict()
    return dict(value) if isinstance(value, Mapping) else {}


def _record(item: Mapping[str, Any]) -> RailRecord | None:
    """Our view of one balance transaction: a payout (a transfer we made) or a funding (a charge for a
    top-up), or None for what reconciliation does not compare (fees, payouts to our bank, refunds)."""
    kind = item.get("type")
    source = _as_dict(item.get("source"))
    at = datetime.fromtimestamp(int(item["created"]), tz=UTC)
    currency = str(item["currency"]).upper()
    if kind == "transfer":
        metadata = source.get("metadata") or {}
        return RailRecord(
            kind="payout",
            reference=str(metadata.get(META_PAYOUT, "")),
            external_id=str(source.get("id") or item.get("source") or ""),
            amount_minor=abs(int(item["amount"])),
            currency=currency,
            at=at,
        )
    if kind in {"charge", "payment"}:
        intent = source.get("payment_intent")
        intent_id = intent.get("id") if isinstance(intent, Mapping) else intent
        return RailRecord(
            kind="funding",
            reference=str(intent_id or ""),
            external_id=str(source.get("id") or ""),
            amount_minor=int(item["amount"]),
            currency=currency,
            at=at,
        )
    return None


def balance_transactions(*, since: datetime, until: datetime) -> list[RailRecord]:
    """Transfers and top-up charges on our Stripe balance created in [since, until), oldest first.

    Pages through the whole list. A transfer's `reference` is the payout key from its metadata; a charge's
    is its PaymentIntent id (the reference `payment_intent.succeeded` funded). An empty reference means
    Stripe holds a movement we did not make: reconciliation reports it.
    """
    params: dict[str, Any] = {
        "created": {"gte": int(since.timestamp()), "lt": int(until.timestamp())},
        "limit": PAGE_LIMIT,
        "expand": ["data.source"],
    }
    records: list[RailRecord] = []
    with _translated("balance transactions"):
        page = client().v1.balance_transactions.list(params=params)  # type: ignore[arg-type]
        for item in page.auto_paging_iter():
            record = _record(item.to_dict())
            if record is not None:
                records.append(record)
    records.sort(key=lambda r: (r.at, r.external_id))
    return records


# Webhooks ----------------------------------------------------------------------------------------------

WEBHOOK_TOLERANCE_S = 300


class WebhookSignatureInvalid(Exception):
    """The body was not signed with our webhook secret, or was signed too long ago."""


def webhook_verify(payload: bytes, signature_header: str) -> None:
    """Check Stripe's signature over the raw body (HMAC-SHA256 of `t.body` with the endpoint secret) and
    that it was made within the last five minutes. Events on connected accounts come from a second
    endpoint with its own secret (STRIPE_CONNECT_WEBHOOK_SECRET): either secret may have signed.
    Raises WebhookSignatureInvalid otherwise."""
    secrets = [s for s in (settings.STRIPE_WEBHOOK_SECRET, settings.STRIPE_CONNECT_WEBHOOK_SECRET) if s]
    if not secrets:
        raise WebhookSignatureInvalid("STRIPE_WEBHOOK_SECRET is not set: no webhook can be verified.")
    reasons = []
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature_header, secret, tolerance=WEBHOOK_TOLERANCE_S
            )
            return
        except stripe.SignatureVerificationError as error:
            reasons.append(str(error.user_message or error))
        except UnicodeDecodeError:
            raise WebhookSignatureInvalid("The body is not UTF-8.") from None
    # A signature that matched but is too old says so; otherwise the first secret's reason.
    raise WebhookSignatureInvalid(next((r for r in reasons if "tolerance" in r), reasons[0]))
