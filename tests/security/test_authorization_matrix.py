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
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import resolve
from django.utils import timezone

from accounts.models import ApiKey, User
from catalog.models import Work
from common.money import Money
from royalties.funding import prepaid_fund
from tests import factories
from tests.security.worlds import MARK, MISSING_ID, dashboard_pages, fill_route
from tests.test_api_contract import _operations

pytestmark = [pytest.mark.security, pytest.mark.django_db]

# Dashboard pages anyone may open: the public catalogue and a published work's files, and the page an
# invitation email links to (signed out, it only says how to sign in: nothing of the invitation). A new
# public page is added here on purpose, after checking it shows only public data.
PUBLIC_PAGES = {"browse", "offer", "asset-file", "invitation-accept"}
PUBLIC_OPERATIONS = {
    ("get", "/api/v1/health"),
    ("get", "/api/v1/offers"),
    ("get", "/api/v1/offers/{offer_id}"),
    ("get", "/api/v1/offers/{offer_id}/rsl"),
}


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
        url = fill_route(route, world["ids"])
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
        url = fill_route(route, world["ids"])
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
            assert _browser(role_user).get(fill_route(route, world["ids"])).status_code == 404, route
    reachable = [
        route for _, route in staff_pages if _browser(operator).get(fill_route(route, {})).status_code == 200
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


def _scope_needed(method: str, url: str) -> str:
    """The scope a key needs here: the view's own `required_scope` (tracing media is a read, metered
    access needs `access`), else `read` for GET and `write` for the rest, as accounts.permissions.KeyScope
    decides."""
    view = getattr(resolve(urlsplit(url).path).func, "cls", None)
    return getattr(view, "required_scope", None) or ("read" if method == "get" else "write")


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
        if _scope_needed(method, url) not in scopes:
            assert response.status_code in (403, 404, 405), (method, path, response.status_code)
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
