"""Security headers on every kind of response, HSTS and the HTTPS redirect with the production settings
(behind a TLS-terminating proxy), and `manage.py check --deploy` passing with no warning."""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest
from django.test import Client

from common.security import DEFAULT_CONTENT_SECURITY_POLICY, policy_header
from tests import factories
from tests.security.live import PYTHON, ROOT, server_env

pytestmark = [pytest.mark.security, pytest.mark.django_db]


def _production_env(tmp_path, **extra: str) -> dict[str, str]:
    env = server_env(tmp_path, DJANGO_SETTINGS_MODULE="config.settings.production", **extra)
    env["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    return env


def test_check_deploy_with_the_production_settings_passes_with_no_warning(tmp_path) -> None:
    command = [PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    result = subprocess.run(command, env=_production_env(tmp_path), cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_would_catch_a_weakened_setting(tmp_path) -> None:
    # The same command fails when HSTS is switched off: the check above is not vacuous.
    command = [PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    env = _production_env(tmp_path, SECURE_HSTS_SECONDS="0")
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert "security.W004" in result.stdout + result.stderr


PROBE = """
from django.test import Client
client = Client()
behind_tls = client.get("/api/v1/health", HTTP_X_FORWARDED_PROTO="https")
plain = client.get("/api/v1/health?x=1")
print(json.dumps({
    "tls_status": behind_tls.status_code,
    "tls_headers": dict(behind_tls.headers),
    "plain_status": plain.status_code,
    "plain_location": plain.headers.get("Location", ""),
    "plain_hsts": plain.headers.get("Strict-Transport-Security", ""),
}))
"""


def test_production_sends_hsts_behind_tls_and_redirects_plain_http(tmp_path) -> None:
    out = subprocess.run(
        [PYTHON, "-c", "import django, json\ndjango.setup()\n" + PROBE],
        env=_production_env(tmp_path, DJANGO_ALLOWED_HOSTS="testserver"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    headers = result["tls_headers"]

    assert result["tls_status"] == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["Content-Security-Policy"] == policy_header(DEFAULT_CONTENT_SECURITY_POLICY)
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert result["plain_status"] == 301
    assert result["plain_location"] == "https://testserver/api/v1/health?x=1"
    assert result["plain_hsts"] == ""  # HSTS is only ever sent over TLS


EXPECTED = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def test_every_kind_of_response_carries_the_security_headers(api) -> None:
    creator = factories.creator()
    browser = Client()
    browser.force_login(creator)
    responses = {
        "dashboard page": browser.get("/dashboard/"),
        "login page": Client().get("/accounts/login/"),
        "api json": api.get("/api/v1/offers"),
        "api problem": api.get("/api/v1/me"),
        "api unknown address": api.get("/api/v1/no-such-thing"),
        "schema": browser.get("/api/schema/"),
        "api docs": browser.get("/api/docs/"),
        "admin login": Client().get("/admin/login/"),
    }
    for name, response in responses.items():
        assert response.status_code in (200, 401, 404), name
        for header, value in EXPECTED.items():
            assert response.headers.get(header) == value, (name, header)
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, name
        assert "frame-ancestors 'none'" in policy, name
        assert response.headers["Permissions-Policy"].startswith("camera=()"), name
    # Static files are served by WhiteNoise before the other middleware: the policy and nosniff still apply.
    static = Client().get("/static/js/dashboard.js")
    static.close()
    assert static.status_code == 200
    assert static["X-Content-Type-Options"] == "nosniff"
    assert static["Content-Security-Policy"] == policy_header(DEFAULT_CONTENT_SECURITY_POLICY)
    unknown = responses["api unknown address"]
    assert unknown["Content-Type"] == "application/problem+json"
    assert unknown.json()["code"] == "not_found"


def test_no_page_template_has_inline_script_or_style() -> None:
    # The policy refuses inline code; a template that used it would break in the browser.
    offending = []
    for folder in (ROOT / "platform").rglob("templates"):
        for template in folder.rglob("*.html"):
            text = template.read_text()
            for marker in ("<script>", '<script type="text/javascript">', "<style", " style=", " onclick="):
                if marker in text:
                    offending.append((str(template.relative_to(ROOT)), marker))
            for line in text.splitlines():
                if "<script" in line and "src=" not in line and "json_script" not in line:
                    offending.append((str(template.relative_to(ROOT)), line.strip()[:80]))
    assert offending == []
