"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against the live server.

A creator signs up, uploads an image and an audio work, sets a split sheet and publishes terms; a fan
finds the work, accepts the licence and registers a derivative; a vendor creates an API key; the creator
sees the derivative and the earnings page. Screenshots of each main page go to artifacts/screenshots/.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import playwright.sync_api as playwright_sync
import pytest
from django.core import mail
from django.db import connections
from PIL import Image

from catalog import fingerprinting
from catalog.models import Asset, Grant, WorkParent
from matching import index
from media.samples.audio import render_corpus
from media.samples.images import ensure_images

# Playwright's sync API runs an event loop in this thread; the test's own database calls are synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "var" / "samples"
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "a long enough passphrase"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def browser() -> Iterator[object]:
    index.reset()
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()
        # Playwright runs an event loop in this thread, so the test's database connection belongs to that
        # loop's context: close it here, or the test database cannot be dropped at the end of the run.
        connections.close_all()
    index.reset()


@pytest.fixture(scope="module")
def image_file() -> dict[str, object]:
    paths = {p.stem: p for p in ensure_images(SAMPLES / "images", packages=["mate-backgrounds"])}
    with Image.open(paths["Dune"]) as source:
        image = source.convert("RGB")
        image.thumbnail((1200, 1200))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=88)
    return {"name": "dune.jpg", "mimeType": "image/jpeg", "buffer": buffer.getvalue()}


