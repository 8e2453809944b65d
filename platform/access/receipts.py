"""Access receipts: compact JWS tokens signed with Ed25519 (alg EdDSA), verifiable offline by anyone
holding the public key published at /.well-known/jwks.json. Pure: no Django."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ISSUER = "tribute"
RECEIPT_TYPE = "tribute-access-receipt+jwt"


class InvalidReceipt(ValueError):
    pass


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def key_id(public_key: Ed25519PublicKey) -> str:
    """A stable id for a key: the JWK thumbprint's first 16 characters (RFC 7638 member order)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode()).digest())[:16]


def jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(raw),
        "kid": key_id(public_key),
        "use": "sig",
        "alg": "EdDSA",
    }


def sign(claims: dict[str, Any], private_key: Ed25519PrivateKey, kid: str | None = None) -> str:
    """`kid` is the signing key's id when the caller already knows it (deriving it costs a key operation)."""
    headers = {"kid": kid or key_id(private_key.public_key()), "typ": RECEIPT_TYPE}
    return jwt.encode({"iss": ISSUER, **claims}, private_key, algorithm="EdDSA", headers=headers)


def verify(token: str, public_keys: list[Ed25519PublicKey], *, audience: str | None = None) -> dict[str, Any]:
    """The receipt's claims if one of the keys signed it (and, when given, it names this audience) and it
    has not expired; InvalidReceipt otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidReceipt(f"not a receipt: {exc}") from None
    for public_key in public_keys:
        if header.get("kid") != key_id(public_key):
            continue
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                public_key,
                algorithms=["EdDSA"],
                issuer=ISSUER,
                audience=audience,
                options={"require": ["iss", "jti", "iat"], "verify_aud": audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise InvalidReceipt(f"receipt rejected: {exc}") from None
        return claims
    raise InvalidReceipt("receipt signed by an unknown key")


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the receipt signing key must be an Ed25519 private key")
    return key


def new_private_key_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
