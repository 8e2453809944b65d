"""Delivery links: short-lived, signed capabilities to fetch the original bytes an access paid for.

A link names the access (its receipt's id), the licensee, the work, the use and the SHA-256 of every file
it may fetch, and when it stops working. It is signed with HMAC-SHA256 under a key only the platform
holds: checking one costs microseconds and no database read, so a paid GET stays as fast as the access
call that issued it. Pure: no Django.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

DELIVERY_TTL_S = 300
_PREFIX = "d1."


class InvalidDelivery(ValueError):
    pass


@dataclass(frozen=True)
class DeliveryGrant:
    access_id: str
    organisation_id: int
    work_id: int
    use_class: str
    sha256: tuple[str, ...]
    expires_at: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(grant: DeliveryGrant, key: bytes) -> str:
    claims = {
        "a": grant.access_id,
        "o": grant.organisation_id,
        "w": grant.work_id,
        "u": grant.use_class,
        "h": list(grant.sha256),
        "e": grant.expires_at,
    }
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return f"{_PREFIX}{body}.{_b64(mac)}"


def check(token: str, key: bytes, *, now_s: float) -> DeliveryGrant:
    """The grant a link carries if the platform signed it and it has not expired; InvalidDelivery if not."""
    if not token.startswith(_PREFIX) or token.count(".") != 2:
        raise InvalidDelivery("not a delivery link")
    body, _, mac = token[len(_PREFIX) :].partition(".")
    try:
        presented = _unb64(mac)
    except ValueError:
        raise InvalidDelivery("not a delivery link") from None
    expected = hmac.new(key, body.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(presented, expected):
        raise InvalidDelivery("the delivery link's signature does not match")
    try:
        claims = json.loads(_unb64(body))
        grant = DeliveryGrant(
            access_id=str(claims["a"]),
            organisation_id=int(claims["o"]),
            work_id=int(claims["w"]),
            use_class=str(claims["u"]),
            sha256=tuple(str(h) for h in claims["h"]),
            expires_at=int(claims["e"]),
        )
    except (ValueError, KeyError, TypeError):
        raise InvalidDelivery("the delivery link is malformed") from None
    if grant.expires_at <= now_s:
        raise InvalidDelivery("the delivery link has expired")
    return grant


def derive_key(secret: str) -> bytes:
    """The links' key, derived from the site's secret so it never doubles as anything else."""
    return hashlib.sha256(b"tribute delivery links\x00" + secret.encode()).digest()
