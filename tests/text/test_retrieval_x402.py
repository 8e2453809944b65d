"""A retrieval paid with x402: a vendor with no balance is quoted the exact total of the passages chosen
(402, the quote pinned under its Idempotency-Key), pays that quote on chain, and receives exactly those
passages with a receipt; the money received funds the charge and each passage's revenue. A replay
charges nothing more; a payment for another amount, payee or quote is refused and changes nothing."""

from __future__ import annotations

import base64
import json
import math
import uuid
from datetime import timedelta
from typing import Any

import pytest
import x402.mechanisms.evm.exact.client as x402_client
import x402.schemas.payments as x402_payments
from eth_account import Account

from access import payments, receipts, signing
from access.models import Retrieval, RetrievalPassage, RetrievalQuote, X402Payment
from catalog.consent import consent_withdraw
from catalog.models import Work
from royalties.models import JournalTransaction, LedgerAccount, RevenueItem
from royalties.selectors import clearing_key, fee_key, payable_key, prepaid_available
from royalties.settlement import revenue_settle
from tests import factories
from tests.contracts.signing import new_key
from tests.text import samples
from tests.text.test_text_tracing import register_text

pytestmark = pytest.mark.django_db

PAYER = Account.from_key(new_key("retrieval x402 wallet"))
QUERY = "What happened to the fishing boat that did not come back to the harbour?"
# The test stablecoin has 6 decimals: one US cent is 10,000 base units.
BASE_UNITS_PER_CENT = 10_000
PAYER_FUNDS = 5_000_000


@pytest.fixture(autouse=True)
def confirmed_at_once(settings):
    """One confirmation: a payment is credited as soon as it is mined (one test asks for more)."""
    settings.CHAIN_CONFIRMATIONS = 1


@pytest.fixture
def market(with_key):
    """Two writers' texts priced per 1,000 tokens for ai-input (20 and 50 cents), and a vendor with an
    access key and no prepaid balance whose wallet holds at least 5 tUSD."""
    writer, scholar, vendor = factories.creator(), factories.creator(), factories.vendor()
    harbour = register_text(writer, samples.ARTICLE, uses={"ai-input": 0}, token_prices={"ai-input": 20})
    sheets = register_text(
        scholar, samples.OTHER, title="Spreadsheets", uses={"ai-input": 0}, token_prices={"ai-input": 50}
    )
    payments.chain().mint(PAYER.address, PAYER_FUNDS)
    return {
        "wallet": payments.chain().balance_of(PAYER.address),  # (the chain outlives each test)
        "writer": writer,
        "scholar": scholar,
        "organisation": vendor.organisations.get(),
        "client": with_key(factories.key(vendor, "access")),
        "price_per_1k": {harbour.pk: 20, sheets.pk: 50},
    }


def _retrieve(client, key: str, signature: str | None = None, **body: Any):
    fields = {"query": QUERY, "max_tokens": 400, "use": "ai-input", "territory": "GB"}
    fields.update(body)
    headers = {"HTTP_IDEMPOTENCY_KEY": key}
    if signature is not None:
        headers["HTTP_PAYMENT_SIGNATURE"] = signature
    return client.post("/api/v1/retrieve", fields, format="json", **headers)


def _required(response) -> dict[str, Any]:
    """The x402 requirement the 402 answered (PAYMENT-REQUIRED)."""
    document = json.loads(base64.b64decode(response["PAYMENT-REQUIRED"]))
    [accepts] = document["accepts"]
    return dict(accepts)


def _sign(requirement: dict[str, Any]) -> str:
    """An EIP-3009 authorization made by the x402 SDK's own client scheme for `requirement`."""
    requirements = x402_payments.PaymentRequirements.model_validate(requirement)
    payload = x402_payments.PaymentPayload(
        payload=x402_client.ExactEvmScheme(PAYER).create_payment_payload(requirements), accepted=requirements
    )
    return base64.b64encode(payload.model_dump_json(by_alias=True).encode()).decode()


def _nothing_recorded(organisation) -> tuple[int, ...]:
    return (
        Retrieval.objects.count(),
        RetrievalPassage.objects.count(),
        RevenueItem.objects.count(),
        X402Payment.objects.count(),
        JournalTransaction.objects.filter(key__startswith="funding:x402:").count(),
        prepaid_available(organisation=organisation, currency="USD"),
    )


