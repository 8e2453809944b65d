"""Rate limits: login throttling and lockout, API quotas per key and organisation, daily quotas.

The limiter counts in fixed windows of the cache (django-ratelimit); the clock is moved with time-machine.
"""

from __future__ import annotations

import uuid
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from catalog.models import Output, SplitSheet
from tests import factories

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def _window_start(key: str) -> datetime:
    """A moment just after every window of `key` begins (django-ratelimit offsets each key's windows by a
    hash of the key), so a test knows where the windows end."""
    jitter = zlib.crc32(key.encode()) % 3600
    return datetime.fromtimestamp(1_767_225_600 + jitter + 1, tz=UTC)  # 2026-01-01T00:00Z + offset


def test_a_brute_force_of_50_logins_is_slowed_then_locked_out_and_the_right_password_waits_too(
    time_machine,
) -> None:
    # given an account, and an attacker guessing a password every 10 seconds
    user = factories.creator(username="mallory-target", email="target@example.com", password=PASSWORD)
    time_machine.move_to(_window_start("name:mallory-target"), tick=False)
    client = Client()
    statuses, retry_after = [], []

    # when 50 wrong passwords are tried
    for attempt in range(50):
        response = client.post(
            "/accounts/login/", {"username": "mallory-target", "password": f"guess {attempt}"}
        )
        statuses.append(response.status_code)
        retry_after.append(int(response.get("Retry-After", "0")))
        time_machine.shift(timedelta(seconds=10))

    # then five are checked, then the attacker waits out the minute, five more, then the account locks
    assert statuses[:5] == [200] * 5 and statuses[5] == 429
    assert statuses.count(200) == 10 and statuses[-1] == 429
    first_refusal = retry_after[5]
    assert 0 < first_refusal <= 60
    assert retry_after[-1] > 60  # the lockout lasts the hour window, not the minute
    (notice,) = mail.outbox
    assert notice.to == ["target@example.com"] and "Too many failed logins" in notice.subject

    # and the right password is refused while locked, without a session
    locked = client.post("/accounts/login/", {"username": "mallory-target", "password": PASSWORD})
    assert locked.status_code == 429 and "Try again in" in locked.content.decode()
    assert client.get("/api/v1/me").status_code == 401

    # when the lockout ends, the right password signs in
    time_machine.shift(timedelta(seconds=int(locked["Retry-After"]) + 1))
    assert (
        client.post("/accounts/login/", {"username": "mallory-target", "password": PASSWORD}).status_code
        == 302
    )
    assert client.get("/api/v1/me").json()["id"] == user.pk


def test_the_admin_login_is_throttled_the_same_way(time_machine) -> None:
    factories.creator(username="staffer", password=PASSWORD)
    time_machine.move_to(_window_start("name:staffer"), tick=False)
    client = Client()
    statuses = [
        client.post("/admin/login/", {"username": "staffer", "password": f"guess {n}"}).status_code
        for n in range(6)
    ]
    assert statuses == [200] * 5 + [429]


@override_settings(RATE_LIMITS={"api_key": "5/m", "api_organisation": "100/m", "api_user": "100/m"})
def test_an_api_key_flooding_an_endpoint_gets_429_with_retry_after_and_the_rate_limit_headers(
    with_key, time_machine
) -> None:
    # given a vendor key
    time_machine.move_to(_window_start("key:1"), tick=False)
    client = with_key(factories.key(factories.vendor(), "read"))

    # when it calls an endpoint seven times in a second
    responses = [client.get("/api/v1/me") for _ in range(7)]

    # then five succeed, counting down, and the rest are refused with when to come back
    assert [r.status_code for r in responses] == [200] * 5 + [429] * 2
    assert [r["RateLimit-Remaining"] for r in responses[:5]] == ["4", "3", "2", "1", "0"]
    assert {r["RateLimit-Limit"] for r in responses} == {"5"}
    refused = responses[5]
    assert refused["Content-Type"] == "application/problem+json"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["RateLimit-Remaining"] == "0"

    # and once the window ends the key works again
    time_machine.shift(timedelta(seconds=int(refused["Retry-After"]) + 1))
    assert client.get("/api/v1/me").status_code == 200


