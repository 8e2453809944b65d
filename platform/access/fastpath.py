"""The access hot path, end to end: what a plain call to POST /api/v1/access is (one that needs nothing of
DRF), the caches the charge reads (grants, offer prices, whether an organisation has spend caps), and the
one-statement charge on PostgreSQL with its SQL.

access.services is the general path and the public service functions: it decides every refusal and calls
charge_in_one_statement() first. access.apis is the view: a plain call is answered from here without DRF;
any other call, every error and the 402 go through DRF.

The one statement splices the two rules it enforces from their one definition each: the prepaid hold from
royalties.ledger.hold_sql() and the quota from catalog.quota.usable_sql().
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import DataError, connection, models, transaction
from django.http import HttpRequest

from access.models import METERED_USES, AccessEvent, SpendCap
from accounts.authentication import presented_secret
from accounts.models import ApiKey, Organisation, Role
from accounts.selectors import ACTIVE_KEY_SQL, active_key_params
from accounts.services import api_key_authenticate_reusing
from catalog import consent, quota
from catalog.models import Grant, Offer
from common import rows
from common.money import Money
from royalties.ledger import hold_params, hold_sql
from royalties.models import RevenueItem
from royalties.revenue import access_fee

MAX_ID = 2**63 - 1  # the largest id the database stores
MAX_IDEMPOTENCY_KEY = 200


@dataclass(frozen=True)
class AccessRequest:
    work_id: int
    use_class: str
    territory: str

    def digest(self) -> str:
        canonical = json.dumps(
            {"work": self.work_id, "use": self.use_class, "territory": self.territory}, sort_keys=True
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class AccessResult:
    """A granted access (or text retrieval): the stored answer, replayed byte for byte, and the fields
    callers use from it (`access_id` is the retrieval's id for a retrieval; `content_sha256` lists an
    access's files, none for a retrieval)."""

    body: bytes
    replayed: bool
    event_id: int
    access_id: str
    receipt: str
    content_sha256: tuple[str, ...] = ()

    @classmethod
    def stored(cls, body: bytes, *, replayed: bool, event_id: int) -> AccessResult:
        """A result from a stored answer (a replay, or one read back from the database)."""
        answer = json.loads(body)
        return cls(
            body=body,
            replayed=replayed,
            event_id=event_id,
            access_id=str(answer.get("access_id") or answer.get("retrieval_id") or ""),
            receipt=str(answer.get("receipt", "")),
            content_sha256=tuple(str(item["sha256"]) for item in answer.get("content", ())),
        )


# The plain call ----------------------------------------------------------------------------------------

_PLAIN_ACCEPT = frozenset({"", "*/*", "application/json"})
_PLAIN_BODY_BYTES = 4096


def well_formed(data: object) -> AccessRequest | None:
    """The request when the body is plainly valid, checked without building a serializer; None otherwise.
    It accepts a subset of what the view's InputSerializer accepts, with the same result."""
    if not isinstance(data, dict):
        return None
    work, use, territory = data.get("work"), data.get("use"), data.get("territory")
    if type(work) is not int or not 1 <= work <= MAX_ID or type(use) is not str or use not in METERED_USES:
        return None
    if type(territory) is not str or len(territory) != 2 or not (territory.isascii() and territory.isalpha()):
        return None
    return AccessRequest(work_id=work, use_class=use, territory=territory.upper())


def idempotency_key(meta: dict[str, Any]) -> str | None:
    """The request's Idempotency-Key, or None when it is missing or too long."""
    key = meta.get("HTTP_IDEMPOTENCY_KEY", "").strip()
    return key if 0 < len(key) <= MAX_IDEMPOTENCY_KEY else None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def access_key(api_key: ApiKey | None) -> bool:
    """Whether the key may make metered accesses: the `access` scope, an organisation, a vendor's."""
    return (
        api_key is not None
        and api_key.has_scope("access")
        and api_key.organisation_id is not None
        and api_key.user.role == Role.VENDOR  # a key minted before roles were checked stays refused
    )


def plain_call(request: HttpRequest) -> tuple[ApiKey, str, AccessRequest] | None:
    """The key, the Idempotency-Key and the request of a call that needs nothing of DRF: an active API
    key (Bearer or X-Api-Key) with the `access` scope and an organisation, a well-formed JSON body, JSON
    (or anything) accepted in reply, and no x402 payment. None for any other call, which DRF then
    handles (and refuses)."""
    meta = request.META
    if request.method != "POST" or request.content_type != "application/json":
        return None
    if "HTTP_PAYMENT_SIGNATURE" in meta or meta.get("HTTP_ACCEPT", "*/*") not in _PLAIN_ACCEPT:
        return None
    if not str(meta.get("CONTENT_LENGTH", "")).isdigit() or int(meta["CONTENT_LENGTH"]) > _PLAIN_BODY_BYTES:
        return None
    key, secret = idempotency_key(meta), presented_secret(meta)
    if key is None or secret is None:
        return None
    try:
        data = json.loads(request.body.decode(), parse_constant=_refuse_constant)
    except ValueError:  # also UnicodeDecodeError
        return None
    access = well_formed(data)
    if access is None:
        return None
    api_key = api_key_authenticate_reusing(secret=secret)  # the charge confirms it (KeyNoLongerActive)
    if api_key is None or not access_key(api_key):
        return None
    return api_key, key, access


# The caches --------------------------------------------------------------------------------------------

# The grant (with its immutable offer) each organisation uses per work, remembered briefly. Safe because the
# charge counts the use only while the grant is still active (a revoked grant is refused there and looked
# up again), and a newer grant is picked up within this many seconds.
GRANT_LOOKUP_TTL_S = 5.0
_grants_seen: dict[tuple[int, int], tuple[float, Grant]] = {}


def grant_remembered(organisation_id: int, work_id: int) -> Grant | None:
    seen = _grants_seen.get((organisation_id, work_id))
    if seen is not None and time.monotonic() - seen[0] <= GRANT_LOOKUP_TTL_S:
        return seen[1]
    return None


def grant_remember(organisation_id: int, work_id: int, grant: Grant) -> None:
    _grants_seen[(organisation_id, work_id)] = (time.monotonic(), grant)


def grant_forget(organisation_id: int, work_id: int) -> None:
    _grants_seen.pop((organisation_id, work_id), None)


# Offers are immutable, so their prices can be kept for the life of the process (keyed with the creation
# time too, so a reused id, as after a rolled-back test, is never mistaken for the old offer).
_PRICES: dict[tuple[int, float], dict[str, int]] = {}
_PRICES_KEPT = 10_000


def prices(offer: Offer) -> dict[str, int]:
    """The offer's price per use class."""
    key = (offer.pk, offer.created_at.timestamp())
    found = _PRICES.get(key)
    if found is None:
        if len(_PRICES) >= _PRICES_KEPT:
            _PRICES.clear()
        found = dict(offer.uses.values_list("use_class", "price_minor"))
        _PRICES[key] = found
    return found


# Whether an organisation has any spend caps, remembered briefly: caps are set rarely, and a cap created
# now applies within this many seconds. The cap itself is always enforced inside the charge transaction.
SPEND_CAP_LOOKUP_TTL_S = 5.0
_caps_seen: dict[int, tuple[float, bool]] = {}


def has_spend_caps(organisation_id: int) -> bool:
    now = time.monotonic()
    seen = _caps_seen.get(organisation_id)
    if seen is None or now - seen[0] > SPEND_CAP_LOOKUP_TTL_S:
        seen = (now, SpendCap.objects.filter(organisation_id=organisation_id).exists())
        _caps_seen[organisation_id] = seen
    return seen[1]


def spend_caps_forget(organisation_id: int) -> None:
    _caps_seen.pop(organisation_id, None)


def forget() -> None:
    """Drop this module's per-process caches."""
    _PRICES.clear()
    _caps_seen.clear()
    _grants_seen.clear()


# The one-statement charge ------------------------------------------------------------------------------


def charge_in_one_statement(
    organisation: Organisation,
    api_key: ApiKey | None,
    grant: Grant,
    price: Money,
    access_id: uuid.UUID,
    event: dict[str, object],
    durable: bool,
    use_class: str,
) -> int | None:
    """On PostgreSQL, the common case in one statement (its own transaction, one round trip): confirm the
    API key is still active and the creator's consent to the use (catalog.consent), lock the grant while
    it may count one more use (catalog.quota), hold the price on the payer's prepaid balance
    (royalties.ledger.hold_sql), insert the revenue and the access event. The grant row is locked (by
    counting the use) before the balance row, the order the general path locks them in; a use counted
    whose hold is short makes the statement fail, which undoes the count: both or neither. Each row is
    written once. The new event's id; None when it does not
    apply (another database, a free use, spend caps to count, no key) or when the key, the consent, the
    grant or the balance refused, having changed nothing: the general path then decides, and names the
    refusal.

    Unless `durable`, the statement's transaction commits without waiting for the WAL to reach the disk
    (synchronous_commit off for it alone): a slow disk flush then delays no access, and a crash of the
    database server can forget at most the last fraction of a second of accesses, never leaving the ledger
    unbalanced. Inside a caller's transaction the caller's setting stands."""
    if connection.vendor != "postgresql" or price.amount_minor == 0 or has_spend_caps(organisation.pk):
        return None
    if api_key is None:  # the statement confirms a key; a keyless (x402) access takes the general path
        return None
    offer = grant.offer
    fee = access_fee(organisation=organisation, offer=offer, amount=price, access_key=str(access_id))
    assert fee is not None
    commit_mode = None if durable or connection.in_atomic_block else "off"
    params: list[Any] = [commit_mode, *active_key_params(api_key_id=api_key.pk)]
    paid_term = consent.paid_term_running(grant_fee_minor=grant.fee_minor, grant_expires_at=offer.expires_at)
    params += consent.consented_params(work_id=offer.work_id, use_class=use_class, paid_term=paid_term)
    params += quota.usable_params(grant_id=grant.pk, quota=offer.quota)
    params += hold_params(key=fee.payer_key, amount_minor=price.amount_minor)
    params += rows.prepared(RevenueItem, fee.revenue_values(), omit=_COMPUTED_REVENUE)
    params += rows.prepared(AccessEvent, event)
    # Inside a caller's transaction, a savepoint, so a conflict leaves that transaction usable; on its own,
    # the statement is its own transaction.
    savepoint = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    try:
        with savepoint, rows.prepared_cursor() as cursor:
            cursor.execute(one_statement_sql(offer.quota is not None), params)
            found = cursor.fetchone()
    except DataError as error:
        if not isinstance(error.__cause__, psycopg.errors.DivisionByZero):
            raise
        return None  # the balance was short: the statement failed, and its count of the use with it
    return None if found is None or found[0] is None else int(found[0])


# The revenue's payer is the account the hold reserved the price on.
_COMPUTED_REVENUE = {"payer_id": "hold.id"}


@functools.cache
def one_statement_sql(with_quota: bool) -> str:
    """The one-statement charge; `with_quota` when the grant's offer has a quota."""

    def select_list(model: type[models.Model], computed: dict[str, str]) -> str:
        return ", ".join(
            computed.get(field.attname, f"CAST(%s AS {field.db_type(connection)})")
            for field in rows.insert_fields(model)
        )

    def columns(model: type[models.Model]) -> str:
        return ", ".join(str(field.column) for field in rows.insert_fields(model))

    revenues, events = RevenueItem._meta.db_table, AccessEvent._meta.db_table
    revenue_values, event_values = select_list(RevenueItem, _COMPUTED_REVENUE), select_list(AccessEvent, {})
    return (
        # set_config(..., true) lasts until this statement's transaction ends, its commit included.
        "WITH commit_mode AS MATERIALIZED (SELECT set_config('synchronous_commit', "  # noqa: S608
        "COALESCE(%s, current_setting('synchronous_commit')), true)), "
        f"active_key AS MATERIALIZED ({ACTIVE_KEY_SQL}), "
        f"consented AS MATERIALIZED ({consent.consented_sql()}), "
        # The grant first: its use is counted while the quota allows it (a concurrent charge waits on the row,
        # then re-checks the quota on the row as that charge left it, so the count stays exact); then the
        # hold, only for a counted use. A counted use whose hold was short divides by zero in the last
        # line, which undoes the whole statement (charge_in_one_statement).
        f"counted AS (UPDATE {quota.GRANTS} g SET accesses_used = g.accesses_used + 1 "
        f"FROM active_key, consented, commit_mode WHERE {quota.usable_sql(with_quota=with_quota, alias='g')} "
        "RETURNING g.id), "
        f"hold AS ({hold_sql(also='EXISTS (SELECT 1 FROM counted)')}), "
        f"revenue AS (INSERT INTO {revenues} ({columns(RevenueItem)}) SELECT {revenue_values} "
        "FROM hold, counted RETURNING id), "
        f"event AS (INSERT INTO {events} ({columns(AccessEvent)}) SELECT {event_values} "
        "FROM revenue RETURNING id) "
        "SELECT (SELECT id FROM event), (SELECT 1 / (SELECT count(*) FROM hold) FROM counted)"
    )
