"""Part A of issue 28 walked as users would, in Chromium (Playwright) against the live server: an invited
co-owner accepts from the email link (signed out first, then logged in and back); a creator reviews and
confirms licence terms; a creator sees where the money is and enters payee details; a vendor sees a
purchase in the balance history, spend per key and the quickstart. Screenshots of each page at 1440x900 and
390x844 go to artifacts/screenshots/."""

from __future__ import annotations

import re

import playwright.sync_api as playwright_sync
import pytest
from django.core import mail

from access.services import AccessRequest, access_request
from accounts.models import ApiKey
from catalog.services import split_sheet_propose
from common.money import Money
from royalties.funding import prepaid_fund
from royalties.licences import licence_accept
from royalties.settlement import revenue_settle
from tests import factories
from tests.dashboard.test_browser import ROOT, browser  # noqa: F401 (the fixture)

SHOTS = ROOT / "artifacts" / "screenshots"
PASSWORD = "a long enough passphrase"
SIZES = {"1440": {"width": 1440, "height": 900}, "390": {"width": 390, "height": 844}}

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

expect = playwright_sync.expect


def shots(page, name: str) -> None:
    """The page at both sizes, whole (the viewport is put back afterwards)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size
    for label, size in SIZES.items():
        page.set_viewport_size(size)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SHOTS / f"walk-a-{name}-{label}.png"), full_page=True)
    page.set_viewport_size(before)


def log_in(page, username: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_part_a_walk(live_server, browser):  # noqa: F811 (the fixture)
    base = live_server.url
    mira = factories.creator(username="mira", display_name="Mira Okafor", password=PASSWORD)
    factories.creator(username="kai", display_name="Kai Lindqvist", password=PASSWORD)
    work = factories.work(mira, title="Harbour at dusk")

    # 1. Mira lists Kai as a co-owner; Kai opens the email's link signed out, logs in, comes back, accepts.
    mail.outbox.clear()
    split_sheet_propose(
        work=work, user=mira, shares=[("mira@example.com", 7_500), ("kai@example.com", 2_500)]
    )
    message = next(m for m in mail.outbox if m.to == ["kai@example.com"])
    link = re.search(r"https?://\S+(/dashboard/invitations/accept/\?token=\S+)", str(message.body)).group(1)
    kai = browser.new_context(viewport=SIZES["1440"]).new_page()
    kai.goto(base + link)
    expect(kai.locator("h1")).to_contain_text("You are invited to co-own a work")
    shots(kai, "01-invitation-signed-out")
    kai.get_by_role("link", name="Log in to see the invitation").click()
    log_in(kai, "kai")
    expect(kai.locator("h1")).to_contain_text("You are invited to co-own “Harbour at dusk”")
    expect(kai.locator("[data-invitation-share]")).to_have_text("25%")
    expect(kai.locator(".facts")).to_contain_text("Mira Okafor")
    shots(kai, "02-invitation")
    kai.get_by_role("button", name="Accept").click()
    expect(kai.locator(".flash-success")).to_contain_text(
        "You are now listed as a co-owner of “Harbour at dusk”"
    )
    shots(kai, "03-invitation-accepted")

    # 2. Mira publishes terms: nothing ticked at first, a contradiction refused, then review and confirm.
    creator = browser.new_context(viewport=SIZES["1440"]).new_page()
    creator.goto(f"{base}/dashboard/works/{work.pk}/offers/new/")
    log_in(creator, "mira")
    expect(creator.get_by_label("AI training", exact=True)).not_to_be_checked()
    expect(creator.get_by_label("Derivative works", exact=True)).not_to_be_checked()
    creator.get_by_label("AI training", exact=True).check()
    creator.get_by_label("Price per use: AI training").fill("0.07")
    creator.get_by_label("Derivative works", exact=True).check()
    creator.get_by_label("Price per use: Derivative works").fill("0")
    creator.get_by_label("Your share of derivatives (%)").fill("15")
    creator.get_by_label("Licence fee").fill("2.99")
    creator.get_by_role("button", name="Review terms").click()
    expect(creator.locator(".error")).to_contain_text("non-commercial terms forbid")
    shots(creator, "04-terms-contradiction")
    creator.get_by_label("Allow commercial use").check()
    expect(creator.locator("[data-plain-terms]")).to_contain_text("The creator receives 15% of what")
    creator.get_by_role("button", name="Review terms").click()
    expect(creator.locator("h1")).to_contain_text("Review")
    expect(creator.locator("[data-plain-terms]")).to_contain_text(
        "You may train AI models on it (0.07 USD per use)."
    )
    expect(creator.locator("[data-rsl-preview]")).to_contain_text('<permits type="usage">ai-train</permits>')
    shots(creator, "05-terms-review")
    creator.get_by_role("button", name="Confirm and publish").click()
    expect(creator.locator(".flash-success")).to_contain_text("Terms version 1 are published")

    # 6. A vendor pays per access and a licence fee; the balance history, usage per key and quickstart.
    vendor = factories.vendor(username="acme", organisation_name="Acme AI", password=PASSWORD)
    factories.key(vendor, "access")
    api_key = ApiKey.objects.get(user=vendor)
    organisation = vendor.organisations.get()
    prepaid_fund(organisation=organisation, amount=Money(10_000, "USD"), external_ref="walk-top-up")
    offer = work.offers.get()
    licence_accept(offer=offer, user=vendor, organisation=organisation)  # the fee comes before any access
    for n in range(3):
        access_request(
            organisation=organisation,
            api_key=api_key,
            idempotency_key=f"walk-{n}",
            request=AccessRequest(work_id=work.pk, use_class="ai-train", territory="US"),
        )
    acme = browser.new_context(viewport=SIZES["1440"]).new_page()
    acme.goto(f"{base}/dashboard/balance/")
    log_in(acme, "acme")
    history = acme.locator("#history")
    expect(history).to_contain_text("Licence fee: Harbour at dusk")
    expect(history).to_contain_text("-2.99 USD")
    expect(history).to_contain_text("Per-access charges: Harbour at dusk (3 accesses)")
    expect(history).to_contain_text("Top-up")
    expect(acme.locator("[data-stripe-off]")).to_be_visible()
    shots(acme, "06-vendor-balance")
    acme.get_by_label("Monthly cap").fill("50")
    acme.get_by_role("button", name="Save the cap").click()
    expect(acme.locator(".flash-success")).to_contain_text("may spend at most 50.00 USD a month")
    acme.get_by_role("link", name="Usage").click()
    acme.get_by_role("link", name="7 days").click()
    expect(acme.locator("[data-spend-total=USD]")).to_contain_text("0.21 USD")
    expect(acme.locator("#by-key")).to_contain_text("test")
    expect(acme.locator("#usage-chart")).to_have_attribute("data-chart-ready", "true")
    shots(acme, "07-vendor-usage")
    acme.get_by_role("link", name="API keys").first.click()
    expect(acme.locator("table")).not_to_contain_text("never")
    shots(acme, "08-vendor-keys")
    acme.get_by_role("link", name="Quickstart").click()
    expect(acme.locator("pre").first).to_be_visible()
    shots(acme, "09-vendor-quickstart")

    # 3. Mira's earnings say where the money is; 5. she enters payee details for manual payouts.
    revenue_settle()
    creator.goto(f"{base}/dashboard/earnings/")
    expect(creator.locator("[data-where-headline]")).to_contain_text("is available for your next payout")
    expect(creator.locator("#history")).to_contain_text("Earnings settled")
    shots(creator, "10-earnings")
    creator.get_by_role("link", name="Payout settings").click()
    creator.get_by_label("Account holder's name").fill("Mira Okafor")
    creator.get_by_role("textbox", name="IBAN").fill("GB83 WEST 1234 5698 7654 32")
    creator.get_by_role("button", name="Save payee details").click()
    expect(creator.locator("#manual .error")).to_contain_text("check digits do not match")
    shots(creator, "11-payee-details-refused")
    creator.get_by_role("textbox", name="IBAN").fill("GB82 WEST 1234 5698 7654 32")
    creator.get_by_role("button", name="Save payee details").click()
    expect(creator.locator("[data-manual-payee]")).to_contain_text("IBAN GB82 •••• 5432")
    shots(creator, "12-payee-details")
    creator.get_by_role("button", name="Link a wallet").click()
    signature = creator.get_by_label("Signature")
    signature.fill("0x" + "ab" * 65)
    box = signature.bounding_box()
    card = creator.locator("#wallet").bounding_box()
    assert box is not None and card is not None and box["x"] + box["width"] <= card["x"] + card["width"]
    shots(creator, "13-wallet-signature")
