"""Gas per payee: one `batch_pay` for N payees vs. one plain ERC-20 transfer per payee.

    python -m bench.gas [--sizes 1 10 50 100]

Runs on the in-process EVM (gas is the same on any EVM with the same fork rules).
Every payee is a fresh address (no token balance yet): the usual case for a payout,
and the dearer one (a zero-to-nonzero balance write).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from eth_account import Account
from eth_utils import keccak

from contracts.chain import Chain, PayoutEntry, payout_id_from_key


@dataclass(frozen=True)
class Row:
    payees: int
    batch_total: int
    transfers_total: int

    @property
    def batch_per_payee(self) -> int:
        return self.batch_total // self.payees

    @property
    def transfer_per_payee(self) -> int:
        return self.transfers_total // self.payees


def fresh_payees(label: str, count: int) -> list[str]:
    return [Account.from_key(keccak(text=f"bench {label} {i}")).address for i in range(count)]


def measure(chain: Chain, count: int) -> Row:
    snapshot = chain.snapshot()
    try:
        amounts = [1_000_000 + i for i in range(count)]
        chain.mint(chain.address, 3 * sum(amounts))
        chain.fund_distributor(2 * sum(amounts))

        entries = [
            PayoutEntry(payout_id_from_key(f"bench:{count}:{i}"), payee, amount)
            for i, (payee, amount) in enumerate(
                zip(fresh_payees(f"batch {count}", count), amounts, strict=True)
            )
        ]
        sent = chain.send_batch_payout(payout_id_from_key(f"bench batch {count}"), entries)
        batch_total = chain.wait_for_receipt(sent.tx_hash).gas_used

        transfers_total = sum(
            chain.transfer(payee, amount).gas_used
            for payee, amount in zip(fresh_payees(f"transfer {count}", count), amounts, strict=True)
        )
        return Row(count, batch_total, transfers_total)
    finally:
        chain.revert(snapshot)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gas", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50, 100])
    args = parser.parse_args(argv)
    chain = Chain()
    rows = [measure(chain, count) for count in args.sizes]
    header = ("payees", "batch_pay total", "batch/payee", "transfer/payee", "batch saves")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for row in rows:
        saving = 1 - row.batch_per_payee / row.transfer_per_payee
        print(
            f"{row.payees} | {row.batch_total:,} | {row.batch_per_payee:,} | {row.transfer_per_payee:,} | "
            f"{saving:.0%}"
        )


if __name__ == "__main__":
    main()
