"""The platform's receipt signing key: from RECEIPT_SIGNING_KEY (PEM, or RECEIPT_SIGNING_KEY_FILE) in
production; in DEBUG a development key is made once under var/keys/."""

from __future__ import annotations

from functools import cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from access import receipts
from common import keyfiles
from common.env import env_secret


@cache
def private_key() -> Ed25519PrivateKey:
    pem = env_secret("RECEIPT_SIGNING_KEY", required=False)
    if pem:
        return receipts.load_private_key(pem.encode())
    path = settings.RECEIPT_DEV_KEY_PATH
    if path is None:
        raise ImproperlyConfigured(
            "RECEIPT_SIGNING_KEY (or RECEIPT_SIGNING_KEY_FILE) must be set outside DEBUG"
        )
    return receipts.load_private_key(keyfiles.made_once(path, receipts.new_private_key_pem))


@cache
def key_id() -> str:
    return receipts.key_id(private_key().public_key())


def public_keys() -> list[Ed25519PublicKey]:
    return [private_key().public_key()]
