"""The one module that talks to an EVM chain (web3.py 8).

`Chain` runs against the in-process EVM (eth-tester, contracts deployed on start) when
no RPC URL is given, or against any JSON-RPC node by URL. It signs locally with one
pinned private key, manages that account's nonces itself, and turns the SDK's errors
into ours: `ChainReverted` when the contract said no (in-process `TransactionFailed`,
a node's `ContractLogicError`, or a mined receipt with status 0), `ChainError` for
everything else (connection, node errors, timeouts).

No Django here: the ledger builds a `Chain` from its settings with `Chain.from_settings`.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_account import Account
from eth_typing import ChecksumAddress
from eth_utils import keccak, to_checksum_address
from eth_utils.exceptions import ValidationError
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3Exception
from web3.logs import DISCARD
from web3.providers.rpc import HTTPProvider
from web3.types import RPCEndpoint

from contracts.artifacts import load_artifact

STABLECOIN_CONTRACT = "TestStablecoin"
DISTRIBUTOR_CONTRACT = "PayoutDistributor"

# The EIP-712 domain of the token we deploy: x402's `extra` name and version must match it.
DEFAULT_STABLECOIN_NAME = "Tribute Test USD"
DEFAULT_STABLECOIN_SYMBOL = "tUSD"
DEFAULT_STABLECOIN_VERSION = "2"
STABLECOIN_DECIMALS = 6

# Ask the node's estimate, plus this much headroom: state can change between estimate and mining.
GAS_HEADROOM_NUMERATOR = 6
GAS_HEADROOM_DENOMINATOR = 5
DEFAULT_PRIORITY_FEE_WEI = 1_000_000_000

T = TypeVar("T")


class ChainError(Exception):
    """The chain could not be reached or did not do what was asked (not a contract revert)."""


class ChainTimeout(ChainError):
    """A transaction was not mined (or not confirmed enough) in time. It may still be mined later."""


class ChainReverted(ChainError):
    """The contract refused: a simulated call reverted, or a mined transaction has status 0."""

    def __init__(self, reason: str, *, tx_hash: str | None = None) -> None:
        super().__init__(reason if tx_hash is None else f"{reason} (transaction {tx_hash})")
        self.reason = reason
        self.tx_hash = tx_hash


@dataclass(frozen=True)
class PayoutEntry:
    payout_id: bytes  # 32 bytes: see payout_id_from_key
    recipient: str
    amount: int  # token base units


@dataclass(frozen=True)
class SentTransaction:
    tx_hash: str
    nonce: int


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    block_number: int
    succeeded: bool
    gas_used: int
    confirmations: int
    raw: Any  # web3's receipt, for decoding events


@dataclass(frozen=True)
class PaidEvent:
    batch_id: bytes
    payout_id: bytes
    recipient: str
    token: str
    amount: int
    tx_hash: str
    log_index: int
    block_number: int


@dataclass(frozen=True)
class PayoutSkippedEvent:
    batch_id: bytes
    payout_id: bytes
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class TransferEvent:
    token: str
    sender: str
    receiver: str
    amount: int
    tx_hash: str
    log_index: int
    block_number: int


@dataclass(frozen=True)
class TokenDomain:
    """The token's EIP-712 domain, as x402 payment requirements need it."""

    name: str
    version: str
    chain_id: int
    address: str

    @property
    def network(self) -> str:
        return f"eip155:{self.chain_id}"


def payout_id_from_key(key: str) -> bytes:
    """bytes32 payout id for an idempotency key of ours, e.g. "payout:42": one key, one id, forever."""
    return keccak(text=key)


def _hex(value: bytes | str) -> str:
    if isinstance(value, str):
        return value if value.startswith("0x") else "0x" + value
    return "0x" + value.hex()


def _revert_reason(error: BaseException) -> str:
    message = getattr(error, "message", None) or (str(error.args[0]) if error.args else str(error))
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return message.removeprefix("execution reverted: ").removeprefix("execution reverted") or "reverted"


