"""Settings for the test suite: the dev defaults with a fast password hasher and files in a temp dir."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("DJANGO_DEBUG", "1")

from config.settings.base import *  # noqa: F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = tempfile.mkdtemp(prefix="tribute-test-uploads-")  # type: ignore[assignment]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Serve static files from the finders: the test run has no collectstatic output.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True

# Tasks are queued in memory and never run by themselves: tests run them explicitly (or with a real worker).
CELERY_BROKER_URL = "memory://localhost//"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
RECEIPT_DEV_KEY_PATH = Path(tempfile.mkdtemp(prefix="tribute-test-keys-")) / "receipts-ed25519.pem"
