"""RoyaltySplitter: exact integer shares, pull payments, and no way for a payee to take more."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.chain import SPLITTER_CONTRACT, Chain, ChainReverted
from tests.contracts.signing import new_key

PAYEES = [Account.from_key(new_key(f"splitter payee {i}")).address for i in range(5)]
REENTRANT_PAYEE = "testing/ReentrantPayee"


def deploy_splitter(chain: Chain, payees: list[str], shares: list[int]) -> Any:
    return chain.contract(SPLITTER_CONTRACT, chain.deploy_splitter(payees, shares))


def released_and_held(chain: Chain, splitter: Any) -> tuple[int, int]:
    return splitter.functions.total_released().call(), chain.eth_balance(splitter.address)


def calldata(signature: str, types: list[str], values: list[Any]) -> bytes:
    return function_signature_to_4byte_selector(signature) + encode(types, values)


def test_eth_is_split_by_shares_with_the_remainder_kept_for_later(in_process_chain: Chain) -> None:
    chain = in_process_chain
    splitter = deploy_splitter(chain, PAYEES[:3], [1, 2, 4])  # sevenths: nothing divides evenly

    chain.transfer_eth(splitter.address, 100)
    for payee in PAYEES[:3]:
        chain.transact(splitter.functions.release(payee))

    assert [chain.eth_balance(p) for p in PAYEES[:3]] == [14, 28, 57]  # floor(100 * s / 7)
    assert released_and_held(chain, splitter) == (99, 1)

    chain.transfer_eth(splitter.address, 6)  # 106 received in all
    for payee in PAYEES[:3]:
        chain.transact(splitter.functions.release(payee))

    assert [chain.eth_balance(p) for p in PAYEES[:3]] == [15, 30, 60]  # floor(106 * s / 7)
    assert released_and_held(chain, splitter) == (105, 1)


def test_tokens_are_split_by_shares(in_process_chain: Chain) -> None:
    chain = in_process_chain
    splitter = deploy_splitter(chain, PAYEES[:3], [3_333, 3_333, 3_334])  # basis points
    chain.mint(splitter.address, 1_000_001)

    for payee in PAYEES[:3]:
        assert splitter.functions.releasable_token(chain.token.address, payee).call() > 0
        chain.transact(splitter.functions.release_token(chain.token.address, payee))

    assert [chain.balance_of(p) for p in PAYEES[:3]] == [333_300, 333_300, 333_400]  # floor(1,000,001 * bps)
    assert splitter.functions.token_total_released(chain.token.address).call() == 1_000_000
    assert chain.balance_of(splitter.address) == 1


def test_a_payee_with_nothing_due_or_a_stranger_is_refused(in_process_chain: Chain) -> None:
    chain = in_process_chain
    splitter = deploy_splitter(chain, PAYEES[:2], [1, 1])
    chain.transfer_eth(splitter.address, 10)
    chain.transact(splitter.functions.release(PAYEES[0]))

    with pytest.raises(ChainReverted, match="account is not due payment"):
        chain.transact(splitter.functions.release(PAYEES[0]))
    with pytest.raises(ChainReverted, match="account has no shares"):
        chain.transact(splitter.functions.release(PAYEES[4]))

    assert released_and_held(chain, splitter) == (5, 5)


def test_eth_sent_with_calldata_is_refused(in_process_chain: Chain) -> None:
    chain = in_process_chain
    splitter = deploy_splitter(chain, PAYEES[:2], [1, 1])
    donate_abi = [
        {"type": "function", "name": "donate", "inputs": [], "outputs": [], "stateMutability": "payable"}
    ]
    misspelled = chain.w3.eth.contract(address=splitter.address, abi=donate_abi)

    with pytest.raises(ChainReverted, match="unknown function"):
        chain.transact(misspelled.functions.donate(), value=5)

    assert released_and_held(chain, splitter) == (0, 0)


def test_the_splitter_refuses_bad_payee_lists(in_process_chain: Chain) -> None:
    chain = in_process_chain

    with pytest.raises(ChainReverted, match="length mismatch"):
        chain.deploy_splitter(PAYEES[:2], [1])
    with pytest.raises(ChainReverted, match="already has shares"):
        chain.deploy_splitter([PAYEES[0], PAYEES[0]], [1, 1])
    with pytest.raises(ChainReverted, match="shares are 0"):
        chain.deploy_splitter(PAYEES[:2], [1, 0])


@pytest.fixture
def reentrant_setup(in_process_chain: Chain) -> tuple[Chain, Any, Any]:
    chain = in_process_chain
    attacker = chain.contract(REENTRANT_PAYEE, chain.deploy(REENTRANT_PAYEE, True))
    splitter = deploy_splitter(chain, [attacker.address, PAYEES[0], PAYEES[1]], [2, 1, 1])
    chain.transfer_eth(splitter.address, 1_000)
    return chain, attacker, splitter


def test_a_reentrant_payee_gets_exactly_its_share(reentrant_setup: tuple[Chain, Any, Any]) -> None:
    chain, attacker, splitter = reentrant_setup
    again = calldata("release(address)", ["address"], [attacker.address])
    chain.transact(attacker.functions.arm(splitter.address, again))

    chain.transact(splitter.functions.release(attacker.address))

    assert attacker.functions.reentry_attempts().call() == 1
    assert attacker.functions.reentry_succeeded().call() is False
    assert chain.eth_balance(attacker.address) == 500
    for payee in PAYEES[:2]:
        chain.transact(splitter.functions.release(payee))
    assert [chain.eth_balance(p) for p in PAYEES[:2]] == [250, 250]
    assert released_and_held(chain, splitter) == (1_000, 0)


def test_a_reentrant_payee_cannot_reach_token_release_either(reentrant_setup: tuple[Chain, Any, Any]) -> None:
    chain, attacker, splitter = reentrant_setup
    chain.mint(splitter.address, 400)
    cross = calldata(
        "release_token(address,address)", ["address", "address"], [chain.token.address, attacker.address]
    )
    chain.transact(attacker.functions.arm(splitter.address, cross))

    chain.transact(splitter.functions.release(attacker.address))

    assert attacker.functions.reentry_succeeded().call() is False
    assert chain.balance_of(attacker.address) == 0
    assert splitter.functions.releasable_token(chain.token.address, attacker.address).call() == 200


def test_a_payee_that_reverts_on_reentry_failure_changes_nothing(in_process_chain: Chain) -> None:
    chain = in_process_chain
    attacker = chain.contract(REENTRANT_PAYEE, chain.deploy(REENTRANT_PAYEE, False))
    splitter = deploy_splitter(chain, [attacker.address, PAYEES[0]], [1, 1])
    chain.transfer_eth(splitter.address, 1_000)
    chain.transact(
        attacker.functions.arm(
            splitter.address, calldata("release(address)", ["address"], [attacker.address])
        )
    )

    with pytest.raises(ChainReverted):
        chain.transact(splitter.functions.release(attacker.address))

    assert released_and_held(chain, splitter) == (0, 1_000)
    assert splitter.functions.released(attacker.address).call() == 0
    chain.transact(splitter.functions.release(PAYEES[0]))
    assert chain.eth_balance(PAYEES[0]) == 500


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    shares=st.lists(st.integers(min_value=1, max_value=10_000), min_size=2, max_size=5),
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("receive"), st.integers(min_value=1, max_value=10**18)),
            st.tuples(st.just("release"), st.integers(min_value=0, max_value=4)),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_released_plus_held_always_equals_received(
    in_process_base_chain: Chain, shares: list[int], steps: list[tuple[str, int]]
) -> None:
    chain = in_process_base_chain
    snapshot = chain.snapshot()
    try:
        payees = PAYEES[: len(shares)]
        splitter = deploy_splitter(chain, payees, shares)
        received = 0
        for action, value in steps:
            if action == "receive":
                chain.transfer_eth(splitter.address, value)
                received += value
            else:
                payee = payees[value % len(payees)]
                if splitter.functions.releasable(payee).call() > 0:
                    chain.transact(splitter.functions.release(payee))
            assert sum(released_and_held(chain, splitter)) == received
            for payee, share in zip(payees, shares, strict=True):
                assert chain.eth_balance(payee) <= received * share // sum(shares)

        for payee in payees:
            if splitter.functions.releasable(payee).call() > 0:
                chain.transact(splitter.functions.release(payee))

        owed = [received * share // sum(shares) for share in shares]
        assert [chain.eth_balance(payee) for payee in payees] == owed
        assert released_and_held(chain, splitter) == (sum(owed), received - sum(owed))
        assert received - sum(owed) < len(payees)
    finally:
        chain.revert(snapshot)
