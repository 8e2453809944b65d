"""The metered access call: terms check, then in ONE transaction the quota, the spend caps, the debit of
the vendor's prepaid balance and the access event, answered with a signed receipt.

Invariants: one access event per organisation and Idempotency-Key (a unique constraint, so concurrent
replays charge once); the stored response is replayed byte for byte; a refused access changes nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Q, Value, When

from access import delivery, fastpath, receipts, signing
from access.fastpath import AccessRequest, AccessResult
from access.models import (
    METERED_USES,
    AccessEvent,
    AccessRefund,
    Retrieval,
    RetrievalPassage,
    RetrievalQuote,
    SpendCap,
    X402PaymentStatus,
)
from accounts.models import ApiKey, Organisation, User
from accounts.selectors import api_key_still_active
from accounts.services import api_key_forget, api_key_mark_used
from catalog import blocks, consent, reservations
from catalog import quota as catalog_quota
from catalog.models import (
    RETRIEVAL_USES,
    Asset,
    Grant,
    GrantStatus,
    Offer,
    OfferStatus,
    UseClass,
    Work,
    WorkStatus,
)
from catalog.selectors import PassageCandidate, passage_candidates, text_excerpt, text_excerpts, text_full
from catalog.services import ACCESS_BLOCKED_TEXT, grant_create
from common import clock, rows
from common import currency as currencies
from common.currency import format_minor
from common.money import Money
from common.problems import ApiError, Conflict, Forbidden, NotFound
from media.text import passages
from royalties.ledger import InsufficientFunds
from royalties.revenue import access_fee_record, access_fees_record
from royalties.reversal import access_refund as ledger_access_refund

_COUNTRY_LENGTH = 2


class TermRefused(Forbidden):
    """The licence terms do not allow this access; `code` names the term."""


class KeyNoLongerActive(Exception):
    """The API key was revoked or expired, or its user deactivated, since the caller authenticated it;
    nothing was charged."""


# The hot path's statements are written out: building them with the ORM costs more than running them.
_EVENTS = AccessEvent._meta.db_table
_REPLAY_SQL = (
    f"SELECT id, request_hash, response_body FROM {_EVENTS} "  # noqa: S608 (table names are constants)
    "WHERE organisation_id = %s AND idempotency_key = %s"
)


def _replay(organisation: Organisation, key: str, request: AccessRequest) -> AccessResult | None:
    with connection.cursor() as cursor:
        cursor.execute(_REPLAY_SQL, [organisation.pk, key])
        found = cursor.fetchone()
    if found is None:
        return None
    pk, request_hash, body = found
    if request_hash != request.digest():
        raise Conflict(
            "This Idempotency-Key was already used for a different request.", code="idempotency_key_reused"
        )
    if AccessRefund.objects.filter(event_id=pk).exists():
        # Replaying it would hand out the receipt of an access whose money went back.
        raise Conflict(
            "The access made with this Idempotency-Key was refunded; make a new one with a new key.",
            code="access_refunded",
        )
    return AccessResult.stored(bytes(body), replayed=True, event_id=pk)


_GRANT_FIELDS = (
    "id",
    "accesses_used",
    "fee_minor",
    "offer__id",
    "offer__version",
    "offer__currency",
    "offer__territories",
    "offer__expires_at",
    "offer__quota",
    "offer__platform_fee_bps",
    "offer__created_at",
    "offer__work__id",
    "offer__work_id",
)


def _active_grant(organisation: Organisation, work_id: int) -> Grant | None:
    return (
        Grant.objects.select_related("offer", "offer__work")
        .only(*_GRANT_FIELDS)
        .filter(organisation=organisation, offer__work_id=work_id, status=GrantStatus.ACTIVE)
        .order_by("-created_at")
        .first()
    )


class _GrantNoLongerActive(Exception):
    pass


def _grant_for(
    organisation: Organisation, api_key: ApiKey | None, licensee: User, work_id: int, use_class: str
) -> Grant:
    """The organisation's newest active grant on the work, or a new one on the current terms when they
    need neither a licence fee nor the owner's approval (calling the API accepts such terms)."""
    grant = fastpath.grant_remembered(organisation.pk, work_id)
    if grant is None:
        grant = _lookup_grant(organisation, api_key, licensee, work_id, use_class)
        fastpath.grant_remember(organisation.pk, work_id, grant)
    return grant


def _lookup_grant(
    organisation: Organisation, api_key: ApiKey | None, licensee: User, work_id: int, use_class: str
) -> Grant:
    grant = _active_grant(organisation, work_id)
    if grant is not None:
        return grant
    revoked = Grant.objects.filter(
        organisation=organisation, offer__work_id=work_id, status=GrantStatus.REVOKED
    )
    if revoked.exists():
        raise TermRefused("The owner revoked your licence for this work.", code="licence_revoked")
    work = Work.objects.filter(pk=work_id).first()
    if work is None:
        raise NotFound("No such work in the catalogue.", code="work_not_found")
    if work.status == WorkStatus.BLOCKED:
        raise TermRefused("This work is blocked by a claim until the block is lifted.", code="work_blocked")
    if blocks.organisation_blocked(organisation_id=organisation.pk, work_id=work_id):
        raise TermRefused(ACCESS_BLOCKED_TEXT, code="access_blocked")
    offer = Offer.objects.filter(work=work, status=OfferStatus.CURRENT).first()
    if offer is None or work.status != WorkStatus.PUBLISHED:
        raise NotFound("No such work in the catalogue.", code="work_not_found")
    if offer.licence_fee_minor > 0 or offer.derivative_approval_required:
        raise TermRefused(
            f"These terms need a licence first (fee {offer.licence_fee_minor} {offer.currency} minor units): "
            f"accept offer {offer.pk} with POST /api/v1/grants.",
            code="licence_required",
            extra={"offer": offer.pk},
        )
    if api_key is not None and not api_key_still_active(api_key_id=api_key.pk):  # maybe reused from memory
        raise KeyNoLongerActive
    refusal = consent.use_refusal(work_id=work_id, use_class=use_class)
    if refusal is not None:  # refused before a licence is made for it
        raise refusal.error()
    return grant_create(offer=offer, user=licensee, organisation=organisation).grant