@pytest.fixture(scope="module")
def audio_file() -> dict[str, object]:
    path = render_corpus(SAMPLES / "audio", count=1, seed=7)[0]
    return {"name": path.name, "mimeType": "audio/wav", "buffer": path.read_bytes()}


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # sticky header and nav are drawn where the page is scrolled
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def wait_for(condition: Callable[[], object], timeout_s: float = 10) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def sign_up(page, base: str, *, username: str, role: str, organisation: str = "") -> None:
    page.goto(f"{base}/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.locator(f"input[name=role][value={role}]").check()
    page.get_by_label("Display name").fill(username.capitalize())
    if organisation:
        page.get_by_label("Organisation name").fill(organisation)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    if role == "creator":
        shot(page, "01-signup")
    page.get_by_role("button", name="Create account").click()
    playwright_sync.expect(page.locator("h1")).to_contain_text("Check your email")
    # The account signs in by following the link mailed to its address.
    message = wait_for(lambda: next((m for m in mail.outbox if m.to == [f"{username}@example.com"]), None))
    link = re.search(r"/accounts/verify/\S+", message.body).group(0)  # type: ignore[attr-defined]
    page.goto(f"{base}{link}")  # the link signs the account in and lands on its dashboard
    playwright_sync.expect(page.locator("h1")).to_contain_text(f"Hello, {username.capitalize()}")


def upload_and_fingerprint(page, file: dict[str, object], work_title: str, shot_name: str) -> None:
    page.locator("input[type=file]").set_input_files(file)
    page.get_by_role("button", name="Upload").click()
    row = page.locator("#asset-list .asset")
    playwright_sync.expect(row).to_have_count(1)
    # The row polls the job every second; the job runs here, as a worker would.
    playwright_sync.expect(row.locator(".fingerprint")).to_have_attribute("data-status", "pending")
    shot(page, shot_name + "-uploaded")
    asset = wait_for(lambda: Asset.objects.filter(work__title=work_title).first())
    fingerprinting.asset_fingerprint(asset_id=asset.pk)  # type: ignore[attr-defined]
    playwright_sync.expect(row.locator(".fingerprint")).to_have_attribute(
        "data-status", "done", timeout=15_000
    )


def test_creator_fan_and_vendor_walk_through_the_dashboard(live_server, browser, image_file, audio_file):
    base = live_server.url
    expect = playwright_sync.expect

    # The creator signs up and registers an image work and an audio work, each with its file.
    creator_context = browser.new_context(viewport={"width": 1280, "height": 900})
    creator = creator_context.new_page()
    sign_up(creator, base, username="mira", role="creator")
    creator.get_by_role("link", name="+ New work").click()
    creator.get_by_label("Title").fill("Dune at noon")
    creator.get_by_label("Kind").select_option("image")
    creator.get_by_label("Description").fill("Wind-shaped sand under a white sky.")
    creator.get_by_label("Tags").fill("desert, photograph")
    shot(creator, "02-new-work")
    creator.get_by_role("button", name="Register work").click()
    expect(creator.locator(".flash-success")).to_contain_text("is registered")
    image_work_url = creator.url
    upload_and_fingerprint(creator, image_file, "Dune at noon", "03-image-work")
    expect(creator.locator("#asset-list img.preview")).to_be_visible()

    creator.get_by_role("link", name="New work", exact=True).click()
    creator.get_by_label("Title").fill("Sanctus")
    creator.get_by_label("Kind").select_option("audio")
    creator.get_by_role("button", name="Register work").click()
    upload_and_fingerprint(creator, audio_file, "Sanctus", "04-audio-work")
    expect(creator.locator("#asset-list audio")).to_have_count(1)

    # A split sheet with a co-owner, checked live and on the server.
    creator.goto(image_work_url)
    creator.get_by_role("link", name="Edit owners").click()
    creator.get_by_label("Owner 1 share in percent").fill("70")
    creator.get_by_label("Owner 2 email").fill("kai@example.com")
    creator.get_by_label("Owner 2 share in percent").fill("20")
    expect(creator.locator("[data-split-total]")).to_have_text("90%")
    creator.get_by_role("button", name="Propose this split").click()
    expect(creator.locator(".alert-error")).to_contain_text("they add up to 90%")
    creator.get_by_label("Owner 2 share in percent").fill("30")
    expect(creator.locator("[data-split-total]")).to_have_text("100%")
    shot(creator, "05-split-sheet")
    creator.get_by_role("button", name="Propose this split").click()
    expect(creator.locator(".flash-success")).to_contain_text("waiting for the co-owners")

    # Terms with a live RSL preview, then published.
    creator.get_by_role("link", name="Publish terms").first.click()
    creator.get_by_label("AI training", exact=True).check()
    creator.get_by_label("Price per use: AI training").fill("0.05")
    creator.get_by_label("Derivative works", exact=True).check()
    creator.get_by_label("Price per use: Derivative works").fill("0")
    creator.get_by_label("Licence fee").fill("0")
    creator.get_by_label("Your share of derivatives (%)").fill("20")
    creator.get_by_label("Allow commercial use").check()
    expect(creator.locator("[data-plain-terms]")).to_contain_text("The creator receives 20% of what")
    expect(creator.locator("[data-rsl-preview]")).to_contain_text('<permits type="usage">ai-train</permits>')
    expect(creator.locator("[data-rsl-preview]")).to_contain_text('<permits type="user">commercial</permits>')
    shot(creator, "06-terms-editor")
    creator.get_by_role("button", name="Review terms").click()
    creator.get_by_role("button", name="Confirm and publish").click()
    expect(creator.locator(".flash-success")).to_contain_text("Terms version 1 are published")

    # A fan finds the work, accepts the licence and registers a derivative.
    fan_context = browser.new_context(viewport={"width": 1280, "height": 900})
    fan = fan_context.new_page()
    sign_up(fan, base, username="sol", role="fan")
    fan.get_by_role("link", name="Browse", exact=True).click()
    fan.get_by_label("Search").fill("dune")
    fan.get_by_role("button", name="Search").click()
    expect(fan.locator(".offer-card")).to_have_count(1)
    shot(fan, "07-browse")
    fan.get_by_role("link", name="Dune at noon").click()
    expect(fan.locator("[data-plain-terms]")).to_contain_text("Commercial use is allowed.")
    shot(fan, "08-offer")
    fan.get_by_role("button", name="Accept the licence").click()
    expect(fan.locator(".flash-success")).to_contain_text("You hold a licence")
    fan.get_by_role("link", name="Register a derivative").click()
    fan.get_by_label("Title").fill("Dune at night")
    fan.get_by_label("Kind").select_option("image")
    expect(fan.get_by_label("Dune at noon by Mira (their share: 20%)")).to_be_checked()
    shot(fan, "09-new-derivative")
    fan.get_by_role("button", name="Register derivative").click()
    expect(fan.locator(".lineage svg")).to_be_visible()
    expect(fan.locator(".lineage svg")).to_contain_text("Dune at noon")
    expect(fan.locator(".lineage svg")).to_contain_text("20%")
    shot(fan, "10-derivative-lineage")
    assert WorkParent.objects.get(child__title="Dune at night").share_bps == 2000

    # A vendor creates an API key, shown once with a copy button.
    vendor_context = browser.new_context(viewport={"width": 1280, "height": 900})
    vendor_context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    vendor = vendor_context.new_page()
    sign_up(vendor, base, username="acme", role="vendor", organisation="Acme AI")
    vendor.get_by_role("link", name="API keys").first.click()
    vendor.get_by_label("Name").fill("training cluster")
    vendor.get_by_label("Metered access").check()
    vendor.get_by_role("button", name="Create key").click()
    secret = vendor.locator("[data-secret]").input_value()
    assert secret.startswith("trb_")
    vendor.get_by_role("button", name="Copy").click()
    expect(vendor.locator("[data-copy-status]")).to_have_text("Copied to the clipboard.")
    shot(vendor, "11-api-key-created")
    vendor.goto(f"{base}/dashboard/keys/")  # a fresh visit: the secret is never shown again
    expect(vendor.locator("[data-secret]")).to_have_count(0)

    # The creator sees the licence, the derivative, the activity chart and the earnings page.
    creator.goto(image_work_url)
    expect(creator.locator("#lineage")).to_contain_text("Dune at night")
    expect(creator.locator("#grants")).to_contain_text("Sol")
    shot(creator, "12-work-page")
    creator.get_by_role("link", name="Home").click()
    expect(creator.locator("#activity-chart[data-chart-ready=true]")).to_have_count(1)
    shot(creator, "13-creator-home")
    creator.get_by_role("link", name="Works", exact=True).click()
    shot(creator, "14-works")
    creator.get_by_role("link", name="Earnings").click()
    expect(creator.locator("[data-empty=earnings]")).to_be_visible()
    shot(creator, "15-earnings")
    assert Grant.objects.filter(offer__work__title="Dune at noon", licensee__username="sol").exists()

    # Phone-sized: nothing wider than the screen.
    creator.set_viewport_size({"width": 390, "height": 844})
    for name, url in [("16-phone-home", f"{base}/dashboard/"), ("17-phone-work", image_work_url)]:
        creator.goto(url)
        assert creator.evaluate("document.documentElement.scrollWidth") <= 390, name
        shot(creator, name)

    for context in (creator_context, fan_context, vendor_context):
        context.close()
