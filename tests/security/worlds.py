"""A world with two parties' private objects, and the dashboard's URL list, for the authorization tests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver

from access.models import AccessEvent
from access.services import AccessRequest, access_request
from accounts.models import ApiKey
from catalog.models import Claim, Grant, Offer, SplitSheet, Work
from catalog.services import ParentClaim, asset_upload, derivative_create, grant_create, work_withdraw
from common.money import Money
from royalties.funding import prepaid_fund
from royalties.models import LedgerAccount, Statement
from tests import factories

MARK = "Qx9-private"  # in every private name of the owners below; strangers must never see it
MISSING_ID = 2_147_483_000


def dashboard_pages() -> list[tuple[str, str, dict[str, Any]]]:
    """(name, route, default kwargs) of every dashboard URL, from the resolver: new pages join at once."""
    prefix, resolver = get_resolver().namespace_dict["dashboard"]

    def walk(
        patterns: list[URLPattern | URLResolver], route: str
    ) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route + str(pattern.pattern))
            else:
                yield str(pattern.name), route + str(pattern.pattern), dict(pattern.default_args)

    return sorted(walk(resolver.url_patterns, "/" + prefix))


def build_world() -> dict[str, Any]:
    """A creator and a vendor whose private objects carry MARK, and a fan who licensed the creator's work."""
    owner = factories.creator(username="owner")
    fan = factories.fan(username="fanny")
    work = factories.work(owner, title="A published work")
    asset_upload(work=work, user=owner, data=factories.png_bytes(), filename="published.png")
    offer = factories.offer(owner, work, uses={"ai-train": 2, "derivative": 0})
    private = factories.work(owner, title=f"{MARK} unpublished work")
    private_asset = asset_upload(
        work=private, user=owner, data=factories.png_bytes(color=(1, 2, 3)), filename=f"{MARK}.png"
    ).asset
    withdrawn = factories.work(owner, title=f"{MARK} withdrawn")
    hidden_offer = factories.offer(owner, withdrawn)
    work_withdraw(work=withdrawn)
    grant = grant_create(offer=offer, user=fan).grant
    derivative_create(
        user=fan, title=f"{MARK} derivative", kind="image", parents=[ParentClaim(work.pk, grant.pk)]
    )
    claim = Claim.objects.create(
        work=private, respondent=fan, subject_sha256="1" * 64, match_kind="image", score=40.0, confidence=0.99
    )
    owner_secret = factories.key(owner, "read", "write")
    owner_key = ApiKey.objects.get(user=owner)
    ApiKey.objects.filter(pk=owner_key.pk).update(name=f"{MARK} key")

    vendor = factories.vendor(username="vendora", organisation_name=f"{MARK} Labs")
    organisation = vendor.organisations.get()
    prepaid_fund(organisation=organisation, amount=Money(10_000, "USD"), external_ref="matrix")
    vendor_secret = factories.key(vendor, "read", "access", "outputs")
    vendor_key = ApiKey.objects.get(user=vendor)
    for index in range(3):
        access_request(
            organisation=organisation,
            api_key=vendor_key,
            idempotency_key=f"matrix-{index}",
            request=AccessRequest(work_id=work.pk, use_class="ai-train", territory="US"),
        )
    statement = Statement.objects.filter(user=owner).first()
    ids = {
        "work_id": private.pk,
        "asset_id": private_asset.pk,
        "sheet_id": SplitSheet.objects.get(work=private).pk,
        "offer_id": hidden_offer.pk,
        "grant_id": grant.pk,
        "key_id": owner_key.pk,
        "claim_id": claim.pk,
        "statement_id": statement.pk if statement else MISSING_ID,
    }

    def state() -> tuple[Any, ...]:
        return (
            sorted(Work.objects.values_list("pk", "title", "status")),
            sorted(Offer.objects.values_list("pk", "status")),
            sorted(Grant.objects.values_list("pk", "status")),
            SplitSheet.objects.count(),
            # the parties' keys (a stranger may make keys of their own: the studio wallet does)
            sorted(ApiKey.objects.filter(user__in=[owner, fan, vendor]).values_list("pk", "revoked_at")),
            sorted(Claim.objects.values_list("pk", "status", "decision")),
            AccessEvent.objects.count(),
            sorted(LedgerAccount.objects.values_list("key", "balance_minor", "held_minor")),
        )

    return {
        "owner": owner,
        "fan": fan,
        "vendor": vendor,
        "owner_secret": owner_secret,
        "vendor_secret": vendor_secret,
        "ids": ids,
        "state": state,
        "published_work": work,
    }


def fill_route(route: str, ids: dict[str, int]) -> str:
    def value(match: re.Match[str]) -> str:
        converter, name = match.group(1) or "str", match.group(2)
        if name in ids:
            return str(ids[name])
        if converter in ("int", "path") or name.endswith("_id"):
            return str(MISSING_ID)
        if converter == "uuid":
            return "00000000-0000-4000-8000-000000000000"
        return "no-such-token"

    return re.sub(r"<(?:(\w+):)?(\w+)>", value, route)
