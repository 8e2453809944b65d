"""The chain rail: pays chain payouts through the PayoutDistributor's `batch_pay`, and finds them paid
after CHAIN_CONFIRMATIONS blocks.

The rail changes no payout's state: `payouts_send` and `payouts_check` yield an `Outcome` per payout as
they learn it, and `royalties.payouts` applies each one (its state machine) before the rail goes on, so a
crash between two payouts leaves the first one recorded.

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

The process's one Chain comes from `royalties.chain_client`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from eth_utils import keccak, to_checksum_address

from common import clock
from contracts.chain import (
    Chain,
    ChainError,
    ChainReverted,
    PaidEvent,
    PayoutEntry,
    payout_id_from_key,
)
from royalties.chain_client import BASE_UNITS_PER_MINOR, CHAIN_CURRENCY, chain
from royalties.models import ChainBatch, ChainBatchStatus, Payout, PayoutRail, PayoutStatus
from royalties.rails import Outcome, OutcomeKind, RailError

logger = logging.getLogger(__name__)

MAX_BATCH_ENTRIES = 200  # the distributor takes up to 256 per transaction


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


def _payout_id(payout: Payout) -> bytes:
    return payout_id_from_key(payout.key)


# Sending -----------------------------------------------------------------------------------------------


def payouts_send(payouts: Sequence[Payout]) -> Iterator[Outcome]:
    """Send created chain payouts, in as few `batch_pay` transactions as fit (MAX_BATCH_ENTRIES each): one
    outcome per payout (submitted, failed, or waiting with the reason)."""
    client = chain()
    ready: list[Payout] = []
    for payout in Payout.objects.filter(
        pk__in=[p.pk for p in payouts], rail=PayoutRail.CHAIN, status=PayoutStatus.CREATED
    ).order_by("id"):
        try:
            to_base_units(payout.amount_minor, payout.currency)
        except RailError as error:
            yield Outcome(payout.key, OutcomeKind.FAILED, note=str(error))
            continue
        if payout.attempts:
            # An earlier attempt may have been paid before its answer was recorded (a crash): ask first.
            try:
                event = _paid_event(client, payout)
            except ChainError as error:
                yield Outcome(payout.key, OutcomeKind.WAITING, note=f"chain: {error}")
                continue
            if event is not None:
                yield Outcome(payout.key, OutcomeKind.SUBMITTED, external_id=event.tx_hash)
                continue
        ready.append(payout)
    for start in range(0, len(ready), MAX_BATCH_ENTRIES):
        yield from _send_batch(client, ready[start : start + MAX_BATCH_ENTRIES], resend=False)


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


def _send_batch(client: Chain, payouts: Sequence[Payout], *, resend: bool) -> Iterator[Outcome]:
    """Record a batch, send it, record its hash: each payout submitted (resubmitted when `resend`), or
    waiting with the reason it was not sent."""
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
            yield Outcome(payout.key, OutcomeKind.WAITING, note=f"chain: {error}")
        return
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
        yield from _batch_failed(batch, payouts, f"the distributor refused the batch: {error.reason}")
        return
    except ChainError as error:  # maybe sent, maybe not: the next run checks is_paid first
        yield from _batch_failed(batch, payouts, f"sending failed: {error}", status=ChainBatchStatus.PREPARED)
        return
    ChainBatch.objects.filter(pk=batch.pk).update(
        status=ChainBatchStatus.SENT, tx_hash=sent.tx_hash, nonce=sent.nonce, sent_at=clock.now()
    )
    logger.info("chain batch %s sent: %d payouts in %s", batch.pk, len(payouts), sent.tx_hash)
    kind = OutcomeKind.RESUBMITTED if resend else OutcomeKind.SUBMITTED
    for payout in payouts:
        yield Outcome(payout.key, kind, external_id=sent.tx_hash)


def _batch_failed(
    batch: ChainBatch, payouts: Sequence[Payout], message: str, *, status: str = ""
) -> Iterator[Outcome]:
    ChainBatch.objects.filter(pk=batch.pk).update(
        status=status or ChainBatchStatus.FAILED, error=message[:500]
    )
    for payout in payouts:
        yield Outcome(payout.key, OutcomeKind.WAITING, note=f"chain: {message}")


# Confirming --------------------------------------------------------------------------------------------


def payouts_check() -> Iterator[Outcome]:
    """Find submitted chain payouts paid CHAIN_CONFIRMATIONS blocks deep (confirmed); send again those
    whose transaction reverted or was dropped (resubmitted: same payout ids, never a second payment);
    the others wait, with the reason when the chain could not be read."""
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
            yield from _check_batch(client, batch, payouts, depth, resend_after_s)
        except ChainError as error:
            for payout in payouts:
                yield Outcome(payout.key, OutcomeKind.WAITING, note=f"chain: {error}")


def _check_batch(
    client: Chain, batch: ChainBatch | None, payouts: list[Payout], depth: int, resend_after_s: int
) -> Iterator[Outcome]:
    resend: list[Payout] = []
    if batch is None or not batch.tx_hash:
        resend = payouts  # a resend was prepared but never went out
    else:
        receipt = client.get_receipt(batch.tx_hash)
        if receipt is None:
            age_s = (clock.now() - (batch.sent_at or batch.created_at)).total_seconds()
            if age_s < resend_after_s:
                for payout in payouts:
                    yield Outcome(payout.key, OutcomeKind.WAITING)
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
                for payout in payouts:
                    yield Outcome(payout.key, OutcomeKind.WAITING)
                return
            paid = {event.payout_id: event for event in client.paid_events(receipt)}
            for payout in payouts:
                event = paid.get(_payout_id(payout))
                if event is None:
                    resend.append(payout)  # skipped here: paid by another transaction, or not at all
                    continue
                yield _confirm_from_event(payout, event, receipt.confirmations, depth)
    if not resend:
        return
    unpaid: list[Payout] = []
    head = client.block_number()
    for payout in resend:
        event = _paid_event(client, payout)
        if event is None:
            unpaid.append(payout)
            continue
        if event.tx_hash != payout.external_id:  # paid by another of its transactions
            yield Outcome(payout.key, OutcomeKind.RESUBMITTED, external_id=event.tx_hash)
        yield _confirm_from_event(payout, event, head - event.block_number + 1, depth)
    for start in range(0, len(unpaid), MAX_BATCH_ENTRIES):
        yield from _send_batch(client, unpaid[start : start + MAX_BATCH_ENTRIES], resend=True)


def _confirm_from_event(payout: Payout, event: PaidEvent, confirmations: int, depth: int) -> Outcome:
    expected = to_base_units(payout.amount_minor, payout.currency)
    if event.amount != expected or to_checksum_address(event.recipient) != to_checksum_address(
        payout.destination
    ):
        # Cannot happen with our batches; if it does, a person must look (reconciliation lists it too).
        return Outcome(
            payout.key,
            OutcomeKind.WAITING,
            note=f"chain paid {event.amount} base units to {event.recipient}; expected {expected} to "
            f"{payout.destination} (transaction {event.tx_hash})",
        )
    if confirmations < depth:
        return Outcome(payout.key, OutcomeKind.WAITING)
    return Outcome(payout.key, OutcomeKind.CONFIRMED, external_id=event.tx_hash)
