# pragma version 0.4.3
# pragma evm-version cancun
"""
@title Tribute royalty splitter
@notice Splits ETH and any ERC-20 it receives between payees fixed at deploy, by
        shares. Pull payments: nothing is pushed on receipt; each payee's share is
        withdrawn by `release` / `release_token` (anyone may call them, the money
        only ever goes to the payee).
@dev Invariant per asset: total released + balance == total received, and a payee
     is never paid more than floor(total received * shares / total shares). The
     floor remainder stays in the contract and is paid once later receipts make
     it a whole unit of some payee's share.
"""

from ethereum.ercs import IERC20

MAX_PAYEES: constant(uint256) = 64


event PayeeAdded:
    account: indexed(address)
    shares: uint256


event PaymentReceived:
    sender: indexed(address)
    amount: uint256


event PaymentReleased:
    account: indexed(address)
    amount: uint256


event TokenPaymentReleased:
    token: indexed(address)
    account: indexed(address)
    amount: uint256


payees: public(DynArray[address, MAX_PAYEES])
shares: public(HashMap[address, uint256])
total_shares: public(uint256)

total_released: public(uint256)
released: public(HashMap[address, uint256])
token_total_released: public(HashMap[address, uint256])
token_released: public(HashMap[address, HashMap[address, uint256]])


@deploy
def __init__(payees_: DynArray[address, MAX_PAYEES], shares_: DynArray[uint256, MAX_PAYEES]):
    assert len(payees_) == len(shares_), "splitter: payees and shares length mismatch"
    assert len(payees_) > 0, "splitter: no payees"
    total: uint256 = 0
    for i: uint256 in range(len(payees_), bound=MAX_PAYEES):
        account: address = payees_[i]
        share: uint256 = shares_[i]
        assert account != empty(address), "splitter: account is the zero address"
        assert share > 0, "splitter: shares are 0"
        assert self.shares[account] == 0, "splitter: account already has shares"
        self.shares[account] = share
        total += share
        log PayeeAdded(account=account, shares=share)
    self.payees = payees_
    self.total_shares = total


@external
@payable
def __default__():
    # Plain ETH only: a call to a misspelled function must not swallow its value.
    assert len(msg.data) == 0, "splitter: unknown function"
    log PaymentReceived(sender=msg.sender, amount=msg.value)


@external
@view
def payee_count() -> uint256:
    return len(self.payees)


@external
@view
def releasable(account: address) -> uint256:
    return self._pending(account, self.balance + self.total_released, self.released[account])


@external
@view
def releasable_token(token: address, account: address) -> uint256:
    received: uint256 = staticcall IERC20(token).balanceOf(self) + self.token_total_released[token]
    return self._pending(account, received, self.token_released[token][account])


@external
@nonreentrant
def release(account: address):
    """
    @notice Send `account` its share of all ETH ever received, minus what it was already sent.
    """
    payment: uint256 = self._pending(
        account, self.balance + self.total_released, self.released[account]
    )
    assert payment != 0, "splitter: account is not due payment"
    # Effects before the call: a re-entering payee finds nothing left to take.
    self.released[account] += payment
    self.total_released += payment
    log PaymentReleased(account=account, amount=payment)
    raw_call(account, b"", value=payment)


@external
@nonreentrant
def release_token(token: address, account: address):
    """
    @notice Send `account` its share of all `token` ever received, minus what it was already sent.
    """
    received: uint256 = staticcall IERC20(token).balanceOf(self) + self.token_total_released[token]
    payment: uint256 = self._pending(account, received, self.token_released[token][account])
    assert payment != 0, "splitter: account is not due payment"
    self.token_released[token][account] += payment
    self.token_total_released[token] += payment
    log TokenPaymentReleased(token=token, account=account, amount=payment)
    assert extcall IERC20(token).transfer(account, payment, default_return_value=True), (
        "splitter: token transfer failed"
    )


@internal
@view
def _pending(account: address, total_received: uint256, already_released: uint256) -> uint256:
    share: uint256 = self.shares[account]
    assert share != 0, "splitter: account has no shares"
    return total_received * share // self.total_shares - already_released
