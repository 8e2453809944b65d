"""Account security: TOTP two-factor, re-authentication before sensitive changes, notices by mail, the
security log, and key rotation with an overlap window. The clock is moved with time-machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from django.core import mail
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts.models import ApiKey, SecurityEvent, TotpDevice, User
from accounts.security import totp_begin, totp_confirm
from common import clock
from tests import factories

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("strict_security"),
]

PASSWORD = "correct horse battery staple"
START = datetime(2026, 4, 1, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
def strict_security():
    with override_settings(SENSITIVE_CHANGES_NEED_TWO_FACTOR=True, TWO_FACTOR_REQUIRED_FOR_STAFF=True):
        yield


def _code(user: User) -> str:
    return pyotp.TOTP(TotpDevice.objects.get(user=user).secret).at(clock.now())


def _with_two_factor(user: User) -> None:
    totp_begin(user=user)
    totp_confirm(user=user, code=_code(user))


def _session(user: User) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_login_asks_an_enrolled_account_for_a_current_code_and_a_code_works_once(time_machine) -> None:
    time_machine.move_to(START, tick=False)
    user = factories.creator(username="ada", password=PASSWORD)
    _with_two_factor(user)
    time_machine.shift(timedelta(seconds=30))  # the next time step: the enrolment code is spent
    code = _code(user)

    without = Client().post("/accounts/login/", {"username": "ada", "password": PASSWORD})
    wrong = Client().post("/accounts/login/", {"username": "ada", "password": PASSWORD, "code": "000000"})
    good_client = Client()
    good = good_client.post("/accounts/login/", {"username": "ada", "password": PASSWORD, "code": code})
    replay = Client().post("/accounts/login/", {"username": "ada", "password": PASSWORD, "code": code})

    assert (without.status_code, wrong.status_code, good.status_code, replay.status_code) == (
        200,
        200,
        302,
        200,
    )
    assert "authenticator app" in without.content.decode()
    assert good_client.get("/api/v1/me").json()["id"] == user.pk
    kinds = list(SecurityEvent.objects.filter(user=user).values_list("kind", flat=True).order_by("id"))
    assert kinds == ["two_factor_enabled", "login_failed", "login_failed", "login", "login_failed"]


def test_an_access_key_needs_two_factor_and_a_fresh_confirmation(time_machine) -> None:
    time_machine.move_to(START, tick=False)
    vendor = factories.vendor(password=PASSWORD)
    client = _session(vendor)
    body = {"name": "prod", "scopes": ["access"]}

    no_two_factor = client.post("/api/v1/api-keys", body, format="json")
    _with_two_factor(vendor)
    not_confirmed = client.post("/api/v1/api-keys", body, format="json")
    time_machine.shift(timedelta(seconds=30))
    bad = client.post("/api/v1/reauthenticate", {"password": "nope", "code": _code(vendor)}, format="json")
    confirmed = client.post(
        "/api/v1/reauthenticate", {"password": PASSWORD, "code": _code(vendor)}, format="json"
    )
    created = client.post("/api/v1/api-keys", body, format="json")
    read_only = client.post("/api/v1/api-keys", {"name": "ro", "scopes": ["read"]}, format="json")
    time_machine.shift(timedelta(minutes=11))
    stale = client.post("/api/v1/api-keys", body, format="json")

    assert (no_two_factor.status_code, no_two_factor.json()["code"]) == (403, "two_factor_required")
    assert (not_confirmed.status_code, not_confirmed.json()["code"]) == (403, "reauthentication_required")
    assert (bad.status_code, confirmed.status_code) == (403, 200)
    assert (created.status_code, read_only.status_code) == (201, 201)
    assert (stale.status_code, stale.json()["code"]) == (403, "reauthentication_required")
    assert ApiKey.objects.filter(user=vendor).count() == 2


def test_a_payout_destination_change_needs_confirmation_and_is_logged_and_mailed(
    time_machine, django_capture_on_commit_callbacks
) -> None:
    time_machine.move_to(START, tick=False)
    creator = factories.creator(password=PASSWORD, email="payee@example.com")
    client = _session(creator)
    _with_two_factor(creator)
    mail.outbox.clear()

    refused = client.put("/api/v1/payout-profile", {"rail": "chain"}, format="json")
    time_machine.shift(timedelta(seconds=30))
    client.post("/api/v1/reauthenticate", {"password": PASSWORD, "code": _code(creator)}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        challenge = client.post("/api/v1/payout-profile/wallet-challenge")

    assert (refused.status_code, refused.json()["code"]) == (403, "reauthentication_required")
    assert challenge.status_code == 201


def test_notices_go_out_for_new_keys_payout_changes_and_password_changes(
    django_capture_on_commit_callbacks,
) -> None:
    from accounts.payout_identity import payout_profile_stripe_account_set
    from accounts.services import api_key_create

    with override_settings(SENSITIVE_CHANGES_NEED_TWO_FACTOR=False):
        user = factories.creator(email="me@example.com", password=PASSWORD)
        client = Client()
        client.force_login(user)
        with django_capture_on_commit_callbacks(execute=True):
            api_key_create(user=user, name="ci", scopes=["read"])
            payout_profile_stripe_account_set(user=user, account_id="acct_123")
            changed = client.post(
                "/accounts/password_change/",
                {
                    "old_password": PASSWORD,
                    "new_password1": "a new long phrase 7",
                    "new_password2": "a new long phrase 7",
                },
            )

    assert changed.status_code == 302
    assert [(m.to, m.subject) for m in mail.outbox] == [
        (["me@example.com"], "A new Tribute API key was created"),
        (["me@example.com"], "Where Tribute pays you has changed"),
        (["me@example.com"], "Your Tribute password was changed"),
    ]
    kinds = set(SecurityEvent.objects.filter(user=user).values_list("kind", flat=True))
    assert kinds == {"key_created", "payout_changed", "password_changed"}


def test_the_security_log_is_the_users_own_and_the_operators(as_user) -> None:
    from accounts.services import api_key_create

    user, other = factories.creator(), factories.creator()
    api_key_create(user=user, name="mine", scopes=["read"])
    api_key_create(user=other, name="theirs", scopes=["read"])

    mine = as_user(user).get("/api/v1/security-log").json()["results"]
    assert [(e["kind"], e["detail"]["name"]) for e in mine] == [("key_created", "mine")]
    page_client = Client()
    page_client.force_login(user)
    own_page = page_client.get("/accounts/security-log/").content.decode()
    assert "API key created · mine" in own_page and "theirs" not in own_page

    operator = factories.creator()
    User.objects.filter(pk=operator.pk).update(is_staff=True, is_superuser=True)
    _with_two_factor(operator)
    staff_client = Client()
    staff_client.force_login(operator)
    admin_page = staff_client.get("/admin/accounts/securityevent/")
    assert admin_page.status_code == 200 and admin_page.content.decode().count("API key created") >= 2


def test_staff_reach_operator_pages_only_with_two_factor() -> None:
    operator = factories.creator()
    User.objects.filter(pk=operator.pk).update(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(operator)

    before = client.get("/admin/")
    _with_two_factor(operator)
    after = client.get("/admin/")

    assert before.status_code == 302 and before["Location"] == "/accounts/two-factor/?required=staff"
    assert after.status_code == 200


def test_a_rotated_key_keeps_working_for_the_overlap_then_only_its_successor_does(
    time_machine, with_key
) -> None:
    time_machine.move_to(START, tick=False)
    creator = factories.creator()
    old_secret = factories.key(creator, "read")
    old = ApiKey.objects.get(user=creator)

    rotated = _session(creator).post(f"/api/v1/api-keys/{old.pk}/rotate", {"overlap_s": 3600}, format="json")
    new_secret = rotated.json()["secret"]
    during = (
        with_key(old_secret).get("/api/v1/me").status_code,
        with_key(new_secret).get("/api/v1/me").status_code,
    )
    time_machine.shift(timedelta(hours=1, seconds=1))
    after = (
        with_key(old_secret).get("/api/v1/me").status_code,
        with_key(new_secret).get("/api/v1/me").status_code,
    )

    assert rotated.status_code == 201
    assert rotated.json()["scopes"] == ["read"] and rotated.json()["name"] == old.name
    assert during == (200, 200)
    assert after == (401, 200)
    again = _session(creator).post(f"/api/v1/api-keys/{old.pk}/rotate", {}, format="json")
    assert again.status_code == 409
    assert SecurityEvent.objects.filter(user=creator, kind="key_rotated").count() == 1
