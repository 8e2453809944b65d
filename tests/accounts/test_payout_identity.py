"""Payout identities: a wallet is linked only by a real signature (eth-account keys) over a challenge we
issued, once, before it expires; a rail can be chosen only when its identity is ready; changing any of it
needs a logged-in person."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from accounts.models import PayoutProfile, User, WalletChallenge
from tests import factories

pytestmark = pytest.mark.django_db


def sign(wallet: LocalAccount, message: str) -> str:
    return "0x" + wallet.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")


def challenge_for(client, user: User) -> dict:
    response = client.post("/api/v1/payout-profile/wallet-challenge")
    assert response.status_code == 201, response.content
    return response.json()


def profile_of(user: User) -> PayoutProfile:
    return PayoutProfile.objects.get(user=user)


def test_the_challenge_names_the_user_the_site_a_nonce_and_an_expiry(as_user, settings) -> None:
    settings.WALLET_CHALLENGE_TTL_S = 600
    user = factories.creator(username="ada")
    before = timezone.now()

    body = challenge_for(as_user(user), user)

    stored = WalletChallenge.objects.get(nonce=body["nonce"])
    assert stored.user == user and stored.message == body["message"] and stored.used_at is None
    assert f"Account: ada (#{user.pk})" in body["message"]
    assert "Domain: testserver" in body["message"]
    assert f"Nonce: {body['nonce']}" in body["message"]
    assert f"Expires at: {stored.expires_at.isoformat(timespec='seconds')}" in body["message"]
    assert len(body["nonce"]) == 32
    assert stored.expires_at - stored.created_at == timedelta(seconds=600)
    assert before - timedelta(seconds=1) <= stored.created_at <= timezone.now()


def test_a_wallet_is_linked_by_its_own_signature_and_stored_checksummed(as_user) -> None:
    user = factories.creator()
    client = as_user(user)
    wallet: LocalAccount = Account.create()
    body = challenge_for(client, user)

    response = client.post(
        "/api/v1/payout-profile/wallet",
        {
            "nonce": body["nonce"],
            "address": wallet.address.lower(),
            "signature": sign(wallet, body["message"]),
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    profile = profile_of(user)
    assert profile.wallet_address == wallet.address  # EIP-55 checksummed, though sent in lower case
    assert profile.wallet_verified_at is not None and profile.wallet_ready
    assert response.json()["wallet"]["address"] == wallet.address
    used = WalletChallenge.objects.get(nonce=body["nonce"])
    assert used.used_at is not None and used.address == wallet.address


def test_a_signature_by_another_key_is_refused_and_the_challenge_stays_open(as_user) -> None:
    user = factories.creator()
    client = as_user(user)
    claimed: LocalAccount = Account.create()
    impostor: LocalAccount = Account.create()
    body = challenge_for(client, user)

    wrong = client.post(
        "/api/v1/payout-profile/wallet",
        {"nonce": body["nonce"], "address": claimed.address, "signature": sign(impostor, body["message"])},
        format="json",
    )

    assert wrong.status_code == 400
    assert wrong.json()["code"] == "wrong_signer"
    assert wrong.json()["signer"] == impostor.address
    assert not PayoutProfile.objects.filter(user=user).exclude(wallet_address="").exists()
    assert WalletChallenge.objects.get(nonce=body["nonce"]).used_at is None
    right = client.post(
        "/api/v1/payout-profile/wallet",
        {"nonce": body["nonce"], "address": claimed.address, "signature": sign(claimed, body["message"])},
        format="json",
    )
    assert right.status_code == 200
    assert profile_of(user).wallet_address == claimed.address


def test_a_signature_over_another_message_is_a_wrong_signer(as_user) -> None:
    user = factories.creator()
    client = as_user(user)
    wallet: LocalAccount = Account.create()
    body = challenge_for(client, user)

    response = client.post(
        "/api/v1/payout-profile/wallet",
        {"nonce": body["nonce"], "address": wallet.address, "signature": sign(wallet, body["message"] + " ")},
        format="json",
    )

    assert (response.status_code, response.json()["code"]) == (400, "wrong_signer")
    assert not PayoutProfile.objects.filter(user=user).exclude(wallet_address="").exists()


def test_a_replayed_challenge_is_refused_and_changes_nothing(as_user) -> None:
    user = factories.creator()
    client = as_user(user)
    first: LocalAccount = Account.create()
    body = challenge_for(client, user)
    signed = {"nonce": body["nonce"], "address": first.address, "signature": sign(first, body["message"])}
    assert client.post("/api/v1/payout-profile/wallet", signed, format="json").status_code == 200
    linked_at = profile_of(user).wallet_verified_at

    replay = client.post("/api/v1/payout-profile/wallet", signed, format="json")

    assert replay.status_code == 409
    assert replay.json()["code"] == "challenge_used"
    assert profile_of(user).wallet_verified_at == linked_at


def test_an_expired_challenge_is_refused(as_user) -> None:
    user = factories.creator()
    client = as_user(user)
    wallet: LocalAccount = Account.create()
    body = challenge_for(client, user)
    past = timezone.now() - timedelta(hours=1)
    WalletChallenge.objects.filter(nonce=body["nonce"]).update(
        created_at=past, expires_at=past + timedelta(minutes=10)
    )

    response = client.post(
        "/api/v1/payout-profile/wallet",
        {"nonce": body["nonce"], "address": wallet.address, "signature": sign(wallet, body["message"])},
        format="json",
    )

    assert (response.status_code, response.json()["code"]) == (400, "challenge_expired")
    assert not PayoutProfile.objects.filter(user=user).exclude(wallet_address="").exists()
    assert WalletChallenge.objects.get(nonce=body["nonce"]).used_at is None


def test_another_users_challenge_cannot_be_used(as_user) -> None:
    owner, thief = factories.creator(), factories.creator()
    wallet: LocalAccount = Account.create()
    body = challenge_for(as_user(owner), owner)

    response = as_user(thief).post(
        "/api/v1/payout-profile/wallet",
        {"nonce": body["nonce"], "address": wallet.address, "signature": sign(wallet, body["message"])},
        format="json",
    )

    assert (response.status_code, response.json()["code"]) == (404, "challenge_not_found")
    assert not PayoutProfile.objects.exclude(wallet_address="").exists()


@pytest.mark.parametrize(
    ("address", "signature", "code"),
    [
        ("0x1234", "0x" + "11" * 65, "invalid_address"),
        ("0x" + "ab" * 20, "0x1234", "invalid_signature"),
        ("0x" + "ab" * 20, "0x" + "00" * 65, "invalid_signature"),
        ("0x" + "ab" * 20, "0x" + "zz" * 65, "invalid_signature"),
    ],
)
def test_malformed_addresses_and_signatures_are_clear_400s(
    as_user, address: str, signature: str, code: str
) -> None:
    user = factories.creator()
    client = as_user(user)
    body = challenge_for(client, user)

    response = client.post(
        "/api/v1/payout-profile/wallet",
        {"nonce": body["nonce"], "address": address, "signature": signature},
        format="json",
    )

    assert (response.status_code, response.json()["code"]) == (400, code)
    assert response["Content-Type"] == "application/problem+json"
    assert WalletChallenge.objects.get(nonce=body["nonce"]).used_at is None


# Choosing the rail -----------------------------------------------------------------------------------------


def test_the_profile_starts_manual_and_says_why_the_other_rails_are_not_ready(as_user, settings) -> None:
    settings.STRIPE_SECRET_KEY = ""
    user = factories.fan()

    body = as_user(user).get("/api/v1/payout-profile").json()

    assert body["rail"] == "manual"
    ready = {row["rail"]: (row["ready"], row["reason"]) for row in body["rails"]}
    assert ready["manual"] == (True, "")
    assert ready["chain"][0] is False and "wallet" in ready["chain"][1]
    assert ready["stripe"][0] is False and "not configured" in ready["stripe"][1]
    assert body["stripe"]["configured"] is False


def test_a_rail_is_chosen_only_once_its_identity_is_ready(as_user) -> None:
    user = factories.creator()
    client = as_user(user)

    refused = client.put("/api/v1/payout-profile", {"rail": "chain"}, format="json")

    assert (refused.status_code, refused.json()["code"]) == (409, "rail_not_ready")
    assert not PayoutProfile.objects.filter(user=user).exclude(rail="manual").exists()
    wallet: LocalAccount = Account.create()
    body = challenge_for(client, user)
    client.post(
        "/api/v1/payout-profile/wallet",
        {"nonce": body["nonce"], "address": wallet.address, "signature": sign(wallet, body["message"])},
        format="json",
    )
    chosen = client.put("/api/v1/payout-profile", {"rail": "chain"}, format="json")
    assert chosen.status_code == 200
    assert chosen.json()["rail"] == profile_of(user).rail == "chain"


def test_stripe_is_chosen_only_with_stripe_on_and_payouts_enabled_on_the_account(as_user, settings) -> None:
    user = factories.creator()
    client = as_user(user)
    PayoutProfile.objects.create(user=user, stripe_account_id="acct_ready", stripe_payouts_enabled=False)
    settings.STRIPE_SECRET_KEY = "sk_test_x"

    not_enabled = client.put("/api/v1/payout-profile", {"rail": "stripe"}, format="json")
    PayoutProfile.objects.filter(user=user).update(stripe_payouts_enabled=True)
    settings.STRIPE_SECRET_KEY = ""
    stripe_off = client.put("/api/v1/payout-profile", {"rail": "stripe"}, format="json")
    settings.STRIPE_SECRET_KEY = "sk_test_x"
    chosen = client.put("/api/v1/payout-profile", {"rail": "stripe"}, format="json")

    assert (not_enabled.status_code, "finish onboarding" in not_enabled.json()["detail"]) == (409, True)
    assert (stripe_off.status_code, "not configured" in stripe_off.json()["detail"]) == (409, True)
    assert chosen.status_code == 200 and profile_of(user).rail == "stripe"


def test_an_api_key_can_read_but_not_change_payout_settings(with_key) -> None:
    user = factories.creator()
    client = with_key(factories.key(user, "read", "write"))

    read = client.get("/api/v1/payout-profile")
    change = client.put("/api/v1/payout-profile", {"rail": "manual"}, format="json")
    challenge = client.post("/api/v1/payout-profile/wallet-challenge")

    assert read.status_code == 200
    assert (change.status_code, challenge.status_code) == (403, 403)
    assert WalletChallenge.objects.count() == 0


def test_anonymous_callers_get_401(api) -> None:
    assert api.get("/api/v1/payout-profile").status_code == 401
    assert api.post("/api/v1/payout-profile/wallet-challenge").status_code == 401


def test_a_stripe_state_older_than_the_one_applied_changes_nothing() -> None:
    from accounts.payout_identity import payout_profile_stripe_state_apply

    user = factories.creator()
    PayoutProfile.objects.create(user=user, stripe_account_id="acct_order")
    now = timezone.now()

    newer = payout_profile_stripe_state_apply(
        account_id="acct_order", payouts_enabled=True, details_submitted=True, at=now
    )
    older = payout_profile_stripe_state_apply(
        account_id="acct_order", payouts_enabled=False, details_submitted=False, at=now - timedelta(seconds=1)
    )

    assert (newer, older) == (True, False)
    profile = profile_of(user)
    assert (profile.stripe_payouts_enabled, profile.stripe_state_at) == (True, now)
