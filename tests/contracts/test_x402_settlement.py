"""x402's own "exact" EVM client and facilitator settle a payment in our token on anvil.

The facilitator's web3 signer needs an HTTP RPC, so this runs on anvil only.
"""

from __future__ import annotations

import pytest
import x402.mechanisms.evm.exact.client as x402_client
import x402.mechanisms.evm.exact.facilitator as x402_facilitator
import x402.mechanisms.evm.signers as x402_signers
import x402.schemas.payments as x402_payments
from eth_account import Account

from contracts.anvil import ANVIL_PRIVATE_KEYS, AnvilNode
from contracts.chain import Chain
from tests.contracts.signing import new_key

pytestmark = pytest.mark.anvil

PAYER = Account.from_key(new_key("x402 payer"))
PAYEE = Account.from_key(new_key("x402 payee")).address
PRICE = 1_234_567  # 1.234567 tUSD


@pytest.fixture
def anvil_chain(anvil_node: AnvilNode) -> Chain:
    chain = Chain(rpc_url=anvil_node.rpc_url, private_key=ANVIL_PRIVATE_KEYS[0], deploy_missing=True)
    chain.mint(PAYER.address, 5_000_000)
    return chain


def test_x402_facilitator_settles_once_against_our_token(anvil_chain: Chain, anvil_node: AnvilNode) -> None:
    chain = anvil_chain
    domain = chain.token_domain()
    requirements = x402_payments.PaymentRequirements(
        scheme="exact",
        network=domain.network,
        asset=domain.address,
        amount=str(PRICE),
        pay_to=PAYEE,
        max_timeout_seconds=600,
        extra={"name": domain.name, "version": domain.version},
    )
    payload = x402_payments.PaymentPayload(
        payload=x402_client.ExactEvmScheme(PAYER).create_payment_payload(requirements),
        accepted=requirements,
    )
    facilitator = x402_facilitator.ExactEvmScheme(
        x402_signers.FacilitatorWeb3Signer(private_key=ANVIL_PRIVATE_KEYS[1], rpc_url=anvil_node.rpc_url)
    )

    verified = facilitator.verify(payload, requirements)
    settled = facilitator.settle(payload, requirements)

    assert verified.is_valid, verified
    assert settled.success, settled
    assert (chain.balance_of(PAYER.address), chain.balance_of(PAYEE)) == (5_000_000 - PRICE, PRICE)

    replayed = facilitator.verify(payload, requirements)

    assert not replayed.is_valid
    assert replayed.invalid_reason == "invalid_exact_evm_nonce_already_used"
    assert (chain.balance_of(PAYER.address), chain.balance_of(PAYEE)) == (5_000_000 - PRICE, PRICE)