def test_a_vendor_without_balance_is_quoted_pays_with_x402_and_receives_the_passages(market) -> None:
    client, organisation = market["client"], market["organisation"]
    chain = payments.chain()
    platform_before = chain.balance_of(chain.address)

    unpaid = _retrieve(client, "buy-1")

    assert unpaid.status_code == 402 and unpaid.json()["code"] == "insufficient_funds"
    quote = unpaid.json()["quote"]
    assert quote["passages"], "the query should find passages to sell"
    for passage in quote["passages"]:
        per_1k = market["price_per_1k"][passage["work"]]
        assert passage["price_per_1k_tokens_minor"] == per_1k
        assert passage["price_minor"] == math.ceil(passage["tokens"] * per_1k / 1000)
    total = sum(passage["price_minor"] for passage in quote["passages"])
    required = _required(unpaid)
    assert quote["total_minor"] == unpaid.json()["price_minor"] == total > 0
    assert required["amount"] == str(total * BASE_UNITS_PER_CENT)
    assert (required["payTo"], required["extra"]["quote"]) == (chain.address, quote["id"])
    assert unpaid.json()["x402"]["accepts"] == [required]
    assert _nothing_recorded(organisation) == (0, 0, 0, 0, 0, 0)

    paid = _retrieve(client, "buy-1", _sign(required))

    assert paid.status_code == 200, paid.content
    body = paid.json()
    settlement = json.loads(base64.b64decode(paid["PAYMENT-RESPONSE"]))
    assert settlement["success"] is True
    # Exactly the passages quoted, for exactly the total paid; their text only now.
    assert [(p["work"], p["tokens"], p["price_minor"]) for p in body["passages"]] == [
        (p["work"], p["tokens"], p["price_minor"]) for p in quote["passages"]
    ]
    assert body["total_minor"] == total
    for passage in body["passages"]:
        assert passage["text"] and passage["text"] not in unpaid.content.decode()
    claims = receipts.verify(body["receipt"], signing.public_keys())
    assert (claims["jti"], claims["total_minor"]) == (body["retrieval_id"], total)
    # The money moved on chain, from the wallet to the platform.
    assert chain.balance_of(PAYER.address) == market["wallet"] - total * BASE_UNITS_PER_CENT
    assert chain.balance_of(chain.address) == platform_before + total * BASE_UNITS_PER_CENT
    payment = X402Payment.objects.get()
    assert (payment.status, payment.price_minor, payment.transaction_hash) == (
        "confirmed",
        total,
        settlement["transaction"],
    )
    # The ledger: the money arrived from the x402 rail, funded the vendor and paid each passage.
    funding = JournalTransaction.objects.get(key=f"funding:x402:{payment.transaction_hash}")
    assert sorted(funding.entries.values_list("account__key", "amount_minor")) == sorted(
        [(clearing_key("x402", "USD"), -total), (f"vendor_prepaid:org:{organisation.pk}:USD", total)]
    )
    retrieval = Retrieval.objects.get()
    assert (retrieval.paid_by_x402, retrieval.total_minor) == (True, total)
    revenue = RevenueItem.objects.order_by("source_key")
    assert [(r.source_key, r.work_id, r.amount_minor) for r in revenue] == [
        (f"access:retrieval:{retrieval.retrieval_id}:{n}", p["work"], p["price_minor"])
        for n, p in enumerate(body["passages"])
    ]
    assert prepaid_available(organisation=organisation, currency="USD") == 0

    revenue_settle()

    def balance(key: str) -> int:
        return LedgerAccount.objects.filter(key=key).values_list("balance_minor", flat=True).first() or 0

    writers = balance(payable_key(market["writer"].pk, "USD")) + balance(
        payable_key(market["scholar"].pk, "USD")
    )
    assert writers > 0 and writers + balance(fee_key("USD")) == total
    assert balance(f"vendor_prepaid:org:{organisation.pk}:USD") == 0


def test_a_replayed_payment_or_key_charges_once_and_answers_the_same_bytes(market) -> None:
    client, organisation = market["client"], market["organisation"]
    signature = _sign(_required(_retrieve(client, "buy-2")))
    first = _retrieve(client, "buy-2", signature)
    assert first.status_code == 200
    wallet, recorded = payments.chain().balance_of(PAYER.address), _nothing_recorded(organisation)

    same_payment = _retrieve(client, "buy-2", signature)
    same_key = _retrieve(client, "buy-2")
    _retrieve(client, "buy-3")  # another quote, for the same request
    same_payment_other_key = _retrieve(client, "buy-3", signature)

    assert same_payment.status_code == same_key.status_code == 200
    assert same_payment.content == same_key.content == first.content
    assert same_payment["Idempotent-Replayed"] == "true" and "PAYMENT-RESPONSE" not in same_payment
    assert same_payment_other_key.status_code == 409
    assert same_payment_other_key.json()["code"] == "payment_replayed"
    assert payments.chain().balance_of(PAYER.address) == wallet
    assert _nothing_recorded(organisation) == recorded