def _check_terms(offer: Offer, request: AccessRequest) -> int:
    """The price of this use under these terms; TermRefused naming the term that refuses it."""
    prices = fastpath.prices(offer)
    if request.use_class not in prices:
        raise TermRefused(f"The terms do not allow '{request.use_class}'.", code="use_not_allowed")
    if offer.territories and request.territory not in offer.territories:
        raise TermRefused(
            f"The terms do not cover territory {request.territory} (only {', '.join(offer.territories)}).",
            code="territory_not_allowed",
        )
    if offer.expires_at is not None and offer.expires_at <= clock.now():
        raise TermRefused("The terms have expired.", code="offer_expired")
    return prices[request.use_class]


def _use_quota(grant: Grant) -> None:
    quota = grant.offer.quota
    with connection.cursor() as cursor:
        cursor.execute(
            catalog_quota.count_use_sql(with_quota=quota is not None),
            catalog_quota.usable_params(grant_id=grant.pk, quota=quota),
        )
        moved = cursor.rowcount
    if moved == 0:
        if not Grant.objects.filter(pk=grant.pk, status=GrantStatus.ACTIVE).exists():
            raise _GrantNoLongerActive
        raise TermRefused(f"The grant's quota of {quota} accesses is used up.", code="quota_exhausted")


def _spend(organisation: Organisation, api_key: ApiKey | None, price: Money) -> None:
    """Count the price against the organisation's and the key's monthly caps, if they have any."""
    if price.amount_minor == 0 or not fastpath.has_spend_caps(organisation.pk):
        return
    period = clock.now().strftime("%Y-%m")
    spent_after = Case(
        When(period=period, then=F("spent_minor") + price.amount_minor), default=Value(price.amount_minor)
    )
    caps = SpendCap.objects.filter(
        Q(api_key__isnull=True) | Q(api_key=api_key), organisation=organisation, currency=price.currency
    )
    cap_count = caps.count()
    if cap_count == 0:
        return
    # The condition sits on the row itself, so each UPDATE re-checks it under the row lock.
    fits = Q(period=period, spent_minor__lte=F("cap_minor") - price.amount_minor) | (
        ~Q(period=period) & Q(cap_minor__gte=price.amount_minor)
    )
    moved = caps.filter(fits).update(spent_minor=spent_after, period=Value(period))
    if moved != cap_count:
        raise TermRefused("This access would exceed your monthly spend cap.", code="spend_cap_reached")


@transaction.atomic
def spend_cap_set(
    *, organisation: Organisation, api_key: ApiKey | None, currency_code: str, cap_minor: int | None
) -> SpendCap | None:
    """Set (or, with `cap_minor` None, remove) the monthly spend cap of an organisation, or of one of its
    keys, in one currency. The access path enforces it (403 `spend_cap_reached`) within
    SPEND_CAP_LOOKUP_TTL_S in every process, at once in this one. A cap below what was already spent this
    month is refused: the month's spending cannot be undone."""
    if api_key is not None and api_key.organisation_id != organisation.pk:
        raise NotFound("No such key in this organisation.", code="key_not_found")
    if not currencies.is_supported(currency_code):
        raise ApiError(f"Currency {currency_code!r} is not supported.", code="unsupported_currency")
    existing = (
        SpendCap.objects.select_for_update()
        .filter(organisation=organisation, api_key=api_key, currency=currency_code)
        .first()
    )
    fastpath.spend_caps_forget(organisation.pk)
    if cap_minor is None:
        if existing is not None:
            existing.delete()
        return None
    if not currencies.amount_in_bounds(cap_minor, currency_code, allow_zero=True):
        raise ApiError(
            f"A cap is a whole amount, {currencies.bound_text(currency_code)}.", code="amount_out_of_range"
        )
    period = clock.now().strftime("%Y-%m")
    spent = existing.spent_minor if existing is not None and existing.period == period else 0
    if cap_minor < spent:
        raise Conflict(
            f"This month already spent {format_minor(spent, currency_code)}: the cap cannot be lower.",
            code="cap_below_spent",
        )
    if existing is None:
        return SpendCap.objects.create(
            organisation=organisation, api_key=api_key, currency=currency_code, cap_minor=cap_minor
        )
    existing.cap_minor = cap_minor
    existing.save(update_fields=["cap_minor"])
    return existing


def access_quote(*, organisation: Organisation, request: AccessRequest) -> Money:
    """What this access would cost under the organisation's grant (or the current terms), without
    charging anything. Raises the same errors as the access itself."""
    grant = _active_grant(organisation, request.work_id)
    if grant is not None:
        offer: Offer | None = grant.offer
    else:
        offer = Offer.objects.filter(
            work_id=request.work_id, status=OfferStatus.CURRENT, work__status=WorkStatus.PUBLISHED
        ).first()
    if offer is None:
        raise NotFound("No such work in the catalogue.", code="work_not_found")
    price = Money(_check_terms(offer, request), offer.currency)
    refusal = consent.use_refusal(
        work_id=offer.work_id,
        use_class=request.use_class,
        grant_fee_minor=grant.fee_minor if grant is not None else 0,
        grant_expires_at=offer.expires_at,
    )
    if refusal is not None:
        raise refusal.error()
    return price


