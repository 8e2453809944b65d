# pragma version 0.4.3
# pragma evm-version cancun
"""
@title Malicious payee, for tests only
@notice When paid ETH it calls back into `target` once with `reentry_calldata`
        (e.g. the splitter's `release(self)`), trying to be paid twice. With
        `swallow_failure` it ignores a failed re-entry and keeps the first payment;
        without it, it reverts the whole payment.
"""

target: public(address)
reentry_calldata: public(Bytes[256])
swallow_failure: public(bool)
reentry_attempts: public(uint256)
reentry_succeeded: public(bool)
received: public(uint256)


@deploy
def __init__(swallow_failure: bool):
    self.swallow_failure = swallow_failure


@external
def arm(target: address, reentry_calldata: Bytes[256]):
    self.target = target
    self.reentry_calldata = reentry_calldata
    self.reentry_attempts = 0


@external
@payable
def __default__():
    self.received += msg.value
    if self.target == empty(address) or self.reentry_attempts != 0:
        return
    self.reentry_attempts += 1
    success: bool = raw_call(self.target, self.reentry_calldata, revert_on_failure=False)
    if success:
        self.reentry_succeeded = True
    elif not self.swallow_failure:
        raise "ReentrantPayee: re-entry failed"
