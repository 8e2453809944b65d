"""Scenario 4, chain faults on an anvil node on 127.0.0.1: a batch that reverts when mined, a batch the node
drops, and a node that stops and starts again mid-payout, once keeping the chain (anvil's --state) and once
losing the transaction that was still pending. Pass: every payout ends confirmed with exactly one Paid event
on the chain and exactly its amount in the payee's wallet; never two payments for one payout."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db.models import F

from contracts.anvil import ANVIL_CHAIN_ID, ANVIL_PRIVATE_KEYS, AnvilNode, AnvilNotInstalled, rpc_request
from contracts.chain import Chain, payout_id_from_key
from royalties import chain_client
from royalties.ledger import ledger_check
from royalties.models import ChainBatch, Payout
from royalties.payouts import payout_run
from tests import factories
from tests.royalties.payout_world import credit, prove_wallet

pytestmark = [pytest.mark.security, pytest.mark.anvil, pytest.mark.django_db]

BASE_UNITS_PER_CENT = 10_000
DEPTH = 3
GWEI = 1_000_000_000
RESEND_AFTER_S = 900


def wait_out_the_resend_delay() -> None:
    """Time passes: every batch sent so far is older than CHAIN_RESEND_AFTER_S."""
    ChainBatch.objects.update(sent_at=F("sent_at") - timedelta(seconds=RESEND_AFTER_S + 1))


class KeptStateNode(AnvilNode):
    """An anvil node that loads its chain from a file on start and writes it back on exit (--state), so a
    restart keeps every block mined so far; a transaction still pending when it stops is lost."""

    def __init__(self, state_file: Path) -> None:
        super().__init__()
        self.state_file = state_file

    def start(self) -> None:
        if self.running:
            return
        self._process = subprocess.Popen(
            [
                self.binary,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--chain-id",
                str(ANVIL_CHAIN_ID),
                "--state",
                str(self.state_file),
                "--silent",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_ready()

    def rpc(self, method: str, *params: object) -> object:
        return rpc_request(self.rpc_url, method, list(params))


@pytest.fixture
def node(tmp_path: Path, settings) -> Iterator[KeptStateNode]:
    try:
        started = KeptStateNode(tmp_path / "anvil-state.json")
    except AnvilNotInstalled as error:
        pytest.fail(f"anvil tests were selected, but {error}", pytrace=False)
    started.start()
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    settings.CHAIN_PAYOUTS_ENABLED = True
    settings.CHAIN_CONFIRMATIONS = DEPTH
    settings.CHAIN_RESEND_AFTER_S = RESEND_AFTER_S
    settings.CHAIN_RPC_URL = started.rpc_url
    settings.CHAIN_PRIVATE_KEY = ANVIL_PRIVATE_KEYS[0]
    settings.CHAIN_DEPLOY_MISSING = True
    chain_client.reset_chain()
    try:
        yield started
    finally:
        chain_client.reset_chain()
        started.stop()


def payees_with_money(client: Chain, amounts: list[int]) -> dict[int, str]:
    """Payees on the chain rail with these payables, and the distributor funded for all of them."""
    wallets: dict[int, str] = {}
    for amount in amounts:
        payee = factories.creator()
        wallets[payee.pk] = prove_wallet(payee).address
        credit(payee, amount)
    client.mint(str(client.distributor.address), sum(amounts) * BASE_UNITS_PER_CENT)
    return wallets


def paid_events_per_payout(client: Chain) -> dict[str, int]:
    events = client.paid_events_between(0, client.block_number())
    return {
        payout.key: sum(1 for event in events if event.payout_id == payout_id_from_key(payout.key))
        for payout in Payout.objects.all()
    }


def assert_each_paid_once(client: Chain, wallets: dict[int, str]) -> None:
    payouts = list(Payout.objects.all())
    assert len(payouts) == len(wallets)
    assert {payout.status for payout in payouts} == {"confirmed"}
    assert set(paid_events_per_payout(client).values()) == {1}
    for payout in payouts:
        assert client.balance_of(wallets[payout.user_id]) == payout.amount_minor * BASE_UNITS_PER_CENT
    assert ledger_check().clean


def confirm(client: Chain) -> None:
    """Bury the payment under enough blocks and run again: the run confirms it."""
    client.mine_blocks(DEPTH)
    payout_run()


def test_a_batch_that_reverts_when_mined_is_sent_again_once_the_distributor_can_pay(
    node: KeptStateNode,
) -> None:
    client = chain_client.chain()
    wallets = payees_with_money(client, [1500, 2500])
    distributor = str(client.distributor.address)
    node.rpc("evm_setAutomine", False)
    payout_run()  # simulated fine, sent, waiting in the pool
    sent = {p.external_id for p in Payout.objects.all()}
    assert len(sent) == 1
    # Before it is mined, the distributor's tokens leave ahead of it (a higher tip comes first in the block).
    node.rpc("anvil_impersonateAccount", distributor)
    node.rpc("anvil_setBalance", distributor, hex(10**18))
    client.token.functions.transfer(client.address, client.balance_of(distributor)).transact(
        {"from": distributor, "gas": 100_000, "maxPriorityFeePerGas": 100 * GWEI, "maxFeePerGas": 200 * GWEI}
    )
    node.rpc("anvil_stopImpersonatingAccount", distributor)
    node.rpc("evm_mine")
    node.rpc("evm_setAutomine", True)
    receipt = client.get_receipt(sent.pop())
    assert receipt is not None and receipt.succeeded is False

    payout_run()  # reverted: to be sent again, but the distributor holds nothing now

    assert set(Payout.objects.values_list("status", flat=True)) == {"submitted"}
    assert all("Fund it" in p.last_error for p in Payout.objects.all())
    assert set(paid_events_per_payout(client).values()) == {0}
    client.mint(distributor, 4000 * BASE_UNITS_PER_CENT)  # the operator funds it again

    payout_run()
    confirm(client)
    payout_run()  # and once more: nothing changes

    assert_each_paid_once(client, wallets)
    assert list(ChainBatch.objects.order_by("id").values_list("status", flat=True)) == ["reverted", "mined"]


def test_a_batch_the_node_dropped_is_sent_again_and_paid_once(node: KeptStateNode) -> None:
    client = chain_client.chain()
    wallets = payees_with_money(client, [1200, 3400])
    node.rpc("evm_setAutomine", False)
    payout_run()
    (dropped,) = set(Payout.objects.values_list("external_id", flat=True))
    node.rpc("anvil_dropTransaction", dropped)
    node.rpc("evm_setAutomine", True)
    assert client.get_receipt(dropped) is None
    payout_run()  # no receipt yet: it may still be pending somewhere, so it waits
    assert ChainBatch.objects.count() == 1
    wait_out_the_resend_delay()

    payout_run()  # still no receipt: dropped, sent again with the same payout ids
    confirm(client)

    assert_each_paid_once(client, wallets)
    assert list(ChainBatch.objects.order_by("id").values_list("status", flat=True)) == ["dropped", "mined"]
    assert client.get_receipt(dropped) is None


def test_a_node_down_while_sending_leaves_the_payouts_waiting_and_the_next_run_pays_them_once(
    node: KeptStateNode,
) -> None:
    client = chain_client.chain()
    wallets = payees_with_money(client, [2000, 700])
    node.stop()

    result = payout_run()  # the payouts are made, the node does not answer

    assert (len(result.created), result.waiting) == (2, 2)
    assert set(Payout.objects.values_list("status", flat=True)) == {"created"}
    node.start()
    payout_run()
    confirm(client)

    assert_each_paid_once(client, wallets)
    assert ChainBatch.objects.count() == 1


def test_a_node_restarted_after_the_payment_was_mined_keeps_it_and_it_is_confirmed_not_resent(
    node: KeptStateNode,
) -> None:
    client = chain_client.chain()
    wallets = payees_with_money(client, [1800, 900])
    payout_run()
    mined_in = {p.external_id for p in Payout.objects.all()}
    node.stop()

    payout_run()  # the node is down: the payouts wait, nothing is sent again

    assert set(Payout.objects.values_list("status", flat=True)) == {"submitted"}
    node.start()
    assert client.get_receipt(next(iter(mined_in))) is not None  # the restarted node has the chain so far
    confirm(client)

    assert_each_paid_once(client, wallets)
    assert ChainBatch.objects.count() == 1
    assert {p.external_id for p in Payout.objects.all()} == mined_in


def test_a_node_restarted_without_the_pending_transaction_gets_it_sent_again_and_paid_once(
    node: KeptStateNode,
) -> None:
    client = chain_client.chain()
    wallets = payees_with_money(client, [2600, 1100])
    node.rpc("evm_setAutomine", False)
    payout_run()
    (lost,) = set(Payout.objects.values_list("external_id", flat=True))
    node.stop()  # the transaction was still pending: a restarted node has never heard of it
    node.start()
    assert client.get_receipt(lost) is None
    wait_out_the_resend_delay()

    payout_run()
    confirm(client)

    assert_each_paid_once(client, wallets)
    assert list(ChainBatch.objects.order_by("id").values_list("status", flat=True)) == ["dropped", "mined"]
