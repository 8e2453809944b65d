"""x402 end to end on the in-process chain: 402, a signed EIP-3009 authorization, 200, replay refused."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import x402.mechanisms.evm.exact.client as x402_client
import x402.schemas.payments as x402_payments
from eth_account import Account

from access import payments
from access.models import AccessEvent, X402Payment
from royalties import chain_client
from royalties.selectors import prepaid_available
from tests import factories
from tests.contracts.signing import new_key

pytestmark = pytest.mark.django_db

PAYER = Account.from_key(new_key("x402 vendor wallet"))


def _access(client, work_id: int, **headers: str):
    return client.post(
        "/api/v1/access",
        {"work": work_id, "use": "ai-generate", "territory": "US"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=headers.pop("key", str(uuid.uuid4())),
        **headers,
    )


def _sign(required_header: str) -> str:
    required = json.loads(base64.b64decode(required_header))
    requirements = x402_payments.PaymentRequirements.model_validate(required["accepts"][0])
    payload = x402_payments.PaymentPayload(
        payload=x402_client.ExactEvmScheme(PAYER).create_payment_payload(requirements), accepted=requirements
    )
    return base64.b64encode(payload.model_dump_json(by_alias=True).encode()).decode()


@pytest.fixture(autouse=True)
def confirmed_at_once(settings):
    """One confirmation: the payment is credited as soon as it is mined (deferred crediting has its own
    tests in test_content_x402.py)."""
    settings.CHAIN_CONFIRMATIONS = 1


@pytest.fixture
def on_anvil(anvil_node, settings):
    """Point the platform's chain at a fresh anvil node (contracts deployed on first use)."""
    from contracts.anvil import ANVIL_PRIVATE_KEYS

    settings.CHAIN_RPC_URL = anvil_node.rpc_url
    settings.CHAIN_PRIVATE_KEY = ANVIL_PRIVATE_KEYS[0]
    settings.CHAIN_DEPLOY_MISSING = True
    chain_client.reset_chain()
    yield
    chain_client.reset_chain()


@pytest.mark.anvil
def test_an_access_is_paid_with_x402_on_an_anvil_node(on_anvil, with_key) -> None:
    test_an_access_is_paid_on_chain_with_x402_once(with_key)


def test_an_access_is_paid_on_chain_with_x402_once(with_key) -> None:
    creator, vendor = factories.creator(), factories.vendor()
    work = factories.work(creator)
    factories.offer(creator, work, uses={"ai-generate": 25})
    client = with_key(factories.key(vendor, "access"))
    chain = payments.chain()
    chain.mint(PAYER.address, 1_000_000)  # 1 tUSD
    platform_before = chain.balance_of(chain.address)

    refused = _access(client, work.pk)
    assert refused.status_code == 402
    signature = _sign(refused["PAYMENT-REQUIRED"])

    paid = _access(client, work.pk, HTTP_PAYMENT_SIGNATURE=signature)

    assert paid.status_code == 200, paid.content
    settlement = json.loads(base64.b64decode(paid["PAYMENT-RESPONSE"]))
    assert settlement["success"] is True and settlement["transaction"].startswith("0x")
    assert chain.balance_of(PAYER.address) == 1_000_000 - 250_000
    assert chain.balance_of(chain.address) == platform_before + 250_000
    event = AccessEvent.objects.get()
    assert (event.paid_by_x402, event.price_minor) == (True, 25)
    organisation = vendor.organisations.get()
    assert prepaid_available(organisation=organisation, currency="USD") == 0

    replayed = _access(client, work.pk, HTTP_PAYMENT_SIGNATURE=signature)

    assert replayed.status_code == 409 and replayed.json()["code"] == "payment_replayed"
    assert X402Payment.objects.count() == 1 and AccessEvent.objects.count() == 1
    assert chain.balance_of(PAYER.address) == 750_000


def test_a_forged_payment_is_refused_and_changes_nothing(with_key) -> None:
    creator, vendor = factories.creator(), factories.vendor()
    work = factories.work(creator)
    factories.offer(creator, work, uses={"ai-generate": 25})
    client = with_key(factories.key(vendor, "access"))
    signature = _sign(_access(client, work.pk)["PAYMENT-REQUIRED"])
    payload = json.loads(base64.b64decode(signature))
    payload["payload"]["authorization"]["value"] = "1"  # pay less than signed for
    forged = base64.b64encode(json.dumps(payload).encode()).decode()

    response = _access(client, work.pk, HTTP_PAYMENT_SIGNATURE=forged)

    assert response.status_code == 402 and response.json()["code"] == "payment_invalid"
    assert X402Payment.objects.count() == 0 and AccessEvent.objects.count() == 0
