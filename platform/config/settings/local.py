"""`./dev up`: the demo served as production serves, on one machine with no configuration.

DEBUG is off (Django's error pages, which list the URL configuration and show tracebacks with local
variables, are replaced by ours; no /uploads/ route serves stored files by their hash), static files are
served by whitenoise from collectstatic's hashed, compressed copies, and the secrets the production settings
demand from the environment are made once on this machine and kept under var/keys/ (mode 0600). Plain HTTP
on 127.0.0.1: TLS-only cookies and redirects stay off, as no proxy terminates TLS here.
"""

import os
import secrets
from pathlib import Path

from common import keyfiles

_VAR_DIR = Path(os.environ.get("TRIBUTE_VAR_DIR") or Path(__file__).resolve().parents[3] / "var")


def _kept_secret(name: str) -> str:
    made = keyfiles.made_once(_VAR_DIR / "keys" / name, lambda: secrets.token_urlsafe(50).encode())
    return made.decode().strip()


os.environ["DJANGO_DEBUG"] = "0"
os.environ.setdefault("DJANGO_SECRET_KEY", _kept_secret("django-secret-key"))

from common.env import env_bool  # noqa: E402 (after the environment above is set)
from config.settings.base import *  # noqa: E402

# The receipt and C2PA development keys are made once under var/keys/, as in DEBUG.
RECEIPT_DEV_KEY_PATH = VAR_DIR / "keys" / "receipts-ed25519.pem"
C2PA_DEV_DIR = VAR_DIR / "keys" / "c2pa"
# The in-process chain pays the demo's payouts.
CHAIN_PAYOUTS_ENABLED = env_bool("CHAIN_PAYOUTS_ENABLED", True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
