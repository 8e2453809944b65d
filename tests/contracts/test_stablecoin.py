"""TestStablecoin: 6 decimals, owner-only mint, EIP-3009 as x402's facilitator uses it."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak

from contracts.chain import STABLECOIN_DECIMALS, Chain, ChainReverted
from tests.contracts.signing import Authorization, domain_data, new_key, sign_authorization, sign_cancel

PAYER_KEY = new_key("payer")
PAYER = Account.from_key(PAYER_KEY).address
PAYEE = Account.from_key(new_key("payee")).address
OPENING_BALANCE = 5_000_000  # 5.000000 tUSD
HOUR_S = 3600


def latest_timestamp(chain: Chain) -> int:
    return int(chain.w3.eth.get_block("latest")["timestamp"])


@pytest.fixture
def funded_payer(chain: Chain) -> Chain:
    chain.mint(PAYER, OPENING_BALANCE)
    return chain


def authorize(
    chain: Chain,
    *,
    amount: int = 1_250_001,
    nonce: bytes = b"\x07" * 32,
    valid_after: int = 0,
    valid_before: int | None = None,
) -> Authorization:
    if valid_before is None:
        valid_before = latest_timestamp(chain) + HOUR_S
    return sign_authorization(
        chain,
        PAYER_KEY,
        payee=PAYEE,
        amount=amount,
        nonce=nonce,
        valid_after=valid_after,
        valid_before=valid_before,
    )


def balances(chain: Chain) -> tuple[int, int]:
    return chain.balance_of(PAYER), chain.balance_of(PAYEE)


def test_token_has_six_decimals_and_the_usdc_like_domain(chain: Chain) -> None:
    domain = chain.token_domain()

    assert chain.token.functions.decimals().call() == STABLECOIN_DECIMALS == 6
    assert (domain.name, domain.version) == ("Tribute Test USD", "2")
    assert domain.network == f"eip155:{chain.chain_id}"
    domain_typehash = keccak(
        text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    expected_separator = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                domain_typehash,
                keccak(text=domain.name),
                keccak(text=domain.version),
                domain.chain_id,
                domain.address,
            ],
        )
    )
    assert chain.token.functions.DOMAIN_SEPARATOR().call() == expected_separator
    fields, name, version, chain_id, verifying_contract, _salt, _extensions = (
        chain.token.functions.eip712Domain().call()
    )
    assert (fields, name, version, chain_id, verifying_contract) == (
        b"\x0f",
        domain.name,
        domain.version,
        domain.chain_id,
        domain.address,
    )
    assert domain_data(domain)["chainId"] == chain.chain_id


def test_only_the_owner_mints(chain: Chain, other_keys: list[bytes | str]) -> None:
    chain.mint(PAYEE, 3)
    supply = chain.token.functions.totalSupply().call()

    with pytest.raises(ChainReverted, match="caller is not the owner"):
        chain.for_signer(other_keys[0]).mint(PAYEE, 1)

    assert chain.balance_of(PAYEE) == 3
    assert chain.token.functions.totalSupply().call() == supply


def test_transfer_with_authorization_moves_the_exact_amount_once(funded_payer: Chain) -> None:
    chain = funded_payer
    authorization = authorize(chain, amount=1_250_001)
    assert chain.token.functions.authorizationState(PAYER, authorization.nonce).call() is False

    receipt = chain.transact(chain.token.functions.transferWithAuthorization(*authorization.arguments()))

    assert balances(chain) == (OPENING_BALANCE - 1_250_001, 1_250_001)
    assert chain.token.functions.authorizationState(PAYER, authorization.nonce).call() is True
    [transfer] = chain.transfer_events(receipt)
    assert (transfer.sender, transfer.receiver, transfer.amount) == (PAYER, PAYEE, 1_250_001)


def test_replayed_authorization_is_refused_and_pays_nothing_more(funded_payer: Chain) -> None:
    chain = funded_payer
    authorization = authorize(chain)
    chain.transact(chain.token.functions.transferWithAuthorization(*authorization.arguments()))
    after_first = balances(chain)

    with pytest.raises(ChainReverted, match="authorization is used or canceled"):
        chain.transact(chain.token.functions.transferWithAuthorization(*authorization.arguments()))

    assert balances(chain) == after_first


def test_expired_authorization_is_refused(funded_payer: Chain) -> None:
    chain = funded_payer
    authorization = authorize(chain, valid_before=latest_timestamp(chain) - 1)

    with pytest.raises(ChainReverted, match="authorization is expired"):
        chain.transact(chain.token.functions.transferWithAuthorization(*authorization.arguments()))

    assert balances(chain) == (OPENING_BALANCE, 0)
    assert chain.token.functions.authorizationState(PAYER, authorization.nonce).call() is False


def test_authorization_not_yet_valid_is_refused(funded_payer: Chain) -> None:
    chain = funded_payer
    authorization = authorize(chain, valid_after=latest_timestamp(chain) + HOUR_S)

    with pytest.raises(ChainReverted, match="authorization is not yet valid"):
        chain.transact(chain.token.functions.transferWithAuthorization(*authorization.arguments()))

    assert balances(chain) == (OPENING_BALANCE, 0)


@pytest.mark.parametrize("tamper", ["amount", "payee", "signer", "domain_version", "high_s"])
def test_bad_signature_is_refused(funded_payer: Chain, tamper: str) -> None:
    chain = funded_payer
    authorization = authorize(chain, amount=1_000_000)
    arguments = authorization.arguments()
    if tamper == "amount":
        arguments[2] = 1_000_001
    elif tamper == "payee":
        arguments[1] = Account.from_key(new_key("thief")).address
    elif tamper == "signer":
        forged = sign_authorization(
            chain,
            new_key("thief"),
            payee=PAYEE,
            amount=1_000_000,
            valid_after=0,
            valid_before=authorization.valid_before,
            nonce=authorization.nonce,
        )
        arguments[6:] = [forged.v, forged.r, forged.s]
    elif tamper == "domain_version":
        domain = chain.token_domain()
        other = type(domain)(name=domain.name, version="1", chain_id=domain.chain_id, address=domain.address)
        forged = authorize_with_domain(chain, other, authorization)
        arguments[6:] = [forged.v, forged.r, forged.s]
    else:  # the malleated twin of a valid signature: s -> n - s, v flipped
        n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
        high_s = n - int.from_bytes(authorization.s, "big")
        arguments[6:] = [55 - authorization.v, authorization.r, high_s.to_bytes(32, "big")]

    with pytest.raises(ChainReverted, match="invalid signature"):
        chain.transact(chain.token.functions.transferWithAuthorization(*arguments))

    assert balances(chain) == (OPENING_BALANCE, 0)
    assert chain.token.functions.authorizationState(PAYER, authorization.nonce).call() is False


def authorize_with_domain(chain: Chain, domain, authorization):
    return sign_authorization(
        chain,
        PAYER_KEY,
        payee=authorization.payee,
        amount=authorization.amount,
        valid_after=authorization.valid_after,
        valid_before=authorization.valid_before,
        nonce=authorization.nonce,
        domain=domain,
    )


def test_receive_with_authorization_is_for_the_payee_only(funded_payer: Chain, other_keys) -> None:
    chain = funded_payer
    payee = chain.address  # the chain's own account submits, so it is the payee here
    now = latest_timestamp(chain)
    signed = sign_authorization(
        chain,
        PAYER_KEY,
        payee=payee,
        amount=700_000,
        valid_after=0,
        valid_before=now + HOUR_S,
        nonce=b"\x09" * 32,
        primary_type="ReceiveWithAuthorization",
    )
    as_transfer = sign_authorization(
        chain,
        PAYER_KEY,
        payee=PAYEE,
        amount=700_000,
        valid_after=0,
        valid_before=now + HOUR_S,
        nonce=b"\x0a" * 32,
        primary_type="ReceiveWithAuthorization",
    )

    with pytest.raises(ChainReverted, match="caller must be the payee"):
        chain.transact(chain.token.functions.receiveWithAuthorization(*as_transfer.arguments()))
    # A receive-authorization cannot be spent through transferWithAuthorization (other typehash).
    with pytest.raises(ChainReverted, match="invalid signature"):
        chain.transact(chain.token.functions.transferWithAuthorization(*signed.arguments()))
    chain.transact(chain.token.functions.receiveWithAuthorization(*signed.arguments()))

    assert chain.balance_of(PAYER) == OPENING_BALANCE - 700_000
    assert chain.balance_of(payee) == 700_000


def test_canceled_authorization_can_no_longer_be_used(funded_payer: Chain) -> None:
    chain = funded_payer
    authorization = authorize(chain)

    cancel = sign_cancel(chain, PAYER_KEY, authorization.nonce)
    chain.transact(chain.token.functions.cancelAuthorization(*cancel))

    assert chain.token.functions.authorizationState(PAYER, authorization.nonce).call() is True
    with pytest.raises(ChainReverted, match="authorization is used or canceled"):
        chain.transact(chain.token.functions.transferWithAuthorization(*authorization.arguments()))
    assert balances(chain) == (OPENING_BALANCE, 0)


def test_authorization_beyond_the_balance_is_refused(funded_payer: Chain) -> None:
    chain = funded_payer
    authorization = authorize(chain, amount=OPENING_BALANCE + 1)

    with pytest.raises(ChainReverted, match="transfer amount exceeds balance"):
        chain.transact(chain.token.functions.transferWithAuthorization(*authorization.arguments()))

    assert balances(chain) == (OPENING_BALANCE, 0)
