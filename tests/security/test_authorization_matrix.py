"""The authorization matrix: every dashboard page and every API operation, found programmatically (the URL
resolver, the OpenAPI schema), called anonymously, as a stranger of each role, with the wrong owner's API
key, with keys lacking the scope, with a revoked key. Pass criterion: 401/403/404/405 or a login redirect,
nothing of the other party in any response, and nothing of theirs changed.

tests/test_api_contract.py already walks the schema as an anonymous caller, as session strangers and with
malformed JSON; this file adds the dashboard, API keys (the wrong owner's, missing scopes, revoked) and the
owner's view as a control, so a page that shows nothing to anybody does not pass for a safe one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from access.models import AccessEvent
from access.services import AccessRequest, access_request
from accounts.models import ApiKey, User
from catalog.models import Claim, Grant, Offer, SplitSheet, Work
from catalog.services import ParentClaim, asset_upload, derivative_create, grant_create, work_withdraw
from common.money import Money
from royalties.models import LedgerAccount, Statement
from royalties.services import prepaid_fund
from tests import factories
from tests.test_api_contract import _operations

pytestmark = pytest.mark.django_db

MARK = "Qx9-private"  # in every private name of the owners below; strangers must never see it
# Dashboard pages anyone may open: the public catalogue and a published work's files. A new public page
# is added here on purpose, after checking it shows only public data.
PUBLIC_PAGES = {"browse", "offer", "asset-file"}
PUBLIC_OPERATIONS = {
    ("get", "/api/v1/health"),
    ("get", "/api/v1/offers"),
    ("get", "/api/v1/offers/{offer_id}"),
    ("get", "/api/v1/offers/{offer_id}/rsl"),
}
MISSING_ID = 2_147_483_000


def _pattern_params(route: str) -> list[tuple[str, str]]:
    return re.findall(r"<(?:(\w+):)?(\w+)>", route)


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


@pytest.fixture
def world() -> dict[str, Any]:
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
            sorted(ApiKey.objects.values_list("pk", "revoked_at")),
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


def _fill(route: str, ids: dict[str, int]) -> str:
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


def _browser(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _text(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


def test_the_dashboard_url_list_is_complete() -> None:
    names = {name for name, _, _ in dashboard_pages()}
    # the pages every part of the platform has (a guard against the walk finding nothing)
    assert {"home", "works", "work", "keys", "claims", "earnings", "balance", "browse"} <= names
    assert len(names) >= 30


def test_an_anonymous_visitor_gets_a_login_redirect_or_a_refusal_on_every_dashboard_page(world) -> None:
    anonymous = _browser(None)
    for name, route, _ in dashboard_pages():
        url = _fill(route, world["ids"])
        for method in ("get", "post"):
            response = getattr(anonymous, method)(url)
            redirect = response.status_code == 302 and response["Location"].startswith("/accounts/login/")
            public = name in PUBLIC_PAGES and response.status_code == 200
            assert redirect or public or response.status_code in (401, 403, 404, 405), (
                method,
                url,
                response.status_code,
            )
            assert MARK not in _text(response), (method, url)


@pytest.mark.parametrize("role", ["creator", "fan", "vendor"])
def test_a_stranger_of_every_role_sees_and_changes_nothing_of_the_owners_on_any_dashboard_page(
    world, role
) -> None:
    stranger = {"creator": factories.creator, "fan": factories.fan, "vendor": factories.vendor}[role]()
    browser = _browser(stranger)
    before = world["state"]()
    refused = 0
    for name, route, _ in dashboard_pages():
        url = _fill(route, world["ids"])
        for method in ("get", "post"):
            response = getattr(browser, method)(url)
            assert response.status_code < 500, (method, url, response.status_code)
            assert MARK not in _text(response), (method, url)
            if "<" in route and name not in PUBLIC_PAGES:
                # a page about someone else's object: refused, never served
                assert response.status_code in (302, 403, 404, 405), (method, url, response.status_code)
                if response.status_code == 302:
                    assert f"/{world['ids'].get('work_id')}/" not in response["Location"], (method, url)
                refused += 1
    assert world["state"]() == before
    assert refused >= 20


def test_the_owner_does_see_their_private_objects_so_the_refusals_above_mean_something(world) -> None:
    browser = _browser(world["owner"])
    ids = world["ids"]
    for url in [
        f"/dashboard/works/{ids['work_id']}/",
        f"/dashboard/claims/{ids['claim_id']}/",
        "/dashboard/works/",
        "/dashboard/keys/",
    ]:
        response = browser.get(url)
        assert response.status_code == 200, url
        assert MARK in _text(response), url
    vendor_page = _browser(world["vendor"]).get("/dashboard/balance/")
    assert vendor_page.status_code == 200 and MARK in _text(vendor_page)


def test_only_staff_reach_the_operator_pages(world) -> None:
    staff_pages = [
        (name, route) for name, route, _ in dashboard_pages() if route.startswith("/dashboard/staff/")
    ]
    assert staff_pages
    operator = factories.creator(username="operator")
    User.objects.filter(pk=operator.pk).update(is_staff=True)
    operator.refresh_from_db()
    for role_user in (world["owner"], world["fan"], world["vendor"]):
        for _, route in staff_pages:
            assert _browser(role_user).get(_fill(route, world["ids"])).status_code == 404, route
    reachable = [
        route for _, route in staff_pages if _browser(operator).get(_fill(route, {})).status_code == 200
    ]
    assert reachable  # the same pages open for staff


# The API, with keys ---------------------------------------------------------------------------------------


def _api_fill(path: str, ids: dict[str, int]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ids.get(m.group(1), MISSING_ID)), path)


def _call(client, method: str, url: str, **headers: str):
    if method == "get":
        return client.get(url, **headers)
    return getattr(client, method)(url, {}, format="json", **headers)


def test_another_vendors_full_key_reads_and_changes_nothing_of_the_owners(api, world) -> None:
    intruder = factories.vendor(username="vendorb", organisation_name="Other Labs")
    prepaid_fund(organisation=intruder.organisations.get(), amount=Money(500, "USD"), external_ref="b")
    secret = factories.key(intruder, "read", "write", "access", "outputs")
    before = world["state"]()
    for method, path, _ in _operations():
        url = _api_fill(path, world["ids"])
        response = _call(api, method, url, HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_IDEMPOTENCY_KEY="x1")
        assert response.status_code < 500, (method, path, response.status_code)
        assert MARK not in _text(response), (method, path)
        if "{" in path and (method, path) not in PUBLIC_OPERATIONS:
            assert response.status_code in (400, 403, 404, 405, 409), (method, path, response.status_code)
    assert world["state"]() == before


@pytest.mark.parametrize("scopes", [("read",), ("access",), ("outputs",), ("write",)])
def test_a_key_without_the_scope_an_operation_needs_is_refused_and_changes_nothing(
    api, world, scopes
) -> None:
    secret = factories.key(world["vendor"], *scopes)
    before = world["state"]()
    refused = 0
    for method, path, _ in _operations():
        if (method, path) in PUBLIC_OPERATIONS:
            continue
        url = _api_fill(path, world["ids"])
        response = _call(api, method, url, HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_IDEMPOTENCY_KEY="s1")
        assert response.status_code < 500, (method, path, response.status_code)
        needs_write = method != "get"
        if needs_write and not {"write", "access", "outputs"} & set(scopes):
            assert response.status_code in (403, 404, 405), (method, path, response.status_code)
            refused += 1
        if method == "get" and "read" not in scopes:
            assert response.status_code in (403, 404), (method, path, response.status_code)
            refused += 1
    assert world["state"]() == before
    assert refused >= 10


def test_a_fans_key_cannot_do_what_only_creators_do(api, world) -> None:
    secret = factories.key(world["fan"], "read", "write")
    before = Work.objects.count()
    response = api.post(
        "/api/v1/works", {"title": "x", "kind": "image"}, format="json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    assert response.status_code == 403
    assert response.json()["code"]
    assert Work.objects.count() == before


def test_a_revoked_or_expired_key_gets_401_on_every_operation(api, world) -> None:
    revoked = factories.key(world["vendor"], "read", "write", "access", "outputs")
    expired = factories.key(world["owner"], "read", "write")
    ApiKey.objects.filter(prefix=revoked[:12]).update(revoked_at=timezone.now())
    ApiKey.objects.filter(prefix=expired[:12]).update(expires_at=timezone.now())
    before = world["state"]()
    for secret in (revoked, expired):
        for method, path, _ in _operations():
            if path == "/api/v1/health":  # liveness reads no credentials at all
                continue
            url = _api_fill(path, world["ids"])
            response = _call(api, method, url, HTTP_AUTHORIZATION=f"Bearer {secret}")
            assert response.status_code == 401, (method, path, response.status_code)
            assert response["Content-Type"] == "application/problem+json"
            assert MARK not in _text(response)
    assert world["state"]() == before


def test_the_owners_own_key_reads_what_the_intruders_could_not(api, world) -> None:
    # The control for the walks above: the same URLs answer the owner with the private data.
    secret = world["owner_secret"]
    work = api.get(f"/api/v1/works/{world['ids']['work_id']}", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert work.status_code == 200 and MARK in _text(work)
    claim = api.get(f"/api/v1/claims/{world['ids']['claim_id']}", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert claim.status_code == 200
    usage = api.get("/api/v1/usage", HTTP_AUTHORIZATION=f"Bearer {world['vendor_secret']}")
    assert usage.status_code == 200 and sum(row["accesses"] for row in usage.json()) == 3