def test_a_payment_of_a_lower_amount_is_refused_and_nothing_is_recorded(market) -> None:
    client, organisation = market["client"], market["organisation"]
    required = _required(_retrieve(client, "buy-4"))
    short = dict(required, amount=str(int(required["amount"]) - BASE_UNITS_PER_CENT))
    wallet = payments.chain().balance_of(PAYER.address)

    refused = _retrieve(client, "buy-4", _sign(short))

    assert refused.status_code == 402 and refused.json()["code"] == "payment_invalid"
    assert payments.chain().balance_of(PAYER.address) == wallet
    assert _nothing_recorded(organisation) == (0, 0, 0, 0, 0, 0)
    # The quote stands: the right amount still buys it.
    assert _retrieve(client, "buy-4", _sign(required)).status_code == 200


def test_a_payment_to_another_payee_is_refused_and_nothing_is_recorded(market) -> None:
    client, organisation = market["client"], market["organisation"]
    required = _required(_retrieve(client, "buy-5"))
    elsewhere = dict(required, payTo=Account.from_key(new_key("someone else")).address)

    refused = _retrieve(client, "buy-5", _sign(elsewhere))

    assert refused.status_code == 402 and refused.json()["code"] == "payment_invalid"
    assert payments.chain().balance_of(PAYER.address) == market["wallet"]
    assert _nothing_recorded(organisation) == (0, 0, 0, 0, 0, 0)


def test_a_payment_made_for_another_quote_is_refused_and_nothing_is_recorded(market) -> None:
    client, organisation = market["client"], market["organisation"]
    for_a = _required(_retrieve(client, "buy-a"))
    for_b = _required(_retrieve(client, "buy-b"))
    assert for_a["amount"] == for_b["amount"] and for_a["extra"]["quote"] != for_b["extra"]["quote"]

    refused = _retrieve(client, "buy-b", _sign(for_a))

    assert refused.status_code == 402 and refused.json()["code"] == "payment_for_another_quote"
    assert payments.chain().balance_of(PAYER.address) == market["wallet"]
    assert _nothing_recorded(organisation) == (0, 0, 0, 0, 0, 0)


def test_the_quote_pins_the_passages_when_the_catalogue_changes_before_the_payment(market) -> None:
    client = market["client"]
    unpaid = _retrieve(client, "buy-6")
    quoted = [(p["work"], p["price_minor"]) for p in unpaid.json()["quote"]["passages"]]
    # A new text that answers the query better is registered before the vendor pays.
    newcomer = register_text(
        factories.creator(),
        f"{QUERY} Nothing: the fishing boat came back to the harbour at dawn, towing another boat.",
        title="Dawn",
        uses={"ai-input": 0},
        token_prices={"ai-input": 90},
    )
    asked_again = _retrieve(client, "buy-6")

    paid = _retrieve(client, "buy-6", _sign(_required(unpaid)))

    assert asked_again.status_code == 402 and asked_again.json()["quote"] == unpaid.json()["quote"]
    assert paid.status_code == 200
    assert [(p["work"], p["price_minor"]) for p in paid.json()["passages"]] == quoted
    assert newcomer.pk not in {work for work, _ in quoted}
    # A fresh request does find the newcomer: the quote, not a new selection, decided what was sold.
    fresh = _retrieve(client, "buy-7")
    assert newcomer.pk in {p["work"] for p in fresh.json()["quote"]["passages"]}


def test_an_expired_quote_cannot_be_paid_and_a_new_request_quotes_again(market, time_machine) -> None:
    client, organisation = market["client"], market["organisation"]
    unpaid = _retrieve(client, "buy-8")
    signature = _sign(_required(unpaid))
    quote = RetrievalQuote.objects.get()
    time_machine.move_to(quote.expires_at + timedelta(seconds=1))

    late = _retrieve(client, "buy-8", signature)
    again = _retrieve(client, "buy-8")

    assert late.status_code == 402 and late.json()["code"] == "quote_expired"
    assert payments.chain().balance_of(PAYER.address) == market["wallet"]
    assert _nothing_recorded(organisation) == (0, 0, 0, 0, 0, 0)
    assert again.status_code == 402 and again.json()["quote"]["id"] != unpaid.json()["quote"]["id"]
    assert RetrievalQuote.objects.count() == 1


