"""x402: pay for one access on-chain, in the test stablecoin, settled by x402's own facilitator classes
running in this process over our chain module (no external facilitator service).

The requirement names the token, the network (`eip155:<chain id>`), the amount in token base units and the
platform's address. A request with `PAYMENT-SIGNATURE` (an EIP-3009 authorization) is paid in four steps:

1. record: the authorization, payer, nonce, amount and what it buys are written and committed BEFORE
   anything else (write-ahead), once per (payer, nonce): a replay is refused here;
2. verify and settle with the facilitator; the row becomes `settled` with its transaction hash;
3. confirm: once the transaction is CHAIN_CONFIRMATIONS deep, in one database transaction the vendor's
   prepaid balance is funded from the x402 clearing account, the access is charged from it (the ledger
   then credits the creators at settlement) and the row becomes `confirmed`;
4. recover (a periodic job): a row left `recorded` by a crash after step 2 is found on chain (the token
   keeps which authorizations were used) and carried on; a row left `settled` is confirmed once deep.

A payer with no account (the keyless GET of a content URL) is an organisation of its own, made on first
payment, named after the wallet.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from eth_account import Account
from eth_utils import to_checksum_address

from access import services
from access.models import AccessEvent, X402Payment, X402PaymentStatus
from accounts.models import ApiKey, Organisation, User
from accounts.services import user_create
from common import clock
from common.money import Money
from common.problems import ApiError, Conflict
from contracts.chain import in_process_funded_keys
from royalties.rails import chain as chain_rail
from royalties.services import prepaid_fund

logger = logging.getLogger(__name__)

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


def payment_required(
    *,
    price_minor: int,
    currency: str,
    access: services.AccessRequest,
    url: str | None = None,
    mime_type: str = "application/json",
    error: str = "insufficient prepaid balance",
) -> dict[str, Any]:
    """The x402 PaymentRequired document for one access (the body of the PAYMENT-REQUIRED header)."""
    accepts = requirements_for(price_minor, currency)
    return {
        "x402Version": X402_VERSION,
        "error": error,
        "resource": {
            "url": url or f"{settings.SITE_URL}/api/v1/access",
            "description": f"{access.use_class} use of work {access.work_id}",
            "mimeType": mime_type,
        },
        "accepts": [accepts] if accepts else [],
    }


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


@dataclass(frozen=True)
class PaidAccess:
    payment: X402Payment
    response_header: str
    # The charged access; None while the payment waits for CHAIN_CONFIRMATIONS (a later request with the
    # same Idempotency-Key, or the confirm job, completes it).
    result: services.AccessResult | None


def _decode(payment_header: str) -> Any:
    from x402.schemas.payments import PaymentPayload

    try:
        return PaymentPayload.model_validate(json.loads(base64.b64decode(payment_header, validate=True)))
    except (binascii.Error, ValueError) as exc:
        raise PaymentRefused(f"PAYMENT-SIGNATURE is not a valid x402 payload: {exc}") from None


def wallet_organisation(*, payer: str) -> tuple[Organisation, User]:
    """The organisation (and its one member) standing for a wallet that pays with no account."""
    address = payer.lower()
    username = f"x402-{address}"
    user = User.objects.filter(username=username).first()
    if user is None:
        try:
            with transaction.atomic():
                user = user_create(
                    username=username,
                    email=f"{address}@wallets.invalid",
                    password=None,
                    role="vendor",
                    display_name=f"Wallet {payer}",
                    organisation_name=f"x402 wallet {address}",
                )
        except (IntegrityError, ApiError):  # made at the same moment by another payment
            user = User.objects.get(username=username)
    organisation = Organisation.objects.filter(membership__user=user).order_by("pk").first()
    assert organisation is not None
    return organisation, user


def _authorization_of(payload: Any) -> tuple[str, str]:
    authorization = payload.payload.get("authorization", {}) if isinstance(payload.payload, dict) else {}
    payer, nonce = str(authorization.get("from", "")), str(authorization.get("nonce", ""))
    if not payer or not nonce:
        raise PaymentRefused("The payment names no payer or nonce.")
    return payer, nonce


def _refuse_replay(payload: Any) -> None:
    payer, nonce = _authorization_of(payload)
    if X402Payment.objects.filter(payer__iexact=payer, nonce=nonce).exists():
        raise Conflict("This payment authorization was already used.", code="payment_replayed")


def _record(
    *,
    organisation: Organisation,
    payload: Any,
    requirements: dict[str, Any],
    request: services.AccessRequest,
    price: Money,
    idempotency_key: str,
) -> X402Payment:
    """Step 1, committed on its own: the authorization on record before anyone settles it."""
    payer, nonce = _authorization_of(payload)
    try:
        head = chain().block_number()
    except Exception:  # the head only narrows recovery's search; without it recovery reads from block 0
        head = None
    try:
        with transaction.atomic():  # its own commit: callers hold no transaction open here
            return X402Payment.objects.create(
                payer=payer,
                nonce=nonce,
                organisation=organisation,
                amount_base_units=Decimal(requirements["amount"]),
                status=X402PaymentStatus.RECORDED,
                authorization=json.loads(payload.model_dump_json(by_alias=True)),
                requirements=requirements,
                work_id=request.work_id,
                use_class=request.use_class,
                territory=request.territory,
                price_minor=price.amount_minor,
                currency=price.currency,
                idempotency_key=idempotency_key,
                recorded_at_block=head,
            )
    except IntegrityError:
        raise Conflict("This payment authorization was already used.", code="payment_replayed") from None


def _mark_settled(payment: X402Payment, transaction_hash: str) -> None:
    """Step 2's write: the settlement's transaction hash and block."""
    receipt = chain().get_receipt(transaction_hash)
    payment.transaction_hash = transaction_hash
    payment.block_number = receipt.block_number if receipt is not None else None
    payment.status = X402PaymentStatus.SETTLED
    X402Payment.objects.filter(pk=payment.pk, status=X402PaymentStatus.RECORDED).update(
        transaction_hash=payment.transaction_hash, block_number=payment.block_number, status=payment.status
    )


def _fail(payment: X402Payment, reason: str) -> None:
    X402Payment.objects.filter(pk=payment.pk, status=X402PaymentStatus.RECORDED).update(
        status=X402PaymentStatus.FAILED, error=reason[:300]
    )


def _verify(payload: Any, requirements: dict[str, Any]) -> None:
    """The facilitator's checks, before anything is written: a forged or short payment changes nothing."""
    from x402.schemas.payments import PaymentRequirements

    verified = _facilitator().verify(payload, PaymentRequirements.model_validate(requirements))
    if not verified.is_valid:
        raise PaymentRefused(f"The payment is not valid: {verified.invalid_reason}.")


