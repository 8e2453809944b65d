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
  PaymentIntent id (the two kinds of event for one Checkout payment credit it once); a payment whose
  metadata names a reporter and distributor (`tribute_reporter`, `tribute_distributor`) is a distributor
  paying receivables: a receipt, matched to them;
- `charge.refunded`, `charge.refund.updated`: the charge says how much of it is refunded in all
  (`amount_refunded`); what is more than we already took back is reversed from what the payment funded
  (`reversal.funding_refund`). An older event saying less changes nothing. `refund.created` and
  `refund.updated` are noted (the charge's events carry the amounts); `refund.failed`, or a refund
  updated to `failed` or `canceled`, gives the money back (`reversal.funding_reinstate`);
- `charge.dispute.created` / `charge.dispute.funds_withdrawn`: Stripe took the disputed amount: reversed
  once per dispute (an inquiry, `warning_*`, takes nothing); `charge.dispute.closed` as `won` or
  `charge.dispute.funds_reinstated`: the money came back; closed as `lost`: taken if it was not already;
- `payout.failed`: a connected account's own bank payout failed; our transfer reached its Stripe balance,
  so no money moves here; the failure is noted on that account's latest payout for the operator.

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
from accounts.models import Organisation, User
from common import clock
from common import currency as currencies
from common.money import Money
from common.problems import ApiError
from royalties import reports, reversal
from royalties.funding import funding_find, prepaid_fund
from royalties.models import JournalTransaction, Payout, PayoutStatus, WebhookEvent
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
    code = currency.upper()
    if not currencies.is_supported(code):
        raise ApiError(
            f"Payment {intent_id} is in {code}, which is not supported.", code="unsupported_currency"
        )
    receipt = _receipt_fund(metadata=metadata, intent_id=intent_id, amount_minor=amount_minor, currency=code)
    if receipt is not None:
        return receipt
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
    prepaid_fund(
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


def _receipt_fund(
    *, metadata: Mapping[str, Any], intent_id: str, amount_minor: int, currency: str
) -> str | None:
    """A distributor's payment of receivables: None when the metadata does not say so."""
    reporter_id = str(metadata.get(gateway.META_REPORTER, ""))
    distributor = str(metadata.get(gateway.META_DISTRIBUTOR, ""))
    if not reporter_id or not distributor:
        return None
    reporter = User.objects.filter(pk=int(reporter_id)).first() if reporter_id.isdigit() else None
    if reporter is None:
        raise ApiError(f"Receipt {intent_id} names an unknown reporter.", code="reporter_not_found")
    result = reports.receipt_record(
        reporter=reporter,
        distributor=distributor,
        amount=Money(amount_minor, currency.upper()),
        rail=PROVIDER,
        reference=intent_id,
    )
    return f"receipt: {len(result.matched)} receivable(s) matched"


def _intent_of(obj: Mapping[str, Any]) -> str:
    intent = obj.get("payment_intent")
    return str(intent.get("id") if isinstance(intent, Mapping) else intent or "")


def _charge_refunded(charge: Mapping[str, Any], created: datetime) -> str:
    intent_id = _intent_of(charge)
    funding = funding_find(rail=PROVIDER, reference=intent_id) if intent_id else None
    if funding is None:
        return "not a payment credited here"
    refunded = int(charge.get("amount_refunded") or 0)
    delta = refunded - reversal.funding_refunded_minor(funding=funding, kind="refund")
    if delta <= 0:
        return "nothing new refunded"
    count = JournalTransaction.objects.filter(key__startswith=f"refund:{funding.pk}:refund:").count()
    reversal.funding_refund(
        funding=funding,
        amount_minor=delta,
        cause=f"refund:{count + 1}",
        memo=f"Stripe refunded {delta} of payment {intent_id} ({refunded} refunded in all)",
    )
    return ""


def _refund(refund: Mapping[str, Any], created: datetime) -> str:
    if refund.get("status") not in ("failed", "canceled"):
        return "counted from the charge's events"
    intent_id = _intent_of(refund)
    funding = funding_find(rail=PROVIDER, reference=intent_id) if intent_id else None
    if funding is None:
        return "not a payment credited here"
    reinstated = reversal.funding_reinstate(
        funding=funding,
        amount_minor=int(refund.get("amount") or 0),
        cause=f"refund:{refund.get('id', '')}",
        memo=f"Stripe refund {refund.get('id', '')} of payment {intent_id} {refund.get('status')}",
    )
    return "" if reinstated is not None else "the refund had not been taken"


_INQUIRY = ("warning_needs_response", "warning_under_review", "warning_closed")


def _dispute(dispute: Mapping[str, Any], created: datetime, *, withdrawn: bool | None = None) -> str:
    intent_id = _intent_of(dispute)
    funding = funding_find(rail=PROVIDER, reference=intent_id) if intent_id else None
    if funding is None:
        return "not a payment credited here"
    status = str(dispute.get("status", ""))
    dispute_id = str(dispute.get("id", ""))
    amount = int(dispute.get("amount") or 0)
    if withdrawn is None:  # charge.dispute.closed: the outcome decides
        withdrawn = status == "lost"
        if status not in ("won", "lost"):
            return f"closed as {status}: no money moved"
    if status in _INQUIRY:
        return "an inquiry: no money moved"
    if withdrawn:
        reversal.funding_refund(
            funding=funding,
            amount_minor=amount,
            cause=f"dispute:{dispute_id}",
            memo=f"Stripe dispute {dispute_id} on payment {intent_id}: {amount} withdrawn",
        )
        return ""
    reversal.funding_reinstate(
        funding=funding,
        amount_minor=amount,
        cause=f"dispute:{dispute_id}",
        memo=f"Stripe dispute {dispute_id} on payment {intent_id} won: {amount} reinstated",
    )
    return ""


def _dispute_withdrawn(dispute: Mapping[str, Any], created: datetime) -> str:
    return _dispute(dispute, created, withdrawn=True)


def _dispute_reinstated(dispute: Mapping[str, Any], created: datetime) -> str:
    return _dispute(dispute, created, withdrawn=False)


def _connected_payout_failed(payout: Mapping[str, Any], created: datetime) -> str:
    destination = str(payout.get("destination_account") or payout.get("account") or "")
    ours = Payout.objects.filter(rail="stripe", destination=destination).order_by("-id").first()
    if ours is None:
        return "no payout of ours to that account"
    reason = str(payout.get("failure_message") or payout.get("failure_code") or "failed")
    Payout.objects.filter(pk=ours.pk).update(
        last_error=f"The account's bank payout {payout.get('id', '')} failed: {reason}"[:500]
    )
    return "noted on the latest payout"


HANDLERS: dict[str, Handler] = {
    "account.updated": _account_updated,
    "transfer.created": _transfer,
    "transfer.updated": _transfer,
    "transfer.reversed": _transfer,
    "payment_intent.succeeded": _payment_intent_succeeded,
    "checkout.session.completed": _checkout_completed,
    "checkout.session.async_payment_succeeded": _checkout_completed,
    "charge.refunded": _charge_refunded,
    "charge.refund.updated": _refund,
    "refund.created": _refund,
    "refund.updated": _refund,
    "refund.failed": _refund,
    "charge.dispute.created": _dispute_withdrawn,
    "charge.dispute.funds_withdrawn": _dispute_withdrawn,
    "charge.dispute.funds_reinstated": _dispute_reinstated,
    "charge.dispute.closed": _dispute,
    "payout.failed": _connected_payout_failed,
}
EVENT_TYPES = sorted(HANDLERS)
