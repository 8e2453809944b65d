"""The payout settings pages: connect Stripe, link a wallet by signing (a real eth-account signature),
choose the rail; a vendor's card top-up. Each page refuses anonymous visitors, other roles and other
users' challenges, and POSTs need the CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import responses
from django.test import Client
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from accounts.models import PayoutProfile, User, WalletChallenge
from tests import factories
from tests.royalties.stripe_world import API_BASE, SECRET_KEY, WEBHOOK_SECRET, form, recorded

pytestmark = pytest.mark.django_db

SETTINGS_URL = "/dashboard/payout-settings/"


@pytest.fixture
def stripe_recorded(settings) -> Iterator[responses.RequestsMock]:
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = API_BASE
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def stripe_off(settings) -> None:
    settings.STRIPE_SECRET_KEY = ""


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text(response) -> str:
    return response.content.decode()


def signed_challenge(client: Client, wallet: LocalAccount) -> tuple[str, str, str]:
    """Ask for a challenge on the page, read the message it shows, sign it: (nonce, message, signature)."""
    asked = client.post("/dashboard/payout-settings/wallet/challenge/")
    assert asked.status_code == 302
    page = client.get(asked["Location"])
    nonce = re.search(r'name="nonce" value="([0-9a-f]{32})"', text(page)).group(1)
    message = WalletChallenge.objects.get(nonce=nonce).message
    assert '<script id="wallet-message" type="application/json">' in text(page)
    signature = "0x" + wallet.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")
    return nonce, message, signature


def test_a_creator_sees_their_settings_and_the_stripe_off_note(stripe_off) -> None:
    creator = factories.creator()

    response = client_for(creator).get(SETTINGS_URL)

    assert response.status_code == 200
    body = text(response)
    assert 'data-current-rail="manual"' in body
    assert "data-stripe-off" in body and "data-connect-stripe" not in body
    assert "data-link-wallet" in body
    assert (
        'data-rail-waiting="chain"' in body and 'data-rail-waiting="manual"' in body
    )  # no payee details yet
    # Page scripts come from a static file (the Content-Security-Policy refuses inline ones).
    assert "js/payout_settings.js" in body
    inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", body)
    assert all('type="application/json"' in attributes for attributes in inline)


def test_with_stripe_on_the_page_offers_to_connect(stripe_recorded) -> None:
    response = client_for(factories.fan()).get(SETTINGS_URL)

    assert response.status_code == 200
    assert "data-connect-stripe" in text(response) and "Connect Stripe" in text(response)
    assert "data-stripe-off" not in text(response)


def test_anonymous_visitors_are_sent_to_log_in() -> None:
    anonymous = Client()
    for url in (SETTINGS_URL, "/dashboard/payout-settings/stripe/refresh/", "/dashboard/balance/top-up/"):
        response = anonymous.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url
    posted = anonymous.post("/dashboard/payout-settings/wallet/challenge/")
    assert posted.status_code == 302
    assert WalletChallenge.objects.count() == 0


def test_a_vendor_has_no_payout_settings_and_a_creator_no_top_up(stripe_off) -> None:
    vendor, creator = factories.vendor(), factories.creator()

    assert client_for(vendor).get(SETTINGS_URL).status_code == 403
    assert client_for(vendor).post("/dashboard/payout-settings/wallet/challenge/").status_code == 403
    assert client_for(creator).get("/dashboard/balance/top-up/").status_code == 403
    assert WalletChallenge.objects.count() == 0


def test_linking_a_wallet_by_signing_the_message_the_page_shows() -> None:
    creator = factories.creator()
    client = client_for(creator)
    wallet: LocalAccount = Account.create()
    nonce, _, signature = signed_challenge(client, wallet)

    linked = client.post(
        "/dashboard/payout-settings/wallet/",
        {"nonce": nonce, "address": wallet.address, "signature": signature},
    )

    assert linked.status_code == 302 and linked["Location"] == SETTINGS_URL
    profile = PayoutProfile.objects.get(user=creator)
    assert profile.wallet_address == wallet.address and profile.wallet_ready
    page = text(client.get(SETTINGS_URL))
    assert wallet.address in page and 'data-rail-ready="chain"' in page


def test_a_signature_from_another_wallet_is_shown_next_to_the_field() -> None:
    creator = factories.creator()
    client = client_for(creator)
    claimed: LocalAccount = Account.create()
    other: LocalAccount = Account.create()
    nonce, message, _ = signed_challenge(client, claimed)
    wrong = "0x" + other.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")

    response = client.post(
        "/dashboard/payout-settings/wallet/", {"nonce": nonce, "address": claimed.address, "signature": wrong}
    )

    assert response.status_code == 400
    assert re.search(
        r'id_signature.*?<p class="error" role="alert">The signature was made by', text(response), re.S
    )
    assert other.address in text(response)
    assert not PayoutProfile.objects.filter(user=creator).exclude(wallet_address="").exists()


def test_another_users_challenge_is_neither_shown_nor_usable() -> None:
    owner, intruder = factories.creator(), factories.creator()
    wallet: LocalAccount = Account.create()
    nonce, message, signature = signed_challenge(client_for(owner), wallet)
    intruder_client = client_for(intruder)

    page = intruder_client.get(f"{SETTINGS_URL}?challenge={nonce}")
    used = intruder_client.post(
        "/dashboard/payout-settings/wallet/",
        {"nonce": nonce, "address": wallet.address, "signature": signature},
    )

    assert page.status_code == 200 and nonce not in text(page) and message.splitlines()[0] not in text(page)
    assert used.status_code == 302
    assert "No such challenge" in text(intruder_client.get(SETTINGS_URL))
    assert not PayoutProfile.objects.exclude(wallet_address="").exists()
    assert WalletChallenge.objects.get(nonce=nonce).used_at is None


def test_choosing_a_rail_that_is_not_ready_shows_why(stripe_off) -> None:
    creator = factories.creator()
    client = client_for(creator)

    refused = client.post("/dashboard/payout-settings/rail/", {"rail": "chain"})

    assert refused.status_code == 400
    assert "Link a wallet by signing a message first." in text(refused)
    assert not PayoutProfile.objects.filter(user=creator).exclude(rail="manual").exists()
    wallet: LocalAccount = Account.create()
    nonce, _, signature = signed_challenge(client, wallet)
    client.post(
        "/dashboard/payout-settings/wallet/",
        {"nonce": nonce, "address": wallet.address, "signature": signature},
    )
    chosen = client.post("/dashboard/payout-settings/rail/", {"rail": "chain"})
    assert chosen.status_code == 302
    assert PayoutProfile.objects.get(user=creator).rail == "chain"


def test_posts_without_the_csrf_token_are_refused() -> None:
    creator = factories.creator()
    client = Client(enforce_csrf_checks=True)
    client.force_login(creator)

    response = client.post("/dashboard/payout-settings/rail/", {"rail": "manual"})

    assert response.status_code == 403
    assert not PayoutProfile.objects.filter(user=creator).exists()


def test_connect_stripe_sends_the_user_to_stripe_and_the_refresh_link_makes_a_new_one(
    stripe_recorded,
) -> None:
    creator = factories.creator()
    client = client_for(creator)
    account, link = recorded("account"), recorded("account_link")
    stripe_recorded.post(f"{API_BASE}/v1/accounts", json=account)
    stripe_recorded.post(f"{API_BASE}/v1/account_links", json=link)

    connect = client.post("/dashboard/payout-settings/stripe/")
    refresh = client.get("/dashboard/payout-settings/stripe/refresh/")

    assert (connect.status_code, connect["Location"]) == (302, link["url"])
    assert (refresh.status_code, refresh["Location"]) == (302, link["url"])
    assert [call.request.url.removeprefix(API_BASE) for call in stripe_recorded.calls] == [
        "/v1/accounts",
        "/v1/account_links",
        "/v1/account_links",
    ]
    assert PayoutProfile.objects.get(user=creator).stripe_account_id == account["id"]


def test_coming_back_from_stripe_reads_the_account_state_at_once(stripe_recorded) -> None:
    creator = factories.creator()
    enabled = recorded("account_enabled")
    PayoutProfile.objects.create(user=creator, stripe_account_id=enabled["id"])
    stripe_recorded.get(f"{API_BASE}/v1/accounts/{enabled['id']}", json=enabled)

    response = client_for(creator).get(f"{SETTINGS_URL}?stripe=return")

    assert response.status_code == 200
    assert 'data-stripe-state="enabled"' in text(response)
    assert "Stripe has enabled payouts to your account." in text(response)
    assert PayoutProfile.objects.get(user=creator).stripe_payouts_enabled is True


def test_connect_stripe_with_stripe_off_explains_instead_of_failing(stripe_off) -> None:
    client = client_for(factories.creator())

    response = client.post("/dashboard/payout-settings/stripe/", follow=True)

    assert response.status_code == 200
    assert "Stripe is not configured" in text(response)


# Vendor top-up -------------------------------------------------------------------------------------------


def test_a_vendor_tops_up_by_card_on_stripe_checkout(stripe_recorded) -> None:
    vendor = factories.vendor()
    client = client_for(vendor)
    session = recorded("checkout_session")
    stripe_recorded.post(f"{API_BASE}/v1/checkout/sessions", json=session)
    assert "/dashboard/balance/top-up/" in text(client.get("/dashboard/balance/"))
    page = client.get("/dashboard/balance/top-up/")
    reference = re.search(r'name="reference" value="([0-9a-f]{32})"', text(page)).group(1)
    organisation = vendor.organisations.get()

    response = client.post(
        "/dashboard/balance/top-up/",
        {"amount": "25.50", "currency": "USD", "organisation": organisation.pk, "reference": reference},
    )

    assert (response.status_code, response["Location"]) == (302, session["url"])
    (call,) = stripe_recorded.calls
    assert call.request.headers["Idempotency-Key"] == f"topup-{organisation.pk}-{reference}"
    assert form(call)["line_items[0][price_data][unit_amount]"] == ["2550"]
    done = client.get("/dashboard/balance/top-up/?topup=done")
    assert 'data-topup-outcome="done"' in text(done)


def test_a_top_up_with_too_many_decimals_is_refused_next_to_the_amount(stripe_recorded) -> None:
    vendor = factories.vendor()
    client = client_for(vendor)

    response = client.post(
        "/dashboard/balance/top-up/",
        {
            "amount": "10",
            "currency": "JPY",
            "organisation": vendor.organisations.get().pk,
            "reference": "a" * 32,
        },
    )
    precise = client.post(
        "/dashboard/balance/top-up/",
        {
            "amount": "10.5",
            "currency": "JPY",
            "organisation": vendor.organisations.get().pk,
            "reference": "b" * 32,
        },
    )

    assert response.status_code == 400 and "between" in text(response)  # ¥10 is under the minimum
    assert precise.status_code == 400 and "at most 0 decimal places" in text(precise)
    assert len(stripe_recorded.calls) == 0


def test_the_top_up_page_says_when_stripe_is_off(stripe_off) -> None:
    response = client_for(factories.vendor()).get("/dashboard/balance/top-up/")

    assert response.status_code == 200
    assert "data-stripe-off" in text(response) and "data-topup-submit" not in text(response)
