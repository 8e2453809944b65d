"""Settings for the test suite: the dev defaults with a fast password hasher and files in a temp dir."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("DJANGO_DEBUG", "1")

from config.settings.base import *

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
C2PA_DEV_DIR = Path(tempfile.mkdtemp(prefix="tribute-test-c2pa-")) / "c2pa"
STUDIO_DEV_TOP_UP = True
# Most tests log people in with force_login and change payout settings or make keys directly; the tests of
# account security turn these back on (tests/accounts/test_account_security.py).
SENSITIVE_CHANGES_NEED_TWO_FACTOR = False
TWO_FACTOR_REQUIRED_FOR_STAFF = False

# On SQLite the test database is a file, not shared-cache memory, so threaded tests see the real locking
# (WAL, IMMEDIATE transactions) the site runs with.
if DATABASES["default"]["ENGINE"] == "common.sqlite":
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.mkdtemp(prefix="tribute-test-db-")) / "test.sqlite3")
    }
    # SQLite's busy handler is not fair: with 50 writer threads on a loaded machine one can wait long.
    DATABASES["default"]["OPTIONS"]["timeout"] = 120  # type: ignore[index]
    DATABASES["default"]["OPTIONS"]["init_command"] = str(  # type: ignore[index]
        DATABASES["default"]["OPTIONS"]["init_command"]  # type: ignore[index]
    ).replace("busy_timeout=20000", "busy_timeout=120000")

else:
    # Several checkouts can share one PostgreSQL server: each may name its own test database.
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TRIBUTE_TEST_DB", "test_tribute")}