def access_request(
    *,
    organisation: Organisation,
    api_key: ApiKey | None,
    idempotency_key: str,
    request: AccessRequest,
    paid_by_x402: bool = False,
    licensee: User | None = None,
) -> AccessResult:
    """Grant one access and charge for it, once per Idempotency-Key. Raises ApiError subclasses (403 for
    terms or consent, 402 InsufficientFunds, 404, 409) and then nothing has changed.

    The caller is an API key, or (an x402 payer with no key) the organisation and its `licensee`."""
    if request.use_class not in METERED_USES:
        raise ApiError(f"Unknown use class {request.use_class!r}.", code="invalid_use_class")
    if len(request.territory) != _COUNTRY_LENGTH or not request.territory.isalpha():
        raise ApiError("territory must be an ISO 3166-1 alpha-2 country code.", code="invalid_territory")
    try:
        licensed = licensee if licensee is not None else api_key.user if api_key is not None else None
        if licensed is None:
            raise ValueError("an access needs an API key or a licensee")
        result = _grant_and_charge(organisation, api_key, licensed, idempotency_key, request, paid_by_x402)
        if api_key is not None:
            api_key_mark_used(api_key=api_key)  # after the commit: throttled, off the charge's locks
        return result
    except ApiError:
        # A replayed key is answered with the first response whatever holds now (the balance may be spent
        # or the licence revoked since). The event's unique key catches replays that get as far as the
        # charge; looking for one only after a refusal keeps that lookup off the path of new accesses.
        replay = _replay(organisation, idempotency_key, request)
        if replay is None:
            raise
        return replay


def access_refund(*, organisation: Organisation, idempotency_key: str, reason: str) -> AccessRefund | None:
    """Take back the organisation's access made with `idempotency_key` because what it paid for was never
    delivered (a studio job that failed after its charge). Once per access: asking again returns the first
    refund. In one transaction the grant's quota use and the month's spend come back, in the order the
    charge took them, and the price goes back to the prepaid balance that paid it through the ledger
    (royalties.reversal.access_refund: settled, then taken back from the payees). From then on a replay of
    the key is refused (409 `access_refunded`), so a refunded access is never answered again.

    None when no access was made with that key (nothing was charged). Raises
    royalties.reversal.RefundNotYet, changing nothing, while the access's revenue is held by a claim.
    """
    event = AccessEvent.objects.filter(organisation=organisation, idempotency_key=idempotency_key).first()
    if event is None:
        return None
    try:
        with transaction.atomic():
            refund = AccessRefund.objects.create(event=event, reason=reason[:300], created_at=clock.now())
            Grant.objects.filter(pk=event.grant_id, accesses_used__gt=0).update(
                accesses_used=F("accesses_used") - 1
            )
            if event.price_minor:
                SpendCap.objects.filter(
                    Q(api_key__isnull=True) | Q(api_key_id=event.api_key_id),
                    organisation_id=event.organisation_id,
                    currency=event.currency,
                    period=event.created_at.strftime("%Y-%m"),
                    spent_minor__gte=event.price_minor,
                ).update(spent_minor=F("spent_minor") - event.price_minor)
            refund.journal = ledger_access_refund(
                access_key=str(event.access_id),
                memo=f"Access {event.access_id} refunded: {reason}",
            )
            refund.save(update_fields=["journal"])
    except IntegrityError:  # refunded by a concurrent call: its refund is the answer
        return AccessRefund.objects.get(event=event)
    return refund


def _grant_and_charge(
    organisation: Organisation,
    api_key: ApiKey | None,
    licensee: User,
    idempotency_key: str,
    request: AccessRequest,
    paid_by_x402: bool,
) -> AccessResult:
    # Accepting terms on first use commits on its own, before the charge transaction, so the charge
    # locks only the grant and the balance, in that order.
    grant = _grant_for(organisation, api_key, licensee, request.work_id, request.use_class)
    try:
        return _charge(organisation, api_key, idempotency_key, request, grant, paid_by_x402)
    except _GrantNoLongerActive:
        # Revoked since it was remembered: forget it and charge under the grant that holds now, if any.
        fastpath.grant_forget(organisation.pk, request.work_id)
        grant = _grant_for(organisation, api_key, licensee, request.work_id, request.use_class)
        try:
            return _charge(organisation, api_key, idempotency_key, request, grant, paid_by_x402)
        except _GrantNoLongerActive:
            raise Conflict(
                "The licence changed during this request; retry it.", code="grant_changed"
            ) from None


