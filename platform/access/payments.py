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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from eth_account import Account
from eth_utils import to_checksum_address

from access import services
from access.models import AccessEvent, Retrieval, RetrievalQuote, X402Payment, X402PaymentStatus
from accounts.models import ApiKey, Organisation, User
from accounts.services import user_create
from common import clock
from common.money import Money
from common.problems import ApiError, Conflict
from contracts.chain import in_process_funded_keys
from royalties.chain_client import BASE_UNITS_PER_MINOR, chain
from royalties.funding import prepaid_fund

logger = logging.getLogger(__name__)

X402_VERSION = 2
PAYABLE_CURRENCIES = {"USD"}


class PaymentRefused(ApiError):
    status_code = 402
    default_code = "payment_invalid"


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
        "amount": str(price_minor * BASE_UNITS_PER_MINOR),
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
    return _payment_required_document(
        requirements_for(price_minor, currency),
        url=url or f"{settings.SITE_URL}/api/v1/access",
        description=f"{access.use_class} use of work {access.work_id}",
        mime_type=mime_type,
        error=error,
    )


def _payment_required_document(
    accepts: dict[str, Any] | None, *, url: str, description: str, mime_type: str, error: str
) -> dict[str, Any]:
    return {
        "x402Version": X402_VERSION,
        "error": error,
        "resource": {"url": url, "description": description, "mimeType": mime_type},
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
    price: Money,
    idempotency_key: str,
    buys: dict[str, Any],
) -> X402Payment:
    """Step 1, committed on its own: the authorization on record before anyone settles it. `buys`: what
    it pays for (an access's work, use and territory, or a retrieval's quote, use and territory)."""
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
                price_minor=price.amount_minor,
                currency=price.currency,
                idempotency_key=idempotency_key,
                recorded_at_block=head,
                **buys,
            )
    except IntegrityError:
        replayed = X402Payment.objects.filter(payer__iexact=payer, nonce=nonce).exists()
        if not replayed and buys.get("quote") is not None:
            raise _quote_taken() from None
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
    if payment.quote_id is not None:
        return _confirm_retrieval(payment=payment, api_key=api_key)
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
        result, refusal = _charge_confirming(
            locked,
            lambda: services.access_request(
                organisation=organisation,
                api_key=api_key,
                idempotency_key=payment.idempotency_key,
                request=request,
                paid_by_x402=True,
                licensee=licensee,
            ),
        )
    payment.status = X402PaymentStatus.CONFIRMED
    if refusal is not None:
        raise refusal
    return result


def _charge_confirming(
    locked: X402Payment, charge: Callable[[], services.AccessResult | None]
) -> tuple[services.AccessResult | None, ApiError | None]:
    """Inside the transaction that funded the balance from the payment: charge what it pays for (in a
    savepoint) and mark the payment confirmed either way. A refusal since it was priced (terms, consent,
    a revoked licence, a spend cap) leaves the money received on the payer's prepaid balance; the caller
    raises it once the confirmation is committed."""
    result: services.AccessResult | None = None
    refusal: ApiError | None = None
    try:
        with transaction.atomic():
            result = charge()
    except ApiError as exc:
        refusal = exc
        locked.error = str(exc.detail)[:300]
    locked.status = X402PaymentStatus.CONFIRMED
    locked.confirmed_at = clock.now()
    locked.save(update_fields=["status", "confirmed_at", "error"])
    return result, refusal


def _charged(payment: X402Payment) -> services.AccessResult | None:
    event = AccessEvent.objects.filter(
        organisation_id=payment.organisation_id, idempotency_key=payment.idempotency_key
    ).first()
    if event is None:
        return None
    return services.AccessResult.stored(bytes(event.response_body), replayed=True, event_id=event.pk)


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
        price=price,
        idempotency_key=idempotency_key,
        buys={"work_id": request.work_id, "use_class": request.use_class, "territory": request.territory},
    )
    header = _settle(recorded)
    return PaidAccess(
        payment=recorded, response_header=header, result=x402_confirm(payment=recorded, api_key=api_key)
    )