@override_settings(RATE_LIMITS={"api_key": "1000/m", "api_organisation": "4/m"})
def test_an_organisations_keys_share_its_quota(with_key) -> None:
    vendor = factories.vendor()
    first, second = with_key(factories.key(vendor, "read")), with_key(factories.key(vendor, "read"))
    statuses = [c.get("/api/v1/me").status_code for c in (first, second, first, second, first, second)]
    assert statuses == [200, 200, 200, 200, 429, 429]


@override_settings(RATE_LIMITS={"api_key": "2/m", "api_organisation": "100/m"})
def test_the_metered_access_call_is_limited_per_key_and_charges_nothing_when_refused(
    with_key, time_machine
) -> None:
    # given a funded vendor key and a work offered for access
    from common.money import Money
    from royalties.funding import prepaid_fund
    from royalties.selectors import prepaid_available

    time_machine.move_to(datetime(2026, 2, 1, 9, 0, tzinfo=UTC), tick=False)
    creator, vendor = factories.creator(), factories.vendor()
    work = factories.work(creator)
    factories.offer(creator, work, uses={"ai-train": 5})
    organisation = vendor.organisations.get()
    prepaid_fund(organisation=organisation, amount=Money(100, "USD"), external_ref="t")
    client = with_key(factories.key(vendor, "access"))

    # when it asks three times at once
    responses = [
        client.post(
            "/api/v1/access",
            {"work": work.pk, "use": "ai-train", "territory": "US"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
        )
        for _ in range(3)
    ]

    # then the third is refused with Retry-After and only two were charged
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert int(responses[2]["Retry-After"]) >= 1
    assert responses[2].json()["code"] == "throttled"
    assert prepaid_available(organisation=organisation, currency="USD") == 90


@override_settings(RATE_LIMITS={"outputs": "2/d"})
def test_outputs_have_a_daily_quota_per_organisation(with_key, time_machine) -> None:
    time_machine.move_to(datetime(2026, 2, 1, 9, 0, tzinfo=UTC), tick=False)
    client = with_key(factories.key(factories.vendor(), "outputs"))

    def register(n: int):
        png = factories.png_bytes(color=(n, 40, 90))
        return client.post("/api/v1/outputs", {"file": SimpleUploadedFile("o.png", png)}, format="multipart")

    statuses = [register(n).status_code for n in range(3)]
    assert statuses == [201, 201, 429]
    assert Output.objects.count() == 2
    time_machine.shift(timedelta(days=1))
    assert register(9).status_code == 201


@override_settings(RATE_LIMITS={"invitations": "3/d"})
def test_invitations_have_a_daily_quota_counted_per_invited_address(
    as_user, django_capture_on_commit_callbacks
) -> None:
    owner = factories.creator(email="owner@example.com")
    work = factories.work(owner)

    def propose(*emails: str):
        shares = [{"email": "owner@example.com", "share_bps": 10_000 - 100 * len(emails)}]
        shares += [{"email": email, "share_bps": 100} for email in emails]
        return as_user(owner).post(f"/api/v1/works/{work.pk}/split-sheets", {"shares": shares}, format="json")

    with django_capture_on_commit_callbacks(execute=True):
        first = propose("a@example.com", "b@example.com")
        refused = propose("c@example.com", "d@example.com")
        last = propose("e@example.com")

    assert (first.status_code, refused.status_code, last.status_code) == (201, 429, 201)
    assert refused.json()["code"] == "rate_limited" and int(refused["Retry-After"]) >= 1
    assert sorted(m.to[0] for m in mail.outbox) == ["a@example.com", "b@example.com", "e@example.com"]
    assert SplitSheet.objects.filter(work=work).count() == 3  # the refused proposal made no sheet


@override_settings(RATE_LIMITS={"signup_ip": "2/h"})
def test_sign_ups_are_limited_per_address(django_capture_on_commit_callbacks) -> None:
    def sign_up(n: int):
        return Client().post(
            "/accounts/signup/",
            {
                "username": f"new{n}",
                "email": f"new{n}@example.com",
                "role": "fan",
                "password1": "a long enough passphrase",
                "password2": "a long enough passphrase",
            },
        )

    with django_capture_on_commit_callbacks(execute=True):
        statuses = [sign_up(n).status_code for n in range(3)]
    assert statuses == [302, 302, 429]
    assert len(mail.outbox) == 2
