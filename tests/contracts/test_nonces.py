"""Two senders with one key (the payout rail and the x402 facilitator, or two processes) never reuse a
nonce: each send asks the node how many transactions it has seen from the account."""

from __future__ import annotations

from contracts.chain import Chain


def test_sends_from_another_signer_object_with_the_same_key_do_not_reuse_a_nonce(chain: Chain) -> None:
    twin = chain.for_signer(chain._account.key)
    receiver = "0x000000000000000000000000000000000000dEaD"
    before = chain.balance_of(receiver)

    first = chain.mint(receiver, 1)
    second = twin.mint(receiver, 2)
    third = chain.mint(receiver, 3)

    assert [first.succeeded, second.succeeded, third.succeeded] == [True, True, True]
    assert chain.balance_of(receiver) - before == 6