# Text retrievals ----------------------------------------------------------------------------------------


def retrieval_requirements(quote: RetrievalQuote) -> dict[str, Any] | None:
    """What pays a retrieval's quote: its exact total to the platform, naming the quote (`extra.quote`)
    so that a payment made for one quote is not taken for another."""
    wanted = requirements_for(quote.total_minor, quote.currency)
    if wanted is not None:
        wanted["extra"] = {**wanted["extra"], "quote": str(quote.quote_id)}
    return wanted


def retrieval_payment_required(*, quote: RetrievalQuote) -> dict[str, Any]:
    """The x402 PaymentRequired document for a retrieval's quote (the PAYMENT-REQUIRED header's body)."""
    return _payment_required_document(
        retrieval_requirements(quote),
        url=f"{settings.SITE_URL}/api/v1/retrieve",
        description=(
            f"{quote.use_class} retrieval: {len(quote.passages)} passages, {quote.total_tokens} tokens "
            f"(quote {quote.quote_id})"
        ),
        mime_type="application/json",
        error="insufficient prepaid balance",
    )


def retrieval_quote_summary(quote: RetrievalQuote) -> dict[str, Any]:
    """What a quote will sell, without the text (which is delivered only once paid)."""
    return {
        "id": str(quote.quote_id),
        "expires_at": quote.expires_at.isoformat(),
        "total_minor": quote.total_minor,
        "total_tokens": quote.total_tokens,
        "passages": [
            {
                "work": entry["work"],
                "text_version": entry["text_version"],
                "tokens": entry["tokens"],
                "price_per_1k_tokens_minor": entry["price_per_1k_tokens_minor"],
                "price_minor": entry["price_minor"],
            }
            for entry in quote.passages
        ],
    }


@dataclass(frozen=True)
class BoughtRetrieval:
    # The retrieval's answer; None while its payment waits for CHAIN_CONFIRMATIONS.
    result: services.AccessResult | None
    payment: X402Payment | None = None
    # PAYMENT-RESPONSE, when this request settled a payment.
    response_header: str | None = None


def retrieval_buy(
    *,
    organisation: Organisation,
    api_key: ApiKey,
    idempotency_key: str,
    request: services.RetrievalRequest,
    payment_header: str | None,
) -> BoughtRetrieval:
    """A retrieval paid from the prepaid balance or, when that is short, with x402.

    Without a payment: the answer already stored under the Idempotency-Key, or the one a settled payment
    for its quote buys (None while not deep enough), or a new retrieval charged to the balance. A short
    balance raises services.RetrievalQuoted (402) with the passages and total pinned in a quote.
    With PAYMENT-SIGNATURE: the quote of this Idempotency-Key is paid (x402_pay_retrieval).

    Invariants: the content is answered only once the retrieval is charged; one retrieval per key."""
    services.retrieval_check(request)
    stored = services.retrieval_replay_of(
        organisation=organisation, idempotency_key=idempotency_key, request=request
    )
    if stored is not None:  # also a replayed payment: nothing is settled twice
        return BoughtRetrieval(result=stored)
    if payment_header:
        return x402_pay_retrieval(
            organisation=organisation,
            api_key=api_key,
            idempotency_key=idempotency_key,
            request=request,
            payment_header=payment_header,
        )
    settled = (
        X402Payment.objects.filter(
            quote__organisation=organisation,
            quote__idempotency_key=idempotency_key,
            status=X402PaymentStatus.SETTLED,
        )
        .order_by("pk")
        .first()
    )
    if settled is not None:
        return BoughtRetrieval(result=x402_confirm(payment=settled, api_key=api_key), payment=settled)
    return BoughtRetrieval(
        result=services.retrieval_request(
            organisation=organisation,
            api_key=api_key,
            idempotency_key=idempotency_key,
            request=request,
            quote_when_short=request.currency in PAYABLE_CURRENCIES,
        )
    )


