"""EIP-712 signatures for the tests, made the way a wallet (and x402's client) makes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_utils import keccak

from contracts.chain import Chain, TokenDomain

DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
AUTHORIZATION_FIELDS = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]


@dataclass(frozen=True)
class Authorization:
    payer: str
    payee: str
    amount: int
    valid_after: int
    valid_before: int
    nonce: bytes
    v: int
    r: bytes
    s: bytes

    def arguments(self) -> list[Any]:
        return [
            self.payer,
            self.payee,
            self.amount,
            self.valid_after,
            self.valid_before,
            self.nonce,
            self.v,
            self.r,
            self.s,
        ]


def domain_data(domain: TokenDomain) -> dict[str, Any]:
    return {
        "name": domain.name,
        "version": domain.version,
        "chainId": domain.chain_id,
        "verifyingContract": domain.address,
    }


def sign_authorization(
    chain: Chain,
    private_key: bytes | str,
    *,
    payee: str,
    amount: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
    primary_type: str = "TransferWithAuthorization",
    domain: TokenDomain | None = None,
) -> Authorization:
    payer = Account.from_key(private_key).address
    message = {
        "from": payer,
        "to": payee,
        "value": amount,
        "validAfter": valid_after,
        "validBefore": valid_before,
        "nonce": nonce,
    }
    signed = Account.sign_typed_data(
        private_key,
        full_message={
            "types": {"EIP712Domain": DOMAIN_FIELDS, primary_type: AUTHORIZATION_FIELDS},
            "primaryType": primary_type,
            "domain": domain_data(domain or chain.token_domain()),
            "message": message,
        },
    )
    return Authorization(
        payer=payer,
        payee=payee,
        amount=amount,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce=nonce,
        v=signed.v,
        r=signed.r.to_bytes(32, "big"),
        s=signed.s.to_bytes(32, "big"),
    )


def sign_cancel(chain: Chain, private_key: bytes | str, nonce: bytes) -> tuple[str, bytes, int, bytes, bytes]:
    authorizer = Account.from_key(private_key).address
    signed = Account.sign_typed_data(
        private_key,
        full_message={
            "types": {
                "EIP712Domain": DOMAIN_FIELDS,
                "CancelAuthorization": [
                    {"name": "authorizer", "type": "address"},
                    {"name": "nonce", "type": "bytes32"},
                ],
            },
            "primaryType": "CancelAuthorization",
            "domain": domain_data(chain.token_domain()),
            "message": {"authorizer": authorizer, "nonce": nonce},
        },
    )
    return authorizer, nonce, signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")


def new_key(label: str) -> bytes:
    """A deterministic private key for an unfunded account (payers need no ETH: a facilitator pays gas)."""
    return keccak(text=f"tribute test key {label}")
