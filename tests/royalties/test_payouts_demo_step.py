"""The demo's payout step: Sol links a wallet by signature and is paid on the in-process chain."""

from __future__ import annotations

import pytest

from demo.payouts_step import pay_out
from demo.story import STEPS, Story
from royalties.ledger import ledger_check
from royalties.models import Payout
from tests import factories
from tests.royalties.payout_world import credit, onchain

__all__ = ["onchain"]
pytestmark = pytest.mark.django_db


def test_the_demo_pays_sol_on_chain_and_prints_the_transaction(tmp_path, onchain, settings) -> None:
    settings.CHAIN_CONFIRMATIONS = 2
    lines: list[str] = []
    story = Story(say=lines.append, samples_dir=tmp_path)
    story.people["sol"] = factories.creator(username="sol", display_name="Sol")
    story.people["ade"] = factories.creator(username="ade", display_name="Ade")
    credit(story.people["sol"], 865)
    credit(story.people["ade"], 371)

    pay_out(story)

    text = "\n".join(lines)
    sol_payout = Payout.objects.get(user=story.people["sol"])
    assert (sol_payout.rail, sol_payout.status) == ("chain", "confirmed")
    assert f"Sol: 8.65 USD on chain, confirmed, transaction {sol_payout.external_id}" in text
    assert "Ade: 3.71 USD waits as a manual payout (created)" in text
    assert onchain.balance_of(sol_payout.destination) == 8_650_000
    assert "now holds 8.650000 tUSD" in text
    assert ledger_check().clean
    assert STEPS[-1] is pay_out
