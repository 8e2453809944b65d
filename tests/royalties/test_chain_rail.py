"""The chain rail on the in-process EVM (and once on anvil): one batch transaction per run, confirmed after
CHAIN_CONFIRMATIONS blocks, and exactly one payment per payout whatever crashes, reverts or is dropped."""

from __future__ import annotations

import pytest

from accounts.models import User
from contracts.chain import Chain, Receipt, payout_id_from_key
from royalties import chain_client, payouts
from royalties.ledger import ledger_check
from royalties.models import ChainBatch, Payout
from royalties.payouts import payout_run
from royalties.rails import RailError
from royalties.rails import chain as chain_rail
from tests import factories
from tests.royalties.payout_world import Crash, balance, credit, in_transit, onchain, payable, prove_wallet

__all__ = ["onchain"]
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _chain_settings(settings) -> None:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    settings.CHAIN_PAYOUTS_ENABLED = True
    settings.CHAIN_CONFIRMATIONS = 3
    settings.CHAIN_RESEND_AFTER_S = 900


def _payees(amounts: list[int]) -> list[tuple[User, str]]:
    made: list[tuple[User, str]] = []
    for amount in amounts:
        payee = factories.creator()
        wallet = prove_wallet(payee)
        credit(payee, amount)
        made.append((payee, wallet.address))
    return made


def _paid_count(client: Chain, payout: Payout) -> int:
    wanted = payout_id_from_key(payout.key)
    return sum(
        1 for event in client.paid_events_between(0, client.block_number()) if event.payout_id == wanted
    )


def test_minor_units_become_token_base_units_exactly_and_only_usd_goes_on_chain() -> None:
    assert chain_rail.to_base_units(1, "USD") == 10_000
    assert chain_rail.to_base_units(123_456_789_012, "USD") == 1_234_567_890_120_000
    assert chain_client.to_minor(1_234_567) == (123, 4_567)
    with pytest.raises(RailError) as refused:
        chain_rail.to_base_units(100, "EUR")
    assert "USD only" in str(refused.value) and refused.value.retryable is False


def test_a_run_pays_its_chain_payouts_in_one_batch_and_confirms_after_n_blocks(onchain: Chain) -> None:
    (alice, alice_wallet), (bob, bob_wallet) = _payees([1234, 99_999])

    result = payout_run()

    made = {p.user_id: Payout.objects.get(pk=p.pk) for p in result.created}
    assert {p.status for p in made.values()} == {"submitted"}
    assert made[alice.pk].external_id == made[bob.pk].external_id  # one transaction for both
    assert ChainBatch.objects.count() == 1
    assert onchain.balance_of(alice_wallet) == 12_340_000
    assert onchain.balance_of(bob_wallet) == 999_990_000
    assert in_transit("chain") == 1234 + 99_999

    payout_run()  # one confirmation so far: not yet
    assert set(Payout.objects.values_list("status", flat=True)) == {"submitted"}
    onchain.mine_blocks(1)
    assert payouts.chain_confirm_pending().confirmed == 0  # two
    onchain.mine_blocks(1)
    confirmed = payouts.chain_confirm_pending()

    assert confirmed.confirmed == 2
    assert set(Payout.objects.values_list("status", flat=True)) == {"confirmed"}
    assert (in_transit("chain"), balance("clearing:chain:USD")) == (0, 1234 + 99_999)
    batch = ChainBatch.objects.get()
    assert (batch.status, batch.entries, (batch.gas_used or 0) > 0) == ("mined", 2, True)
    assert ledger_check().clean


def test_big_runs_are_split_into_batches(onchain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain_rail, "MAX_BATCH_ENTRIES", 2)
    _payees([100, 200, 300])

    payout_run()

    assert ChainBatch.objects.count() == 2
    assert len(set(Payout.objects.values_list("external_id", flat=True))) == 2
    assert sorted(ChainBatch.objects.values_list("entries", flat=True)) == [1, 2]


