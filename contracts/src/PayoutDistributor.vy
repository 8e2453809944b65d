# pragma version 0.4.3
# pragma evm-version cancun
"""
@title Tribute payout distributor
@notice Pays a period's payouts from the token balance the platform funded this
        contract with: `batch_pay`, the owner pushes many payouts in one transaction.
@dev Exactly-once guarantees, so a retried or rebuilt transaction never pays twice:
     - a batch id is accepted once; a second transaction with the same batch id
       reverts as a whole ("batch already paid");
     - a payout id (our ledger's payout row, as bytes32) is paid at most once,
       across all batches; an entry whose payout id is already paid is SKIPPED
       (event PayoutSkipped) while the rest of the batch is paid, so a rebuilt
       batch that repeats a confirmed payout still pays the others.
     A batch that reverts (for instance, not funded enough) records nothing, so
     its retry pays in full.
"""

from ethereum.ercs import IERC20

MAX_BATCH: constant(uint256) = 256


event Paid:
    batch_id: indexed(bytes32)
    payout_id: indexed(bytes32)
    recipient: indexed(address)
    token: address
    amount: uint256


event PayoutSkipped:
    batch_id: indexed(bytes32)
    payout_id: indexed(bytes32)


event BatchPaid:
    batch_id: indexed(bytes32)
    token: indexed(address)
    paid_count: uint256
    paid_total: uint256


event Withdrawn:
    token: indexed(address)
    receiver: indexed(address)
    amount: uint256


event OwnershipTransferred:
    previous_owner: indexed(address)
    new_owner: indexed(address)


owner: public(address)

batch_used: public(HashMap[bytes32, bool])
payout_paid: public(HashMap[bytes32, bool])


@deploy
def __init__():
    self.owner = msg.sender
    log OwnershipTransferred(previous_owner=empty(address), new_owner=msg.sender)


@external
def transferOwnership(new_owner: address):
    self._only_owner()
    assert new_owner != empty(address), "Ownable: new owner is the zero address"
    log OwnershipTransferred(previous_owner=self.owner, new_owner=new_owner)
    self.owner = new_owner


# Batch push


@external
@nonreentrant
def batch_pay(
    token: address,
    batch_id: bytes32,
    payout_ids: DynArray[bytes32, MAX_BATCH],
    recipients: DynArray[address, MAX_BATCH],
    amounts: DynArray[uint256, MAX_BATCH],
) -> uint256:
    """
    @notice Pay `amounts[i]` of `token` to `recipients[i]` for each payout not paid before.
    @return The number of entries paid (entries skipped as already paid are not counted).
    """
    self._only_owner()
    count: uint256 = len(payout_ids)
    assert count > 0, "distributor: empty batch"
    assert len(recipients) == count and len(amounts) == count, "distributor: length mismatch"
    assert batch_id != empty(bytes32), "distributor: empty batch id"
    assert not self.batch_used[batch_id], "distributor: batch already paid"
    self.batch_used[batch_id] = True

    paid_count: uint256 = 0
    paid_total: uint256 = 0
    for i: uint256 in range(count, bound=MAX_BATCH):
        payout_id: bytes32 = payout_ids[i]
        recipient: address = recipients[i]
        amount: uint256 = amounts[i]
        assert payout_id != empty(bytes32), "distributor: empty payout id"
        assert recipient != empty(address), "distributor: zero recipient"
        assert amount != 0, "distributor: zero amount"
        if self.payout_paid[payout_id]:
            log PayoutSkipped(batch_id=batch_id, payout_id=payout_id)
            continue
        self.payout_paid[payout_id] = True
        paid_count += 1
        paid_total += amount
        log Paid(
            batch_id=batch_id, payout_id=payout_id, recipient=recipient, token=token, amount=amount
        )
        self._send(token, recipient, amount)

    log BatchPaid(batch_id=batch_id, token=token, paid_count=paid_count, paid_total=paid_total)
    return paid_count


# Owner recovery


@external
@nonreentrant
def withdraw(token: address, receiver: address, amount: uint256):
    self._only_owner()
    log Withdrawn(token=token, receiver=receiver, amount=amount)
    self._send(token, receiver, amount)


# Internals


@internal
@view
def _only_owner():
    assert msg.sender == self.owner, "Ownable: caller is not the owner"


@internal
def _send(token: address, receiver: address, amount: uint256):
    assert extcall IERC20(token).transfer(receiver, amount, default_return_value=True), (
        "distributor: token transfer failed"
    )
