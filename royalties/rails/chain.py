"""The chain rail: pays a run's chain payouts through the PayoutDistributor's `batch_pay`, and confirms
them after CHAIN_CONFIRMATIONS blocks.

Exactly once, whatever fails:
- each payout's on-chain payout id is derived from its key (`payout_id_from_key`), and the distributor
  pays a payout id at most once (a repeated id is skipped, not paid);
- a ChainBatch row (with the chain head before sending) is committed before the transaction is sent,
  and each attempt is counted first, so after a crash the next run asks the chain (`is_paid`) before
  sending again, and finds the payment's transaction in the Paid events from that block on;
- a reverted transaction, or one with no receipt after CHAIN_RESEND_AFTER_S (dropped), is sent again in a
  new batch with the same payout ids: if the first one is mined after all, the second skips them.

Amounts: our minor units of USD to the token's 6 decimals, exactly (1 cent = 10,000 base units). Only
USD is paid on chain.

The process has one Chain (`chain()`): the in-process EVM by default, a node by CHAIN_RPC_URL. The
access app's x402 payments use the same one.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from eth_utils import keccak, to_checksum_address

from common import clock
from contracts.chain import (
    STABLECOIN_DECIMALS,
    Chain,
    ChainError,
    ChainReverted,
    PaidEvent,
    PayoutEntry,
    payout_id_from_key,
)
from royalties import payouts as payout_services
from royalties.models import ChainBatch, ChainBatchStatus, Payout, PayoutRail, PayoutStatus
from royalties.rails import RailError

logger = logging.getLogger(__name__)

CHAIN_CURRENCY = "USD"
USD_MINOR_DIGITS = 2
BASE_UNITS_PER_MINOR = 10 ** (STABLECOIN_DECIMALS - USD_MINOR_DIGITS)
MAX_BATCH_ENTRIES = 200  # the distributor takes up to 256 per transaction

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


# Amounts -----------------------------------------------------------------------------------------------


def to_base_units(amount_minor: int, currency: str) -> int:
    """Our minor units to token base units, exactly. Only USD goes on chain."""
    if currency != CHAIN_CURRENCY:
        raise RailError(
            f"The chain rail pays USD only (the stablecoin's currency), not {currency}.", retryable=False
        )
    if amount_minor <= 0:
        raise RailError("A chain payout must be a positive amount.", retryable=False)
    return amount_minor * BASE_UNITS_PER_MINOR


def to_minor(base_units: int) -> tuple[int, int]:
    """Token base units to (whole cents, the sub-cent remainder in base units)."""
    return divmod(base_units, BASE_UNITS_PER_MINOR)


def _payout_id(payout: Payout) -> bytes:
    return payout_id_from_key(payout.key)


# Sending -----------------------------------------------------------------------------------------------


@dataclass
class SendResult:
    submitted: int = 0
    failed: int = 0
    waiting: int = 0


def chain_send(payouts: Sequence[Payout]) -> SendResult:
    """Send created chain payouts, in as few `batch_pay` transactions as fit (MAX_BATCH_ENTRIES each)."""
    result = SendResult()
    client = chain()
    ready: list[Payout] = []
    for payout in Payout.objects.filter(
        pk__in=[p.pk for p in payouts], rail=PayoutRail.CHAIN, status=PayoutStatus.CREATED
    ).order_by("id"):
        try:
            to_base_units(payout.amount_minor, payout.currency)
        except RailError as error:
            payout_services.payout_fail(key=payout.key, reason=str(error))
            result.failed += 1
            continue
        if payout.attempts:
            # An earlier attempt may have been paid before its answer was recorded (a crash): ask first.
            try:
                event = _paid_event(client, payout)
            except ChainError as error:
                payout_services.note_error(payout, f"chain: {error}")
                result.waiting += 1
                continue
            if event is not None:
                payout_services.payout_submitted(key=payout.key, external_id=event.tx_hash)
                result.submitted += 1
                continue
        ready.append(payout)
    for start in range(0, len(ready), MAX_BATCH_ENTRIES):
        chunk = ready[start : start + MAX_BATCH_ENTRIES]
        if _send_batch(client, chunk, resend=False):
            result.submitted += len(chunk)
        else:
            result.waiting += len(chunk)
    return result


def _paid_event(client: Chain, payout: Payout) -> PaidEvent | None:
    """The Paid event that paid this payout, if the distributor has paid it; None if not paid."""
    payout_id = _payout_id(payout)
    if not client.is_paid(payout_id):
        return None
    start = payout.chain_from_block if payout.chain_from_block is not None else 0
    for event in client.paid_events_between(start, client.block_number()):
        if event.payout_id == payout_id:
            return event
    raise ChainError(
        f"payout {payout.key} is paid on chain but its Paid event was not found from block {start}"
    )


def _fund_distributor(client: Chain, needed: int) -> None:
    """The distributor must hold the batch's total. The in-process chain mints what is missing (there is
    no treasury there); against a node, the operator funds it and the payouts wait until then."""
    distributor = str(client.distributor.address)
    held = client.balance_of(distributor)
    if held >= needed:
        return
    if client.in_process:
        client.mint(distributor, needed - held)
        return
    raise RailError(
        f"The distributor {distributor} holds {held} token base units; this batch needs {needed}. "
        "Fund it (transfer the stablecoin to it) and the next payout run sends the batch.",
        retryable=True,
    )


def _send_batch(client: Chain, payouts: Sequence[Payout], *, resend: bool) -> bool:
    """Record a batch, send it, record its hash. Answers whether it was sent."""
    entries = [
        PayoutEntry(
            payout_id=_payout_id(p),
            recipient=to_checksum_address(p.destination),
            amount=to_base_units(p.amount_minor, p.currency),
        )
        for p in payouts
    ]
    total = sum(entry.amount for entry in entries)
    try:
        head = client.block_number()
        _fund_distributor(client, total)
    except (ChainError, RailError) as error:
        for payout in payouts:
            payout_services.note_error(payout, f"chain: {error}")
        return False
    with transaction.atomic():
        batch = ChainBatch.objects.create(
            batch_id=f"pending:{clock.now().timestamp()}:{payouts[0].pk}:{len(payouts)}",
            from_block=head,
            entries=len(entries),
            total_base_units=Decimal(total),
        )
        batch.batch_id = "0x" + keccak(text=f"tribute-batch:{batch.pk}").hex()
        batch.save(update_fields=["batch_id"])
        Payout.objects.filter(pk__in=[p.pk for p in payouts]).update(
            chain_batch=batch,
            attempts=F("attempts") + 1,
            chain_from_block=Coalesce(F("chain_from_block"), head),
            updated_at=clock.now(),
        )
    # Committed: from here a crash leaves a prepared batch and counted attempts; the next run asks the
    # chain whether these payout ids were paid before sending them again.
    try:
        sent = client.send_batch_payout(bytes.fromhex(batch.batch_id[2:]), entries)
    except ChainReverted as error:  # simulated first: nothing was sent
        _batch_failed(batch, payouts, f"the distributor refused the batch: {error.reason}")
        return False
    except ChainError as error:  # maybe sent, maybe not: the next run checks is_paid first
        _batch_failed(batch, payouts, f"sending failed: {error}", status=ChainBatchStatus.PREPARED)
        return False
    ChainBatch.objects.filter(pk=batch.pk).update(
        status=ChainBatchStatus.SENT, tx_hash=sent.tx_hash, nonce=sent.nonce, sent_at=clock.now()
    )
    for payout in payouts:
        if resend:
            payout_services.chain_resubmitted(key=payout.key, external_id=sent.tx_hash)
        else:
            payout_services.payout_submitted(key=payout.key, external_id=sent.tx_hash)
    logger.info("chain batch %s sent: %d payouts in %s", batch.pk, len(payouts), sent.tx_hash)
    return True


def _batch_failed(batch: ChainBatch, payouts: Sequence[Payout], message: str, *, status: str = "") -> None:
    ChainBatch.objects.filter(pk=batch.pk).update(
        status=status or ChainBatchStatus.FAILED, error=message[:500]
    )
    for payout in payouts:
        payout_services.note_error(payout, f"chain: {message}")


# Confirming --------------------------------------------------------------------------------------------


@dataclass
class ConfirmResult:
    confirmed: int = 0
    failed: int = 0
    resent: int = 0
    waiting: int = 0


def chain_confirm_pending() -> ConfirmResult:
    """Confirm submitted chain payouts whose payment is CHAIN_CONFIRMATIONS blocks deep; send again
    those whose transaction reverted or was dropped (same payout ids: never a second payment)."""
    result = ConfirmResult()
    client = chain()
    depth = int(settings.CHAIN_CONFIRMATIONS)
    resend_after_s = int(settings.CHAIN_RESEND_AFTER_S)
    by_batch: dict[int | None, list[Payout]] = defaultdict(list)
    pending = Payout.objects.filter(rail=PayoutRail.CHAIN, status=PayoutStatus.SUBMITTED).select_related(
        "chain_batch"
    )
    for payout in pending.order_by("id"):
        by_batch[payout.chain_batch_id].append(payout)
    for payouts in by_batch.values():
        batch = payouts[0].chain_batch
        try:
            _settle_batch(client, batch, payouts, depth, resend_after_s, result)
        except ChainError as error:
            for payout in payouts:
                payout_services.note_error(payout, f"chain: {error}")
            result.waiting += len(payouts)
    return result


def _settle_batch(
    client: Chain,
    batch: ChainBatch | None,
    payouts: list[Payout],
    depth: int,
    resend_after_s: int,
    result: ConfirmResult,
) -> None:
    resend: list[Payout] = []
    if batch is None or not batch.tx_hash:
        resend = payouts  # a resend was prepared but never went out
    else:
        receipt = client.get_receipt(batch.tx_hash)
        if receipt is None:
            age_s = (clock.now() - (batch.sent_at or batch.created_at)).total_seconds()
            if age_s < resend_after_s:
                result.waiting += len(payouts)
                return
            ChainBatch.objects.filter(pk=batch.pk).update(
                status=ChainBatchStatus.DROPPED, error=f"no receipt after {int(age_s)} s"
            )
            # The dropped transaction's nonce is free again (a node that restarted without it, a pool that
            # evicted it): ask the node, or the resend would queue behind the gap and never be mined.
            client.reset_nonce()
            resend = payouts
        elif not receipt.succeeded:
            ChainBatch.objects.filter(pk=batch.pk).update(
                status=ChainBatchStatus.REVERTED, mined_block=receipt.block_number, gas_used=receipt.gas_used
            )
            resend = payouts
        else:
            ChainBatch.objects.filter(pk=batch.pk).update(
                status=ChainBatchStatus.MINED, mined_block=receipt.block_number, gas_used=receipt.gas_used
            )
            if receipt.confirmations < depth:
                result.waiting += len(payouts)
                return
            paid = {event.payout_id: event for event in client.paid_events(receipt)}
            for payout in payouts:
                event = paid.get(_payout_id(payout))
                if event is None:
                    resend.append(payout)  # skipped here: paid by another transaction, or not at all
                    continue
                _confirm_from_event(payout, event, receipt.confirmations, depth, result)
    if not resend:
        return
    unpaid: list[Payout] = []
    head = client.block_number()
    for payout in resend:
        event = _paid_event(client, payout)
        if event is None:
            unpaid.append(payout)
            continue
        if event.tx_hash != payout.external_id:
            payout = payout_services.chain_resubmitted(key=payout.key, external_id=event.tx_hash)
        _confirm_from_event(payout, event, head - event.block_number + 1, depth, result)
    for start in range(0, len(unpaid), MAX_BATCH_ENTRIES):
        chunk = unpaid[start : start + MAX_BATCH_ENTRIES]
        if _send_batch(client, chunk, resend=True):
            result.resent += len(chunk)
        result.waiting += len(chunk)


def _confirm_from_event(
    payout: Payout, event: PaidEvent, confirmations: int, depth: int, result: ConfirmResult
) -> None:
    expected = to_base_units(payout.amount_minor, payout.currency)
    if event.amount != expected or to_checksum_address(event.recipient) != to_checksum_address(
        payout.destination
    ):
        # Cannot happen with our batches; if it does, a person must look (reconciliation lists it too).
        payout_services.note_error(
            payout,
            f"chain paid {event.amount} base units to {event.recipient}; expected {expected} to "
            f"{payout.destination} (transaction {event.tx_hash})",
        )
        result.waiting += 1
        return
    if confirmations < depth:
        result.waiting += 1
        return
    payout_services.payout_confirm(key=payout.key, external_id=event.tx_hash)
    result.confirmed += 1
