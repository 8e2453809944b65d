"""x402: pay for one access on-chain, in the test stablecoin, settled by x402's own facilitator classes
running in this process over our chain module (no external facilitator service).

The requirement names the token, the network (`eip155:<chain id>`), the amount in token base units and the
platform's address. A retry with `PAYMENT-SIGNATURE` (an EIP-3009 authorization) is verified, settled on
chain, recorded once per (payer, nonce), and credited to the vendor's prepaid balance, from which the
access is then charged as usual. A replayed authorization is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from eth_account import Account

from access import services
from access.models import X402Payment
from accounts.models import ApiKey, Organisation
from common.problems import ApiError, Conflict
from contracts.chain import in_process_funded_keys
from royalties.rails import chain as chain_rail
from royalties.services import prepaid_fund

X402_VERSION = 2
# The test stablecoin has 6 decimals and is pegged to USD: one cent is 10,000 base units.
TOKEN_DECIMALS = 6
_BASE_UNITS_PER_CENT = 10 ** (TOKEN_DECIMALS - 2)
PAYABLE_CURRENCIES = {"USD"}


class PaymentRefused(ApiError):
    status_code = 402
    default_code = "payment_invalid"


# One Chain per process, shared with the payout rail (royalties sits below access, so it holds it).
chain = chain_rail.chain
reset_chain = chain_rail.reset_chain


def _platform_private_key() -> str:
    key = getattr(settings, "CHAIN_PRIVATE_KEY", "") or ""
    if key:
        return str(key)
    return "0x" + in_process_funded_keys()[0].hex()


def requirements_for(price_minor: int, currency: str) -> dict[str, Any] | None:
    if currency not in PAYABLE_CURRENCIES or price_minor <= 0:
        return None
    domain = chain().token_domain()
    return {
        "scheme": "exact",
        "network": domain.network,
        "asset": domain.address,
        "amount": str(price_minor * _BASE_UNITS_PER_CENT),
        "payTo": chain().address,
        "maxTimeoutSeconds": 300,
        "extra": {"name": domain.name, "version": domain.version},
    }


def payment_required(*, price_minor: int, currency: str, access: services.AccessRequest) -> dict[str, Any]:
    """The x402 PaymentRequired document for one access (the body of the PAYMENT-REQUIRED header)."""
    accepts = requirements_for(price_minor, currency)
    return {
        "x402Version": X402_VERSION,
        "error": "insufficient prepaid balance",
        "resource": {
            "url": f"{settings.SITE_URL}/api/v1/access",
            "description": f"{access.use_class} use of work {access.work_id}",
            "mimeType": "application/json",
        },
        "accepts": [accepts] if accepts else [],
    }


@dataclass(frozen=True)
class Settlement:
    payment: X402Payment
    response_header: str


def _facilitator() -> Any:
    """x402's EVM facilitator, signing and sending through our chain's web3 connection."""
    import x402.mechanisms.evm.exact.facilitator as exact
    from x402.mechanisms.evm.signers import FacilitatorWeb3Signer

    class ChainSigner(FacilitatorWeb3Signer):
        def __init__(self, w3: Any, private_key: str) -> None:
            # The parent builds its own HTTP connection; ours may be the in-process EVM, so set the same
            # state around the connection we already have.
            self._account = Account.from_key(private_key)
            self._w3 = w3
            self._confirmation_timeout_seconds = 30.0
            self._gas_limit = 300_000
            self._chain_id = None
            self._nonce_lock = threading.Lock()
            self._next_nonce = None

    return exact.ExactEvmScheme(ChainSigner(chain().w3, _platform_private_key()))


def x402_pay(
    *, organisation: Organisation, api_key: ApiKey, request: services.AccessRequest, payment_header: str
) -> Settlement:
    """Verify and settle an x402 payment for this access, record it once and credit the prepaid balance."""
    from x402.schemas.payments import PaymentPayload, PaymentRequirements

    price = services.access_quote(organisation=organisation, request=request)
    wanted = requirements_for(price.amount_minor, price.currency)
    if wanted is None:
        raise PaymentRefused("This access cannot be paid with x402.", code="payment_not_accepted")
    try:
        payload = PaymentPayload.model_validate(json.loads(base64.b64decode(payment_header, validate=True)))
    except (binascii.Error, ValueError) as exc:
        raise PaymentRefused(f"PAYMENT-SIGNATURE is not a valid x402 payload: {exc}") from None
    requirements = PaymentRequirements.model_validate(wanted)
    authorization = payload.payload.get("authorization", {}) if isinstance(payload.payload, dict) else {}
    payer, nonce = str(authorization.get("from", "")), str(authorization.get("nonce", ""))
    if X402Payment.objects.filter(payer__iexact=payer, nonce=nonce).exists():
        raise Conflict("This payment authorization was already used.", code="payment_replayed")
    facilitator = _facilitator()
    verified = facilitator.verify(payload, requirements)
    if not verified.is_valid:
        raise PaymentRefused(f"The payment is not valid: {verified.invalid_reason}.")
    settled = facilitator.settle(payload, requirements)
    if not settled.success:
        raise PaymentRefused(f"The payment did not settle: {settled.error_reason}.", code="payment_failed")
    try:
        with transaction.atomic():
            payment = X402Payment.objects.create(
                payer=payer,
                nonce=nonce,
                organisation=organisation,
                amount_base_units=Decimal(wanted["amount"]),
                transaction_hash=settled.transaction,
            )
            prepaid_fund(
                organisation=organisation, amount=price, external_ref=settled.transaction, rail="x402"
            )
    except IntegrityError:
        raise Conflict("This payment authorization was already used.", code="payment_replayed") from None
    header = base64.b64encode(settled.model_dump_json(by_alias=True).encode()).decode()
    return Settlement(payment=payment, response_header=header)
