"""The RSL licence server (Open License Protocol): registered vendors acquire a licence token for a
content URL, and present it to the content URL as `Authorization: License <token>`.

- Clients are the organisations' API keys with the `access` scope: `client_id` is the key's prefix and
  `client_secret` the key itself (HTTP Basic, or form fields, as OAuth 2.0 allows).
- `POST /token` with `grant_type=rsl` (OLP's grant; `client_credentials` is accepted too), `resource` (the
  content URL) and `license` (the RSL <license> element the client accepts; its `ai-*` usage names the
  use) or `scope` (one of our use classes). Issuing a token is an access: it is charged from the prepaid
  balance under the same terms and consent checks as `POST /api/v1/access`, and the token is bound to it.
- The token is a JWS signed with the receipts' Ed25519 key (`/.well-known/jwks.json`), naming the
  licensee, the content URL as audience, the use, the files' SHA-256 and a short expiry, so the content
  URL (or a CDN) checks it without a database read. `POST /introspect` answers RFC 7662.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import jwt
from django.conf import settings
from lxml import etree

from access import receipts, services, signing
from accounts.models import ApiKey
from common import clock
from common.problems import ApiError

TOKEN_TYPE = "rsl-license+jwt"  # noqa: S105 (a JWS media type, not a secret)
LICENSE_TTL_S = 600
RSL_TO_USE = {"ai-train": "ai-train", "ai-input": "ai-generate", "ai-index": "index", "ai-all": "ai-train"}
_RESOURCE_PATH = re.compile(r"^/works/(?P<work>\d+)(?:/content|/assets/(?P<asset>\d+)/content|/\*)?$")
_RSL_NAMESPACE = "https://rslstandard.org/rsl"
_MAX_LICENSE_BYTES = 16_384


class LicenseRefused(ApiError):
    """The licence token is missing, malformed, expired or for other content (401)."""

    status_code = 401
    default_code = "invalid_token"


class OAuthError(ApiError):
    """An RFC 6749 section 5.2 error of the token endpoint."""

    status_code = 400
    default_code = "invalid_request"


def work_of_resource(resource: str) -> int:
    """The work a content URL names; OAuthError(invalid_target) for any other address."""
    parts = urlsplit(resource)
    site = urlsplit(settings.SITE_URL)
    matched = _RESOURCE_PATH.match(parts.path)
    if (parts.scheme, parts.netloc) != (site.scheme, site.netloc) or matched is None:
        raise OAuthError(f"{resource!r} is not a content URL of this site.", code="invalid_target")
    return int(matched["work"])


def use_of_license(license_xml: str) -> str:
    """Our use class for the usage an RSL <license> element permits (its first ai-* token)."""
    if len(license_xml.encode()) > _MAX_LICENSE_BYTES:
        raise OAuthError("The license element is too large.", code="invalid_request")
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        element = etree.fromstring(license_xml.encode(), parser=parser)
    except etree.XMLSyntaxError as exc:
        raise OAuthError(f"The license element is not XML: {exc}.", code="invalid_request") from None
    for permits in element.iter(f"{{{_RSL_NAMESPACE}}}permits", "permits"):
        if permits.get("type", "usage") != "usage":
            continue
        for token in (permits.text or "").split():
            if token in RSL_TO_USE:
                return RSL_TO_USE[token]
    raise OAuthError("The license permits no AI usage this server licenses.", code="invalid_scope")


def license_issue(*, api_key: ApiKey, resource: str, use_class: str, territory: str) -> dict[str, Any]:
    """Charge one access for this use of the resource's work and answer the OAuth token response."""
    organisation = api_key.organisation
    if organisation is None:
        raise OAuthError("This client belongs to no organisation.", code="unauthorized_client")
    work_id = work_of_resource(resource)
    request = services.AccessRequest(work_id=work_id, use_class=use_class, territory=territory)
    result = services.access_request(
        organisation=organisation, api_key=api_key, idempotency_key=f"rsl:{uuid.uuid4()}", request=request
    )
    now = int(clock.now().timestamp())
    claims = {
        "iss": receipts.ISSUER,
        "sub": f"organisation:{organisation.pk}",
        "aud": services.content_url(work_id),
        "jti": result.access_id,
        "iat": now,
        "exp": now + LICENSE_TTL_S,
        "work": work_id,
        "use": use_class,
        "content_sha256": list(result.content_sha256),
        "receipt": result.receipt,
    }
    token = jwt.encode(
        claims, signing.private_key(), algorithm="EdDSA", headers={"kid": signing.key_id(), "typ": TOKEN_TYPE}
    )
    return {
        "access_token": token,
        "token_type": "License",
        "expires_in": LICENSE_TTL_S,
        "scope": use_class,
        "access_id": result.access_id,
        "receipt": result.receipt,
    }


def _claims(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise LicenseRefused("The licence token is malformed.") from None
    if header.get("typ") != TOKEN_TYPE:
        raise LicenseRefused("This is not a licence token of this server.")
    for key in signing.public_keys():
        if header.get("kid") != receipts.key_id(key):
            continue
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["EdDSA"],
                issuer=receipts.ISSUER,
                options={"require": ["exp", "jti", "aud", "sub"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise LicenseRefused("The licence token has expired.", code="expired_token") from None
        except jwt.PyJWTError:
            raise LicenseRefused("The licence token's signature does not match.") from None
        return claims
    raise LicenseRefused("The licence token was signed by an unknown key.")


def license_check(*, token: str, work_id: int, sha256: str) -> dict[str, Any]:
    """The token's claims when it licenses this file of this work now; LicenseRefused otherwise."""
    claims = _claims(token)
    if claims.get("work") != work_id or sha256 not in claims.get("content_sha256", []):
        raise LicenseRefused("The licence token is for other content.", code="insufficient_scope")
    return claims


def license_introspect(*, token: str) -> dict[str, Any]:
    """RFC 7662: `active` and, when active, what the token licenses."""
    try:
        claims = _claims(token)
    except LicenseRefused:
        return {"active": False}
    return {
        "active": True,
        "token_type": "License",
        "scope": claims.get("use"),
        "sub": claims["sub"],
        "aud": claims["aud"],
        "exp": claims["exp"],
        "iat": claims.get("iat"),
        "jti": claims["jti"],
        "iss": claims.get("iss"),
        "content_sha256": claims.get("content_sha256", []),
    }