def _settle(payment: X402Payment) -> str:
    """Step 2: settle the recorded payment; the PAYMENT-RESPONSE header's value."""
    from x402.schemas.payments import PaymentPayload, PaymentRequirements

    payload = PaymentPayload.model_validate(payment.authorization)
    requirements = PaymentRequirements.model_validate(payment.requirements)
    settled = _facilitator().settle(payload, requirements)
    if not settled.success:
        # The transaction may still have been sent (a timeout waiting for it looks the same): the row stays
        # `recorded` and recovery asks the token whether the authorization was used.
        X402Payment.objects.filter(pk=payment.pk).update(error=f"not settled: {settled.error_reason}"[:300])
        raise PaymentRefused(f"The payment did not settle: {settled.error_reason}.", code="payment_failed")
    _mark_settled(payment, str(settled.transaction))
    return base64.b64encode(settled.model_dump_json(by_alias=True).encode()).decode()


def _deep_enough(payment: X402Payment) -> bool:
    if payment.block_number is None:
        return False
    depth = chain().block_number() - int(payment.block_number) + 1
    return depth >= int(settings.CHAIN_CONFIRMATIONS)


def x402_confirm(*, payment: X402Payment, api_key: ApiKey | None = None) -> services.AccessResult | None:
    """Step 3: when the settlement is CHAIN_CONFIRMATIONS deep, fund the payer's prepaid balance and
    charge the access, in one transaction, once. The access (None while not yet deep enough)."""
    if payment.status == X402PaymentStatus.CONFIRMED:
        return _charged(payment)
    if payment.status != X402PaymentStatus.SETTLED or not _deep_enough(payment):
        return None
    organisation = payment.organisation
    licensee = api_key.user if api_key is not None else organisation.members.order_by("pk").first()
    request = services.AccessRequest(
        work_id=int(payment.work_id or 0), use_class=payment.use_class, territory=payment.territory
    )
    with transaction.atomic():
        locked = X402Payment.objects.select_for_update().get(pk=payment.pk)
        if locked.status == X402PaymentStatus.CONFIRMED:
            return _charged(locked)
        prepaid_fund(
            organisation=organisation,
            amount=Money(payment.price_minor, payment.currency),
            external_ref=payment.transaction_hash,
            rail="x402",
        )
        refusal: ApiError | None = None
        try:
            with transaction.atomic():
                result: services.AccessResult | None = services.access_request(
                    organisation=organisation,
                    api_key=api_key,
                    idempotency_key=payment.idempotency_key,
                    request=request,
                    paid_by_x402=True,
                    licensee=licensee,
                )
        except ApiError as exc:
            # Refused since it was priced (terms, consent): the money stays on the payer's balance.
            result, refusal = None, exc
            locked.error = str(exc.detail)[:300]
        locked.status = X402PaymentStatus.CONFIRMED
        locked.confirmed_at = clock.now()
        locked.save(update_fields=["status", "confirmed_at", "error"])
    payment.status = X402PaymentStatus.CONFIRMED
    if refusal is not None:
        raise refusal
    return result


