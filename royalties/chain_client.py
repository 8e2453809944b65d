"""The process's one chain connection, and the stablecoin's amounts in our minor units.

`chain()` is the in-process EVM with our contracts deployed by default, any EVM node by CHAIN_RPC_URL. The
payout rail, the deposit watcher, reconciliation and the access app's x402 payments all use this one.
"""

from __future__ import annotations

import threading

from django.conf import settings

from contracts.chain import STABLECOIN_DECIMALS, Chain

CHAIN_CURRENCY = "USD"
USD_MINOR_DIGITS = 2
BASE_UNITS_PER_MINOR = 10 ** (STABLECOIN_DECIMALS - USD_MINOR_DIGITS)

_lock = threading.Lock()
_chain: Chain | None = None


def chain() -> Chain:
    """The process's chain: the in-process EVM with our contracts by default, any RPC by CHAIN_RPC_URL."""
    global _chain
    with _lock:
        if _chain is None:
            _chain = Chain.from_settings(settings)
        return _chain


def reset_chain() -> None:
    """Forget the process's chain connection (after the CHAIN_* settings change)."""
    global _chain
    with _lock:
        _chain = None


def to_minor(base_units: int) -> tuple[int, int]:
    """Token base units to (whole cents, the sub-cent remainder in base units)."""
    return divmod(base_units, BASE_UNITS_PER_MINOR)
