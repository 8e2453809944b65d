"""Every dashboard page of every role passes axe-core (npm, run in the same Chromium) with no serious or
critical violation, at 1440x900 and at 390x844, and no page scrolls sideways on a phone.

Pages are found, not listed: from the dashboard home, every link of the navigation, then the main links of
each page reached that way (one level deeper: the list pages' items), for a creator, an invited co-owner, a
fan, a vendor and an operator, plus the public pages a visitor opens. A page added to the navigation, or
linked from a list, is checked without changing this test. Addresses that are files, downloads, the API,
the admin or log-out are not pages and are skipped; of addresses differing only in their numbers, the first
two found are checked."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import playwright.sync_api as playwright_sync
import pytest
from django.db import connections
from playwright.sync_api import ViewportSize

from matching import index
from tests.dashboard import walk_world

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = Path("/usr/bin/chromium")
SIZES: dict[str, ViewportSize] = {
    "desktop": {"width": 1440, "height": 900},
    "phone": {"width": 390, "height": 844},
}
SKIPPED = re.compile(
    r"^/(api|admin|static|rsl|licenses\.xml|robots\.txt|\.well-known)"
    r"|/(file|subject|content|preview|public-preview|result|download|csv|rsl)/?$"
    r"|/accounts/(logout|password_reset|reset|verify)"
)
PER_PATTERN = 2
SERIOUS = ("serious", "critical")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser() -> Iterator[playwright_sync.Browser]:
    index.reset()
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()
        connections.close_all()  # the loop's thread owns the connection: close it before the database goes
    index.reset()


def pattern(path: str) -> str:
    return re.sub(r"\d+", "N", path)


def links(page: playwright_sync.Page, selector: str, origin: str) -> list[str]:
    hrefs = page.eval_on_selector_all(selector, "nodes => nodes.map(n => n.href)")
    found = []
    for href in hrefs:
        parts = urlsplit(href)
        if f"{parts.scheme}://{parts.netloc}" != origin:
            continue
        address = parts.path + (f"?{parts.query}" if parts.query else "")
        if not SKIPPED.search(parts.path):
            found.append(address)
    return found


def audit(page: playwright_sync.Page) -> list[str]:
    """axe's serious and critical violations of the page as it is drawn now, one line each."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    results = page.evaluate(
        "() => axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(v => ({"
        "id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))"
    )
    return [
        f"{item['impact']} {item['id']}: {item['help']} at {item['nodes']}"
        for item in results
        if item["impact"] in SERIOUS
    ]


def crawl(page: playwright_sync.Page, base: str, start: list[str], visited: set[str]) -> dict[str, list[str]]:
    """Visit the start pages and the navigation's links, then the main links of each; audit each page at
    both sizes. Answers the problems found, by page; `visited` receives every page audited."""
    problems: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    queue: list[tuple[str, int]] = [(address, 0) for address in start]
    while queue:
        address, depth = queue.pop(0)
        key = pattern(address)
        if address in visited or seen.get(key, 0) >= PER_PATTERN:
            continue
        visited.add(address)
        seen[key] = seen.get(key, 0) + 1
        page.set_viewport_size(SIZES["desktop"])
        response = page.goto(base + address)
        status = response.status if response else 0
        if status >= 500:
            problems.setdefault(address, []).append(f"answered {status}")
            continue
        for label, size in SIZES.items():
            page.set_viewport_size(size)
            found = audit(page)
            if label == "phone":
                width = page.evaluate("document.documentElement.scrollWidth")
                if width > size["width"]:
                    found.append(f"scrolls sideways on a phone ({width}px wide)")
            if found:
                problems.setdefault(f"{address} ({label})", []).extend(found)
        origin = base
        if depth == 0:
            queue.extend((link, 1) for link in links(page, "nav a[href], .topbar a[href]", origin))
            queue.extend((link, 1) for link in links(page, "main a[href]", origin))
        elif depth == 1:
            queue.extend((link, 2) for link in links(page, "nav.sidenav a[href]", origin))
            queue.extend((link, 2) for link in links(page, "main a[href]", origin))
    return problems


def test_every_page_of_every_role_has_no_serious_accessibility_violation(live_server, browser) -> None:
    assert AXE.exists(), "axe-core is installed by ./dev setup (npm install)"
    world = walk_world.build()
    base = live_server.url
    problems: dict[str, list[str]] = {}
    audited: dict[str, set[str]] = {}
    for username in ("mira", "kai", "sol", "acme", "op"):
        context = browser.new_context(viewport=SIZES["desktop"], bypass_csp=True)
        page = context.new_page()
        walk_world.log_in(page, base, username)
        visited: set[str] = set()
        found = crawl(page, base, ["/dashboard/", f"/dashboard/claims/{world.claim.pk}/"], visited)
        problems.update({f"{username} {where}": lines for where, lines in found.items()})
        audited[username] = visited
        context.close()

    visitor = browser.new_context(viewport=SIZES["desktop"], bypass_csp=True)
    public = [
        "/",
        f"/releases/{world.release_id}/",
        f"/works/{world.image.pk}/",
        "/dashboard/browse/",
        "/accounts/login/",
        "/accounts/signup/",
        "/no/such/page/",
    ]
    seen_by_visitor: set[str] = set()
    problems.update(
        {
            f"visitor {where}": lines
            for where, lines in crawl(visitor.new_page(), base, public, seen_by_visitor).items()
        }
    )
    visitor.close()

    # The crawl reached each role's pages through the navigation and the lists, not only the start.
    expected = {
        "mira": {"/dashboard/works/", "/dashboard/earnings/", f"/dashboard/works/{world.style.pk}/"},
        "kai": {"/dashboard/works/", f"/dashboard/works/{world.image.pk}/"},
        "sol": {"/dashboard/create/", "/dashboard/grants/", "/dashboard/browse/"},
        "acme": {"/dashboard/keys/", "/dashboard/balance/", "/dashboard/usage/"},
        "op": {"/dashboard/staff/disputes/"},
    }
    for username, pages in expected.items():
        assert pages <= audited[username], (username, sorted(pages - audited[username]))
    assert sum(len(pages) for pages in audited.values()) >= 60, {k: len(v) for k, v in audited.items()}
    assert f"/releases/{world.release_id}/" in seen_by_visitor
    assert not problems, "\n".join(f"{where}: {line}" for where, lines in problems.items() for line in lines)
