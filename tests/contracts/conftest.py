"""Chain fixtures: the in-process EVM always, an anvil node for tests marked `anvil`.

The anvil node itself is a session fixture in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contracts.anvil import ANVIL_PRIVATE_KEYS, AnvilNode
from contracts.chain import Chain, in_process_funded_keys

BACKENDS = ["in_process", pytest.param("anvil", marks=pytest.mark.anvil)]


@pytest.fixture(scope="session")
def in_process_base_chain() -> Chain:
    return Chain()


@pytest.fixture(scope="session")
def anvil_base_chain(anvil_node: AnvilNode) -> Chain:
    return Chain(rpc_url=anvil_node.rpc_url, private_key=ANVIL_PRIVATE_KEYS[0], deploy_missing=True)


def _isolated(chain: Chain) -> Iterator[Chain]:
    # Contracts are deployed once per session; each test runs on a snapshot and is rolled back.
    snapshot = chain.snapshot()
    yield chain
    chain.revert(snapshot)


@pytest.fixture(params=BACKENDS)
def chain(request: pytest.FixtureRequest) -> Iterator[Chain]:
    """Our token and distributor, on the in-process EVM and (marked `anvil`) on an anvil node."""
    yield from _isolated(request.getfixturevalue(f"{request.param}_base_chain"))


@pytest.fixture
def in_process_chain(in_process_base_chain: Chain) -> Iterator[Chain]:
    yield from _isolated(in_process_base_chain)


@pytest.fixture
def other_keys(chain: Chain) -> list[bytes | str]:
    """Funded private keys other than the one `chain` signs with."""
    return list(in_process_funded_keys()[1:]) if chain.in_process else list(ANVIL_PRIVATE_KEYS[1:])
