"""Funding: money that enters a vendor's prepaid balance.

`prepaid_fund` credits a top-up received on any rail (Stripe, x402, manual, the chain) once per rail
reference. Chain deposits: vendors top up by sending the stablecoin to the platform's deposit address; a
watcher job reads the token's Transfer logs to that address and credits each deposit once.

- A vendor first registers the wallet it pays from (`deposit_address_register`): the wallet signs our
  message naming the organisation (EIP-191 personal_sign), so nobody can claim another's deposits.
- The watcher reads from the block after the last one it saw (a ChainCursor row) up to the head less
  CHAIN_CONFIRMATIONS - 1 (a deposit is credited only once it is that deep), in ranges of LOG_RANGE blocks.
- Each Transfer is recorded once per (tx hash, log index), a unique constraint. From a registered sender
  it is credited with `prepaid_fund(rail="chain", external_ref="<tx hash>:<log index>")`; from an unknown
  sender it goes to the suspense account (clearing:chain -> suspense) and waits for the operator, who
  assigns it to an organisation (`deposit_assign`: suspense -> that vendor's prepaid). Never lost.
- Transfers already credited by x402 (same transaction hash, rail x402) and mints are recorded as
  skipped, not credited twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import is_address, to_checksum_address

from accounts.models import Organisation, User
from common import clock
from common.money import Money
from common.problems import ApiError, Conflict
from contracts.chain import Chain, ChainError, in_process_funded_keys
from royalties import selectors
from royalties.chain_client import CHAIN_CURRENCY, chain, to_minor
from royalties.ledger import (
    Leg,
    account_ensure,
    amount_check,
    clearing_account,
    funding_existing,
    prepaid_account,
    receipts_account,
    transaction_post,
    vendor_debt_account,
)
from royalties.models import (
    AccountKind,
    ChainCursor,
    ChainDeposit,
    ChainDepositStatus,
    DepositAddress,
    JournalTransaction,
    LedgerAccount,
    TransactionKind,
)
from royalties.reports import receivables_match

logger = logging.getLogger(__name__)

LOG_RANGE = 2_000
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
CURSOR_PREFIX = "deposits"


class DepositAddressRefused(ApiError):
    default_code = "deposit_address_invalid"
    default_detail = "This deposit address cannot be registered."


# Top-ups on every rail ---------------------------------------------------------------------------------


# Rails whose payments each pay for one access: they never go to a vendor's debt.
PER_ACCESS_RAILS = frozenset({"x402"})


@transaction.atomic
def prepaid_fund(
    *, organisation: Organisation, amount: Money, external_ref: str, rail: str = "manual"
) -> JournalTransaction:
    """Credit a vendor's prepaid balance with money received on `rail` (idempotent by external_ref).

    The same reference again returns the first transaction; with another amount or organisation it is a
    conflict. Money moves from the rail's clearing account, so the rail can be reconciled against it. A
    vendor that owes us (a refund or chargeback of money it had already spent) pays that debt first: the
    top-up covers the debt, and only the rest becomes spendable (except a payment made for one access,
    on a rail in PER_ACCESS_RAILS, which pays that access).
    """
    if amount.amount_minor <= 0:
        raise ApiError("A top-up must be a positive amount.", code="invalid_amount")
    amount_check(amount, what="A top-up")
    if not external_ref:
        raise ApiError("A top-up needs the rail's reference.", code="missing_reference")
    key = f"funding:{rail}:{external_ref}"
    prepaid = prepaid_account(organisation_id=organisation.pk, currency=amount.currency)
    debt = vendor_debt_account(organisation_id=organisation.pk, currency=amount.currency)
    existing = funding_existing(key, [prepaid, debt], amount)
    if existing is not None:
        return existing
    clearing = clearing_account(rail=rail, currency=amount.currency)
    try:
        with transaction.atomic():
            owed = -LedgerAccount.objects.select_for_update().get(pk=debt.pk).balance_minor
            # A payment for one access (x402) pays that access, not an older debt.
            to_debt = 0 if rail in PER_ACCESS_RAILS else min(owed, amount.amount_minor)
            return transaction_post(
                kind=TransactionKind.FUNDING,
                key=key,
                memo=f"Top-up of {organisation.name} via {rail} ({external_ref})",
                legs=[
                    Leg(clearing, -amount.amount_minor),
                    Leg(debt, to_debt),
                    Leg(prepaid, amount.amount_minor - to_debt),
                ],
            )
    except IntegrityError:
        replay = funding_existing(key, [prepaid, debt], amount)
        if replay is None:
            raise
        return replay


def funding_find(*, rail: str, reference: str) -> JournalTransaction | None:
    """The funding credited for a payment on `rail` with this reference (a top-up or a receipt)."""
    return JournalTransaction.objects.filter(
        kind=TransactionKind.FUNDING, key=f"funding:{rail}:{reference}"
    ).first()


# Deposit addresses -------------------------------------------------------------------------------------


def deposit_address() -> str:
    """The platform's deposit address: CHAIN_DEPOSIT_ADDRESS; on the in-process chain, a funded test
    account other than the one that signs (so x402 payments to the signer are not mistaken for it)."""
    configured = str(getattr(settings, "CHAIN_DEPOSIT_ADDRESS", "") or "")
    if configured:
        return to_checksum_address(configured)
    if chain().in_process:
        return str(Account.from_key(in_process_funded_keys()[1]).address)
    raise ChainError("CHAIN_DEPOSIT_ADDRESS is not set: chain deposits are off")


def deposits_configured() -> bool:
    """Chain deposits are watched when a deposit address is set, or on the in-process chain in DEBUG."""
    if getattr(settings, "CHAIN_DEPOSIT_ADDRESS", ""):
        return True
    return not getattr(settings, "CHAIN_RPC_URL", "") and bool(
        getattr(settings, "CHAIN_PAYOUTS_ENABLED", False)
    )


def deposit_message(*, organisation: Organisation, address: str) -> str:
    """What the paying wallet signs to register itself for an organisation."""
    return (
        f"Tribute deposit address\n"
        f"I send prepaid top-ups for organisation #{organisation.pk} ({organisation.name}) "
        f"from {to_checksum_address(address)}."
    )


def deposit_address_register(
    *, organisation: Organisation, address: str, signature: str, user: User | None = None
) -> DepositAddress:
    """Register a wallet the organisation pays from, once its signature over `deposit_message` checks.

    The same address again for the same organisation is a no-op; for another organisation, a conflict."""
    if not is_address(address):
        raise DepositAddressRefused("That is not an Ethereum address.", code="invalid_address")
    address = to_checksum_address(address)
    try:
        signer = Account.recover_message(
            encode_defunct(text=deposit_message(organisation=organisation, address=address)),
            signature=signature,
        )
    except Exception:  # malformed signature bytes: eth-account raises several kinds
        raise DepositAddressRefused("The signature is malformed.", code="invalid_signature") from None
    if to_checksum_address(signer) != address:
        raise DepositAddressRefused(
            "The signature was not made by this address over our message.", code="invalid_signature"
        )
    existing = DepositAddress.objects.filter(address=address).first()
    if existing is not None:
        if existing.organisation_id != organisation.pk:
            raise Conflict(
                "This address is registered to another organisation.", code="deposit_address_taken"
            )
        return existing
    try:
        with transaction.atomic():
            return DepositAddress.objects.create(
                organisation=organisation, address=address, verified_at=clock.now(), created_by=user
            )
    except IntegrityError:
        return deposit_address_register(
            organisation=organisation, address=address, signature=signature, user=user
        )


# The watcher -------------------------------------------------------------------------------------------


@dataclass
class WatchResult:
    from_block: int
    to_block: int
    credited: int = 0
    suspense: int = 0
    skipped: int = 0
    duplicates: int = 0


def transfers_to(client: Chain, receiver: str, from_block: int, to_block: int) -> list[dict[str, Any]]:
    try:
        logs = client.token.events.Transfer().get_logs(
            from_block=from_block, to_block=to_block, argument_filters={"receiver": receiver}
        )
    except Exception as error:  # web3's errors and OSError: the next run reads the range again
        raise ChainError(f"reading Transfer logs failed: {type(error).__name__}: {error}") from error
    return [
        {
            "tx_hash": "0x" + bytes(log["transactionHash"]).hex(),
            "log_index": int(log["logIndex"]),
            "block_number": int(log["blockNumber"]),
            "sender": to_checksum_address(log["args"]["sender"]),
            "receiver": to_checksum_address(log["args"]["receiver"]),
            "amount": int(log["args"]["value"]),
            "token": to_checksum_address(log["address"]),
        }
        for log in logs
        if to_checksum_address(log["args"]["receiver"]) == receiver
    ]


def chain_deposits_watch(*, max_blocks: int = 50 * LOG_RANGE) -> WatchResult:
    """Read new Transfer logs to the deposit address and record each once. Safe to run at any time and
    concurrently: the cursor only moves forward, and each deposit is unique by (tx hash, log index)."""
    client = chain()
    receiver = deposit_address()
    depth = int(settings.CHAIN_CONFIRMATIONS)
    cursor_name = f"{CURSOR_PREFIX}:{client.chain_id}:{str(client.token.address).lower()}:{receiver.lower()}"
    cursor = ChainCursor.objects.filter(name=cursor_name).first()
    start = cursor.last_block + 1 if cursor else int(settings.CHAIN_FUNDING_START_BLOCK)
    safe_head = client.block_number() - (depth - 1)
    end = min(safe_head, start + max_blocks - 1)
    result = WatchResult(from_block=start, to_block=end)
    block = start
    while block <= end:
        upper = min(end, block + LOG_RANGE - 1)
        for transfer in transfers_to(client, receiver, block, upper):
            outcome = _record_deposit(transfer)
            if outcome is None:
                result.duplicates += 1
            elif outcome == ChainDepositStatus.CREDITED:
                result.credited += 1
            elif outcome == ChainDepositStatus.SUSPENSE:
                result.suspense += 1
            else:
                result.skipped += 1
        _advance(cursor_name, upper)
        block = upper + 1
    return result


def _advance(name: str, block: int) -> None:
    updated = ChainCursor.objects.filter(name=name, last_block__lt=block).update(
        last_block=block, updated_at=clock.now()
    )
    if not updated and not ChainCursor.objects.filter(name=name).exists():
        try:
            with transaction.atomic():
                ChainCursor.objects.create(name=name, last_block=block)
        except IntegrityError:
            ChainCursor.objects.filter(name=name, last_block__lt=block).update(last_block=block)


def _record_deposit(transfer: dict[str, Any]) -> str | None:
    """Record one Transfer; its status, or None if it was already recorded."""
    tx_hash, log_index = transfer["tx_hash"], transfer["log_index"]
    if ChainDeposit.objects.filter(tx_hash=tx_hash, log_index=log_index).exists():
        return None
    amount_minor, dust = to_minor(transfer["amount"])
    sender = transfer["sender"]
    owner = DepositAddress.objects.filter(address=sender).select_related("organisation").first()
    reference = f"{tx_hash}:{log_index}"
    try:
        with transaction.atomic():
            deposit = ChainDeposit(
                tx_hash=tx_hash,
                log_index=log_index,
                block_number=transfer["block_number"],
                sender=sender,
                receiver=transfer["receiver"],
                token=transfer["token"],
                amount_base_units=Decimal(transfer["amount"]),
                amount_minor=amount_minor,
                dust_base_units=Decimal(dust),
                currency=CHAIN_CURRENCY,
            )
            if sender == ZERO_ADDRESS:
                deposit.status = ChainDepositStatus.SKIPPED
                deposit.note = "a mint, not a payment"
            elif JournalTransaction.objects.filter(key=f"funding:x402:{tx_hash}").exists():
                deposit.status = ChainDepositStatus.SKIPPED
                deposit.note = "already credited as an x402 payment"
            elif amount_minor == 0:
                deposit.status = ChainDepositStatus.SKIPPED
                deposit.note = "less than one cent"
            elif owner is not None:
                deposit.status = ChainDepositStatus.CREDITED
                deposit.organisation = owner.organisation
                deposit.journal = prepaid_fund(
                    organisation=owner.organisation,
                    amount=Money(amount_minor, CHAIN_CURRENCY),
                    external_ref=reference,
                    rail="chain",
                )
            else:
                deposit.status = ChainDepositStatus.SUSPENSE
                deposit.note = "unknown sender: waits for the operator"
                deposit.journal = transaction_post(
                    kind=TransactionKind.FUNDING,
                    key=f"funding:chain:{reference}",
                    memo=f"Chain deposit from unknown sender {sender} ({reference}), held in suspense",
                    legs=[
                        Leg(clearing_account(rail="chain", currency=CHAIN_CURRENCY), -amount_minor),
                        Leg(_suspense(), amount_minor),
                    ],
                )
            deposit.save()
            return deposit.status
    except IntegrityError:  # recorded by a concurrent watcher a moment ago
        if ChainDeposit.objects.filter(tx_hash=tx_hash, log_index=log_index).exists():
            return None
        raise


def _suspense() -> Any:
    return account_ensure(
        key=selectors.suspense_key(CHAIN_CURRENCY), kind=AccountKind.SUSPENSE, currency=CHAIN_CURRENCY
    )


@transaction.atomic
def deposit_assign_receipt(*, deposit: ChainDeposit, reporter: User, distributor: str) -> ChainDeposit:
    """The operator says a deposit in suspense is a distributor's payment of a reporter's receivables:
    suspense -> receipts:<reporter>:<distributor>, then matched to the open receivables it covers. Once."""
    deposit = ChainDeposit.objects.select_for_update().get(pk=deposit.pk)
    if deposit.status != ChainDepositStatus.SUSPENSE:
        raise Conflict(f"This deposit is {deposit.status}, not in suspense.", code="deposit_not_in_suspense")
    distributor = distributor.strip().lower()
    receipts = receipts_account(reporter_id=reporter.pk, distributor=distributor, currency=deposit.currency)
    transaction_post(
        kind=TransactionKind.ADJUSTMENT,
        key=f"funding:chain:{deposit.tx_hash}:{deposit.log_index}:assign",
        memo=f"Chain deposit {deposit.tx_hash}:{deposit.log_index}: {distributor} pays receivables",
        legs=[Leg(_suspense(), -deposit.amount_minor), Leg(receipts, deposit.amount_minor)],
    )
    receivables_match(
        reporter=reporter, distributor=distributor, currency=deposit.currency, receipt=deposit.journal
    )
    deposit.status = ChainDepositStatus.ASSIGNED
    deposit.note = f"receipt from {distributor} for user #{reporter.pk} at {clock.now():%Y-%m-%d %H:%M}"
    deposit.save(update_fields=["status", "note"])
    return deposit


@transaction.atomic
def deposit_assign(*, deposit: ChainDeposit, organisation: Organisation) -> ChainDeposit:
    """The operator says whose a deposit in suspense is: suspense -> that organisation's prepaid balance.
    Assigning it again to the same organisation is a no-op; to another, a conflict."""
    deposit = ChainDeposit.objects.select_for_update().get(pk=deposit.pk)
    if deposit.status == ChainDepositStatus.ASSIGNED:
        if deposit.organisation_id != organisation.pk:
            raise Conflict("This deposit was assigned to another organisation.", code="deposit_assigned")
        return deposit
    if deposit.status != ChainDepositStatus.SUSPENSE:
        raise Conflict(f"This deposit is {deposit.status}, not in suspense.", code="deposit_not_in_suspense")
    transaction_post(
        kind=TransactionKind.ADJUSTMENT,
        key=f"funding:chain:{deposit.tx_hash}:{deposit.log_index}:assign",
        memo=f"Chain deposit {deposit.tx_hash}:{deposit.log_index} assigned to {organisation.name}",
        legs=[
            Leg(_suspense(), -deposit.amount_minor),
            Leg(
                prepaid_account(organisation_id=organisation.pk, currency=deposit.currency),
                deposit.amount_minor,
            ),
        ],
    )
    deposit.status = ChainDepositStatus.ASSIGNED
    deposit.organisation = organisation
    deposit.note = f"assigned by the operator at {clock.now().isoformat(timespec='seconds')}"
    deposit.save(update_fields=["status", "organisation", "note"])
    return deposit
