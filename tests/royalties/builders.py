"""Small worlds for ledger tests, made through the catalog's and the ledger's own services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core import mail
from django.test import TestCase

from accounts.models import Organisation, User
from catalog.models import Offer, Work
from catalog.services import (
    ParentClaim,
    Terms,
    derivative_create,
    offer_publish,
    split_share_accept,
    split_sheet_propose,
)
from common.money import Money
from royalties.funding import prepaid_fund
from royalties.licences import licence_accept
from royalties.models import LedgerAccount
from tests import factories


def organisation_of(vendor: User) -> Organisation:
    return Organisation.objects.get(membership__user=vendor)


def co_own(work: Work, manager: User, shares: list[tuple[User, int]]) -> None:
    """Give `work` a new split sheet and have every co-owner accept it."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        split_sheet_propose(work=work, user=manager, shares=[(u.email, bps) for u, bps in shares])
    for user, _ in shares:
        if user.pk == manager.pk:
            continue
        message = next(m for m in reversed(mail.outbox) if user.email in m.to)
        token = message.body.split("accept with this token:\n", 1)[1].split()[0]
        split_share_accept(token=token, user=user)


def publish(owner: User, work: Work, *, share_bps: int = 0, **terms: Any) -> Offer:
    uses = terms.pop("uses", {"ai-train": 5, "derivative": 0} if share_bps else {"ai-train": 5})
    staff = "platform_fee_bps" in terms
    return offer_publish(
        work=work,
        user=owner,
        terms=Terms(currency="USD", uses=uses, derivative_share_bps=share_bps, **terms),
        platform_staff=staff,
    )


def derive(maker: User, title: str, parents: list[Offer]) -> Work:
    """A derivative of `parents`, each licensed by `maker` (a licence fee, if any, paid by card)."""
    claims = [
        ParentClaim(offer.work_id, licence_accept(offer=offer, user=maker, paid_on_rail="card").grant.pk)
        for offer in parents
    ]
    return derivative_create(user=maker, title=title, kind="image", parents=claims)


@dataclass
class Chain:
    """Three levels with two parents at one level:

    D (dan 100%) --50%--> C (carl 100%) --30%--> A (alice 60%, bob 40%)
                                        --20%--> B (bea 100%)
    """

    alice: User
    bob: User
    bea: User
    carl: User
    dan: User
    a: Work
    b: Work
    c: Work
    d: Work
    offer_d: Offer


def three_level_chain() -> Chain:
    alice, bob, bea, carl, dan = (
        factories.creator(username=n) for n in ("alice", "bob", "bea", "carl", "dan")
    )
    a = factories.work(alice, title="A")
    co_own(a, alice, [(alice, 6000), (bob, 4000)])
    b = factories.work(bea, title="B")
    offer_a = publish(alice, a, share_bps=3000)
    offer_b = publish(bea, b, share_bps=2000)
    c = derive(carl, "C", [offer_a, offer_b])
    offer_c = publish(carl, c, share_bps=5000)
    d = derive(dan, "D", [offer_c])
    offer_d = publish(dan, d)
    return Chain(alice, bob, bea, carl, dan, a, b, c, d, offer_d)


def funded_vendor(amount_minor: int = 1_000_000, *, username: str = "acme") -> Organisation:
    vendor = factories.vendor(username=username, organisation_name=f"{username} AI")
    organisation = organisation_of(vendor)
    prepaid_fund(
        organisation=organisation, amount=Money(amount_minor, "USD"), external_ref=f"top-up-{username}"
    )
    return organisation


def payable(user: User, currency: str = "USD") -> int:
    account = LedgerAccount.objects.filter(key=f"payable:user:{user.pk}:{currency}").first()
    return 0 if account is None else account.balance_minor


def balance(key: str) -> int:
    account = LedgerAccount.objects.filter(key=key).first()
    return 0 if account is None else account.balance_minor
