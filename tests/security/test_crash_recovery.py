"""Scenario 3, a crash at every step of funding, settlement and payout: the process dies between our commit
and the next outside call (or its answer), the job runs again and the outside world delivers again. Pass: the
ledger ends exactly as after a run that never crashed (every account, every journal transaction, every
payout, deposit and webhook), `ledger_check` is clean, Stripe made one transfer per payout key and the chain
holds one Paid event per payout.

One table (`STEPS`) walks each flow step by step. tests/royalties/test_payouts.py, test_chain_rail.py and
test_settlement.py look closer at some of these points; here every step of every flow goes through the same
crash, re-run and comparison."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses
from django.db import transaction
from django.test import Client
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from common.money import Money
from contracts.chain import Chain, payout_id_from_key
from royalties import funding, payouts, settlement, webhooks
from royalties.ledger import ledger_check
from royalties.models import (
    ChainCursor,
    ChainDeposit,
    JournalTransaction,
    LedgerAccount,
    Payout,
    RevenueItem,
    WebhookEvent,
)
from royalties.rails import stripe as gateway
from royalties.revenue import access_fee_record
from tests import factories
from tests.royalties.builders import funded_vendor, organisation_of, three_level_chain
from tests.royalties.payout_world import Crash, credit, onchain, prove_wallet, stripe_profile
from tests.royalties.stripe_world import API_BASE, deliver, event, recorded, stripe_api, stripe_on

__all__ = ["onchain", "stripe_api", "stripe_on"]
pytestmark = [pytest.mark.security, pytest.mark.django_db]

DEPTH = 3
BASE_UNITS_PER_CENT = 10_000
HASH = re.compile(r"0x[0-9a-f]{64}")


class _Rollback(Exception):
    pass


@dataclass
class Ctx:
    """One flow's world: what it needs to run, and what the outside world remembers across runs."""

    web: Client
    chain: Chain | None = None
    stripe: responses.RequestsMock | None = None
    deliveries: list[bytes] = field(default_factory=list)  # webhooks the outside world sends (again)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)  # Stripe's, by Idempotency-Key
    transfer_requests: list[str] = field(default_factory=list)  # Idempotency-Key of each request
    wallets: dict[int, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Flow:
    prepare: Callable[[Ctx], None]
    run: Callable[[Ctx], None]  # the job once, as the scheduler (and the outside world) would
    finish: Callable[[Ctx], None]  # later runs and redeliveries, until everything is done
    check: Callable[[Ctx], None]  # what this flow promises beyond the ledger


Patch = Callable[[pytest.MonkeyPatch], None]


@dataclass(frozen=True)
class Step:
    flow: str
    name: str
    crash: Patch
    done_at_crash: bool = False  # the crash comes after the last write: the re-run must change nothing


def nth_call_crashes(owner: object, name: str, n: int, *, after: bool = False) -> Patch:
    """Patch `owner.name` so its n-th call dies (before doing anything, or after it returned)."""

    def install(patch: pytest.MonkeyPatch) -> None:
        real = getattr(owner, name)
        calls = Counter[str]()

        def dying(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] != n:
                return real(*args, **kwargs)
            if after:
                real(*args, **kwargs)
            raise Crash(f"the process died {'after' if after else 'at'} call {n} of {name}")

        patch.setattr(owner, name, dying)

    return install


# Stripe top-up, by webhook -----------------------------------------------------------------------------


def topup_prepare(ctx: Ctx) -> None:
    organisation = organisation_of(factories.vendor(username="crash_vendor"))
    metadata = {gateway.META_ORGANISATION: str(organisation.pk), gateway.META_TOPUP: "topup-crash"}
    intent = recorded("payment_intent") | {
        "id": "pi_crash",
        "amount": 6400,
        "amount_received": 6400,
        "status": "succeeded",
        "metadata": metadata,
    }
    session = recorded("checkout_session") | {
        "id": "cs_crash",
        "amount_total": 6400,
        "payment_status": "paid",
        "status": "complete",
        "payment_intent": "pi_crash",
        "metadata": metadata,
    }
    ctx.deliveries = [
        event("checkout.session.completed", session, event_id="evt_crash_cs"),
        event("payment_intent.succeeded", intent, event_id="evt_crash_pi"),
    ]
    ctx.extra["organisation"] = organisation


def deliver_all(ctx: Ctx) -> None:
    for payload in ctx.deliveries:
        assert deliver(ctx.web, payload).status_code == 200


def topup_check(ctx: Ctx) -> None:
    organisation = ctx.extra["organisation"]
    assert JournalTransaction.objects.filter(key="funding:stripe:pi_crash").count() == 1
    prepaid = LedgerAccount.objects.get(key=f"vendor_prepaid:org:{organisation.pk}:USD")
    assert prepaid.balance_minor == 6400
    assert WebhookEvent.objects.filter(processed_at__isnull=True).count() == 0


# Chain deposits, by the watcher --------------------------------------------------------------------------


def deposits_prepare(ctx: Ctx) -> None:
    assert ctx.chain is not None
    organisation = organisation_of(factories.vendor(username="chain_vendor"))
    registered, stranger = payer(ctx.chain), payer(ctx.chain)
    message = funding.deposit_message(organisation=organisation, address=registered.address)
    signature = registered.sign_message(encode_defunct(text=message)).signature.hex()
    funding.deposit_address_register(
        organisation=organisation, address=registered.address, signature=signature
    )
    for wallet, amount in ((registered, 12_340_000), (stranger, 5_000_000), (registered, 7_770_000)):
        ctx.chain.for_signer(wallet.key).transfer(funding.deposit_address(), amount)
    ctx.chain.mine_blocks(DEPTH)
    ctx.extra["organisation"] = organisation


def payer(client: Chain) -> LocalAccount:
    wallet: LocalAccount = Account.create()
    client.transfer_eth(wallet.address, 10**17)
    client.mint(wallet.address, 50_000_000)
    return wallet


def watch(ctx: Ctx) -> None:
    funding.chain_deposits_watch()


def deposits_check(ctx: Ctx) -> None:
    organisation = ctx.extra["organisation"]
    statuses = Counter(ChainDeposit.objects.values_list("status", flat=True))
    assert statuses == Counter({"credited": 2, "suspense": 1})
    assert JournalTransaction.objects.filter(key__startswith="funding:chain:").count() == 3
    prepaid = LedgerAccount.objects.get(key=f"vendor_prepaid:org:{organisation.pk}:USD")
    assert prepaid.balance_minor == 1234 + 777


# Settlement ----------------------------------------------------------------------------------------------


def settlement_prepare(ctx: Ctx) -> None:
    works = three_level_chain()
    organisation = funded_vendor()
    for index, amount in enumerate([1000, 999, 12_345, 7, 2500]):
        access_fee_record(
            organisation=organisation,
            offer=works.offer_d,
            amount=Money(amount, "USD"),
            access_key=f"c{index}",
        )


def settle(ctx: Ctx) -> None:
    settlement.revenue_settle(chunk_size=2)


def settlement_check(ctx: Ctx) -> None:
    items = list(RevenueItem.objects.all())
    assert len(items) == 5 and all(item.settlement_id is not None for item in items)
    assert JournalTransaction.objects.filter(kind="settlement").count() == 3  # chunks of 2, 2 and 1


# Payouts on Stripe ---------------------------------------------------------------------------------------


def stripe_payouts_prepare(ctx: Ctx) -> None:
    assert ctx.stripe is not None
    for amount in (4100, 2300):
        payee = factories.creator()
        credit(payee, amount)
        stripe_profile(payee)

    def transfers_create(request: Any) -> tuple[int, dict[str, str], str]:
        """Stripe's transfers endpoint with its idempotency: the same key answers the same transfer."""
        key = request.headers["Idempotency-Key"]
        ctx.transfer_requests.append(key)
        body = parse_qs(request.body if isinstance(request.body, str) else request.body.decode())
        if key not in ctx.transfers:
            ctx.transfers[key] = recorded("transfer") | {
                "id": f"tr_crash_{len(ctx.transfers) + 1}",
                "amount": int(body["amount"][0]),
                "currency": body["currency"][0],
                "destination": body["destination"][0],
                "metadata": {gateway.META_PAYOUT: body[f"metadata[{gateway.META_PAYOUT}]"][0]},
            }
        return 200, {}, json.dumps(ctx.transfers[key])

    ctx.stripe.add_callback(responses.POST, f"{API_BASE}/v1/transfers", callback=transfers_create)


def stripe_payouts_run(ctx: Ctx) -> None:
    payouts.payout_run()
    # Stripe tells us about every transfer it made (created at its side, whatever we recorded).
    ctx.deliveries = [
        event("transfer.created", transfer, event_id=f"evt_{transfer['id']}")
        for transfer in ctx.transfers.values()
    ]
    deliver_all(ctx)


def stripe_payouts_check(ctx: Ctx) -> None:
    made = list(Payout.objects.all())
    assert len(made) == 2 and {p.status for p in made} == {"confirmed"}
    assert set(ctx.transfers) == {p.key for p in made}  # one transfer per payout key, none other
    for payout in made:
        transfer = ctx.transfers[payout.key]
        assert (transfer["amount"], payout.external_id) == (payout.amount_minor, transfer["id"])


# Payouts on the chain ------------------------------------------------------------------------------------


def chain_payouts_prepare(ctx: Ctx) -> None:
    for amount in (5100, 800):
        payee = factories.creator()
        ctx.wallets[payee.pk] = prove_wallet(payee).address
        credit(payee, amount)


def chain_payouts_run(ctx: Ctx) -> None:
    assert ctx.chain is not None
    payouts.payout_run()
    ctx.chain.mine_blocks(DEPTH)
    payouts.payout_run()


def chain_payouts_check(ctx: Ctx) -> None:
    assert ctx.chain is not None
    made = list(Payout.objects.all())
    assert len(made) == 2 and {p.status for p in made} == {"confirmed"}
    events = ctx.chain.paid_events_between(0, ctx.chain.block_number())
    for payout in made:
        assert sum(1 for e in events if e.payout_id == payout_id_from_key(payout.key)) == 1
        assert ctx.chain.balance_of(ctx.wallets[payout.user_id]) == payout.amount_minor * BASE_UNITS_PER_CENT


def run_again(run: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    def finish(ctx: Ctx) -> None:
        run(ctx)
        deliver_all(ctx)  # and the outside world delivers everything once more

    return finish


FLOWS = {
    "stripe top-up": Flow(topup_prepare, deliver_all, deliver_all, topup_check),
    "chain deposits": Flow(deposits_prepare, watch, watch, deposits_check),
    "settlement": Flow(settlement_prepare, settle, settle, settlement_check),
    "stripe payout": Flow(
        stripe_payouts_prepare, stripe_payouts_run, run_again(stripe_payouts_run), stripe_payouts_check
    ),
    "chain payout": Flow(chain_payouts_prepare, chain_payouts_run, chain_payouts_run, chain_payouts_check),
}

STEPS = [
    # Stripe top-up: Stripe delivers the events until it gets a 200.
    Step(
        "stripe top-up",
        "event stored, not yet processed",
        nth_call_crashes(webhooks, "webhook_event_process", 1),
    ),
    Step(
        "stripe top-up",
        "credit written, event not yet marked processed",
        nth_call_crashes(webhooks, "prepaid_fund", 1, after=True),
    ),
    Step(
        "stripe top-up",
        "processed and committed, Stripe not yet answered",
        nth_call_crashes(webhooks, "stripe_webhook_receive", 1, after=True),
    ),
    Step(
        "stripe top-up",
        "first event answered, second not yet processed",
        nth_call_crashes(webhooks, "webhook_event_process", 2),
    ),
    # Chain deposits: the watcher reads the token's Transfer logs.
    Step("chain deposits", "logs read, nothing recorded", nth_call_crashes(funding, "_record_deposit", 1)),
    Step(
        "chain deposits",
        "credit written, deposit row not yet",
        nth_call_crashes(funding, "prepaid_fund", 1, after=True),
    ),
    Step(
        "chain deposits",
        "one deposit recorded, the next not yet",
        nth_call_crashes(funding, "_record_deposit", 2),
    ),
    Step("chain deposits", "all recorded, cursor not yet moved", nth_call_crashes(funding, "_advance", 1)),
    # Settlement: chunks of two revenue items.
    Step(
        "settlement",
        "entries written, balances not yet moved",
        nth_call_crashes(settlement, "balances_move", 1),
    ),
    Step(
        "settlement",
        "first chunk committed, second not yet",
        nth_call_crashes(settlement, "_settle_chunk", 2),
    ),
    Step(
        "settlement",
        "all committed, the job not yet returned",
        nth_call_crashes(settlement, "revenue_settle", 1, after=True),
        done_at_crash=True,
    ),
    # Payouts on Stripe.
    Step("stripe payout", "ledger moved, nothing sent", nth_call_crashes(payouts, "_send_unsent", 1)),
    Step(
        "stripe payout",
        "attempt counted, Stripe not yet called",
        nth_call_crashes(gateway, "transfer_send", 1),
    ),
    Step(
        "stripe payout",
        "Stripe made the transfer, its answer not recorded",
        nth_call_crashes(gateway, "transfer_send", 1, after=True),
    ),
    Step(
        "stripe payout",
        "first answer recorded, second payout not yet sent",
        nth_call_crashes(gateway, "transfer_send", 2),
    ),
    Step(
        "stripe payout",
        "second transfer made, its answer not recorded",
        nth_call_crashes(payouts, "payout_submitted", 2),
    ),
    Step(
        "stripe payout",
        "confirming webhook written, not committed",
        nth_call_crashes(payouts, "payout_confirm", 1, after=True),
    ),
    Step(
        "stripe payout",
        "confirmation committed, Stripe not yet answered",
        nth_call_crashes(webhooks, "stripe_webhook_receive", 1, after=True),
    ),
    # Payouts on the chain.
    Step("chain payout", "ledger moved, nothing sent", nth_call_crashes(payouts, "_send_unsent", 1)),
    Step(
        "chain payout",
        "batch recorded, transaction not sent",
        nth_call_crashes(Chain, "send_batch_payout", 1),
    ),
    Step(
        "chain payout",
        "node took the transaction, hash not recorded",
        nth_call_crashes(Chain, "send_batch_payout", 1, after=True),
    ),
    Step(
        "chain payout",
        "first hash recorded, second not yet",
        nth_call_crashes(payouts, "payout_submitted", 2),
    ),
    Step(
        "chain payout",
        "first confirmation committed, second not yet",
        nth_call_crashes(payouts, "payout_confirm", 2),
    ),
]


def ledger_state() -> dict[str, Any]:
    """Everything money-related, with random payout keys and transaction hashes named stably."""
    names = {p.key: f"payout:{p.user_id}:{p.currency}:{p.period}" for p in Payout.objects.all()}

    def n(text: str) -> str:
        for raw, stable in names.items():
            text = text.replace(raw, stable)
        return HASH.sub("0x<hash>", text)

    return {
        "accounts": sorted((a.key, a.balance_minor, a.held_minor) for a in LedgerAccount.objects.all()),
        "journal": sorted(
            (
                t.kind,
                n(t.key),
                n(t.memo),
                tuple(sorted((e.account.key, e.amount_minor) for e in t.entries.select_related("account"))),
            )
            for t in JournalTransaction.objects.all()
        ),
        "payouts": sorted(
            (n(p.key), p.status, p.amount_minor, p.rail, n(p.external_id)) for p in Payout.objects.all()
        ),
        "revenue": sorted(RevenueItem.objects.values_list("source_key", "settlement__key")),
        "deposits": sorted(
            ChainDeposit.objects.values_list("tx_hash", "log_index", "status", "amount_minor")
        ),
        "cursors": sorted(ChainCursor.objects.values_list("name", "last_block")),
        "webhooks": sorted((e.event_id, e.processed_at is not None) for e in WebhookEvent.objects.all()),
    }


@pytest.fixture
def ctx(request: pytest.FixtureRequest, settings) -> Iterator[Ctx]:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    settings.CHAIN_PAYOUTS_ENABLED = True
    settings.CHAIN_CONFIRMATIONS = DEPTH
    settings.CHAIN_RESEND_AFTER_S = 900
    settings.CHAIN_DEPOSIT_ADDRESS = ""
    flow = request.getfixturevalue("step").flow
    context = Ctx(web=Client(enforce_csrf_checks=True))
    if flow in ("stripe top-up", "stripe payout"):
        context.stripe = request.getfixturevalue("stripe_api")
    if flow in ("chain deposits", "chain payout"):
        context.chain = request.getfixturevalue("onchain")
    yield context


@pytest.mark.parametrize("step", STEPS, ids=[f"{s.flow}: {s.name}" for s in STEPS])
def test_a_crash_at_this_step_then_a_rerun_loses_nothing_and_doubles_nothing(
    step: Step, ctx: Ctx, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = FLOWS[step.flow]
    flow.prepare(ctx)
    # The same world run without a crash, then rolled back (the database and the chain).
    snapshot = ctx.chain.snapshot() if ctx.chain is not None else None
    try:
        with transaction.atomic():
            flow.run(ctx)
            flow.finish(ctx)
            flow.check(ctx)
            expected = ledger_state()
            raise _Rollback
    except _Rollback:
        pass
    if ctx.chain is not None:
        ctx.chain.revert(snapshot)
    ctx.transfers.clear()
    ctx.transfer_requests.clear()
    before = ledger_state()

    with monkeypatch.context() as patch:
        step.crash(patch)
        with pytest.raises(Crash):
            flow.run(ctx)
    crashed = ledger_state()
    flow.run(ctx)  # the job runs again
    flow.finish(ctx)  # and again, with every delivery repeated

    assert before != expected
    assert (crashed == expected) is step.done_at_crash  # the crash stopped the flow where the step says
    assert ledger_state() == expected
    assert ledger_check().clean
    flow.check(ctx)
    if step.flow == "stripe payout":
        # Every request for a payout carried its key, so Stripe answered the first transfer again.
        assert set(ctx.transfer_requests) == set(ctx.transfers)
