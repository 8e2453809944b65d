"""Helpers for the Stripe tests: recorded API answers served to the real SDK by `responses`, and webhook
events built and signed here the way Stripe signs them."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses

RECORDED = Path(__file__).resolve().parent / "stripe_responses"
API_BASE = "http://127.0.0.1:12111"
SECRET_KEY = "sk_test_tribute_recorded_0000"
WEBHOOK_SECRET = "whsec_tribute_test_0000000000000000"


def recorded(name: str) -> dict[str, Any]:
    """A recorded Stripe answer (a fresh copy each time, so a test may change it)."""
    return copy.deepcopy(json.loads((RECORDED / f"{name}.json").read_text()))


def form(call: Any) -> dict[str, list[str]]:
    """The form body the SDK sent (Stripe's API takes application/x-www-form-urlencoded)."""
    body = call.request.body or ""
    if isinstance(body, bytes):
        body = body.decode()
    return parse_qs(body, keep_blank_values=True)


def query(call: Any) -> dict[str, list[str]]:
    return parse_qs(call.request.url.split("?", 1)[1]) if "?" in call.request.url else {}


@pytest.fixture
def stripe_on(settings) -> None:
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_CONNECT_WEBHOOK_SECRET = ""
    settings.STRIPE_API_BASE = API_BASE
    settings.STRIPE_MAX_NETWORK_RETRIES = 0


@pytest.fixture
def stripe_api(stripe_on: None) -> Iterator[responses.RequestsMock]:
    """Stripe's API as recorded: every request the SDK makes must match a registered answer."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# Webhooks ----------------------------------------------------------------------------------------------


def signature_header(payload: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """Stripe's scheme: HMAC-SHA256 of "<timestamp>.<raw body>" with the endpoint secret, as t=...,v1=..."""
    moment = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{moment}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


def event(event_type: str, obj: dict[str, Any], *, event_id: str, created: int | None = None) -> bytes:
    """A webhook body shaped like Stripe's (a snapshot event of API version 2026-10-28.endive)."""
    body = {
        "id": event_id,
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()) if created is None else created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def deliver(client: Any, payload: bytes, *, header: str | None = None) -> Any:
    return client.post(
        "/api/v1/webhooks/stripe",
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature_header(payload) if header is None else header,
    )
