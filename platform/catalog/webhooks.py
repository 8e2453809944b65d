"""Signed webhooks for partners' claim events (catalog.partners), written as an outbox.

An event is written in the transaction of the change it reports, so it exists if and only if the change
does; `webhooks_deliver` (every minute) posts it afterwards, signed `Tribute-Signature: t=<unix time>,
v1=<hex HMAC-SHA256 of "<t>.<body>" with the endpoint's secret>`, with its id in `Tribute-Event-Id` (a
receiver drops an id it has seen: redeliveries carry the same id), and retries a failure with exponential
backoff (30 s doubling, at most 6 hours apart) until MAX_ATTEMPTS, after which the event is `failed`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from accounts.models import Organisation
from catalog.models import Claim, PartnerUpload, PartnerWebhook, WebhookEvent
from common import clock
from common.problems import ApiError, Conflict

MAX_ATTEMPTS = 10
_BACKOFF_FIRST_S = 30
_BACKOFF_MAX_S = 6 * 3600
_DELIVERY_TIMEOUT_S = 10


def allowed_url(url: str, *, what: str) -> str:
    """A URL on one of PARTNER_LOCAL_HOSTS (http or https), or any host over https when `what` is a
    webhook: never an internal address reached by redirect, as redirects are not followed."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    local = host in settings.PARTNER_LOCAL_HOSTS
    if parts.scheme not in ("http", "https") or not host or (what == "file" and not local):
        allowed = ", ".join(settings.PARTNER_LOCAL_HOSTS)
        raise ApiError(f"The {what} URL must be http(s) on {allowed}.", code="url_not_allowed")
    if what == "webhook" and parts.scheme != "https" and not local:
        raise ApiError("A webhook URL must use https.", code="url_not_allowed")
    return url


# Webhooks ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedWebhook:
    webhook: PartnerWebhook
    secret: str


def webhook_create(*, organisation: Organisation, url: str) -> IssuedWebhook:
    """A new endpoint for the organisation's claim events; its signing secret is shown once, here."""
    if PartnerWebhook.objects.filter(organisation=organisation, active=True).count() >= 5:
        raise Conflict("An organisation has at most 5 webhook endpoints.", code="too_many_webhooks")
    secret = secrets.token_hex(32)
    webhook = PartnerWebhook.objects.create(
        organisation=organisation, url=allowed_url(url, what="webhook"), secret=secret
    )
    return IssuedWebhook(webhook=webhook, secret=secret)


def claim_changed(claim: Claim, kind: str) -> None:
    """Record a `claim.<kind>` event for every active endpoint of the partner whose upload the claim is
    about. Call inside the transaction that made the change: the event exists if and only if it did."""
    if claim.subject_partner_upload_id is None:
        return
    upload = PartnerUpload.objects.get(pk=claim.subject_partner_upload_id)
    event_type = f"claim.{kind}"
    payload = {
        "type": event_type,
        "created": clock.now().isoformat(),
        "claim": {
            "id": claim.pk,
            "reference": upload.reference,
            "work": claim.work_id,
            "status": claim.status,
            "decision": claim.decision,
            "resolution": claim.resolution,
            "confidence": claim.confidence,
        },
    }
    WebhookEvent.objects.bulk_create(
        [
            WebhookEvent(endpoint=endpoint, kind=event_type, payload=payload)
            for endpoint in PartnerWebhook.objects.filter(organisation_id=upload.organisation_id, active=True)
        ]
    )


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _deliver(event: WebhookEvent) -> None:
    body = json.dumps({"id": str(event.id), **event.payload}, cls=DjangoJSONEncoder).encode()
    timestamp = int(clock.now().timestamp())
    headers = {
        "Content-Type": "application/json",
        "Tribute-Event-Id": str(event.id),
        "Tribute-Signature": f"t={timestamp},v1={signature(event.endpoint.secret, timestamp, body)}",
    }
    event.attempts += 1
    try:
        response = requests.post(
            event.endpoint.url, data=body, headers=headers, timeout=_DELIVERY_TIMEOUT_S, allow_redirects=False
        )
        error = "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    except requests.RequestException as exc:
        error = type(exc).__name__
    if not error:
        event.status, event.delivered_at, event.last_error = WebhookEvent.Status.DELIVERED, clock.now(), ""
    else:
        event.last_error = error[:300]
        if event.attempts >= MAX_ATTEMPTS:
            event.status = WebhookEvent.Status.FAILED
        else:
            wait = min(_BACKOFF_FIRST_S * 2 ** (event.attempts - 1), _BACKOFF_MAX_S)
            event.next_attempt_at = clock.now() + timedelta(seconds=wait)
    event.save(update_fields=["status", "attempts", "next_attempt_at", "last_error", "delivered_at"])


def webhooks_deliver(*, limit: int = 200) -> int:
    """Deliver the events that are due, each locked while it is sent (a second deliverer skips it).
    Answers how many were delivered."""
    delivered = 0
    due = WebhookEvent.objects.filter(
        status=WebhookEvent.Status.PENDING, next_attempt_at__lte=clock.now()
    ).values_list("pk", flat=True)
    for event_id in list(due[:limit]):
        with transaction.atomic():
            locked = WebhookEvent.objects.select_for_update(skip_locked=True).filter(
                pk=event_id, status=WebhookEvent.Status.PENDING
            )
            event = locked.select_related("endpoint").first()
            if event is None:
                continue
            _deliver(event)
            delivered += event.status == WebhookEvent.Status.DELIVERED
    return delivered
