"""The Content-Security-Policy in a real browser (Debian's Chromium through Playwright): every dashboard page
(from the URL resolver), the API docs and the admin load without a single policy violation, and their
JavaScript runs (htmx, the charts, the terms preview, Swagger UI)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import playwright.sync_api as playwright_sync
import pytest
from django.conf import settings
from django.db import connections
from django.test import Client

from accounts.models import User
from tests.security.worlds import dashboard_pages, fill_route

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop runs in this thread

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.security, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Recorded before any page script runs; init scripts are not subject to the page's policy.
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " " + e.sourceFile);
});
"""


@pytest.fixture
def browser() -> Iterator[playwright_sync.Browser]:
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()
        connections.close_all()


def _session_for(user: User, live_server) -> list[dict[str, object]]:
    client = Client()
    client.force_login(user)
    return [
        {
            "name": settings.SESSION_COOKIE_NAME,
            "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
            "url": live_server.url,
        }
    ]


def _is_page(response) -> bool:
    return response.status_code in (200, 403) and response.get("Content-Type", "").startswith("text/html")


def _visit(context, url: str) -> tuple[int, list[str], list[str]]:
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
    response = page.goto(url, wait_until="networkidle")
    violations = page.evaluate("window.__violations")
    page.close()
    status = response.status if response else 0
    return status, violations, [text for text in console if "Content Security Policy" in text]


def test_every_page_loads_without_a_policy_violation_and_its_scripts_run(browser, live_server, world) -> None:
    owner, vendor = world["owner"], world["vendor"]
    User.objects.filter(pk=owner.pk).update(is_staff=True, is_superuser=True)
    owner.refresh_from_db()
    visited = 0
    for user in (owner, vendor):
        context = browser.new_context()
        context.add_init_script(WATCH_VIOLATIONS)
        context.add_cookies(_session_for(user, live_server))
        urls = [fill_route(route, world["ids"]) for _, route, _ in dashboard_pages() if "<" not in route]
        ids = world["ids"]
        urls += [f"/dashboard/works/{ids['work_id']}/", f"/dashboard/claims/{ids['claim_id']}/"]
        urls += ["/api/docs/", "/admin/", "/admin/royalties/", "/accounts/login/", "/"]
        probe = Client()
        probe.force_login(user)
        # Only pages: POST-only addresses answer GET with an empty 405, and downloads (CSV) are not rendered.
        urls = [url for url in urls if _is_page(probe.get(url))]
        for url in urls:
            status, violations, console = _visit(context, live_server.url + url)
            if status in (200, 403):
                visited += 1
            assert violations == [] and console == [], (user.username, url, violations, console)
        context.close()
    assert visited >= 40

    # The scripts really run under the policy: htmx, the chart, the live terms preview, Swagger UI.
    context = browser.new_context()
    context.add_cookies(_session_for(owner, live_server))
    page = context.new_page()
    page.goto(live_server.url + "/dashboard/", wait_until="networkidle")
    assert page.evaluate("typeof window.htmx") == "object"
    page.goto(live_server.url + f"/dashboard/works/{world['published_work'].pk}/offers/new/")
    playwright_sync.expect(page.locator("#terms-preview")).not_to_be_empty()
    page.goto(live_server.url + "/api/docs/")
    playwright_sync.expect(page.locator(".swagger-ui .info .title")).to_contain_text("Tribute API")
    context.close()


def test_an_injected_inline_script_is_blocked_and_reported(browser, live_server, world) -> None:
    # The control for the test above: the watcher does see a violation when there is one.
    context = browser.new_context()
    context.add_init_script(WATCH_VIOLATIONS)
    context.add_cookies(_session_for(world["owner"], live_server))
    page = context.new_page()
    page.goto(live_server.url + "/dashboard/works/", wait_until="networkidle")
    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.__injected = true";
            document.body.appendChild(script);
            const marked = document.createElement("div");
            marked.innerHTML = '<img src="x" onerror="window.__injected = true">';
            document.body.appendChild(marked);
        }"""
    )
    page.wait_for_timeout(300)
    assert page.evaluate("window.__injected === undefined")
    violations = page.evaluate("window.__violations")
    assert any(v.startswith("script-src-elem inline") for v in violations), violations
    assert any(v.startswith("script-src-attr inline") for v in violations), violations
    context.close()
