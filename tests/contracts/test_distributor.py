"""PayoutDistributor: a batch pays exact amounts, and no batch id or payout id ever pays twice."""

from __future__ import annotations

import pytest
from eth_account import Account

from contracts.chain import (
    Chain,
    ChainError,
    ChainReverted,
    ChainTimeout,
    PayoutEntry,
    payout_id_from_key,
)
from tests.contracts.signing import new_key

FUNDED = 10_000_000_000  # 10,000.000000 tUSD in the distributor
PAYEES = [Account.from_key(new_key(f"payee {i}")).address for i in range(4)]


@pytest.fixture
def funded(chain: Chain) -> Chain:
    chain.mint(chain.address, FUNDED)
    chain.fund_distributor(FUNDED)
    return chain


def entry(key: str, payee: str, amount: int) -> PayoutEntry:
    return PayoutEntry(payout_id=payout_id_from_key(key), recipient=payee, amount=amount)


def payee_balances(chain: Chain) -> list[int]:
    return [chain.balance_of(payee) for payee in PAYEES]


def distributor_balance(chain: Chain) -> int:
    return chain.balance_of(chain.distributor.address)


def test_batch_pays_each_payee_its_exact_amount(funded: Chain) -> None:
    chain = funded
    entries = [
        entry("payout:1", PAYEES[0], 1),
        entry("payout:2", PAYEES[1], 333_333),
        entry("payout:3", PAYEES[2], 1_000_000_007),
    ]

    sent = chain.send_batch_payout(b"batch:2026-10".ljust(32, b"\0"), entries)
    receipt = chain.wait_for_receipt(sent.tx_hash)

    assert payee_balances(chain) == [1, 333_333, 1_000_000_007, 0]
    assert distributor_balance(chain) == FUNDED - 1 - 333_333 - 1_000_000_007
    paid = chain.paid_events(receipt)
    assert [(event.payout_id, event.recipient, event.amount) for event in paid] == [
        (e.payout_id, e.recipient, e.amount) for e in entries
    ]
    assert {event.token for event in paid} == {chain.token.address}
    assert chain.skipped_events(receipt) == []
    assert [(t.sender, t.receiver, t.amount) for t in chain.transfer_events(receipt)] == [
        (chain.distributor.address, e.recipient, e.amount) for e in entries
    ]
    assert all(chain.is_paid(e.payout_id) for e in entries)
    assert chain.is_batch_used(b"batch:2026-10".ljust(32, b"\0"))


def test_the_same_batch_sent_again_pays_nothing(funded: Chain) -> None:
    chain = funded
    batch_id = payout_id_from_key("batch:1")
    entries = [entry("payout:1", PAYEES[0], 500), entry("payout:2", PAYEES[1], 700)]
    chain.wait_for_receipt(chain.send_batch_payout(batch_id, entries).tx_hash)
    after_first = payee_balances(chain), distributor_balance(chain)

    # Simulated first: refused before anything is sent.
    with pytest.raises(ChainReverted, match="batch already paid"):
        chain.send_batch_payout(batch_id, entries)
    # Sent blind (explicit gas skips the simulation): mined, reverted, nothing paid.
    blind = chain.send_batch_payout(batch_id, entries, gas=500_000)
    with pytest.raises(ChainReverted, match="batch already paid") as reverted:
        chain.wait_for_receipt(blind.tx_hash)

    assert reverted.value.tx_hash == blind.tx_hash
    assert (payee_balances(chain), distributor_balance(chain)) == after_first


def test_a_new_batch_repeating_a_paid_payout_skips_it_and_pays_the_rest(funded: Chain) -> None:
    chain = funded
    chain.wait_for_receipt(
        chain.send_batch_payout(payout_id_from_key("batch:1"), [entry("payout:1", PAYEES[0], 500)]).tx_hash
    )

    rebuilt = [entry("payout:1", PAYEES[0], 500), entry("payout:2", PAYEES[1], 700)]
    receipt = chain.wait_for_receipt(chain.send_batch_payout(payout_id_from_key("batch:2"), rebuilt).tx_hash)

    assert payee_balances(chain) == [500, 700, 0, 0]
    assert [event.payout_id for event in chain.paid_events(receipt)] == [payout_id_from_key("payout:2")]
    assert [event.payout_id for event in chain.skipped_events(receipt)] == [payout_id_from_key("payout:1")]


