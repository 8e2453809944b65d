"""The anvil helper, and how Chain behaves when its node goes away and comes back."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.anvil import ANVIL_CHAIN_ID, ANVIL_PRIVATE_KEYS, AnvilNode, AnvilNotInstalled, find_anvil
from contracts.chain import Chain, ChainError, PayoutEntry, payout_id_from_key


def test_a_missing_anvil_binary_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANVIL_BIN", str(tmp_path / "no-anvil-here"))

    with pytest.raises(AnvilNotInstalled, match="is not a file"):
        find_anvil()


@pytest.mark.anvil
def test_chain_errors_while_the_node_is_down_and_recovers_after_a_restart() -> None:
    with AnvilNode.started() as node:
        chain = Chain(rpc_url=node.rpc_url, private_key=ANVIL_PRIVATE_KEYS[0], deploy_missing=True)
        assert chain.chain_id == ANVIL_CHAIN_ID
        chain.mint(chain.address, 100)
        chain.fund_distributor(100)

        node.stop()
        with pytest.raises(ChainError):
            chain.is_paid(payout_id_from_key("payout:1"))
        with pytest.raises(ChainError):
            chain.send_batch_payout(
                payout_id_from_key("batch:1"), [PayoutEntry(payout_id_from_key("payout:1"), chain.address, 1)]
            )

        # anvil keeps no state: after a restart the chain is new, and so must our contracts be.
        node.start()
        restarted = Chain(rpc_url=node.rpc_url, private_key=ANVIL_PRIVATE_KEYS[0], deploy_missing=True)
        restarted.mint(restarted.address, 5)
        assert restarted.balance_of(restarted.address) == 5
        assert node.rpc_url == restarted.w3.provider.endpoint_uri  # type: ignore[attr-defined]


@pytest.mark.anvil
def test_the_same_node_restarts_on_its_port() -> None:
    # A node of its own, so the session node other tests share is not disturbed.
    with AnvilNode.started() as node:
        port = node.port
        node.restart()
        assert node.running and node.port == port
