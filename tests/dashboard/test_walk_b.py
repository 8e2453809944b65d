"""Issue 28, part B, walked as users would in Debian's Chromium: a creator logs in and lands on the
dashboard with a getting-started checklist, decides a claim from the side-by-side page (block, confirmed),
sees a style's member works; a visitor opens a release's public page, copies its link and is led to log
in by Buy; on a phone a table stays inside the screen with its actions reachable; a too-large upload is
refused in words. Screenshots at 1440x900 and 390x844 go to artifacts/screenshots/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import playwright.sync_api as playwright_sync
import pytest
from django.db import connections
from playwright.sync_api import ViewportSize

from catalog.models import Claim
from matching import index
from tests.dashboard import walk_world

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
DESKTOP: ViewportSize = {"width": 1440, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
expect = playwright_sync.expect


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


def shot(page: playwright_sync.Page, name: str) -> None:
    """The page at both sizes, full length."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SHOTS / f"b-{name}-{label}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], (name, label)
    if size:
        page.set_viewport_size(size)


def test_part_b_walked_as_users(live_server, browser, settings) -> None:
    world = walk_world.build()
    base = live_server.url

    # Log-in lands on the dashboard, with the creator's getting-started checklist.
    creator_context = browser.new_context(viewport=DESKTOP)
    creator = creator_context.new_page()
    walk_world.log_in(creator, base, "mira")
    expect(creator.locator("h1")).to_contain_text("Hello, Mira Okafor")
    checklist = creator.locator("[data-checklist]")
    expect(checklist.locator("li.is-done")).to_have_count(4)  # all but payouts, which part A sets up
    expect(checklist.get_by_role("link", name="Set up payouts")).to_be_visible()
    shot(creator, "01-home-checklist")
    # Charts state money as the pages do: the tooltip of a "... (USD)" series, grouped with its currency.
    tooltip = creator.evaluate(
        "() => Chart.defaults.plugins.tooltip.callbacks.label({dataset: {label: 'Spend (USD)'},"
        " chart: {options: {scales: {}}, data: {datasets: []}}, parsed: {y: 1234.5}})"
    )
    assert tooltip == "Spend (USD): 1,234.50 USD"

    # A claim, decided from the side-by-side page: the region is drawn, the match said in words.
    creator.get_by_role("link", name="Matches & claims").click()
    shot(creator, "02-claims-list")
    creator.get_by_role("link", name="Garden at noon").click()
    expect(creator.locator("[data-match-kind]")).to_contain_text("Image match")
    expect(creator.locator("[data-confidence]").first).to_contain_text("%")
    expect(creator.locator(".region-overlay rect")).to_have_count(1)
    expect(creator.locator("img[data-subject-preview]")).to_be_visible()
    expect(creator.locator("body")).not_to_contain_text("score")
    shot(creator, "03-claim-side-by-side")
    creator.get_by_role("button", name="Block…").click()
    expect(creator.locator("h1")).to_contain_text("Block this copy?")
    shot(creator, "04-claim-block-confirm")
    creator.get_by_role("button", name="Yes, block").click()
    expect(creator.locator(".flash-success")).to_contain_text("Decision recorded: Block")
    claim = Claim.objects.get(pk=world.claim.pk)
    assert (claim.status, claim.decision) == ("decided", "block")

    # The style shows its three member works with their pictures.
    creator.goto(f"{base}/dashboard/works/{world.style.pk}/")
    members = creator.locator("[data-members] li")
    expect(members).to_have_count(3)
    expect(members.locator("img.preview")).to_have_count(3)
    shot(creator, "05-style-members")

    # A visitor opens the release's public page, copies the link, and Buy leads to log in, then checkout.
    visitor_context = browser.new_context(viewport=DESKTOP)
    visitor_context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    visitor = visitor_context.new_page()
    visitor.goto(f"{base}/releases/{world.release_id}/")
    expect(visitor.locator("h1")).to_have_text("Garden at night")
    expect(visitor.locator("[data-credits]")).to_contain_text("Garden at noon by Mira Okafor")
    expect(visitor.locator("[data-price]")).to_have_text("4.99 USD")
    visitor.get_by_role("button", name="Copy link").click()
    expect(visitor.locator("[data-copy-status]")).not_to_be_empty()
    shot(visitor, "06-release-public")
    visitor.locator("a[data-buy]").click()
    expect(visitor.locator("h1")).to_have_text("Log in")
    visitor.get_by_label("Username").fill("acme")
    visitor.get_by_label("Password").fill(walk_world.PASSWORD)
    visitor.get_by_role("button", name="Log in").click()
    visitor.wait_for_url(f"{base}/dashboard/create/releases/{world.release_id}/")
    visitor.goto(f"{base}/dashboard/browse/")
    expect(visitor.locator("[data-releases]")).to_contain_text("Garden at night")
    shot(visitor, "07-browse-with-releases")

    # On a phone, the claims table stacks inside its card and its actions stay reachable.
    creator.set_viewport_size(PHONE)
    creator.goto(f"{base}/dashboard/claims/")
    assert creator.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    link = creator.get_by_role("link", name="Garden at noon")
    link.scroll_into_view_if_needed()
    box = link.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    apply = creator.get_by_role("button", name="Apply to selected")
    apply.scroll_into_view_if_needed()
    expect(apply).to_be_in_viewport()
    creator.set_viewport_size(DESKTOP)

    # A new work: the "add its files next" banner and the files counter follow the upload.
    creator.goto(f"{base}/dashboard/works/new/")
    creator.get_by_label("Title").fill("Harbour light")
    creator.get_by_label("Kind").select_option("image")
    creator.get_by_role("button", name="Register work").click()
    expect(creator.locator(".flash-success")).to_contain_text("Add its files next")
    expect(creator.locator("[data-file-count]")).to_have_text("0 files")
    photo = walk_world.photos(1)[0]
    creator.locator("input[type=file]").set_input_files(
        {"name": "harbour.jpg", "mimeType": "image/jpeg", "buffer": photo}
    )
    creator.get_by_role("button", name="Upload").click()
    expect(creator.locator("#asset-list .asset")).to_have_count(1)
    expect(creator.locator("[data-file-count]")).to_have_text("1 file")
    expect(creator.locator(".flash-success")).to_have_count(0)

    # An upload over the limit is refused in words, before it is sent; the form states the limit.
    settings.UPLOAD_MAX_BYTES = 1024 * 1024
    creator.goto(f"{base}/dashboard/works/{world.image.pk}/")
    expect(creator.locator("#assets")).to_contain_text("Files up to 1 MB.")
    big = {
        "name": "huge.png",
        "mimeType": "image/png",
        "buffer": b"\x89PNG\r\n\x1a\n" + os.urandom(1_500_000),
    }
    creator.locator("input[type=file]").set_input_files(big)
    creator.get_by_role("button", name="Upload").click()
    expect(creator.locator("[data-upload-errors]")).to_have_text(
        "This file is too large: files up to 1 MB can be uploaded."
    )
    shot(creator, "08-upload-too-large")

    for context in (creator_context, visitor_context):
        context.close()
