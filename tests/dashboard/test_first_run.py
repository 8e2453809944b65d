"""A new user's first minutes: log-in and the email link land on the dashboard (or a safe `next`), the
home page has a getting-started checklist per role ticked from what the account has really done, and the
upload form states its size limit and refuses a larger file in words."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client, override_settings

from accounts.models import User
from catalog.models import Asset
from catalog.services import asset_upload, grant_create
from tests import factories

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(response) -> str:
    return response.content.decode()


def steps(body: str) -> list[tuple[str, bool]]:
    found = re.findall(r'data-step-done="(true|false)">.*?class="step"[^>]*>([^<]+)<', body)
    return [(label, done == "true") for done, label in found]


def test_log_in_lands_on_the_dashboard_unless_a_safe_next_names_another_page() -> None:
    factories.creator(username="mira", password=PASSWORD)

    plain = Client().post("/accounts/login/", {"username": "mira", "password": PASSWORD})
    onward = Client().post(
        "/accounts/login/?next=/dashboard/claims/", {"username": "mira", "password": PASSWORD}
    )
    away = Client().post(
        "/accounts/login/?next=https://evil.example/", {"username": "mira", "password": PASSWORD}
    )

    assert (plain.status_code, plain["Location"]) == (302, "/dashboard/")
    assert onward["Location"] == "/dashboard/claims/"
    assert away["Location"] == "/dashboard/"


def test_the_email_link_of_a_new_account_lands_on_the_dashboard_or_the_page_it_came_for(
    django_capture_on_commit_callbacks,
) -> None:
    for username, next_page, landing in [("ana", "", "/dashboard/"), ("bo", "/releases/7/", "/releases/7/")]:
        client = Client()
        form = {
            "username": username,
            "email": f"{username}@example.com",
            "role": "fan",
            "display_name": username.title(),
            "password1": PASSWORD,
            "password2": PASSWORD,
        }
        query = f"?next={next_page}" if next_page else ""
        client.get(f"/accounts/signup/{query}")
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post(f"/accounts/signup/{query}", form).status_code == 302
        link = re.search(r"/accounts/verify/\S+", str(mail.outbox[-1].body)).group(0)
        response = client.get(link)
        assert (response.status_code, response["Location"]) == (302, landing)


def test_a_new_creators_checklist_ticks_each_step_from_what_they_have_done() -> None:
    creator = factories.creator(username="mira")
    client = client_for(creator)
    assert steps(page(client.get("/dashboard/"))) == [
        ("Register a work", False),
        ("Upload its file", False),
        ("Set who owns it (split sheet)", False),
        ("Publish licence terms", False),
        ("Set up payouts", False),
    ]

    work = factories.work(creator, title="Harbour")
    asset_upload(work=work, user=creator, data=factories.png_bytes(), filename="harbour.png")
    factories.offer(creator, work)

    assert steps(page(client.get("/dashboard/"))) == [
        ("Register a work", True),
        ("Upload its file", True),
        ("Set who owns it (split sheet)", False),
        ("Publish licence terms", True),
        ("Set up payouts", False),
    ]


def test_a_fans_and_a_vendors_checklists_follow_their_own_steps() -> None:
    creator = factories.creator(username="mira")
    work = factories.work(creator, title="Harbour")
    offer = factories.offer(creator, work)
    fan = factories.fan(username="sol")
    vendor = factories.vendor(username="acme")

    assert [done for _, done in steps(page(client_for(fan).get("/dashboard/")))] == [False] * 4
    grant_create(offer=offer, user=fan)
    assert [done for _, done in steps(page(client_for(fan).get("/dashboard/")))] == [True, True, False, False]

    assert [label for label, _ in steps(page(client_for(vendor).get("/dashboard/")))] == [
        "Create an API key",
        "Top up your balance",
        "Make your first access",
    ]
    factories.key(vendor, "read")
    assert [done for _, done in steps(page(client_for(vendor).get("/dashboard/")))] == [True, False, False]


def test_the_upload_form_states_the_limit_in_words() -> None:
    creator = factories.creator(username="mira")
    work = factories.work(creator, title="Harbour")

    body = page(client_for(creator).get(f"/dashboard/works/{work.pk}/"))

    assert "Files up to 50 MB." in body
    assert 'data-max-bytes="52428800"' in body and 'data-max-text="50 MB"' in body


@override_settings(UPLOAD_MAX_BYTES=2048)
def test_a_form_upload_over_the_limit_says_the_limit_in_words_and_saves_nothing() -> None:
    creator = factories.creator(username="mira")
    work = factories.work(creator, title="Harbour")
    big = b"\x89PNG\r\n\x1a\n" + b"0" * 200_000

    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client_for(creator).post(
        f"/dashboard/works/{work.pk}/assets/", {"file": SimpleUploadedFile("big.png", big)}
    )

    assert response.status_code == 413
    body = page(response)
    assert "Files up to 2 KB can be uploaded. Nothing was saved." in body and "413" not in body
    assert Asset.objects.count() == 0
