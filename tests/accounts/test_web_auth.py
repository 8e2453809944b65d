import re

import pytest
from django.core import mail
from django.test import Client

from accounts.models import Organisation, User
from tests import factories

pytestmark = pytest.mark.django_db

PASSWORD = "a long enough passphrase"


def _signup(client: Client, username: str, email: str, role: str = "fan", **extra: str):
    return client.post(
        "/accounts/signup/",
        {
            "username": username,
            "email": email,
            "role": role,
            "password1": PASSWORD,
            "password2": PASSWORD,
            **extra,
        },
    )


def _link(message) -> str:
    return re.search(r"https?://[^/\s]+(/\S+)", message.body).group(1)


def test_signing_up_as_a_vendor_creates_the_organisation_and_logs_in_once_the_address_is_confirmed(
    django_capture_on_commit_callbacks,
) -> None:
    client = Client()
    with django_capture_on_commit_callbacks(execute=True):
        response = _signup(client, "acme", "Ops@Acme.example", role="vendor", organisation_name="Acme AI")
    assert response.status_code == 302 and response["Location"] == "/accounts/signup/done/"
    user = User.objects.get(username="acme")
    assert user.email == "ops@acme.example" and user.role == "vendor"
    assert (user.is_email_verified, client.get("/api/v1/me").status_code) == (False, 401)
    assert Organisation.objects.get().members.get() == user

    (message,) = mail.outbox
    assert message.to == ["ops@acme.example"]
    assert client.get(_link(message)).status_code == 302

    user.refresh_from_db()
    assert user.is_email_verified
    assert client.get("/api/v1/me").json()["organisations"][0]["name"] == "Acme AI"
    assert client.get(_link(message)).status_code == 400  # a link verifies once


def test_sign_up_answers_the_same_for_a_new_a_taken_username_and_a_taken_address(
    django_capture_on_commit_callbacks,
) -> None:
    # given an account "taken" with the address taken@example.com
    factories.fan(username="taken", email="taken@example.com")

    # when three people sign up: a new identity, a taken username, a taken address
    with django_capture_on_commit_callbacks(execute=True):
        fresh = _signup(Client(), "fresh", "fresh@example.com")
        same_name = _signup(Client(), "Taken", "other@example.com")
        same_email = _signup(Client(), "another", "TAKEN@example.com")

    # then the three answers are identical; only the owners of the addresses learn more, by mail
    answers = {(r.status_code, r["Location"], r.content) for r in (fresh, same_name, same_email)}
    assert answers == {(302, "/accounts/signup/done/", b"")}
    assert sorted(User.objects.values_list("username", flat=True)) == ["fresh", "taken"]
    subjects = {m.to[0]: m.subject for m in mail.outbox}
    assert subjects == {
        "fresh@example.com": "Confirm your email address for Tribute",
        "other@example.com": "Choose another username for Tribute",
        "taken@example.com": "You already have a Tribute account",
    }


def test_the_owner_of_a_squatted_address_takes_the_account_over_by_resetting_its_password(
    django_capture_on_commit_callbacks,
) -> None:
    # given a squatter who signed up with someone else's address and never confirmed it
    with django_capture_on_commit_callbacks(execute=True):
        _signup(Client(), "squatter", "owner@example.com")
    mail.outbox.clear()

    # when the address's owner resets the password through the mailed link
    client = Client()
    client.post("/accounts/password_reset/", {"email": "owner@example.com"})
    confirm = client.get(_link(mail.outbox[0]), follow=True)
    done = client.post(
        confirm.redirect_chain[-1][0],
        {"new_password1": "owner's new phrase 42", "new_password2": "owner's new phrase 42"},
    )

    # then the owner holds the account (the squatter's password no longer works) and the address is verified
    assert done.status_code == 302
    user = User.objects.get(email="owner@example.com")
    assert user.check_password("owner's new phrase 42") and not user.check_password(PASSWORD)
    assert user.is_email_verified


def test_signup_errors_are_shown_next_to_the_field_and_nothing_is_created() -> None:
    response = Client().post(
        "/accounts/signup/",
        {"username": "x", "email": "bad", "role": "vendor", "password1": "a", "password2": "b"},
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Enter a valid email address." in page
    assert "AI vendors sign up for an organisation" in page
    assert User.objects.count() == 0


def test_password_reset_sends_an_email_with_a_link() -> None:
    User.objects.create_user(username="c", email="c@example.com", password="pw-123456789")
    response = Client().post("/accounts/password_reset/", {"email": "c@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert "/accounts/reset/" in mail.outbox[0].body


def test_login_and_logout() -> None:
    User.objects.create_user(username="c", email="c@example.com", password="pw-123456789")
    client = Client()
    assert client.post("/accounts/login/", {"username": "c", "password": "pw-123456789"}).status_code == 302
    assert client.get("/api/v1/me").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/api/v1/me").status_code == 401


def test_an_unconfirmed_account_can_ask_for_a_new_link_and_is_never_sent_off_site(
    django_capture_on_commit_callbacks,
) -> None:
    user = factories.fan(email="late@example.com", email_verified=False)
    client = Client()
    client.force_login(user)

    assert "Confirm your email address" in client.get("/dashboard/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/verify/send/", {"next": "https://evil.example/"})

    assert response.status_code == 302 and response["Location"] == "/"
    (message,) = mail.outbox
    assert message.to == ["late@example.com"]
    assert client.get(_link(message)).status_code == 302
    user.refresh_from_db()
    assert user.is_email_verified