def test_crash_after_the_ledger_move_then_rerun_pays_once(
    onchain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    [(payee, wallet)] = _payees([5000])

    def die(result: payouts.PayoutRunResult) -> None:
        raise Crash("killed before the chain was called")

    with monkeypatch.context() as patch:
        patch.setattr(payouts, "_send_unsent", die)
        with pytest.raises(Crash):
            payout_run()
    assert onchain.balance_of(wallet) == 0

    payout_run()
    payout_run()

    payout = Payout.objects.get(user=payee)
    assert payout.status == "submitted"
    assert onchain.balance_of(wallet) == 50_000_000
    assert _paid_count(onchain, payout) == 1


def test_crash_after_the_transaction_was_sent_then_rerun_pays_once(
    onchain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    [(payee, wallet)] = _payees([5000])
    real_send = Chain.send_batch_payout

    def send_then_die(self: Chain, *args: object, **kwargs: object) -> object:
        real_send(self, *args, **kwargs)  # type: ignore[arg-type]
        raise Crash("killed right after the node took the transaction")

    with monkeypatch.context() as patch:
        patch.setattr(Chain, "send_batch_payout", send_then_die)
        with pytest.raises(Crash):
            payout_run()
    assert Payout.objects.get(user=payee).status == "created"

    payout_run()
    onchain.mine_blocks(3)
    payout_run()

    payout = Payout.objects.get(user=payee)
    assert payout.status == "confirmed"
    assert onchain.balance_of(wallet) == 50_000_000
    assert _paid_count(onchain, payout) == 1
    paid_tx = next(e.tx_hash for e in onchain.paid_events_between(0, onchain.block_number()))
    assert payout.external_id == paid_tx  # the hash was recovered from the chain, not from our records
    assert ChainBatch.objects.count() == 1  # nothing was sent again
    assert ledger_check().clean


def test_crash_before_recording_the_hash_then_rerun_pays_once(
    onchain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    _payees([700, 800])
    real = payouts.payout_submitted
    calls: list[str] = []

    def record_or_die(*, key: str, external_id: str) -> Payout:
        calls.append(key)
        if len(calls) == 2:
            raise Crash("killed between recording two answers")
        return real(key=key, external_id=external_id)

    with monkeypatch.context() as patch:
        patch.setattr(payouts, "payout_submitted", record_or_die)
        with pytest.raises(Crash):
            payout_run()
    assert sorted(Payout.objects.values_list("status", flat=True)) == ["created", "submitted"]

    payout_run()
    onchain.mine_blocks(3)
    payout_run()

    assert set(Payout.objects.values_list("status", flat=True)) == {"confirmed"}
    for payout in Payout.objects.all():
        assert _paid_count(onchain, payout) == 1
        assert onchain.balance_of(payout.destination) == payout.amount_minor * 10_000
    assert ChainBatch.objects.count() == 1
    assert ledger_check().clean


def test_a_dropped_transaction_is_sent_again_with_the_same_payout_id(onchain: Chain, settings) -> None:
    settings.CHAIN_RESEND_AFTER_S = 0
    [(payee, wallet)] = _payees([2500])
    before = onchain.snapshot()
    payout_run()
    first_hash = Payout.objects.get(user=payee).external_id
    onchain.revert(before)  # the block with the transaction is gone: as if it was never mined
    assert onchain.get_receipt(first_hash) is None
    assert onchain.balance_of(wallet) == 0

    payout_run()
    onchain.mine_blocks(3)
    payout_run()

    payout = Payout.objects.get(user=payee)
    assert payout.status == "confirmed"
    assert payout.external_id != first_hash
    assert onchain.balance_of(wallet) == 25_000_000
    assert _paid_count(onchain, payout) == 1
    assert list(ChainBatch.objects.order_by("id").values_list("status", flat=True)) == ["dropped", "mined"]
    assert ledger_check().clean


def test_a_transaction_without_receipt_waits_before_being_sent_again(onchain: Chain) -> None:
    [(payee, _)] = _payees([2500])
    before = onchain.snapshot()
    payout_run()
    onchain.revert(before)

    payout_run()  # CHAIN_RESEND_AFTER_S is 900: it may still be pending at a node

    assert ChainBatch.objects.count() == 1
    assert Payout.objects.get(user=payee).status == "submitted"


def test_a_reverted_receipt_is_retried_and_the_contract_never_pays_twice(
    onchain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    [(payee, wallet)] = _payees([4000])
    payout_run()
    onchain.mine_blocks(3)
    sent = Payout.objects.get(user=payee).external_id
    real_receipt = Chain.get_receipt

    def reverted_once(self: Chain, tx_hash: str) -> Receipt | None:
        receipt = real_receipt(self, tx_hash)
        if receipt is None or tx_hash != sent:
            return receipt
        return Receipt(
            tx_hash, receipt.block_number, False, receipt.gas_used, receipt.confirmations, receipt.raw
        )

    with monkeypatch.context() as patch:
        patch.setattr(Chain, "get_receipt", reverted_once)
        payout_run()  # told it reverted: asks the contract, which says the payout id is paid

    payout = Payout.objects.get(user=payee)
    assert payout.status == "confirmed"
    assert onchain.balance_of(wallet) == 40_000_000
    assert _paid_count(onchain, payout) == 1
    assert ChainBatch.objects.get().status == "reverted"


def test_an_underfunded_distributor_on_a_node_leaves_payouts_waiting(onchain: Chain, monkeypatch) -> None:
    [(payee, wallet)] = _payees([3000])
    monkeypatch.setattr(onchain, "in_process", False)  # a node: nobody mints for us

    result = payout_run()

    payout = Payout.objects.get(user=payee)
    assert (payout.status, result.waiting) == ("created", 1)
    assert "Fund it" in payout.last_error
    assert ChainBatch.objects.count() == 0
    onchain.mint(str(onchain.distributor.address), 30_000_000)  # the operator funds the distributor
    payout_run()
    assert Payout.objects.get(user=payee).status == "submitted"
    assert onchain.balance_of(wallet) == 30_000_000


def test_chain_payouts_are_manual_when_no_chain_is_configured(settings) -> None:
    settings.CHAIN_PAYOUTS_ENABLED = False
    [(payee, _)] = _payees([3000])

    payout_run()

    assert Payout.objects.get(user=payee).rail == "manual"
    assert payable(payee) == 0


@pytest.mark.anvil
def test_chain_payouts_on_an_anvil_node(anvil_node, settings) -> None:
    from contracts.anvil import ANVIL_PRIVATE_KEYS

    settings.CHAIN_RPC_URL = anvil_node.rpc_url
    settings.CHAIN_PRIVATE_KEY = ANVIL_PRIVATE_KEYS[0]
    settings.CHAIN_DEPLOY_MISSING = True
    chain_client.reset_chain()
    try:
        client = chain_client.chain()
        assert not client.in_process
        (_, alice_wallet), (_, bob_wallet) = _payees([1500, 2500])
        client.mint(str(client.distributor.address), 40_000_000)

        payout_run()
        client.mine_blocks(3)
        payout_run()

        assert set(Payout.objects.values_list("status", flat=True)) == {"confirmed"}
        assert (client.balance_of(alice_wallet), client.balance_of(bob_wallet)) == (15_000_000, 25_000_000)
        for payout in Payout.objects.all():
            assert _paid_count(client, payout) == 1
        assert ledger_check().clean
    finally:
        chain_client.reset_chain()