def _charged(payment: X402Payment) -> services.AccessResult | None:
    event = AccessEvent.objects.filter(
        organisation_id=payment.organisation_id, idempotency_key=payment.idempotency_key
    ).first()
    if event is None:
        return None
    return services.AccessResult(body=bytes(event.response_body), replayed=True, event_id=event.pk)


def x402_pay(
    *,
    organisation: Organisation,
    api_key: ApiKey | None,
    request: services.AccessRequest,
    payment_header: str,
    idempotency_key: str,
    payment: Any = None,
) -> PaidAccess:
    """Record (write-ahead), settle and, when deep enough, confirm an x402 payment for one access.

    Invariants: the payment is on record before it is settled; it funds the prepaid balance once (keyed
    by its transaction hash) and the access once (keyed by the Idempotency-Key); a replayed
    authorization changes nothing (409)."""
    price = services.access_quote(organisation=organisation, request=request)
    wanted = requirements_for(price.amount_minor, price.currency)
    if wanted is None:
        raise PaymentRefused("This access cannot be paid with x402.", code="payment_not_accepted")
    payload = payment if payment is not None else _decode(payment_header)
    _refuse_replay(payload)
    _verify(payload, wanted)
    recorded = _record(
        organisation=organisation,
        payload=payload,
        requirements=wanted,
        request=request,
        price=price,
        idempotency_key=idempotency_key,
    )
    header = _settle(recorded)
    return PaidAccess(
        payment=recorded, response_header=header, result=x402_confirm(payment=recorded, api_key=api_key)
    )


def payer_of(payment_header: str) -> tuple[Any, str]:
    """The decoded payload and its payer's address (for a keyless payment, which names the organisation)."""
    payload = _decode(payment_header)
    authorization = payload.payload.get("authorization", {}) if isinstance(payload.payload, dict) else {}
    payer = str(authorization.get("from", ""))
    if not payer.startswith("0x") or len(payer) != 42:
        raise PaymentRefused("The payment names no payer.")
    return payload, payer


# Recovery --------------------------------------------------------------------------------------------

RECOVER_AFTER = timedelta(seconds=60)


def _find_settlement(payment: X402Payment) -> str | None:
    """The transaction that used this authorization, from the token's AuthorizationUsed events."""
    client = chain()
    start = int(payment.recorded_at_block or 0)
    events = client.token.events.AuthorizationUsed.get_logs(
        from_block=start,
        to_block=client.block_number(),
        argument_filters={"authorizer": to_checksum_address(payment.payer)},
    )
    for event in events:
        if "0x" + bytes(event["args"]["nonce"]).hex() == payment.nonce.lower():
            return "0x" + bytes(event["transactionHash"]).hex().removeprefix("0x")
    return None


def x402_payments_recover() -> dict[str, int]:
    """Carry on every payment a crash or a slow chain left behind: `recorded` rows whose authorization the
    token shows as used are marked settled (with the transaction found on chain); `settled` rows are
    confirmed once deep. Idempotent."""
    counts = {"settled": 0, "confirmed": 0, "failed": 0}
    stale = clock.now() - RECOVER_AFTER
    for payment in X402Payment.objects.filter(status=X402PaymentStatus.RECORDED, created_at__lte=stale):
        nonce = bytes.fromhex(payment.nonce.removeprefix("0x"))
        used = chain().token.functions.authorizationState(to_checksum_address(payment.payer), nonce).call()
        if used:
            found = _find_settlement(payment)
            if found is not None:
                _mark_settled(payment, found)
                counts["settled"] += 1
        elif _authorization_expired(payment):
            _fail(payment, "never settled; the authorization has expired")
            counts["failed"] += 1
    for payment in X402Payment.objects.filter(status=X402PaymentStatus.SETTLED).select_related(
        "organisation"
    ):
        try:
            if x402_confirm(payment=payment) is not None:
                counts["confirmed"] += 1
        except ApiError as exc:  # the access is refused now (terms, consent): the money stays on the balance
            logger.warning("x402 payment %s confirmed without an access: %s", payment.pk, exc.detail)
    return counts


def _authorization_expired(payment: X402Payment) -> bool:
    authorization = payment.authorization.get("payload", {}).get("authorization", {})
    valid_before = int(authorization.get("validBefore", 0) or 0)
    return valid_before > 0 and valid_before < clock.now().timestamp()


def new_idempotency_key() -> str:
    return f"x402:{uuid.uuid4()}"