@pytest.mark.parametrize("confirmed_by", ["the same request", "the recovery job"])
def test_a_paid_retrieval_waits_for_confirmations_then_answers_its_passages(
    market, settings, confirmed_by
) -> None:
    settings.CHAIN_CONFIRMATIONS = 3
    client, organisation = market["client"], market["organisation"]
    unpaid = _retrieve(client, "buy-9")

    pending = _retrieve(client, "buy-9", _sign(_required(unpaid)))
    still_pending = _retrieve(client, "buy-9")

    assert pending.status_code == still_pending.status_code == 202
    assert pending.json()["status"] == "payment_pending_confirmation"
    assert json.loads(base64.b64decode(pending["PAYMENT-RESPONSE"]))["success"] is True
    assert (Retrieval.objects.count(), RevenueItem.objects.count()) == (0, 0)
    assert X402Payment.objects.get().status == "settled"

    payments.chain().mine_blocks(2)
    if confirmed_by == "the recovery job":
        assert payments.x402_payments_recover()["confirmed"] == 1
    answered = _retrieve(client, "buy-9")

    assert answered.status_code == 200
    assert answered.json()["total_minor"] == unpaid.json()["quote"]["total_minor"]
    assert X402Payment.objects.get().status == "confirmed"
    assert Retrieval.objects.get().paid_by_x402 is True
    assert RevenueItem.objects.count() == len(unpaid.json()["quote"]["passages"])
    assert prepaid_available(organisation=organisation, currency="USD") == 0
    assert payments.x402_payments_recover()["confirmed"] == 0  # nothing left to credit


def test_a_use_withdrawn_after_the_quote_refuses_the_payment_before_it_is_settled(market) -> None:
    client, organisation = market["client"], market["organisation"]
    unpaid = _retrieve(client, "buy-10")
    withdrawn = Work.objects.get(pk=unpaid.json()["quote"]["passages"][0]["work"])
    consent_withdraw(work=withdrawn, user=withdrawn.created_by, use_class="ai-input")

    refused = _retrieve(client, "buy-10", _sign(_required(unpaid)))

    assert refused.status_code == 403 and refused.json()["code"] == "consent_withdrawn"
    assert "passages" not in refused.json()
    assert _nothing_recorded(organisation) == (0, 0, 0, 0, 0, 0)
    assert payments.chain().balance_of(PAYER.address) == market["wallet"]  # no money moved


def test_a_use_withdrawn_while_the_payment_confirms_keeps_the_money_on_the_balance(market, settings) -> None:
    settings.CHAIN_CONFIRMATIONS = 3
    client, organisation = market["client"], market["organisation"]
    unpaid = _retrieve(client, "buy-11")
    total = unpaid.json()["quote"]["total_minor"]
    pending = _retrieve(client, "buy-11", _sign(_required(unpaid)))
    assert pending.status_code == 202  # settled on-chain, not yet deep enough
    withdrawn = Work.objects.get(pk=unpaid.json()["quote"]["passages"][0]["work"])
    consent_withdraw(work=withdrawn, user=withdrawn.created_by, use_class="ai-input")
    payments.chain().mine_blocks(2)

    refused = _retrieve(client, "buy-11")

    assert refused.status_code == 403 and refused.json()["code"] == "consent_withdrawn"
    payment = X402Payment.objects.get()
    assert payment.status == "confirmed"
    assert JournalTransaction.objects.filter(key=f"funding:x402:{payment.transaction_hash}").count() == 1
    assert prepaid_available(organisation=organisation, currency="USD") == total
    assert (Retrieval.objects.count(), RevenueItem.objects.count()) == (0, 0)


def test_an_unmodified_x402_sdk_client_pays_for_a_retrieval(live_server, with_key) -> None:
    import requests
    from x402.client import x402ClientSync
    from x402.http.clients.requests import wrapRequestsWithPayment
    from x402.mechanisms.evm.exact.register import register_exact_evm_client

    register_text(factories.creator(), samples.ARTICLE, uses={"ai-input": 0}, token_prices={"ai-input": 20})
    vendor = factories.vendor()
    secret = factories.key(vendor, "access")
    payments.chain().mint(PAYER.address, PAYER_FUNDS)
    wallet = payments.chain().balance_of(PAYER.address)
    domain = payments.chain().token_domain()
    sdk = x402ClientSync()
    register_exact_evm_client(sdk, PAYER)
    sdk.set_spend_controls({"allowed_assets": [{"network": domain.network, "asset": domain.address}]})
    session = wrapRequestsWithPayment(requests.Session(), sdk)

    response = session.post(
        f"{live_server.url}/api/v1/retrieve",
        json={"query": QUERY, "max_tokens": 300, "use": "ai-input", "territory": "GB"},
        headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": str(uuid.uuid4())},
        timeout=120,
    )

    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert body["passages"] and body["total_minor"] > 0
    assert payments.chain().balance_of(PAYER.address) == wallet - body["total_minor"] * BASE_UNITS_PER_CENT
    assert Retrieval.objects.get().paid_by_x402 is True
    assert X402Payment.objects.get().status == "confirmed"
