# pragma version 0.4.3
# pragma evm-version cancun
"""
@title Tribute test stablecoin
@notice ERC-20 with 6 decimals (like USDC), owner-only mint, EIP-2612 permit and
        EIP-3009 transfer / receive / cancel with authorization, so an x402
        facilitator can settle "exact" EVM payments against it.
@dev The EIP-712 domain is (name, version, chainId, verifyingContract); x402's
     payment requirement must carry the same name and version in `extra`.
     Only EOA signatures (v, r, s) are accepted: Vyper has no overloading, and
     x402 calls the (v, r, s) variant of `transferWithAuthorization` for every
     65-byte signature.
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed

implements: IERC20
implements: IERC20Detailed


event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256


event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


event AuthorizationUsed:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


event AuthorizationCanceled:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


event OwnershipTransferred:
    previous_owner: indexed(address)
    new_owner: indexed(address)


decimals: public(constant(uint8)) = 6

name: public(String[64])
symbol: public(String[32])
# The EIP-712 domain version (x402's `extra.version`).
version: public(String[16])

totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
owner: public(address)

# EIP-2612 permit nonces (sequential), separate from EIP-3009's random nonces.
nonces: public(HashMap[address, uint256])
_authorization_used: HashMap[address, HashMap[bytes32, bool]]

_EIP712_DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_PERMIT_TYPEHASH: constant(bytes32) = keccak256(
    "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
)
# The exact EIP-3009 type strings: a single character off and no wallet's signature verifies.
_TRANSFER_WITH_AUTHORIZATION_TYPEHASH: constant(bytes32) = keccak256(
    "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
_RECEIVE_WITH_AUTHORIZATION_TYPEHASH: constant(bytes32) = keccak256(
    "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
_CANCEL_AUTHORIZATION_TYPEHASH: constant(bytes32) = keccak256(
    "CancelAuthorization(address authorizer,bytes32 nonce)"
)
# Upper bound of a canonical ECDSA `s` (secp256k1n / 2): the other half is a malleated copy.
_MAX_S: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168

_HASHED_NAME: immutable(bytes32)
_HASHED_VERSION: immutable(bytes32)
_CACHED_CHAIN_ID: immutable(uint256)
_CACHED_DOMAIN_SEPARATOR: immutable(bytes32)


@deploy
def __init__(name_: String[64], symbol_: String[32], version_: String[16]):
    self.name = name_
    self.symbol = symbol_
    self.version = version_
    self.owner = msg.sender
    _HASHED_NAME = keccak256(name_)
    _HASHED_VERSION = keccak256(version_)
    _CACHED_CHAIN_ID = chain.id
    _CACHED_DOMAIN_SEPARATOR = self._build_domain_separator()
    log OwnershipTransferred(previous_owner=empty(address), new_owner=msg.sender)


# ERC-20


@external
def transfer(receiver: address, amount: uint256) -> bool:
    self._transfer(msg.sender, receiver, amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    self._spend_allowance(sender, msg.sender, amount)
    self._transfer(sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    self._approve(msg.sender, spender, amount)
    return True


# Owner


@external
def mint(receiver: address, amount: uint256):
    assert msg.sender == self.owner, "Ownable: caller is not the owner"
    assert receiver != empty(address), "ERC20: mint to the zero address"
    self.totalSupply += amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=empty(address), receiver=receiver, value=amount)


@external
def transferOwnership(new_owner: address):
    assert msg.sender == self.owner, "Ownable: caller is not the owner"
    assert new_owner != empty(address), "Ownable: new owner is the zero address"
    log OwnershipTransferred(previous_owner=self.owner, new_owner=new_owner)
    self.owner = new_owner


# EIP-712 / EIP-2612


@external
@view
def DOMAIN_SEPARATOR() -> bytes32:
    return self._domain_separator()


@external
@view
def eip712Domain() -> (
    bytes1, String[64], String[16], uint256, address, bytes32, DynArray[uint256, 1]
):
    """
    @notice EIP-5267 description of the domain: fields 0x0f = name, version,
            chainId and verifyingContract.
    """
    return (0x0f, self.name, self.version, chain.id, self, empty(bytes32), [])


@external
def permit(
    owner: address,
    spender: address,
    amount: uint256,
    deadline: uint256,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    assert block.timestamp <= deadline, "ERC20Permit: expired deadline"
    nonce: uint256 = self.nonces[owner]
    struct_hash: bytes32 = keccak256(
        abi_encode(_PERMIT_TYPEHASH, owner, spender, amount, nonce, deadline)
    )
    self._require_signer(owner, struct_hash, v, r, s, "ERC20Permit: invalid signature")
    self.nonces[owner] = nonce + 1
    self._approve(owner, spender, amount)


# EIP-3009


@external
@view
def authorizationState(authorizer: address, nonce: bytes32) -> bool:
    """
    @notice True once the authorizer's nonce was used or canceled.
    """
    return self._authorization_used[authorizer][nonce]


@external
def transferWithAuthorization(
    from_: address,
    to: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @notice Anyone (a facilitator) submits a transfer the holder signed off-chain.
    """
    self._use_authorization(
        _TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
        from_,
        to,
        amount,
        valid_after,
        valid_before,
        nonce,
        v,
        r,
        s,
    )
    self._transfer(from_, to, amount)


