"""x402 with no account: an unpaid GET of a content URL answers 402 and PAYMENT-REQUIRED; a GET with
PAYMENT-SIGNATURE is recorded (write-ahead), settled, confirmed, credited, and answered with the bytes."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from typing import Any

import pytest
import x402.mechanisms.evm.exact.client as x402_client
import x402.schemas.payments as x402_payments
from django.test import Client
from eth_account import Account

from access import payments, receipts, signing
from access.models import AccessEvent, X402Payment
from catalog.services import asset_upload
from royalties import chain_client
from royalties.models import JournalTransaction, LedgerAccount
from royalties.selectors import payable_key, prepaid_available
from royalties.settlement import revenue_settle
from tests import factories
from tests.contracts.signing import new_key

pytestmark = pytest.mark.django_db

PAYER = Account.from_key(new_key("keyless content wallet"))


@pytest.fixture
def published():
    creator = factories.creator()
    work = factories.work(creator)
    original = factories.png_bytes(size=(300, 200), color=(90, 10, 10))
    asset = asset_upload(work=work, user=creator, data=original, filename="orig.png").asset
    factories.offer(creator, work, uses={"ai-generate": 25, "ai-train": 40})
    payments.chain().mint(PAYER.address, 1_000_000)
    return creator, work, asset, original


def _sign(required_header: str) -> str:
    required = json.loads(base64.b64decode(required_header))
    requirements = x402_payments.PaymentRequirements.model_validate(required["accepts"][0])
    payload = x402_payments.PaymentPayload(
        payload=x402_client.ExactEvmScheme(PAYER).create_payment_payload(requirements), accepted=requirements
    )
    return base64.b64encode(payload.model_dump_json(by_alias=True).encode()).decode()


def _content(work_id: int, **headers: Any):
    return Client(raise_request_exception=True).get(f"/works/{work_id}/content", **headers)


def _bytes(response) -> bytes:
    return b"".join(response.streaming_content)


def test_a_keyless_payment_on_a_plain_get_answers_the_original_and_credits_the_creator(
    published, settings
) -> None:
    settings.CHAIN_CONFIRMATIONS = 1
    creator, work, asset, original = published
    chain = payments.chain()
    before = chain.balance_of(chain.address)

    unpaid = _content(work.pk)
    paid = _content(work.pk, HTTP_PAYMENT_SIGNATURE=_sign(unpaid["PAYMENT-REQUIRED"]))

    assert unpaid.status_code == 402 and original not in unpaid.content
    assert paid.status_code == 200
    assert hashlib.sha256(_bytes(paid)).hexdigest() == asset.blob_id
    settlement = json.loads(base64.b64decode(paid["PAYMENT-RESPONSE"]))
    assert settlement["success"] is True
    assert chain.balance_of(chain.address) == before + 250_000
    payment = X402Payment.objects.get()
    assert (payment.status, payment.price_minor, payment.use_class) == ("confirmed", 25, "ai-generate")
    assert payment.transaction_hash == settlement["transaction"]
    event = AccessEvent.objects.get()
    assert (event.paid_by_x402, event.price_minor, event.organisation_id, event.api_key_id) == (
        True,
        25,
        payment.organisation_id,
        None,
    )
    assert event.organisation.name == f"x402 wallet {PAYER.address.lower()}"
    claims = receipts.verify(paid["Access-Receipt"], signing.public_keys())
    assert claims["content_sha256"] == [asset.blob_id] and claims["jti"] == str(event.access_id)
    assert prepaid_available(organisation=event.organisation, currency="USD") == 0

    revenue_settle()

    creator_payable = LedgerAccount.objects.get(key=payable_key(creator.pk, "USD"))
    platform_fee = 25 - creator_payable.balance_minor
    assert 0 <= platform_fee < 25 and creator_payable.balance_minor > 0


def test_a_replayed_keyless_payment_is_refused_and_serves_nothing(published, settings) -> None:
    settings.CHAIN_CONFIRMATIONS = 1
    _, work, _, original = published
    balance = payments.chain().balance_of(PAYER.address)
    signature = _sign(_content(work.pk)["PAYMENT-REQUIRED"])
    first = _content(work.pk, HTTP_PAYMENT_SIGNATURE=signature)
    assert first.status_code == 200 and _bytes(first) == original

    replayed = _content(work.pk, HTTP_PAYMENT_SIGNATURE=signature)

    assert replayed.status_code == 409 and replayed.json()["code"] == "payment_replayed"
    assert original not in replayed.content
    assert X402Payment.objects.count() == 1 and AccessEvent.objects.count() == 1
    assert payments.chain().balance_of(PAYER.address) == balance - 250_000


def test_a_forged_keyless_payment_changes_nothing(published) -> None:
    _, work, _, original = published
    balance = payments.chain().balance_of(PAYER.address)
    signature = _sign(_content(work.pk)["PAYMENT-REQUIRED"])
    payload = json.loads(base64.b64decode(signature))
    payload["payload"]["authorization"]["value"] = "1"
    forged = base64.b64encode(json.dumps(payload).encode()).decode()

    response = _content(work.pk, HTTP_PAYMENT_SIGNATURE=forged)

    assert response.status_code == 402 and response.json()["code"] == "payment_invalid"
    assert original not in response.content
    assert X402Payment.objects.count() == 0 and AccessEvent.objects.count() == 0
    assert payments.chain().balance_of(PAYER.address) == balance


def test_a_crash_between_settling_and_writing_loses_no_payment(
    published, settings, monkeypatch, time_machine
) -> None:
    settings.CHAIN_CONFIRMATIONS = 1
    _, work, _, _ = published
    balance = payments.chain().balance_of(PAYER.address)
    signature = _sign(_content(work.pk)["PAYMENT-REQUIRED"])

    def crash(payment, transaction_hash):
        raise RuntimeError("the process died after the facilitator settled")

    monkeypatch.setattr(payments, "_mark_settled", crash)
    with pytest.raises(RuntimeError):
        _content(work.pk, HTTP_PAYMENT_SIGNATURE=signature)
    monkeypatch.undo()

    # Paid on chain; on record (written ahead) but not credited.
    assert payments.chain().balance_of(PAYER.address) == balance - 250_000
    recorded = X402Payment.objects.get()
    assert (recorded.status, recorded.transaction_hash) == ("recorded", "")
    assert AccessEvent.objects.count() == 0
    assert not JournalTransaction.objects.filter(key__startswith="funding:x402:").exists()
    # A retry of the same authorization is refused: it was already used.
    assert _content(work.pk, HTTP_PAYMENT_SIGNATURE=signature).status_code == 409

    time_machine.move_to(recorded.created_at + payments.RECOVER_AFTER + timedelta(seconds=1))
    counts = payments.x402_payments_recover()

    assert counts == {"settled": 1, "confirmed": 1, "failed": 0}
    recovered = X402Payment.objects.get()
    assert recovered.status == "confirmed" and recovered.transaction_hash.startswith("0x")
    assert JournalTransaction.objects.filter(key=f"funding:x402:{recovered.transaction_hash}").count() == 1
    event = AccessEvent.objects.get()
    assert (event.paid_by_x402, event.price_minor, event.work_id) == (True, 25, work.pk)
    assert payments.x402_payments_recover() == {"settled": 0, "confirmed": 0, "failed": 0}


def test_a_payment_is_credited_only_after_the_configured_confirmations(published, settings) -> None:
    settings.CHAIN_CONFIRMATIONS = 3
    _, work, _, original = published

    paid = _content(work.pk, HTTP_PAYMENT_SIGNATURE=_sign(_content(work.pk)["PAYMENT-REQUIRED"]))

    assert paid.status_code == 200 and _bytes(paid) == original
    assert "Access-Receipt" not in paid
    payment = X402Payment.objects.get()
    assert payment.status == "settled"
    assert AccessEvent.objects.count() == 0
    assert payments.x402_payments_recover()["confirmed"] == 0
    assert not JournalTransaction.objects.filter(key__startswith="funding:x402:").exists()

    payments.chain().mine_blocks(2)
    assert payments.x402_payments_recover()["confirmed"] == 1

    payment.refresh_from_db()
    assert payment.status == "confirmed"
    assert AccessEvent.objects.get().paid_by_x402 is True


def _sdk_session():
    """An unmodified x402 SDK client (requests adapter) that pays in the test stablecoin."""
    import requests
    from x402.client import x402ClientSync
    from x402.http.clients.requests import wrapRequestsWithPayment
    from x402.mechanisms.evm.exact.register import register_exact_evm_client

    domain = payments.chain().token_domain()
    client = x402ClientSync()
    register_exact_evm_client(client, PAYER)
    # The SDK pays only in tokens it knows unless told: allow the platform's test stablecoin.
    client.set_spend_controls({"allowed_assets": [{"network": domain.network, "asset": domain.address}]})
    return wrapRequestsWithPayment(requests.Session(), client)


@pytest.mark.django_db(transaction=True)
def test_an_unmodified_x402_sdk_client_pays_for_a_content_url(live_server, settings) -> None:
    settings.CHAIN_CONFIRMATIONS = 1
    creator = factories.creator()
    work = factories.work(creator)
    original = factories.png_bytes(size=(120, 80), color=(5, 200, 5))
    asset = asset_upload(work=work, user=creator, data=original, filename="sdk.png").asset
    factories.offer(creator, work, uses={"ai-generate": 25})
    payments.chain().mint(PAYER.address, 1_000_000)

    response = _sdk_session().get(f"{live_server.url}/works/{work.pk}/content", timeout=60)

    assert response.status_code == 200, response.text[:500]
    assert hashlib.sha256(response.content).hexdigest() == asset.blob_id
    assert json.loads(base64.b64decode(response.headers["PAYMENT-RESPONSE"]))["success"] is True
    assert X402Payment.objects.get().status == "confirmed"


@pytest.fixture
def on_anvil(anvil_node, settings):
    from contracts.anvil import ANVIL_PRIVATE_KEYS

    settings.CHAIN_RPC_URL = anvil_node.rpc_url
    settings.CHAIN_PRIVATE_KEY = ANVIL_PRIVATE_KEYS[0]
    settings.CHAIN_DEPLOY_MISSING = True
    chain_client.reset_chain()
    yield
    chain_client.reset_chain()


@pytest.mark.anvil
@pytest.mark.django_db(transaction=True)
def test_an_unmodified_x402_sdk_client_pays_for_a_content_url_on_anvil(
    on_anvil, live_server, settings
) -> None:
    test_an_unmodified_x402_sdk_client_pays_for_a_content_url(live_server, settings)


def test_an_api_key_access_paid_by_x402_waits_for_confirmations_then_answers_its_receipt(
    published, settings, with_key
) -> None:
    settings.CHAIN_CONFIRMATIONS = 3
    _, work, _, _ = published
    vendor = factories.vendor()
    client = with_key(factories.key(vendor, "access"))
    body = {"work": work.pk, "use": "ai-generate", "territory": "US"}
    refused = client.post("/api/v1/access", body, format="json", HTTP_IDEMPOTENCY_KEY="pay-1")

    pending = client.post(
        "/api/v1/access",
        body,
        format="json",
        HTTP_IDEMPOTENCY_KEY="pay-1",
        HTTP_PAYMENT_SIGNATURE=_sign(refused["PAYMENT-REQUIRED"]),
    )

    assert refused.status_code == 402
    assert pending.status_code == 202 and pending.json()["status"] == "payment_pending_confirmation"
    assert json.loads(base64.b64decode(pending["PAYMENT-RESPONSE"]))["success"] is True
    assert AccessEvent.objects.count() == 0
    payments.chain().mine_blocks(2)
    assert payments.x402_payments_recover()["confirmed"] == 1
    answered = client.post("/api/v1/access", body, format="json", HTTP_IDEMPOTENCY_KEY="pay-1")
    assert answered.status_code == 200 and answered["Idempotent-Replayed"] == "true"
    event = AccessEvent.objects.get()
    assert (event.paid_by_x402, event.organisation_id) == (True, vendor.organisations.get().pk)
    assert answered.json()["access_id"] == str(event.access_id)
