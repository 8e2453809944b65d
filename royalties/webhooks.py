"""Stripe webhooks: verified, stored, then processed, each event exactly once.

1. The signature is checked over the raw body (5-minute tolerance). A bad or stale one is refused before
   anything is written.
2. The event is stored with its Stripe id; the unique (provider, event id) makes a redelivery find the
   stored row instead of a new one.
3. It is processed inside a transaction that holds the row and sets `processed_at` with the handler's
   writes: both commit or neither. A processed event is never processed again.

Handlers read the object's full state from the event rather than trusting the event type or the order of
arrival, so events delivered late or shuffled end in the same state as in order:
- `account.updated`: the account's state, applied only if Stripe made this event after the one applied
  last (`created`);
- `transfer.created` / `transfer.updated` / `transfer.reversed`: a transfer that is fully reversed returns
  its payout's money to payable (confirmed first if no earlier event did, so the ledger is the same in any
  order); otherwise it confirms the payout; a payout already returned stays so;
- `payment_intent.succeeded`, `checkout.session.completed`,
  `checkout.session.async_payment_succeeded`: credit the vendor's prepaid balance once, keyed by the
  PaymentIntent id (the two kinds of event for one Checkout payment credit it once).

An error a retry cannot fix (a refused ledger write, an organisation that no longer exists) is stored on
the event, which counts as processed, and Stripe gets 200. Any other error rolls the handler back, is stored
on the event, and Stripe gets 500, so it delivers the event again and it is processed then.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from accounts import payout_identity
from accounts.models import Organisation
from common import clock
from common import currency as currencies
from common.money import Money
from common.problems import ApiError
from royalties import services
from royalties.models import Payout, PayoutStatus, WebhookEvent
from royalties.rails import RailError
from royalties.rails import stripe as gateway

logger = logging.getLogger(__name__)

PROVIDER = "stripe"
MAX_ERROR = 500


class WebhookRefused(ApiError):
    default_code = "invalid_webhook"
    default_detail = "The webhook was refused."


class WebhookFailed(Exception):
    """Processing failed in a way a redelivery may fix: the caller answers 500."""


@dataclass(frozen=True)
class Received:
    event: WebhookEvent
    duplicate: bool


# Receiving ---------------------------------------------------------------------------------------------


def _parsed(payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except ValueError:
        raise WebhookRefused("The body is not JSON.", code="malformed_event") from None
    data = body.get("data") if isinstance(body, dict) else None
    valid = (
        isinstance(body, dict)
        and body.get("object") == "event"
        and isinstance(body.get("id"), str)
        and 0 < len(body["id"]) <= 120
        and isinstance(body.get("type"), str)
        and 0 < len(body["type"]) <= 80
        and isinstance(body.get("created"), int)
        and isinstance(data, dict)
        and isinstance(data.get("object"), dict)
    )
    if not valid:
        raise WebhookRefused("The body is not a Stripe event.", code="malformed_event")
    return body


def stripe_webhook_receive(*, payload: bytes, signature_header: str) -> Received:
    """Verify, store and process one delivery. Raises WebhookRefused (400, nothing stored) for a bad
    signature or body, WebhookFailed (answer 500; the event is stored for the redelivery) when processing
    failed in a way a retry may fix."""
    if not (settings.STRIPE_WEBHOOK_SECRET or settings.STRIPE_CONNECT_WEBHOOK_SECRET):
        raise ApiError(
            "Stripe webhooks are not configured here (STRIPE_WEBHOOK_SECRET).",
            code="stripe_not_configured",
            status_code=404,
        )
    try:
        gateway.webhook_verify(payload, signature_header)
    except gateway.WebhookSignatureInvalid as error:
        raise WebhookRefused(f"Signature check failed: {error}", code="invalid_signature") from None
    body = _parsed(payload)
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                provider=PROVIDER, event_id=body["id"], event_type=body["type"], payload=body
            )
        duplicate = False
    except IntegrityError:
        event = WebhookEvent.objects.get(provider=PROVIDER, event_id=body["id"])
        duplicate = True
    if event.processed_at is None:
        event = webhook_event_process(event_pk=event.pk)
    return Received(event=event, duplicate=duplicate)


def webhook_event_process(*, event_pk: int) -> WebhookEvent:
    """Process a stored event unless it was processed already (also what an operator's retry calls)."""
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.select_for_update().get(pk=event_pk)
            if event.processed_at is not None:
                return event
            try:
                with transaction.atomic():
                    note = _handle(event.event_type, event.payload)
            except (ApiError, RailError) as error:
                if isinstance(error, RailError) and error.retryable:
                    raise
                # A retry would be refused the same way: keep the reason for the operator, and stop.
                logger.error("Stripe event %s (%s) refused: %s", event.event_id, event.event_type, error)
                note = f"refused: {error}"
            event.processed_at = clock.now()
            event.error = note[:MAX_ERROR]
            event.save(update_fields=["processed_at", "error"])
            return event
    except Exception as error:
        logger.exception("Stripe event #%s failed; Stripe will deliver it again", event_pk)
        WebhookEvent.objects.filter(pk=event_pk, processed_at__isnull=True).update(
            error=f"failed (will be retried): {type(error).__name__}: {error}"[:MAX_ERROR]
        )
        raise WebhookFailed(str(error)) from error


# Handlers ----------------------------------------------------------------------------------------------

Handler = Callable[[Mapping[str, Any], datetime], str]


def _handle(event_type: str, payload: Mapping[str, Any]) -> str:
    handler = HANDLERS.get(event_type)
    if handler is None:
        return ""  # an event type we do not subscribe to: stored, nothing to do
    created = datetime.fromtimestamp(int(payload["created"]), tz=UTC)
    return handler(payload["data"]["object"], created)


def _account_updated(account: Mapping[str, Any], created: datetime) -> str:
    applied = payout_identity.payout_profile_stripe_state_apply(
        account_id=str(account.get("id", "")),
        payouts_enabled=bool(account.get("payouts_enabled")),
        details_submitted=bool(account.get("details_submitted")),
        at=created,
    )
    return "" if applied else "not applied: no such account here, or a newer state was applied already"


def _payout_of(transfer: Mapping[str, Any]) -> Payout | None:
    key = (transfer.get("metadata") or {}).get(gateway.META_PAYOUT)
    if key:
        return Payout.objects.filter(key=key).first()
    return Payout.objects.filter(rail="stripe", external_id=str(transfer.get("id", ""))).first()


def _transfer(transfer: Mapping[str, Any], created: datetime) -> str:
    from royalties import payouts  # the payout state machine (imported here: it imports the gateway)

    payout = _payout_of(transfer)
    if payout is None:
        return "not a Tribute payout"
    transfer_id = str(transfer.get("id", ""))
    amount = int(transfer.get("amount", 0))
    currency = str(transfer.get("currency", "")).upper()
    if amount != payout.amount_minor or currency != payout.currency:
        raise ApiError(
            f"Transfer {transfer_id} is {amount} {currency}; payout {payout.key} is "
            f"{payout.amount_minor} {payout.currency}.",
            code="transfer_mismatch",
        )
    reversed_minor = int(transfer.get("amount_reversed", 0) or 0)
    if transfer.get("reversed") or (reversed_minor and reversed_minor >= amount):
        if payout.status in (PayoutStatus.RETURNED, PayoutStatus.FAILED):
            return "already returned"
        if payout.status == PayoutStatus.CREATED:  # our record of the transfer was lost in a crash
            payouts.payout_submitted(key=payout.key, external_id=transfer_id)
        payouts.payout_fail(
            key=payout.key, reason=f"Stripe transfer {transfer_id} was reversed", returned=True
        )
        return ""
    if reversed_minor:
        raise ApiError(
            f"Transfer {transfer_id} was partly reversed ({reversed_minor} of {amount}): for the operator.",
            code="partial_reversal",
        )
    if payout.status in (PayoutStatus.CONFIRMED, PayoutStatus.RETURNED, PayoutStatus.FAILED):
        return f"payout already {payout.status}"
    payouts.payout_confirm(key=payout.key, external_id=transfer_id)
    return ""


def _fund(*, metadata: Mapping[str, Any], intent_id: str, amount_minor: int, currency: str) -> str:
    organisation_id = str(metadata.get(gateway.META_ORGANISATION, ""))
    if not organisation_id:
        return "not a Tribute top-up"
    organisation = (
        Organisation.objects.filter(pk=int(organisation_id)).first() if organisation_id.isdigit() else None
    )
    if organisation is None:
        raise ApiError(f"Top-up {intent_id} names an unknown organisation.", code="organisation_not_found")
    code = currency.upper()
    if not currencies.is_supported(code):
        raise ApiError(
            f"Top-up {intent_id} is in {code}, which is not supported.", code="unsupported_currency"
        )
    services.prepaid_fund(
        organisation=organisation, amount=Money(amount_minor, code), external_ref=intent_id, rail=PROVIDER
    )
    return ""


def _payment_intent_succeeded(intent: Mapping[str, Any], created: datetime) -> str:
    return _fund(
        metadata=intent.get("metadata") or {},
        intent_id=str(intent["id"]),
        amount_minor=int(intent.get("amount_received") or intent.get("amount") or 0),
        currency=str(intent.get("currency", "")),
    )


def _checkout_completed(session: Mapping[str, Any], created: datetime) -> str:
    if session.get("mode") != "payment" or session.get("payment_status") != "paid":
        return "not paid yet"  # an asynchronous payment method: async_payment_succeeded follows
    intent = session.get("payment_intent")
    intent_id = intent.get("id") if isinstance(intent, Mapping) else intent
    if not intent_id:
        return "no payment intent"
    return _fund(
        metadata=session.get("metadata") or {},
        intent_id=str(intent_id),
        amount_minor=int(session.get("amount_total") or 0),
        currency=str(session.get("currency", "")),
    )


HANDLERS: dict[str, Handler] = {
    "account.updated": _account_updated,
    "transfer.created": _transfer,
    "transfer.updated": _transfer,
    "transfer.reversed": _transfer,
    "payment_intent.succeeded": _payment_intent_succeeded,
    "checkout.session.completed": _checkout_completed,
    "checkout.session.async_payment_succeeded": _checkout_completed,
}
EVENT_TYPES = sorted(HANDLERS)