@external
def receiveWithAuthorization(
    from_: address,
    to: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @notice Like transferWithAuthorization, but only the payee may submit it, so a
            front-runner cannot take the authorization out of a payee contract's call.
    """
    assert to == msg.sender, "EIP3009: caller must be the payee"
    self._use_authorization(
        _RECEIVE_WITH_AUTHORIZATION_TYPEHASH,
        from_,
        to,
        amount,
        valid_after,
        valid_before,
        nonce,
        v,
        r,
        s,
    )
    self._transfer(from_, to, amount)


@external
def cancelAuthorization(authorizer: address, nonce: bytes32, v: uint8, r: bytes32, s: bytes32):
    assert not self._authorization_used[authorizer][nonce], "EIP3009: authorization is used or canceled"
    struct_hash: bytes32 = keccak256(abi_encode(_CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce))
    self._require_signer(authorizer, struct_hash, v, r, s, "EIP3009: invalid signature")
    self._authorization_used[authorizer][nonce] = True
    log AuthorizationCanceled(authorizer=authorizer, nonce=nonce)


# Internals


@internal
def _use_authorization(
    typehash: bytes32,
    authorizer: address,
    to: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    # Revert strings follow FiatToken's wording: x402 maps them to its error codes.
    assert block.timestamp > valid_after, "EIP3009: authorization is not yet valid"
    assert block.timestamp < valid_before, "EIP3009: authorization is expired"
    assert not self._authorization_used[authorizer][nonce], "EIP3009: authorization is used or canceled"
    struct_hash: bytes32 = keccak256(
        abi_encode(typehash, authorizer, to, amount, valid_after, valid_before, nonce)
    )
    self._require_signer(authorizer, struct_hash, v, r, s, "EIP3009: invalid signature")
    self._authorization_used[authorizer][nonce] = True
    log AuthorizationUsed(authorizer=authorizer, nonce=nonce)


@internal
@view
def _require_signer(
    signer: address, struct_hash: bytes32, v: uint8, r: bytes32, s: bytes32, message: String[32]
):
    assert convert(s, uint256) <= _MAX_S, message
    assert v == 27 or v == 28, message
    digest: bytes32 = keccak256(concat(b"\x19\x01", self._domain_separator(), struct_hash))
    recovered: address = ecrecover(digest, v, r, s)
    # ecrecover answers the zero address for an unrecoverable signature.
    assert recovered != empty(address) and recovered == signer, message


@internal
@view
def _domain_separator() -> bytes32:
    # After a chain split the cached separator would let a signature replay on the other chain.
    if chain.id == _CACHED_CHAIN_ID:
        return _CACHED_DOMAIN_SEPARATOR
    return self._build_domain_separator()


@internal
@view
def _build_domain_separator() -> bytes32:
    return keccak256(
        abi_encode(_EIP712_DOMAIN_TYPEHASH, _HASHED_NAME, _HASHED_VERSION, chain.id, self)
    )


@internal
def _transfer(sender: address, receiver: address, amount: uint256):
    assert receiver != empty(address), "ERC20: transfer to the zero address"
    sender_balance: uint256 = self.balanceOf[sender]
    assert sender_balance >= amount, "ERC20: transfer amount exceeds balance"
    self.balanceOf[sender] = sender_balance - amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)


@internal
def _approve(owner: address, spender: address, amount: uint256):
    assert owner != empty(address), "ERC20: approve from the zero address"
    assert spender != empty(address), "ERC20: approve to the zero address"
    self.allowance[owner][spender] = amount
    log Approval(owner=owner, spender=spender, value=amount)


@internal
def _spend_allowance(owner: address, spender: address, amount: uint256):
    current: uint256 = self.allowance[owner][spender]
    if current == max_value(uint256):
        return
    assert current >= amount, "ERC20: insufficient allowance"
    self._approve(owner, spender, current - amount)