def _charge(
    organisation: Organisation,
    api_key: ApiKey | None,
    idempotency_key: str,
    request: AccessRequest,
    grant: Grant,
    paid_by_x402: bool,
) -> AccessResult:
    offer = grant.offer
    price = Money(_check_terms(offer, request), offer.currency)
    access_id = uuid.uuid4()
    now = clock.now()
    # The receipt and the response are made before the transaction, so the balance row stays locked only
    # for the statements themselves.
    body, receipt, content_sha256 = _response_body(organisation, offer, request, price, access_id, now)
    event = {
        "access_id": access_id,
        "organisation_id": organisation.pk,
        "api_key_id": api_key.pk if api_key is not None else None,
        "idempotency_key": idempotency_key,
        "request_hash": request.digest(),
        "work_id": offer.work_id,
        "offer_id": offer.pk,
        "grant_id": grant.pk,
        "use_class": request.use_class,
        "territory": request.territory,
        "price_minor": price.amount_minor,
        "currency": price.currency,
        "paid_by_x402": paid_by_x402,
        "response_body": body,
        "created_at": now,
    }
    try:
        durable = paid_by_x402 or settings.ACCESS_DURABLE_COMMIT
        event_id = fastpath.charge_in_one_statement(
            organisation, api_key, grant, price, access_id, event, durable, request.use_class
        )
        if event_id is None:
            # The creator's consent (do-not-train, a withdrawn use), checked here on the general path;
            # the one statement checks it itself.
            refusal = consent.use_refusal(
                work_id=offer.work_id,
                use_class=request.use_class,
                grant_fee_minor=grant.fee_minor,
                grant_expires_at=offer.expires_at,
            )
            if refusal is not None:
                raise refusal.error()
            with transaction.atomic():
                if api_key is not None and not api_key_still_active(api_key_id=api_key.pk):
                    raise KeyNoLongerActive
                _use_quota(grant)
                _spend(organisation, api_key, price)
                access_fee_record(
                    organisation=organisation,
                    offer=offer,
                    amount=price,
                    access_key=str(access_id),
                    new_key=True,
                )
                event_id = rows.insert_values(AccessEvent, event)
    except IntegrityError:
        # A concurrent request with the same key committed first: everything above rolled back, and its
        # response is the answer.
        replay = _replay(organisation, idempotency_key, request)
        if replay is None:
            raise
        return replay
    return AccessResult(
        body=body,
        replayed=False,
        event_id=event_id,
        access_id=str(access_id),
        receipt=receipt,
        content_sha256=content_sha256,
    )


# The files of each work (asset id and SHA-256), remembered briefly: a new upload shows within this long.
CONTENT_LOOKUP_TTL_S = 5.0
_contents_seen: dict[int, tuple[float, tuple[tuple[int, str], ...]]] = {}
# A receipt stays valid (as proof of what was licensed) until the terms expire, or this long.
RECEIPT_VALIDITY_S = 365 * 24 * 3600


def content_of(work_id: int) -> tuple[tuple[int, str], ...]:
    """The work's files as (asset id, SHA-256), oldest first: the first is the work's content URL."""
    seen = _contents_seen.get(work_id)
    if seen is not None and time.monotonic() - seen[0] <= CONTENT_LOOKUP_TTL_S:
        return seen[1]
    files = tuple(
        Asset.objects.filter(work_id=work_id).order_by("created_at", "id").values_list("pk", "blob_id")
    )
    _contents_seen[work_id] = (time.monotonic(), files)
    return files


def content_url(work_id: int, asset_id: int | None = None) -> str:
    """The one address of a work's content (its first file), or of one of its files."""
    if asset_id is None:
        return f"{settings.SITE_URL}/works/{work_id}/content"
    return f"{settings.SITE_URL}/works/{work_id}/assets/{asset_id}/content"


@functools.cache
def delivery_key() -> bytes:
    return delivery.derive_key(str(settings.SECRET_KEY))


def _response_body(
    organisation: Organisation,
    offer: Offer,
    request: AccessRequest,
    price: Money,
    access_id: uuid.UUID,
    now: datetime,
) -> tuple[bytes, str, tuple[str, ...]]:
    """The answer to an access (the receipt, naming the files' SHA-256, the use, the licensee, the content
    URL as audience and an expiry, and one short-lived delivery link per file), its receipt and the files'
    SHA-256."""
    files = content_of(offer.work_id)
    issued = int(now.timestamp())
    expires = offer.expires_at.timestamp() if offer.expires_at is not None else issued + RECEIPT_VALIDITY_S
    receipt = receipts.sign(
        {
            "jti": str(access_id),
            "iat": issued,
            "exp": int(expires),
            "sub": f"organisation:{organisation.pk}",
            "licensee": organisation.name,
            "aud": content_url(offer.work_id),
            "work": offer.work_id,
            "offer": offer.pk,
            "offer_version": offer.version,
            "use": request.use_class,
            "territory": request.territory,
            "price_minor": price.amount_minor,
            "currency": price.currency,
            "content_sha256": [sha256 for _, sha256 in files],
        },
        signing.private_key(),
        kid=signing.key_id(),
    )
    link_expires = issued + delivery.DELIVERY_TTL_S
    token = delivery.issue(
        delivery.DeliveryGrant(
            access_id=str(access_id),
            organisation_id=organisation.pk,
            work_id=offer.work_id,
            use_class=request.use_class,
            sha256=tuple(sha256 for _, sha256 in files),
            expires_at=link_expires,
        ),
        delivery_key(),
    )
    content = [
        {
            "asset": asset_id,
            "sha256": sha256,
            "url": f"{content_url(offer.work_id, asset_id)}?delivery={token}",
        }
        for asset_id, sha256 in files
    ]
    body = json.dumps(
        {
            "access_id": str(access_id),
            "work": offer.work_id,
            "offer": offer.pk,
            "offer_version": offer.version,
            "use": request.use_class,
            "price_minor": price.amount_minor,
            "currency": price.currency,
            "granted_at": now.isoformat(),
            "receipt": receipt,
            "content": content,
            "delivery_expires_at": datetime.fromtimestamp(link_expires, tz=now.tzinfo).isoformat(),
        },
        separators=(",", ":"),
    ).encode()
    return body, receipt, tuple(sha256 for _, sha256 in files)