def test_a_payout_listed_twice_in_one_batch_is_paid_once(funded: Chain) -> None:
    chain = funded
    twice = [entry("payout:9", PAYEES[2], 1234), entry("payout:9", PAYEES[2], 1234)]

    receipt = chain.wait_for_receipt(chain.send_batch_payout(payout_id_from_key("batch:9"), twice).tx_hash)

    assert payee_balances(chain) == [0, 0, 1234, 0]
    assert len(chain.paid_events(receipt)) == 1
    assert len(chain.skipped_events(receipt)) == 1


def test_a_reverted_batch_pays_nothing_and_its_retry_pays_once(chain: Chain) -> None:
    # Given a distributor funded short of the batch
    chain.mint(chain.address, 1_000)
    chain.fund_distributor(999)
    batch_id = payout_id_from_key("batch:short")
    entries = [entry("payout:a", PAYEES[0], 600), entry("payout:b", PAYEES[1], 400)]

    # When the batch is mined, it reverts as a whole, and records nothing
    failed = chain.send_batch_payout(batch_id, entries, gas=500_000)
    with pytest.raises(ChainReverted, match="transfer amount exceeds balance"):
        chain.wait_for_receipt(failed.tx_hash)
    assert payee_balances(chain) == [0, 0, 0, 0]
    assert distributor_balance(chain) == 999
    assert not chain.is_batch_used(batch_id)
    assert not any(chain.is_paid(e.payout_id) for e in entries)

    # Then, once funded, the retry of the same batch pays each payout exactly once
    chain.fund_distributor(1)
    chain.wait_for_receipt(chain.send_batch_payout(batch_id, entries).tx_hash)
    with pytest.raises(ChainReverted, match="batch already paid"):
        chain.send_batch_payout(batch_id, entries)
    assert payee_balances(chain) == [600, 400, 0, 0]
    assert distributor_balance(chain) == 0


def test_only_the_owner_sends_batches(funded: Chain, other_keys: list[bytes | str]) -> None:
    with pytest.raises(ChainReverted, match="caller is not the owner"):
        funded.for_signer(other_keys[0]).send_batch_payout(
            payout_id_from_key("batch:x"), [entry("payout:x", PAYEES[0], 1)]
        )

    assert payee_balances(funded) == [0, 0, 0, 0]


def test_batches_sent_back_to_back_take_consecutive_nonces(funded: Chain) -> None:
    chain = funded
    sent = [
        chain.send_batch_payout(payout_id_from_key(f"batch:{i}"), [entry(f"payout:{i}", PAYEES[i], 10 + i)])
        for i in range(4)
    ]

    receipts = [chain.wait_for_receipt(s.tx_hash) for s in sent]

    assert [s.nonce for s in sent] == list(range(sent[0].nonce, sent[0].nonce + 4))
    assert all(r.succeeded for r in receipts)
    assert payee_balances(chain) == [10, 11, 12, 13]


def test_a_second_transaction_with_the_same_nonce_is_never_mined(funded: Chain) -> None:
    chain = funded
    first = chain.send_batch_payout(payout_id_from_key("batch:n"), [entry("payout:n", PAYEES[0], 5)])
    chain.wait_for_receipt(first.tx_hash)

    with pytest.raises(ChainError):
        chain.send_batch_payout(
            payout_id_from_key("batch:n2"), [entry("payout:n2", PAYEES[1], 5)], nonce=first.nonce
        )

    assert payee_balances(chain) == [5, 0, 0, 0]


def test_waiting_for_confirmations(funded: Chain) -> None:
    chain = funded
    sent = chain.send_batch_payout(payout_id_from_key("batch:c"), [entry("payout:c", PAYEES[0], 5)])
    assert chain.wait_for_receipt(sent.tx_hash).confirmations == 1

    with pytest.raises(ChainTimeout, match="1 of 3 confirmations"):
        chain.wait_for_receipt(sent.tx_hash, confirmations=3, timeout_s=0.3, poll_s=0.05)
    chain.mine_blocks(2)

    assert chain.wait_for_receipt(sent.tx_hash, confirmations=3, timeout_s=1).confirmations == 3


def test_paid_events_are_found_in_a_narrow_block_range(funded: Chain) -> None:
    chain = funded
    receipt = chain.wait_for_receipt(
        chain.send_batch_payout(payout_id_from_key("batch:r"), [entry("payout:r", PAYEES[3], 77)]).tx_hash
    )

    events = chain.paid_events_between(receipt.block_number, receipt.block_number)

    assert [(e.payout_id, e.recipient, e.amount, e.tx_hash) for e in events] == [
        (payout_id_from_key("payout:r"), PAYEES[3], 77, receipt.tx_hash)
    ]
