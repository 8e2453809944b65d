import pytest
from django.core import mail
from django.test import Client

from accounts.models import Organisation, User

pytestmark = pytest.mark.django_db


def test_signing_up_as_a_vendor_creates_the_organisation_and_logs_in() -> None:
    client = Client()
    response = client.post(
        "/accounts/signup/",
        {
            "username": "acme",
            "email": "Ops@Acme.example",
            "role": "vendor",
            "organisation_name": "Acme AI",
            "password1": "a long enough passphrase",
            "password2": "a long enough passphrase",
        },
    )
    assert response.status_code == 302
    user = User.objects.get(username="acme")
    assert user.email == "ops@acme.example" and user.role == "vendor"
    assert Organisation.objects.get().members.get() == user
    assert client.get("/api/v1/me").json()["organisations"][0]["name"] == "Acme AI"


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
