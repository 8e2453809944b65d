"""Payout set-up for an ordinary creator with Stripe off: payee details for the manual rail (a bank account
checked by its IBAN check digits, or a payment email), bounded, shown masked, changed only in a strong
session and confirmed by mail; the wallet path's signature field wraps, takes a pasted signature with line
breaks, and says clearly when a signature is bad."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client
from eth_account import Account
from eth_account.messages import encode_defunct

from accounts.models import PayoutProfile, SecurityEvent, User, WalletChallenge
from tests import factories

pytestmark = pytest.mark.django_db

URL = "/dashboard/payout-settings/manual/"
IBAN = "GB82 WEST 1234 5698 7654 32"


@pytest.fixture(autouse=True)
def stripe_off(settings) -> None:
    settings.STRIPE_SECRET_KEY = ""


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_with_stripe_off_the_page_asks_for_payee_details():
    body = client_for(factories.creator()).get("/dashboard/payout-settings/").content.decode()
    assert "data-manual-missing" in body and 'data-rail-waiting="manual"' in body
    assert 'name="iban"' in body and 'name="email"' in body


def test_a_creator_saves_a_bank_account_and_sees_it_masked(django_capture_on_commit_callbacks):
    creator = factories.creator(username="mira")
    mail.outbox.clear()
    client = client_for(creator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            URL, {"method": "bank", "holder": "Mira  Okafor", "iban": IBAN, "bic": "nwbkgb2lxxx"}
        )
    assert response.status_code == 302
    profile = PayoutProfile.objects.get(user=creator)
    assert (profile.manual_method, profile.manual_holder, profile.manual_iban, profile.manual_bic) == (
        "bank",
        "Mira Okafor",
        "GB82WEST12345698765432",
        "NWBKGB2LXXX",
    )
    body = client.get("/dashboard/payout-settings/").content.decode()
    assert "Mira Okafor, IBAN GB82 •••• 5432" in body
    assert "GB82WEST12345698765432" not in body and "5698 7654" not in body
    assert [m.subject for m in mail.outbox] == ["Where Tribute pays you has changed"]
    assert SecurityEvent.objects.filter(user=creator, kind=SecurityEvent.Kind.PAYOUT_CHANGED).count() == 1


def test_a_payment_email_is_accepted_instead():
    creator = factories.creator(username="mira")
    client = client_for(creator)
    assert (
        client.post(URL, {"method": "email", "holder": "Mira Okafor", "email": "Pay@Example.com"}).status_code
        == 302
    )
    profile = PayoutProfile.objects.get(user=creator)
    assert (profile.manual_method, profile.manual_email, profile.manual_iban) == (
        "email",
        "pay@example.com",
        "",
    )
    assert "Mira Okafor, p•••@example.com" in client.get("/dashboard/payout-settings/").content.decode()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"method": "bank", "holder": "Mira", "iban": "GB83 WEST 1234 5698 7654 32"},
            "iban",
            "check digits do not match",
        ),
        ({"method": "bank", "holder": "Mira", "iban": "12345"}, "iban", "An IBAN is a country code"),
        ({"method": "bank", "holder": "Mira", "iban": ""}, "iban", "Enter the IBAN"),
        ({"method": "bank", "holder": "Mira", "iban": IBAN, "bic": "NOPE"}, "bic", "A BIC has 8 or 11"),
        ({"method": "bank", "holder": "M", "iban": IBAN}, "holder", "2 to 140 printable characters"),
        ({"method": "bank", "holder": "x" * 141, "iban": IBAN}, "holder", "at most 140 characters"),
        ({"method": "email", "holder": "Mira", "email": "not-an-address"}, "email", "valid email"),
        ({"method": "cheque", "holder": "Mira"}, "method", "Select a valid choice"),
    ],
)
def test_bad_payee_details_are_refused_next_to_the_field_and_change_nothing(
    data, field, message, django_capture_on_commit_callbacks
):
    creator = factories.creator(username="mira")
    client = client_for(creator)
    assert (
        client.post(URL, {"method": "email", "holder": "Mira Okafor", "email": "pay@example.com"}).status_code
        == 302
    )
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(URL, data)
    assert response.status_code == 400
    errors = response.context["manual_form"].errors[field]
    assert any(message in error for error in errors), errors
    profile = PayoutProfile.objects.get(user=creator)
    assert (profile.manual_method, profile.manual_email, profile.manual_iban) == (
        "email",
        "pay@example.com",
        "",
    )
    assert mail.outbox == []


def test_vendors_and_strangers_cannot_set_payee_details():
    vendor = factories.vendor(username="acme")
    assert (
        client_for(vendor)
        .post(URL, {"method": "email", "holder": "Acme", "email": "a@example.com"})
        .status_code
        == 403
    )
    assert not PayoutProfile.objects.filter(user=vendor, manual_method="email").exists()
    assert Client().post(URL, {"method": "email", "holder": "X", "email": "x@example.com"}).status_code == 302


def test_an_unverified_address_cannot_set_payee_details():
    creator = factories.creator(username="mira", email_verified=False)
    response = client_for(creator).post(URL, {"method": "bank", "holder": "Mira", "iban": IBAN})
    assert response.status_code == 400
    assert not PayoutProfile.objects.filter(user=creator).exclude(manual_method="").exists()


def test_changing_payee_details_needs_a_strong_session(settings):
    settings.SENSITIVE_CHANGES_NEED_TWO_FACTOR = True
    creator = factories.creator(username="mira")
    response = client_for(creator).post(URL, {"method": "bank", "holder": "Mira", "iban": IBAN})
    assert response.status_code == 302 and "/accounts/" in response["Location"]
    assert not PayoutProfile.objects.filter(user=creator).exclude(manual_method="").exists()


def test_the_signature_field_wraps_and_a_pasted_signature_with_line_breaks_links_the_wallet():
    creator = factories.creator(username="mira")
    client = client_for(creator)
    client.post("/dashboard/payout-settings/wallet/challenge/")
    challenge = WalletChallenge.objects.get(user=creator)
    page = client.get(f"/dashboard/payout-settings/?challenge={challenge.nonce}").content.decode()
    assert '<textarea name="signature"' in page and 'class="signature-input"' in page
    assert "data-sign-steps" in page
    wallet = Account.create()
    signature = wallet.sign_message(encode_defunct(text=challenge.message)).signature.hex()
    signature = "0x" + signature.removeprefix("0x")
    wrapped = signature[:66] + "\n" + signature[66:]
    response = client.post(
        "/dashboard/payout-settings/wallet/",
        {"nonce": challenge.nonce, "address": wallet.address, "signature": wrapped},
    )
    assert response.status_code == 302
    assert PayoutProfile.objects.get(user=creator).wallet_address == wallet.address


def test_a_bad_signature_gets_a_clear_error_next_to_the_field():
    creator = factories.creator(username="mira")
    client = client_for(creator)
    client.post("/dashboard/payout-settings/wallet/challenge/")
    challenge = WalletChallenge.objects.get(user=creator)
    response = client.post(
        "/dashboard/payout-settings/wallet/",
        {"nonce": challenge.nonce, "address": Account.create().address, "signature": "0x1234"},
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert "The signature must be 65 bytes in hex (0x followed by 130 hex digits)." in body
    assert not PayoutProfile.objects.filter(user=creator).exclude(wallet_address="").exists()
