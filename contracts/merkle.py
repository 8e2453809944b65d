"""Merkle trees of payouts for `PayoutDistributor.claim`.

A leaf is keccak256(keccak256(abi.encode(uint256 index, address account, uint256 amount)))
(hashed twice, so no leaf can pass for an inner node), and each inner node hashes its two
children in sorted order, as the contract's `_proves` does. A level with an odd node
carries that node up unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak, to_checksum_address


@dataclass(frozen=True)
class Claim:
    index: int
    account: str
    amount: int


def leaf_hash(claim: Claim) -> bytes:
    encoded = encode(["uint256", "address", "uint256"], [claim.index, claim.account, claim.amount])
    return keccak(keccak(encoded))


def _parent(left: bytes, right: bytes) -> bytes:
    return keccak(left + right) if left < right else keccak(right + left)


@dataclass(frozen=True)
class PayoutTree:
    claims: tuple[Claim, ...]
    levels: tuple[tuple[bytes, ...], ...]  # levels[0] = leaves, levels[-1] = (root,)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    @property
    def total(self) -> int:
        return sum(claim.amount for claim in self.claims)

    def proof(self, index: int) -> list[bytes]:
        proof = []
        position = index
        for level in self.levels[:-1]:
            sibling = position ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            position //= 2
        return proof


def build_tree(payouts: Sequence[tuple[str, int]]) -> PayoutTree:
    """Tree of (account, amount) payouts; the i-th payout is claimed with index i."""
    if not payouts:
        raise ValueError("a payout tree needs at least one payout")
    claims = tuple(
        Claim(index=index, account=to_checksum_address(account), amount=amount)
        for index, (account, amount) in enumerate(payouts)
    )
    level = tuple(leaf_hash(claim) for claim in claims)
    levels = [level]
    while len(level) > 1:
        level = tuple(
            _parent(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        )
        levels.append(level)
    return PayoutTree(claims=claims, levels=tuple(levels))


def verify(proof: Sequence[bytes], root: bytes, claim: Claim) -> bool:
    computed = leaf_hash(claim)
    for sibling in proof:
        computed = _parent(computed, sibling)
    return computed == root