def _quote_taken() -> Conflict:
    return Conflict(
        "A payment for this quote is already under way: repeat the request without PAYMENT-SIGNATURE.",
        code="quote_already_paid",
    )


def x402_pay_retrieval(
    *,
    organisation: Organisation,
    api_key: ApiKey,
    idempotency_key: str,
    request: services.RetrievalRequest,
    payment_header: str,
) -> BoughtRetrieval:
    """Pay the quote of this Idempotency-Key with x402: check, record (write-ahead), settle and, once
    deep enough, confirm (fund the balance from the money received and record the quoted retrieval).

    Refused before anything is written: no quote, an expired quote, a payment made for another quote, a
    replayed authorization (409), an amount or payee other than the quote's (the facilitator's checks),
    a quote another payment is already paying (409), a quote that can no longer be delivered (403)."""
    quote = services.retrieval_quote_of(
        organisation=organisation, idempotency_key=idempotency_key, request=request
    )
    wanted = retrieval_requirements(quote)
    if wanted is None:
        raise PaymentRefused("This retrieval cannot be paid with x402.", code="payment_not_accepted")
    payload = _decode(payment_header)
    _refuse_replay(payload)
    if (payload.accepted.extra or {}).get("quote") != wanted["extra"]["quote"]:
        raise PaymentRefused(
            "This payment was made for another quote: pay the requirement this request's 402 answered.",
            code="payment_for_another_quote",
        )
    _verify(payload, wanted)
    if quote.payments.exclude(status=X402PaymentStatus.FAILED).exists():
        raise _quote_taken()
    services.retrieval_quote_check(quote=quote)  # nothing is settled for passages that cannot be sold
    recorded = _record(
        organisation=organisation,
        payload=payload,
        requirements=wanted,
        price=Money(quote.total_minor, quote.currency),
        idempotency_key=idempotency_key,
        buys={"quote": quote, "use_class": quote.use_class, "territory": quote.territory},
    )
    header = _settle(recorded)
    return BoughtRetrieval(
        result=x402_confirm(payment=recorded, api_key=api_key), payment=recorded, response_header=header
    )


def _confirm_retrieval(*, payment: X402Payment, api_key: ApiKey | None) -> services.AccessResult | None:
    """x402_confirm for a retrieval: in one transaction, once, the money received funds the prepaid
    balance (keyed by the transaction hash) and pays the quoted retrieval from it."""
    if payment.status == X402PaymentStatus.CONFIRMED:
        return _retrieval_charged(payment)
    if payment.status != X402PaymentStatus.SETTLED or not _deep_enough(payment):
        return None
    with transaction.atomic():
        # (The quote is read apart: PostgreSQL refuses FOR UPDATE on the nullable side of an outer join.)
        locked = X402Payment.objects.select_for_update().get(pk=payment.pk)
        if locked.status == X402PaymentStatus.CONFIRMED:
            return _retrieval_charged(locked)
        assert locked.quote_id is not None  # (x402_confirm sends only retrieval payments here)
        quote = RetrievalQuote.objects.select_related("organisation", "api_key").get(pk=locked.quote_id)
        prepaid_fund(
            organisation=payment.organisation,
            amount=Money(locked.price_minor, locked.currency),
            external_ref=locked.transaction_hash,
            rail="x402",
        )
        result, refusal = _charge_confirming(
            locked, lambda: services.retrieval_pay_quote(quote=quote, api_key=api_key)
        )
    payment.status = X402PaymentStatus.CONFIRMED
    if refusal is not None:
        raise refusal
    return result


def _retrieval_charged(payment: X402Payment) -> services.AccessResult | None:
    found = (
        Retrieval.objects.filter(
            organisation_id=payment.organisation_id, idempotency_key=payment.idempotency_key
        )
        .values_list("pk", "response_body")
        .first()
    )
    if found is None:
        return None
    return services.AccessResult.stored(bytes(found[1]), replayed=True, event_id=found[0])


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
