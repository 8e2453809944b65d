"""API keys and secrets: no plaintext key in any dump of the database, a revoked key is refused on the very
next request, and secrets show up neither in logs nor in error pages (even Django's debug page)."""

from __future__ import annotations

import io
import logging
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings

from access.models import AccessEvent
from accounts.keys import PREFIX_LENGTH
from accounts.models import ApiKey
from common.money import Money
from royalties.funding import prepaid_fund
from tests import factories

pytestmark = [pytest.mark.security, pytest.mark.django_db(transaction=True)]

STRIPE_SECRET = "sk_test_SecuritySuiteStripeMarker0001"
WEBHOOK_SECRET = "whsec_SecuritySuiteWebhookMarker0002"
CHAIN_SECRET = "0x5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc"
SESSION_CRASH_URLS = "tests.security.urls_crash"


def _keys_issued_every_way(api, as_user) -> list[str]:
    """Keys made by the service, by the API (session) and by the dashboard's form."""
    vendor = factories.vendor()
    secrets = [factories.key(vendor, "read", "access"), factories.key(factories.creator(), "read", "write")]
    created = as_user(vendor).post("/api/v1/api-keys", {"name": "api", "scopes": ["read"]}, format="json")
    assert created.status_code == 201
    secrets.append(created.json()["secret"])
    browser = Client()
    browser.force_login(vendor)
    page = browser.post("/dashboard/keys/", {"name": "dashboard", "scopes": ["read", "access"]})
    assert page.status_code == 201
    shown = [s for s in page.content.decode().split('"') if s.startswith("trb_") and len(s) > 30]
    assert len(shown) == 1  # the page shows the new key once
    secrets.append(shown[0])
    for secret in secrets:  # every one of them works, so the dumps below are of live keys
        assert api.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    return secrets


def _raw_sql_dump() -> str:
    """Every row of every table, as the database returns it."""
    parts: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 (table names)
            parts.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(parts)


def _database_files() -> bytes:
    """The database's own bytes: SQLite's file and write-ahead log, or pg_dump's output."""
    if connection.vendor == "sqlite":
        name = Path(connection.settings_dict["NAME"])
        return b"".join(p.read_bytes() for p in (name, Path(f"{name}-wal")) if p.exists())
    params = connection.settings_dict
    out = subprocess.run(
        ["pg_dump", "-h", params["HOST"] or "127.0.0.1", "-U", params["USER"] or "postgres", params["NAME"]],
        capture_output=True,
        check=True,
        env={"PGPASSWORD": params["PASSWORD"] or "", "PATH": "/usr/bin:/bin"},
    )
    return out.stdout


def test_no_plaintext_api_key_is_in_any_dump_of_the_database(api, as_user) -> None:
    secrets = _keys_issued_every_way(api, as_user)
    dumped = io.StringIO()
    call_command("dumpdata", stdout=dumped)
    dumps = {"dumpdata": dumped.getvalue(), "sql": _raw_sql_dump()}
    raw = _database_files()

    assert ApiKey.objects.count() == len(secrets)
    for secret in secrets:
        hidden_part = secret[PREFIX_LENGTH:]  # what the stored prefix does not already show
        for name, text in dumps.items():
            assert secret not in text, name
            assert hidden_part not in text, name
        assert hidden_part.encode() not in raw
        assert secret[:PREFIX_LENGTH] in dumps["dumpdata"]  # the prefix is kept, to find the row


def test_a_revoked_key_is_refused_on_the_next_request_and_charges_nothing(api, as_user) -> None:
    creator, vendor = factories.creator(), factories.vendor()
    work = factories.work(creator)
    factories.offer(creator, work, uses={"ai-train": 3})
    organisation = vendor.organisations.get()
    prepaid_fund(organisation=organisation, amount=Money(100, "USD"), external_ref="revoke")
    secret = factories.key(vendor, "read", "access")
    key = ApiKey.objects.get(user=vendor)
    body = {"work": work.pk, "use": "ai-train", "territory": "US"}
    first = api.post(
        "/api/v1/access",
        body,
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
        HTTP_IDEMPOTENCY_KEY="a1",
    )
    assert first.status_code == 200

    revoked = as_user(vendor).post(f"/api/v1/api-keys/{key.pk}/revoke")
    assert revoked.status_code == 200

    for method, url in [("get", "/api/v1/me"), ("post", "/api/v1/access")]:
        response = getattr(api, method)(
            url, body, format="json", HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_IDEMPOTENCY_KEY="a2"
        )
        assert response.status_code == 401, url
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["code"] == "authentication_failed"
        assert response["WWW-Authenticate"].startswith("Bearer")
    assert AccessEvent.objects.count() == 1
    # the replay of the first request is refused too: a revoked key reads nothing, not even its own past
    replay = api.post(
        "/api/v1/access",
        body,
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
        HTTP_IDEMPOTENCY_KEY="a1",
    )
    assert replay.status_code == 401


def _secrets_in(text: str, secrets: list[str]) -> list[str]:
    return [secret for secret in secrets if secret in text]


@override_settings(
    ROOT_URLCONF=SESSION_CRASH_URLS,
    STRIPE_SECRET_KEY=STRIPE_SECRET,
    STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
    CHAIN_PRIVATE_KEY=CHAIN_SECRET,
)
@pytest.mark.parametrize("debug", [False, True])
def test_secrets_appear_in_no_log_line_and_no_error_page(caplog, debug) -> None:
    vendor = factories.vendor()
    secret = factories.key(vendor, "read")
    revoked_secret = factories.key(vendor, "read")
    ApiKey.objects.filter(prefix=revoked_secret[:PREFIX_LENGTH]).update(revoked_at="2026-01-01T00:00:00Z")
    browser = Client(raise_request_exception=False)
    browser.force_login(vendor)
    session_id = browser.cookies[settings.SESSION_COOKIE_NAME].value
    watched = [
        secret,
        revoked_secret,
        settings.SECRET_KEY,
        STRIPE_SECRET,
        WEBHOOK_SECRET,
        CHAIN_SECRET,
        session_id,
    ]
    caplog.set_level(logging.DEBUG)
    pages = []
    with override_settings(DEBUG=debug):
        for url in ["/crash/", "/api/v1/crash", "/api/v1/me", "/api/v1/works/999999", "/api/v1/nowhere"]:
            for key in [secret, revoked_secret, "trb_malformed"]:
                response = browser.get(url, HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_X_API_KEY=key)
                pages.append((url, response.status_code, response.content.decode(errors="replace")))

    statuses = {(url, status) for url, status, _ in pages}
    assert ("/crash/", 500) in statuses and ("/api/v1/crash", 500) in statuses
    assert ("/api/v1/me", 200) in statuses and ("/api/v1/me", 401) in statuses
    for url, status, content in pages:
        assert _secrets_in(content, watched) == [], (url, status)
    api_crash = next(content for url, status, content in pages if url == "/api/v1/crash")
    if not debug:
        assert '"code": "server_error"' in api_crash  # problem+json, with nothing of the exception
        assert "RuntimeError" not in api_crash
    else:
        assert "RuntimeError" in api_crash  # the debug page is shown, and it still hides the secrets
    logged = "\n".join(
        record.getMessage()
        + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        for record in caplog.records
    )
    assert "Internal Server Error: /crash/" in logged  # the crash was logged, with its traceback
    assert _secrets_in(logged, watched) == []