def forget_caches() -> None:
    """Drop the per-process caches (prices, spend-cap lookups, grants, reused API keys)."""
    api_key_forget()
    fastpath.forget()
    _contents_seen.clear()
    reservations.forget()
    from access import content  # (content imports this module)

    content.forget()


# Text retrieval ----------------------------------------------------------------------------------------

MAX_RETRIEVAL_TOKENS = 32_000
MAX_QUERY_CHARACTERS = 2_000
MAX_QUERY_PRICE_MINOR = 10**12
# ai-index sells snippets: the start of each passage, at most this many words.
SNIPPET_WORDS = 40


@dataclass(frozen=True)
class RetrievalRequest:
    query: str
    max_tokens: int
    use_class: str
    territory: str
    currency: str
    max_price_minor: int | None = None

    def digest(self) -> str:
        canonical = json.dumps(
            {
                "query": self.query,
                "max_tokens": self.max_tokens,
                "use": self.use_class,
                "territory": self.territory,
                "currency": self.currency,
                "max_price_minor": self.max_price_minor,
            },
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class _Sold:
    candidate: PassageCandidate
    grant: Grant
    text: str
    start: int
    end: int
    tokens: int
    price_per_1k_minor: int
    price_minor: int


def _token_price(offer: Offer, use_class: str) -> int | None:
    """The offer's price per 1,000 tokens for the use; None when the offer does not allow it."""
    found = offer.uses.filter(use_class=use_class).values_list("price_per_1k_tokens_minor", flat=True).first()
    return None if found is None else int(found)


def _passage_price(tokens: int, per_1k_minor: int) -> int:
    """Rounded up to the minor unit: a seller is never paid less than its price."""
    return -(-tokens * per_1k_minor // 1000)


def retrieval_check(request: RetrievalRequest) -> None:
    """Refuse a malformed request before anything is looked up (ApiError, 400)."""
    if request.use_class not in RETRIEVAL_USES:
        raise ApiError(
            f"Unknown use {request.use_class!r} for retrieval; use one of {', '.join(RETRIEVAL_USES)}.",
            code="invalid_use_class",
        )
    if not 1 <= request.max_tokens <= MAX_RETRIEVAL_TOKENS:
        raise ApiError(
            f"max_tokens must be between 1 and {MAX_RETRIEVAL_TOKENS}.", code="invalid_token_budget"
        )
    if not request.query.strip() or len(request.query) > MAX_QUERY_CHARACTERS:
        raise ApiError(f"The query is 1 to {MAX_QUERY_CHARACTERS} characters.", code="invalid_query")
    if request.max_price_minor is not None and not 0 <= request.max_price_minor <= MAX_QUERY_PRICE_MINOR:
        raise ApiError("max_price_minor is out of range.", code="invalid_price_cap")
    if len(request.territory) != _COUNTRY_LENGTH or not request.territory.isalpha():
        raise ApiError("territory must be an ISO 3166-1 alpha-2 country code.", code="invalid_territory")


class RetrievalQuoted(InsufficientFunds):
    """The prepaid balance is short (402); the passages and their total are pinned in `quote`, which an
    x402 payment of exactly that total buys."""

    def __init__(self, detail: str, *, quote: RetrievalQuote, extra: dict[str, Any]) -> None:
        super().__init__(detail, extra=extra)
        self.quote = quote


# How long a quote holds its passages and price: the x402 requirement's own timeout.
QUOTE_TTL = timedelta(seconds=300)


def retrieval_request(
    *,
    organisation: Organisation,
    api_key: ApiKey,
    idempotency_key: str,
    request: RetrievalRequest,
    quote_when_short: bool = False,
) -> AccessResult:
    """Sell the passages that best answer a query, within the token budget and the price cap, once per
    Idempotency-Key.

    Each passage is charged at its own offer's price per 1,000 tokens (rounded up), counted by the offline
    tokenizer named in the receipt. In ONE transaction: each work's grant counts one use (quota), the total
    counts against the monthly spend caps, every passage's price is held on the prepaid balance and
    recorded as revenue of its work, and the retrieval with its passages is stored. Any refusal (402 short
    balance, 403 spend cap) rolls all of it back: nothing is charged and nothing is answered. A replay
    returns the first answer; the same key with another request is 409.

    With `quote_when_short`, a short balance pins the selection in a quote for this Idempotency-Key
    (RetrievalQuoted, still a 402) so that it can be paid on chain (`retrieval_pay_quote`).
    """
    retrieval_check(request)
    existing = retrieval_replay_of(
        organisation=organisation, idempotency_key=idempotency_key, request=request
    )
    if existing is not None:
        return existing
    sold = _select_passages(organisation, api_key, request)
    try:
        result = _retrieval_store(
            organisation=organisation,
            api_key=api_key,
            key_to_check=api_key,
            idempotency_key=idempotency_key,
            request=request,
            sold=sold,
            paid_by_x402=False,
        )
        api_key_mark_used(api_key=api_key)
        return result
    except InsufficientFunds as exc:
        if not quote_when_short:
            raise
        quote = _retrieval_quote_pin(organisation, api_key, idempotency_key, request, sold)
        raise RetrievalQuoted(
            "The prepaid balance is not enough for these passages: top it up, or pay this quote with x402.",
            quote=quote,
            extra={"price_minor": quote.total_minor, "currency": quote.currency},
        ) from exc


def retrieval_replay_of(
    *, organisation: Organisation, idempotency_key: str, request: RetrievalRequest
) -> AccessResult | None:
    """The stored answer of the retrieval made under this key (409 when it was for another request)."""
    existing = (
        Retrieval.objects.filter(organisation=organisation, idempotency_key=idempotency_key)
        .values_list("pk", "request_hash", "response_body")
        .first()
    )
    return None if existing is None else _retrieval_replay(existing, request)


def _retrieval_store(
    *,
    organisation: Organisation,
    api_key: ApiKey | None,
    key_to_check: ApiKey | None,
    idempotency_key: str,
    request: RetrievalRequest,
    sold: list[_Sold],
    paid_by_x402: bool,
) -> AccessResult:
    """Charge and store a retrieval of `sold` in one transaction (see retrieval_request)."""
    retrieval_id = uuid.uuid4()
    now = clock.now()
    total = sum(item.price_minor for item in sold)
    body = _retrieval_body(organisation, request, sold, retrieval_id, now)
    try:
        with transaction.atomic():
            if key_to_check is not None and not api_key_still_active(api_key_id=key_to_check.pk):
                raise KeyNoLongerActive
            try:
                for grant in {item.grant.pk: item.grant for item in sold}.values():
                    _use_quota(grant)
            except _GrantNoLongerActive:
                raise TermRefused(
                    "The owner revoked your licence for a work.", code="licence_revoked"
                ) from None
            _spend(organisation, api_key, Money(total, request.currency))
            currency = request.currency
            access_fees_record(
                organisation=organisation,
                fees=[
                    (item.grant.offer, Money(item.price_minor, currency), f"retrieval:{retrieval_id}:{n}")
                    for n, item in enumerate(sold)
                ],
            )
            retrieval = Retrieval.objects.create(
                retrieval_id=retrieval_id,
                organisation=organisation,
                api_key=api_key,
                idempotency_key=idempotency_key,
                request_hash=request.digest(),
                use_class=request.use_class,
                territory=request.territory,
                currency=request.currency,
                total_minor=total,
                total_tokens=sum(item.tokens for item in sold),
                tokenizer=passages.TOKENIZER_NAME,
                paid_by_x402=paid_by_x402,
                response_body=body,
                created_at=now,
            )
            RetrievalPassage.objects.bulk_create(
                [
                    RetrievalPassage(
                        retrieval=retrieval,
                        position=position,
                        work_id=item.candidate.work_id,
                        offer_id=item.grant.offer_id,
                        grant=item.grant,
                        text_version_id=item.candidate.text_version_id,
                        start=item.start,
                        end=item.end,
                        tokens=item.tokens,
                        price_per_1k_tokens_minor=item.price_per_1k_minor,
                        price_minor=item.price_minor,
                    )
                    for position, item in enumerate(sold)
                ]
            )
    except IntegrityError:
        # The same key committed concurrently: everything above rolled back; its answer is the answer.
        replay = retrieval_replay_of(
            organisation=organisation, idempotency_key=idempotency_key, request=request
        )
        if replay is None:
            raise
        return replay
    return AccessResult.stored(body, replayed=False, event_id=retrieval.pk)


def _retrieval_quote_pin(
    organisation: Organisation,
    api_key: ApiKey,
    idempotency_key: str,
    request: RetrievalRequest,
    sold: list[_Sold],
) -> RetrievalQuote:
    """The quote of this Idempotency-Key: the same one while it lasts or while a payment for it is under
    way; otherwise `sold`, pinned now."""
    now = clock.now()
    values = {
        "api_key": api_key,
        "request_hash": request.digest(),
        "query": request.query,
        "max_tokens": request.max_tokens,
        "max_price_minor": request.max_price_minor,
        "use_class": request.use_class,
        "territory": request.territory,
        "currency": request.currency,
        "total_minor": sum(item.price_minor for item in sold),
        "total_tokens": sum(item.tokens for item in sold),
        "passages": [
            {
                "work": item.candidate.work_id,
                "title": item.candidate.work_title,
                "grant": item.grant.pk,
                "offer": item.grant.offer_id,
                "text_version_id": item.candidate.text_version_id,
                "text_version": item.candidate.text_version,
                "start": item.start,
                "end": item.end,
                "tokens": item.tokens,
                "price_per_1k_tokens_minor": item.price_per_1k_minor,
                "price_minor": item.price_minor,
                "score": item.candidate.score,
                "sha256": hashlib.sha256(item.text.encode()).hexdigest(),
            }
            for item in sold
        ],
        "created_at": now,
        "expires_at": now + QUOTE_TTL,
    }
    with transaction.atomic():
        quote = (
            RetrievalQuote.objects.select_for_update()
            .filter(organisation=organisation, idempotency_key=idempotency_key)
            .first()
        )
        if quote is None:
            try:
                with transaction.atomic():
                    return RetrievalQuote.objects.create(
                        organisation=organisation, idempotency_key=idempotency_key, **values
                    )
            except IntegrityError:  # quoted concurrently under the same key: that quote stands
                quote = RetrievalQuote.objects.get(organisation=organisation, idempotency_key=idempotency_key)
        if quote.request_hash != request.digest():
            raise Conflict(
                "This Idempotency-Key was already used for a different request.",
                code="idempotency_key_reused",
            )
        paying = quote.payments.exclude(status=X402PaymentStatus.FAILED).exists()
        if quote.expires_at > now or paying:
            return quote
        # Expired and unpaid: a fresh selection replaces it, under a new id (payments name the id).
        for name, value in values.items():
            setattr(quote, name, value)
        quote.quote_id = uuid.uuid4()
        quote.save()
        return quote


def retrieval_quote_of(
    *, organisation: Organisation, idempotency_key: str, request: RetrievalRequest
) -> RetrievalQuote:
    """The quote made for this Idempotency-Key and request, to pay it (402 when there is none or it has
    expired; 409 when the key was quoted for another request)."""
    quote = RetrievalQuote.objects.filter(organisation=organisation, idempotency_key=idempotency_key).first()
    if quote is None:
        raise InsufficientFunds(
            "There is no quote for this Idempotency-Key: send the request without PAYMENT-SIGNATURE first, "
            "and pay the quote its 402 answers.",
            code="quote_not_found",
        )
    if quote.request_hash != request.digest():
        raise Conflict(
            "This Idempotency-Key was already used for a different request.", code="idempotency_key_reused"
        )
    if quote.expires_at <= clock.now():
        raise InsufficientFunds(
            "This quote has expired: send the request without PAYMENT-SIGNATURE for a new one.",
            code="quote_expired",
        )
    return quote


def retrieval_quote_check(*, quote: RetrievalQuote) -> dict[int, Grant]:
    """Refuse (403) a quote that can no longer be delivered: a quoted work's licence revoked or its terms
    expired, or its creator no longer consenting to the use. Asked before a payment for the quote is
    settled (so nothing is paid for what cannot be sold) and again when it is charged. The quote's grants
    by id."""
    grants = {
        grant.pk: grant
        for grant in Grant.objects.select_related("offer").filter(pk__in={p["grant"] for p in quote.passages})
    }
    for entry in quote.passages:
        grant = grants[entry["grant"]]
        if grant.status != GrantStatus.ACTIVE:
            raise TermRefused("The licence of a quoted work is no longer active.", code="licence_revoked")
        refusal = consent.use_refusal(
            work_id=entry["work"],
            use_class=quote.use_class,
            grant_fee_minor=grant.fee_minor,
            grant_expires_at=grant.offer.expires_at,
        )
        if refusal is not None:
            raise refusal.error()
        if grant.offer.expires_at is not None and grant.offer.expires_at <= clock.now():
            raise TermRefused("The terms of a quoted work have expired.", code="offer_expired")
    return grants


def retrieval_pay_quote(*, quote: RetrievalQuote, api_key: ApiKey | None) -> AccessResult:
    """Record the retrieval a quote pinned, charged to the organisation's prepaid balance, as a retrieval
    paid by x402: the same passages, prices and revenue items as when the quote was made. The caller has
    just funded the balance with the money received for the quote, in the same transaction.

    The passages' texts are read again from their (immutable) text versions and must hash to what the
    quote named. The quote must still be deliverable (retrieval_quote_check: a refusal is a 403 and records
    nothing; the money received stays on the balance). `api_key`, when given, must still be active."""
    request = RetrievalRequest(
        query=quote.query,
        max_tokens=quote.max_tokens,
        use_class=quote.use_class,
        territory=quote.territory,
        currency=quote.currency,
        max_price_minor=quote.max_price_minor,
    )
    grants = retrieval_quote_check(quote=quote)
    sold: list[_Sold] = []
    for entry in quote.passages:
        grant = grants[entry["grant"]]
        text = text_excerpt(text_version_id=entry["text_version_id"], start=entry["start"], end=entry["end"])
        if hashlib.sha256(text.encode()).hexdigest() != entry["sha256"]:
            raise RuntimeError(f"quote {quote.quote_id}: a passage's text no longer matches what was quoted")
        candidate = PassageCandidate(
            work_id=entry["work"],
            work_title=entry["title"],
            offer_id=entry["offer"],
            text_version_id=entry["text_version_id"],
            text_version=entry["text_version"],
            start=entry["start"],
            end=entry["end"],
            tokens=entry["tokens"],
            score=entry["score"],
        )
        sold.append(
            _Sold(
                candidate,
                grant,
                text,
                entry["start"],
                entry["end"],
                entry["tokens"],
                entry["price_per_1k_tokens_minor"],
                entry["price_minor"],
            )
        )
    return _retrieval_store(
        organisation=quote.organisation,
        api_key=api_key or quote.api_key,
        key_to_check=api_key,
        idempotency_key=quote.idempotency_key,
        request=request,
        sold=sold,
        paid_by_x402=True,
    )


def _retrieval_replay(
    existing: tuple[int, str, bytes | memoryview], request: RetrievalRequest
) -> AccessResult:
    pk, request_hash, body = existing
    if request_hash != request.digest():
        raise Conflict(
            "This Idempotency-Key was already used for a different request.", code="idempotency_key_reused"
        )
    return AccessResult.stored(bytes(body), replayed=True, event_id=pk)


def _select_passages(organisation: Organisation, api_key: ApiKey, request: RetrievalRequest) -> list[_Sold]:
    """The best passages that fit the budgets, each under the organisation's grant for its work (accepted
    now on the current terms when they need no fee or approval; works that do are left out)."""
    candidates = passage_candidates(
        query=request.query, use_class=request.use_class, currency=request.currency
    )
    whole_passages = request.use_class == UseClass.AI_INPUT
    withdrawn = (
        None
        if request.use_class == consent.TRAINING
        else consent.withdrawn_among({c.work_id for c in candidates}, request.use_class)
    )
    tokens_left = request.max_tokens
    money_left = request.max_price_minor
    grants: dict[int, Grant | None] = {}
    prices: dict[int, int | None] = {}
    chosen: list[tuple[PassageCandidate, Grant, str | None, int, int, int, int, int]] = []
    seen_works: set[int] = set()
    for candidate in candidates:
        if tokens_left <= 0:
            break
        if request.use_class == UseClass.AI_TRAIN and candidate.work_id in seen_works:
            continue  # ai-train sells a work's whole text once
        if whole_passages:
            # The whole passage is sold; its tokens were counted when it was indexed, and its text is read
            # for the passages chosen only, in one query below.
            start, end, text, tokens = candidate.start, candidate.end, None, candidate.tokens
        else:
            start, end, text, tokens = _cut(candidate, request.use_class)
        if tokens > tokens_left:
            continue
        # The licence is looked up (and accepted on first use) only for a passage that fits the budget.
        if candidate.work_id not in grants:
            grants[candidate.work_id] = _retrieval_grant(
                organisation, api_key, candidate.work_id, request, withdrawn
            )
        grant = grants[candidate.work_id]
        if grant is None:
            continue
        if grant.offer_id == candidate.offer_id and candidate.price_per_1k_tokens_minor is not None:
            per_1k: int | None = candidate.price_per_1k_tokens_minor
        else:  # a grant on earlier terms is charged at its own offer's price
            if grant.offer_id not in prices:
                prices[grant.offer_id] = _token_price(grant.offer, request.use_class)
            per_1k = prices[grant.offer_id]
        if per_1k is None:
            continue
        price = _passage_price(tokens, per_1k)
        if money_left is not None and price > money_left:
            continue
        tokens_left -= tokens
        if money_left is not None:
            money_left -= price
        seen_works.add(candidate.work_id)
        chosen.append((candidate, grant, text, start, end, tokens, per_1k, price))
    texts = iter(text_excerpts(spans=[(c[0].text_version_id, c[3], c[4]) for c in chosen if c[2] is None]))
    return [
        _Sold(candidate, grant, text if text is not None else next(texts), start, end, tokens, per_1k, price)
        for candidate, grant, text, start, end, tokens, per_1k, price in chosen
    ]


def _retrieval_grant(
    organisation: Organisation,
    api_key: ApiKey,
    work_id: int,
    request: RetrievalRequest,
    withdrawn: set[int] | None = None,
) -> Grant | None:
    """The grant a passage of the work is sold under, or None. `withdrawn`: the works known to have the use
    withdrawn (None: ask for this one)."""
    try:
        grant = _grant_for(organisation, api_key, api_key.user, work_id, request.use_class)
    except (TermRefused, consent.ConsentRefused, NotFound):
        return None
    offer = grant.offer
    refusal = (
        None
        if withdrawn is not None and work_id not in withdrawn
        else consent.use_refusal(
            work_id=work_id,
            use_class=request.use_class,
            grant_fee_minor=grant.fee_minor,
            grant_expires_at=offer.expires_at,
        )
    )
    if refusal is not None:  # the creator's do-not-train or a withdrawn use: this work is not sold
        return None
    if offer.currency != request.currency:
        return None
    if offer.territories and request.territory not in offer.territories:
        return None
    if offer.expires_at is not None and offer.expires_at <= clock.now():
        return None
    return grant


def _cut(candidate: PassageCandidate, use_class: str) -> tuple[int, int, str, int]:
    """What is sold of a candidate for the use: a snippet (ai-index), the passage (ai-input) or the whole
    text of the work's version (ai-train). Its span, text and tokens."""
    if use_class == UseClass.AI_TRAIN:
        text = text_full(text_version_id=candidate.text_version_id)
        return 0, len(text), text, passages.count_tokens([text])[0]
    text = text_excerpt(text_version_id=candidate.text_version_id, start=candidate.start, end=candidate.end)
    start, end = candidate.start, candidate.end
    if use_class == UseClass.AI_INDEX:
        words = list(re.finditer(r"\S+", text))
        if len(words) > SNIPPET_WORDS:
            text = text[: words[SNIPPET_WORDS - 1].end()]
            end = start + len(text)
    return start, end, text, passages.count_tokens([text])[0]


def _retrieval_body(
    organisation: Organisation,
    request: RetrievalRequest,
    sold: list[_Sold],
    retrieval_id: uuid.UUID,
    now: datetime,
) -> bytes:
    listed = [
        {
            "work": item.candidate.work_id,
            "offer": item.grant.offer_id,
            "offer_version": item.grant.offer.version,
            "text_version": item.candidate.text_version,
            "start": item.start,
            "end": item.end,
            "tokens": item.tokens,
            "price_per_1k_tokens_minor": item.price_per_1k_minor,
            "price_minor": item.price_minor,
            "sha256": hashlib.sha256(item.text.encode()).hexdigest(),
        }
        for item in sold
    ]
    total = sum(item.price_minor for item in sold)
    tokens = sum(item.tokens for item in sold)
    receipt = receipts.sign(
        {
            "jti": str(retrieval_id),
            "iat": int(now.timestamp()),
            "sub": f"organisation:{organisation.pk}",
            "use": request.use_class,
            "territory": request.territory,
            "tokenizer": passages.TOKENIZER_NAME,
            "passages": listed,
            "total_tokens": tokens,
            "total_minor": total,
            "currency": request.currency,
        },
        signing.private_key(),
        kid=signing.key_id(),
    )
    return json.dumps(
        {
            "retrieval_id": str(retrieval_id),
            "use": request.use_class,
            "tokenizer": passages.TOKENIZER_NAME,
            "currency": request.currency,
            "total_tokens": tokens,
            "total_minor": total,
            "passages": [
                dict(
                    entry,
                    title=item.candidate.work_title,
                    score=round(item.candidate.score, 4),
                    text=item.text,
                )
                for entry, item in zip(listed, sold, strict=True)
            ],
            "retrieved_at": now.isoformat(),
            "receipt": receipt,
        },
        separators=(",", ":"),
    ).encode()
