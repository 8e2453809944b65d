"""Helpers for the payout tests: payees with money to be paid, wallets proven by signature, the chain."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import transaction
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from accounts.models import PayoutProfile, User
from accounts.payout_identity import payout_profile_rail_set, wallet_challenge_create, wallet_link
from contracts.chain import Chain
from royalties.chain_client import chain
from royalties.ledger import Leg, account_ensure, clearing_account, transaction_post
from royalties.models import AccountKind, LedgerAccount, Payout, TransactionKind
from royalties.payouts import in_transit_key
from royalties.rails import RailError


class Crash(BaseException):
    """A process dying mid-step: not an Exception, so nothing in the code under test catches it."""


def credit(user: User, amount_minor: int, currency: str = "USD") -> None:
    """Put money in a payee's payable account, as a settlement would."""
    with transaction.atomic():
        payable = account_ensure(
            key=f"payable:user:{user.pk}:{currency}",
            kind=AccountKind.PAYABLE,
            currency=currency,
            user_id=user.pk,
        )
        transaction_post(
            kind=TransactionKind.ADJUSTMENT,
            key=f"test-credit:{uuid.uuid4()}",
            memo="test credit",
            legs=[
                Leg(clearing_account(rail="test", currency=currency), -amount_minor),
                Leg(payable, amount_minor),
            ],
        )


def balance(key: str) -> int:
    account = LedgerAccount.objects.filter(key=key).first()
    return 0 if account is None else account.balance_minor


def payable(user: User, currency: str = "USD") -> int:
    return balance(f"payable:user:{user.pk}:{currency}")


def in_transit(rail: str, currency: str = "USD") -> int:
    return balance(in_transit_key(rail, currency))


def prove_wallet(user: User) -> LocalAccount:
    """The user links a fresh wallet by signing our challenge, and chooses the chain rail."""
    wallet: LocalAccount = Account.create()
    challenge = wallet_challenge_create(user=user, domain="tribute.test")
    signature = wallet.sign_message(encode_defunct(text=challenge.message)).signature.hex()
    wallet_link(
        user=user,
        nonce=challenge.nonce,
        address=wallet.address,
        signature="0x" + signature.removeprefix("0x"),
    )
    payout_profile_rail_set(user=user, rail="chain")
    return wallet


def stripe_profile(user: User, *, enabled: bool = True) -> PayoutProfile:
    profile, _ = PayoutProfile.objects.get_or_create(user=user)
    profile.rail = "stripe"
    profile.stripe_account_id = f"acct_{user.pk:04d}test"
    profile.stripe_payouts_enabled = enabled
    profile.save()
    return profile


@pytest.fixture
def onchain() -> Iterator[Chain]:
    """The process's in-process chain, put back as it was after the test."""
    client = chain()
    snapshot = client.snapshot()
    yield client
    client.revert(snapshot)


@dataclass
class FakeStripe:
    """Stripe's transfer endpoint as it behaves with an Idempotency-Key: the same key answers the same
    transfer, however often it is asked. `calls` counts requests per key; `transfers` what was created."""

    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_with: RailError | None = None
    crash_after_call: bool = False

    def transfer_send(self, payout: Payout) -> str:
        self.calls[payout.key] += 1
        if self.fail_with is not None:
            raise self.fail_with
        if payout.key not in self.transfers:
            self.transfers[payout.key] = {
                "id": f"tr_{len(self.transfers) + 1:04d}",
                "amount": payout.amount_minor,
                "currency": payout.currency.lower(),
                "destination": payout.destination,
            }
        if self.crash_after_call:
            self.crash_after_call = False
            raise Crash("the worker died after Stripe answered")
        return str(self.transfers[payout.key]["id"])
