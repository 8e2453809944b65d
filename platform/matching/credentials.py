"""The platform's C2PA signing credentials and the trust anchors manifests are read with.

Production: C2PA_SIGNING_CERT and C2PA_SIGNING_KEY (or their *_FILE variants) from the environment. In
DEBUG (and tests) a development chain, a self-signed root and a signing certificate issued by it, is made
once in C2PA_DEV_DIR and kept, like the receipt development key; its root is then trusted by our reader,
so our own development manifests read as "Trusted" here and as "Valid" (signer unknown) anywhere else.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from media import provenance

_CHAIN = "chain.pem"
_KEY = "key.pem"
_ROOT = "root.pem"


def _development_dir() -> Path | None:
    path = settings.C2PA_DEV_DIR
    if path is None:
        return None
    directory = Path(path)
    if not (directory / _KEY).is_file():
        directory.parent.mkdir(parents=True, exist_ok=True)
        made = provenance.development_credentials()
        # Written in a sibling directory and renamed into place: a concurrent process either wins the
        # rename or finds the complete directory, never a half-written key.
        staging = Path(tempfile.mkdtemp(prefix=".c2pa-", dir=directory.parent))
        (staging / _CHAIN).write_bytes(made.credentials.certificate_chain_pem)
        (staging / _ROOT).write_bytes(made.root_pem)
        descriptor = os.open(staging / _KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(made.credentials.private_key_pem)
        try:
            staging.rename(directory)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return directory


@cache
def signing_credentials() -> provenance.Credentials:
    certificate, key = settings.C2PA_SIGNING_CERT, settings.C2PA_SIGNING_KEY
    if certificate and key:
        return provenance.Credentials(
            certificate_chain_pem=certificate.encode(),
            private_key_pem=key.encode(),
            algorithm=settings.C2PA_SIGNING_ALG,
            timestamp_url=settings.C2PA_TIMESTAMP_URL,
        )
    directory = _development_dir()
    if directory is None:
        raise ImproperlyConfigured(
            "C2PA_SIGNING_CERT and C2PA_SIGNING_KEY (or their *_FILE variants) must be set outside DEBUG"
        )
    return provenance.Credentials(
        certificate_chain_pem=(directory / _CHAIN).read_bytes(),
        private_key_pem=(directory / _KEY).read_bytes(),
    )


@cache
def trust_anchors() -> bytes | None:
    """The configured trust anchors, plus the development root when one is in use."""
    anchors = settings.C2PA_TRUST_ANCHORS.encode() if settings.C2PA_TRUST_ANCHORS else b""
    if not (settings.C2PA_SIGNING_CERT and settings.C2PA_SIGNING_KEY):
        directory = _development_dir()
        if directory is not None:
            anchors += (directory / _ROOT).read_bytes()
    return anchors or None


def manifest_of(data: bytes, media_type: str) -> provenance.ManifestSummary | None:
    """The C2PA manifest a file carries, read with our trust anchors; None when it carries none."""
    return provenance.read(data, media_type, trust_anchors_pem=trust_anchors())
