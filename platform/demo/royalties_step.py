"""The demo's money step: the story's activity earns money, settlement splits it, everyone sees earnings.

Acme AI tops up its prepaid balance and uses the works, Kai reports sales
of the remix (a receivable from Bandcamp until Bandcamp's payment arrives and is matched); settlement then
splits every coin up the chain exactly once, and each person's earnings and a first
statement (with its SHA-256 digest) are printed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from accounts.models import Organisation
from common import clock
from common.currency import format_minor
from common.money import Money
from royalties import selectors
from royalties.funding import funding_find
from royalties.reports import ReportLine, receipt_record, revenue_report_record
from royalties.reversal import funding_refund
from royalties.settlement import revenue_settle
from royalties.statements import statement_generate

if TYPE_CHECKING:  # story.py lists this step in STEPS: no import cycle at run time
    from demo.story import Story


def refund_part_of_a_top_up(story: Story, organisation: Organisation) -> None:
    """Acme asks for 10.00 USD of its card top-up back: the refund reverses what that payment funded, from
    the balance Acme has not spent (had Acme spent it, the rest would be Acme's debt, paid first by its next
    top-up, and its accesses refused until then)."""
    funding = funding_find(rail="manual", reference="demo-top-up-2")
    if funding is None:
        return
    before = selectors.prepaid_available(organisation=organisation, currency="USD")
    funding_refund(funding=funding, amount_minor=1_000, cause="refund:1", memo="Demo: Acme's refund")
    after = selectors.prepaid_available(organisation=organisation, currency="USD")
    story.say(
        f"    Acme is refunded {format_minor(1_000, 'USD')} of its card top-up: its balance goes from "
        f"{format_minor(before, 'USD')} to {format_minor(after, 'USD')}"
    )


def settle_and_report(story: Story) -> None:
    acme, kai = story.people["acme"], story.people["kai"]
    remix = story.works["remix"]
    organisation = Organisation.objects.filter(membership__user=acme).order_by("id").first()
    if organisation is None:
        raise RuntimeError("the demo's vendor has no organisation")

    story.say("8. Kai reports the remix's first sales")
    report = revenue_report_record(
        user=kai,
        distributor="bandcamp",
        lines=[
            ReportLine("BC-1001", remix.pk, 700, "USD"),
            ReportLine("BC-1002", remix.pk, 1_450, "USD"),
        ],
    )
    story.say(
        f"    Bandcamp statement: {report.created} sales lines, {format_minor(2_150, 'USD')}: a receivable "
        "from Bandcamp, nobody's earnings yet"
    )
    receipt = receipt_record(
        reporter=kai,
        distributor="bandcamp",
        amount=Money(2_150, "USD"),
        rail="bank",
        reference="DEMO-BANK-BC-2026-11",
    )
    story.say(
        f"    Bandcamp's bank transfer DEMO-BANK-BC-2026-11 arrives and is matched to "
        f"{len(receipt.matched)} lines: now they earn"
    )

    refund_part_of_a_top_up(story, organisation)

    story.say("9. Settlement splits the revenue: platform fee first, then owners, up the derivative chain")
    result = revenue_settle()
    story.say(f"    settled {result.items} revenue items in {result.transactions} journal transaction(s)")
    now = clock.now()
    for username in ("mira", "sol", "ade", "kai"):
        person = story.people[username]
        earnings = selectors.earnings_of(user=person)
        total = sum(row["balance_minor"] for row in earnings["balances"] if row["currency"] == "USD")
        story.say(f"    {person.public_name} has earned {format_minor(total, 'USD')}")
        for row in earnings["by_work"]:
            amount = format_minor(row["amount_minor"], row["currency"])
            what = f"“{row['work_title']}”" if row["work_title"] else "curating a dataset"
            story.say(f"      {amount} from {what} ({row['source']})")
        statement = statement_generate(user=person, currency="USD", period_end=now)
        story.say(
            f"      statement #{statement.pk}: closing {format_minor(statement.closing_minor, 'USD')}, "
            f"sha256 {statement.digest[:16]}…"
        )
    fee_row = selectors.platform_fee_total(currency="USD")
    story.say(f"    the platform's fee: {format_minor(fee_row, 'USD')}")