class Chain:
    """Access to one chain, one signing account, and our token and distributor contracts.

    Thread-safe for sending: nonces are handed out under a lock.
    """

    def __init__(
        self,
        *,
        rpc_url: str | None = None,
        private_key: str | bytes | None = None,
        token_address: str | None = None,
        distributor_address: str | None = None,
        deploy_missing: bool | None = None,
        request_timeout_s: float = 10.0,
        priority_fee_wei: int = DEFAULT_PRIORITY_FEE_WEI,
        token_name: str = DEFAULT_STABLECOIN_NAME,
        token_symbol: str = DEFAULT_STABLECOIN_SYMBOL,
        token_version: str = DEFAULT_STABLECOIN_VERSION,
    ) -> None:
        self.in_process = rpc_url is None
        if rpc_url is None:
            from web3 import EthereumTesterProvider

            self.w3 = Web3(EthereumTesterProvider())
            if private_key is None:
                private_key = in_process_funded_keys()[0]
        else:
            provider = HTTPProvider(
                rpc_url,
                request_kwargs={"timeout": request_timeout_s},
                # Retries belong to the caller (a task with backoff), not hidden in here.
                exception_retry_configuration=None,
            )
            self.w3 = Web3(provider)
            if private_key is None:
                raise ChainError("a private key is required to send transactions to an RPC node")
        self._account = Account.from_key(private_key)
        self.address: ChecksumAddress = self._account.address
        self.priority_fee_wei = priority_fee_wei
        self._nonce_lock = threading.Lock()
        self._next_nonce: int | None = None
        self._reverted_types = _in_process_revert_types()

        with self._translate_errors():
            self.chain_id: int = self.w3.eth.chain_id
        if deploy_missing is None:
            deploy_missing = self.in_process
        if token_address is None:
            if not deploy_missing:
                raise ChainError("no token address given (and deploying is off)")
            token_address = self.deploy(STABLECOIN_CONTRACT, token_name, token_symbol, token_version)
        if distributor_address is None:
            if not deploy_missing:
                raise ChainError("no distributor address given (and deploying is off)")
            distributor_address = self.deploy(DISTRIBUTOR_CONTRACT)
        self.token = self.contract(STABLECOIN_CONTRACT, token_address)
        self.distributor = self.contract(DISTRIBUTOR_CONTRACT, distributor_address)

    @classmethod
    def from_settings(cls, settings: object) -> Chain:
        """Build from an object with CHAIN_* attributes (django.conf.settings, or any namespace).

        CHAIN_RPC_URL (none: in-process), CHAIN_PRIVATE_KEY, CHAIN_TOKEN_ADDRESS,
        CHAIN_DISTRIBUTOR_ADDRESS, CHAIN_DEPLOY_MISSING, CHAIN_REQUEST_TIMEOUT_S.
        """
        return cls(
            rpc_url=getattr(settings, "CHAIN_RPC_URL", None) or None,
            private_key=getattr(settings, "CHAIN_PRIVATE_KEY", None) or None,
            token_address=getattr(settings, "CHAIN_TOKEN_ADDRESS", None) or None,
            distributor_address=getattr(settings, "CHAIN_DISTRIBUTOR_ADDRESS", None) or None,
            deploy_missing=getattr(settings, "CHAIN_DEPLOY_MISSING", None),
            request_timeout_s=float(getattr(settings, "CHAIN_REQUEST_TIMEOUT_S", 10.0)),
        )

    def for_signer(self, private_key: str | bytes) -> Chain:
        """The same chain and contracts, signing with another account (its own nonces)."""
        other = copy.copy(self)
        other._account = Account.from_key(private_key)
        other.address = other._account.address
        other._nonce_lock = threading.Lock()
        other._next_nonce = None
        return other

    # Errors

    @contextmanager
    def _translate_errors(self, tx_hash: str | None = None) -> Iterator[None]:
        try:
            yield
        except ChainError:
            raise
        except ContractLogicError as error:
            raise ChainReverted(_revert_reason(error), tx_hash=tx_hash) from error
        except Exception as error:
            if isinstance(error, self._reverted_types):
                raise ChainReverted(_revert_reason(error), tx_hash=tx_hash) from error
            if isinstance(error, (Web3Exception, OSError, ValidationError)):
                raise ChainError(f"{type(error).__name__}: {error}") from error
            raise

    def _call(self, read: Callable[[], T]) -> T:
        with self._translate_errors():
            return read()

    # Contracts

    def contract(self, name: str, address: str) -> Any:
        """A web3 contract object for one of our built contracts at `address`."""
        return self.w3.eth.contract(address=to_checksum_address(address), abi=load_artifact(name).abi)

    def deploy(self, name: str, *args: Any, gas: int | None = None) -> str:
        """Deploy a built contract, wait for it, and answer its address."""
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        sent = self._send(factory.constructor(*args), gas=gas)
        receipt = self.wait_for_receipt(sent.tx_hash)
        address = receipt.raw["contractAddress"]
        if not address:
            raise ChainError(f"deploying {name} created no contract (transaction {sent.tx_hash})")
        return str(address)

    def token_domain(self) -> TokenDomain:
        return TokenDomain(
            name=self._call(self.token.functions.name().call),
            version=self._call(self.token.functions.version().call),
            chain_id=self.chain_id,
            address=str(self.token.address),
        )

    # Reads

    def balance_of(self, account: str, *, token: str | None = None) -> int:
        contract = self.token if token is None else self.contract(STABLECOIN_CONTRACT, token)
        return int(self._call(contract.functions.balanceOf(to_checksum_address(account)).call))

    def eth_balance(self, account: str) -> int:
        return int(self._call(lambda: self.w3.eth.get_balance(to_checksum_address(account))))

    def is_paid(self, payout_id: bytes) -> bool:
        return bool(self._call(self.distributor.functions.payout_paid(payout_id).call))

    def is_batch_used(self, batch_id: bytes) -> bool:
        return bool(self._call(self.distributor.functions.batch_used(batch_id).call))

    def block_number(self) -> int:
        return int(self._call(lambda: self.w3.eth.block_number))

    # Writes (each answers once the transaction is sent; wait_for_receipt confirms)

    def send_mint(self, receiver: str, amount: int, *, nonce: int | None = None) -> SentTransaction:
        return self._send(self.token.functions.mint(to_checksum_address(receiver), amount), nonce=nonce)

    def send_token_transfer(
        self, receiver: str, amount: int, *, token: str | None = None, nonce: int | None = None
    ) -> SentTransaction:
        contract = self.token if token is None else self.contract(STABLECOIN_CONTRACT, token)
        return self._send(contract.functions.transfer(to_checksum_address(receiver), amount), nonce=nonce)

    def send_batch_payout(
        self,
        batch_id: bytes,
        entries: Sequence[PayoutEntry],
        *,
        token: str | None = None,
        nonce: int | None = None,
        gas: int | None = None,
    ) -> SentTransaction:
        """Send one `batch_pay` transaction for `entries`.

        Without `gas`, the batch is simulated first, so a batch that would revert (already
        used batch id, not enough funds) raises ChainReverted and sends nothing. Pass
        `nonce` to replace a stuck transaction: of two transactions with one nonce, at
        most one is ever mined.
        """
        function = self.distributor.functions.batch_pay(
            to_checksum_address(token or self.token.address),
            batch_id,
            [entry.payout_id for entry in entries],
            [to_checksum_address(entry.recipient) for entry in entries],
            [entry.amount for entry in entries],
        )
        return self._send(function, nonce=nonce, gas=gas)

    # Convenience: send and wait for one confirmation.

    def mint(self, receiver: str, amount: int) -> Receipt:
        return self.wait_for_receipt(self.send_mint(receiver, amount).tx_hash)

    def transfer(self, receiver: str, amount: int, *, token: str | None = None) -> Receipt:
        return self.wait_for_receipt(self.send_token_transfer(receiver, amount, token=token).tx_hash)

    def fund_distributor(self, amount: int) -> Receipt:
        """Move `amount` of our token from the signing account to the distributor."""
        return self.transfer(str(self.distributor.address), amount)

    def transfer_eth(self, receiver: str, amount_wei: int) -> Receipt:
        return self.wait_for_receipt(self._send_to(receiver, None, value=amount_wei).tx_hash)

    def transact(self, function: Any, *, value: int = 0, gas: int | None = None) -> Receipt:
        """Send any contract function call (e.g. `chain.token.functions.approve(...)`) and wait."""
        return self.wait_for_receipt(self._send(function, value=value, gas=gas).tx_hash)

    # Receipts and events

    def get_receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt if the transaction is mined, None if not (yet, or dropped)."""
        with self._translate_errors(tx_hash):
            try:
                raw = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return None
            head = self.w3.eth.block_number
        block_number = int(raw["blockNumber"])
        return Receipt(
            tx_hash=_hex(raw["transactionHash"]),
            block_number=block_number,
            succeeded=raw["status"] == 1,
            gas_used=int(raw["gasUsed"]),
            confirmations=head - block_number + 1,
            raw=raw,
        )

    def wait_for_receipt(
        self,
        tx_hash: str,
        *,
        confirmations: int = 1,
        timeout_s: float = 120.0,
        poll_s: float = 0.2,
    ) -> Receipt:
        """Wait until `tx_hash` is mined and `confirmations` blocks deep (1 = in the head block).

        Raises ChainReverted if it was mined with status 0, ChainTimeout if not deep enough
        in time. The receipt is read again at each poll, so a reorganised-away transaction
        is waited for again rather than reported.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            receipt = self.get_receipt(tx_hash)
            if receipt is not None and receipt.confirmations >= confirmations:
                if not receipt.succeeded:
                    raise ChainReverted(self._mined_revert_reason(receipt), tx_hash=receipt.tx_hash)
                return receipt
            if time.monotonic() >= deadline:
                have = 0 if receipt is None else receipt.confirmations
                raise ChainTimeout(f"transaction {tx_hash}: {have} of {confirmations} confirmations")
            time.sleep(poll_s)

    def paid_events(self, receipt: Receipt) -> list[PaidEvent]:
        return [
            PaidEvent(
                batch_id=bytes(event["args"]["batch_id"]),
                payout_id=bytes(event["args"]["payout_id"]),
                recipient=str(event["args"]["recipient"]),
                token=str(event["args"]["token"]),
                amount=int(event["args"]["amount"]),
                tx_hash=_hex(event["transactionHash"]),
                log_index=int(event["logIndex"]),
                block_number=int(event["blockNumber"]),
            )
            for event in self._events(self.distributor, "Paid", receipt)
        ]

    def skipped_events(self, receipt: Receipt) -> list[PayoutSkippedEvent]:
        return [
            PayoutSkippedEvent(
                batch_id=bytes(event["args"]["batch_id"]),
                payout_id=bytes(event["args"]["payout_id"]),
                tx_hash=_hex(event["transactionHash"]),
                log_index=int(event["logIndex"]),
            )
            for event in self._events(self.distributor, "PayoutSkipped", receipt)
        ]

    def transfer_events(self, receipt: Receipt, *, token: str | None = None) -> list[TransferEvent]:
        """ERC-20 Transfer events in the receipt, of our token or of `token`."""
        contract = self.token if token is None else self.contract(STABLECOIN_CONTRACT, token)
        return [
            TransferEvent(
                token=str(event["address"]),
                sender=str(event["args"]["sender"]),
                receiver=str(event["args"]["receiver"]),
                amount=int(event["args"]["value"]),
                tx_hash=_hex(event["transactionHash"]),
                log_index=int(event["logIndex"]),
                block_number=int(event["blockNumber"]),
            )
            for event in self._events(contract, "Transfer", receipt)
        ]

    def paid_events_between(self, from_block: int, to_block: int) -> list[PaidEvent]:
        """Paid events in a block range, for reconciliation. Keep ranges narrow: scanning is slow."""
        with self._translate_errors():
            logs = self.distributor.events.Paid().get_logs(from_block=from_block, to_block=to_block)
        return [
            PaidEvent(
                batch_id=bytes(log["args"]["batch_id"]),
                payout_id=bytes(log["args"]["payout_id"]),
                recipient=str(log["args"]["recipient"]),
                token=str(log["args"]["token"]),
                amount=int(log["args"]["amount"]),
                tx_hash=_hex(log["transactionHash"]),
                log_index=int(log["logIndex"]),
                block_number=int(log["blockNumber"]),
            )
            for log in logs
        ]

    def _events(self, contract: Any, event_name: str, receipt: Receipt) -> list[Any]:
        # process_receipt decodes every log that fits the event's shape, whoever emitted it.
        events = getattr(contract.events, event_name)().process_receipt(receipt.raw, errors=DISCARD)
        return [event for event in events if event["address"] == contract.address]

    # Development chains only (in-process and anvil)

    def mine_blocks(self, count: int = 1) -> None:
        with self._translate_errors():
            if self.in_process:
                self.w3.provider.ethereum_tester.mine_blocks(count)  # type: ignore[attr-defined]
            else:
                for _ in range(count):
                    self.w3.manager.request_blocking(RPCEndpoint("evm_mine"), [])

    def snapshot(self) -> Any:
        """Save the chain state (evm_snapshot); `revert` goes back to it."""
        with self._translate_errors():
            return self.w3.manager.request_blocking(RPCEndpoint("evm_snapshot"), [])

    def revert(self, snapshot_id: Any) -> None:
        with self._translate_errors():
            self.w3.manager.request_blocking(RPCEndpoint("evm_revert"), [snapshot_id])
        self.reset_nonce()

    # Sending

    def _reserve_nonce(self) -> int:
        """The next nonce: ours, unless the node has seen more from this account (another process or
        another signer object, such as the x402 facilitator, sent with the same key meanwhile)."""
        with self._nonce_lock:
            with self._translate_errors():
                pending = int(self.w3.eth.get_transaction_count(self.address, "pending"))
            nonce = pending if self._next_nonce is None else max(self._next_nonce, pending)
            self._next_nonce = nonce + 1
            return nonce

    def reset_nonce(self) -> None:
        """Ask the node for the next nonce again (after a node restart, a snapshot revert, ...)."""
        with self._nonce_lock:
            self._next_nonce = None

    def _fees(self) -> dict[str, int]:
        with self._translate_errors():
            base_fee = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        # Twice the base fee survives six full blocks of fee increases before the transaction stalls.
        return {
            "maxPriorityFeePerGas": self.priority_fee_wei,
            "maxFeePerGas": 2 * base_fee + self.priority_fee_wei,
        }

    def _send(
        self, function: Any, *, nonce: int | None = None, gas: int | None = None, value: int = 0
    ) -> SentTransaction:
        """Sign and send a contract call (or, with `function` None, a plain transfer in `value`)."""
        return self._send_to(None, function, nonce=nonce, gas=gas, value=value)

    def _send_to(
        self,
        receiver: str | None,
        function: Any,
        *,
        nonce: int | None = None,
        gas: int | None = None,
        value: int = 0,
    ) -> SentTransaction:
        params: dict[str, Any] = {"from": self.address, "value": value, "chainId": self.chain_id}
        if receiver is not None:
            params["to"] = to_checksum_address(receiver)
        if gas is None:
            # Simulating first turns a certain revert into ChainReverted without spending a nonce.
            with self._translate_errors():
                if function is None:
                    estimate = int(self.w3.eth.estimate_gas(params))  # type: ignore[arg-type]
                else:
                    estimate = int(function.estimate_gas(params))
            gas = estimate * GAS_HEADROOM_NUMERATOR // GAS_HEADROOM_DENOMINATOR
        params.update(self._fees(), gas=gas)
        explicit_nonce = nonce is not None
        params["nonce"] = nonce if nonce is not None else self._reserve_nonce()
        try:
            with self._translate_errors():
                transaction = params if function is None else function.build_transaction(params)
                signed = self._account.sign_transaction(transaction)
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except ChainError:
            if not explicit_nonce:
                # The node may or may not have taken the nonce: ask it again next time.
                self.reset_nonce()
            raise
        return SentTransaction(tx_hash=_hex(bytes(tx_hash)), nonce=int(params["nonce"]))

    def _mined_revert_reason(self, receipt: Receipt) -> str:
        """Replay a reverted transaction as a call on the block before it, for its reason."""
        try:
            transaction = self.w3.eth.get_transaction(receipt.tx_hash)  # type: ignore[arg-type]
            self.w3.eth.call(
                {
                    "from": transaction["from"],
                    "to": transaction["to"],
                    "data": transaction["input"],
                    "value": transaction["value"],
                    "gas": transaction["gas"],
                },
                block_identifier=receipt.block_number - 1,
            )
        except ContractLogicError as error:
            return _revert_reason(error)
        except Exception as error:
            if isinstance(error, self._reverted_types):
                return _revert_reason(error)
            return "transaction reverted"
        return "transaction reverted"


def in_process_funded_keys() -> list[bytes]:
    """Private keys of the accounts the in-process chain funds at genesis (the first signs by default)."""
    from eth_tester.backends.pyevm.main import get_default_account_keys

    return [key.to_bytes() for key in get_default_account_keys()]


def _in_process_revert_types() -> tuple[type[BaseException], ...]:
    """eth-tester's revert exception, or none if eth-tester (only for in-process) is not installed."""
    try:
        from eth_tester.exceptions import TransactionFailed
    except ImportError:
        return ()
    return (TransactionFailed,)
