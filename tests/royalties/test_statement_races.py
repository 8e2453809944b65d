"""A statement cut while a settlement chunk is in flight holds all of the chunk or none of it, and the
chain of statements has no gap (PostgreSQL, where the two can overlap; SQLite runs one write transaction
at a time)."""

from __future__ import annotations

import threading

import pytest

from common import clock
from common.money import Money
from royalties import settlement as settling
from royalties.revenue import access_fee_record
from royalties.settlement import revenue_settle
from royalties.statements import statement_generate, statement_verify
from tests.interleave import Session, wait_until_blocked_or_done
from tests.royalties.builders import funded_vendor, payable, three_level_chain


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_statement_cut_during_a_settlement_chunk_waits_for_it_and_leaves_no_gap(monkeypatch):
    # given an access of 100.00 to D, which earns Dan 45.00 once settled
    chain = three_level_chain()
    access_fee_record(
        organisation=funded_vendor(), offer=chain.offer_d, amount=Money(10_000, "USD"), access_key="k1"
    )
    # and a settlement chunk stopped after writing its entries, before its commit
    inside, finish = threading.Event(), threading.Event()
    apply_deltas = settling.balances_move

    def pausing(balance, held):
        apply_deltas(balance, held)
        inside.set()
        finish.wait(60)

    monkeypatch.setattr(settling, "balances_move", pausing)
    settlement = Session(lambda: revenue_settle(max_chunks=1))
    settlement.start()
    assert inside.wait(60)

    # when Dan's statement is cut up to now, while the chunk is still in flight
    cut = Session(lambda: statement_generate(user=chain.dan, currency="USD", period_end=clock.now()))
    cut.start()
    cut_waited = wait_until_blocked_or_done(cut)
    finish.set()
    settlement.join()
    cut.join()

    # then the cut waited for the chunk and holds all of it
    assert settlement.error is None and cut.error is None
    assert cut_waited
    statement = cut.result
    assert (statement.opening_minor, statement.earned_minor, statement.closing_minor) == (0, 4_500, 4_500)
    assert statement.closing_minor == payable(chain.dan)
    assert statement_verify(statement=statement).valid
    # and the next statement starts where it ended, with nothing earned since
    monkeypatch.setattr(settling, "balances_move", apply_deltas)
    following = statement_generate(user=chain.dan, currency="USD", period_end=clock.now())
    assert (following.opening_minor, following.earned_minor) == (4_500, 0)
