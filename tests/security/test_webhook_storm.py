"""Scenario 2, the webhook storm: every Stripe event type we handle, each delivered three times in a shuffled
order through the real endpoint, with a stale and a forged delivery mixed in. Pass: each event is processed
once, the two bad deliveries get 400 and leave nothing, and the final state (profiles, payouts, every ledger
account and every journal transaction) is the state the same events make delivered once, in order."""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
from django.db import transaction
from django.test import Client

from accounts.models import Organisation, PayoutProfile, User
from common.money import Money
from royalties import payouts, webhooks
from royalties.funding import prepaid_fund
from royalties.ledger import ledger_check
from royalties.models import JournalTransaction, LedgerAccount, Payout, WebhookEvent
from royalties.rails import stripe as gateway
from royalties.selectors import payable_key, prepaid_key
from tests import factories
from tests.royalties.payout_world import credit, stripe_profile
from tests.royalties.stripe_world import deliver, event, recorded, signature_header, stripe_on

__all__ = ["stripe_on"]
pytestmark = [pytest.mark.security, pytest.mark.django_db]

STALE_BY_S = 301  # one second past Stripe's five-minute tolerance
FORGED_SECRET = "whsec_not_ours_00000000000000000"


class _Rollback(Exception):
    """Ends a run inside a savepoint so the next run starts from the same database."""


@dataclass
class World:
    """Who the events are about, and how to name them the same in every run (ids and payout keys differ)."""

    organisation: Organisation
    payees: dict[str, User]
    payouts: dict[str, Payout]
    names: list[tuple[str, str]] = field(default_factory=list)

    def normalize(self, text: str) -> str:
        for raw, label in self.names:
            text = text.replace(raw, label)
        return re.sub(r"test-credit:[0-9a-f-]+", "test-credit", text)


def build_world(now: int) -> World:
    vendor = factories.vendor(username="storm_vendor")
    organisation = Organisation.objects.get(membership__user=vendor)
    payees = {name: factories.creator(username=f"storm_{name}") for name in ("alice", "bob", "carol", "dave")}
    for name in ("alice", "bob"):
        PayoutProfile.objects.create(user=payees[name], stripe_account_id=f"acct_storm_{name}")
    made = {}
    for name, amount in (("carol", 3100), ("dave", 4200)):
        credit(payees[name], amount)
        stripe_profile(payees[name])
        payout = payouts.payout_create(user=payees[name], currency="USD", period="2026-11")
        assert payout is not None and payout.rail == "stripe"
        made[name] = payouts.payout_submitted(key=payout.key, external_id=f"tr_storm_{name}")
    # Card payments credited before the storm, which its refunds and disputes are about (Stripe sends those
    # days after the payment: their order against the payment's own events is tests/royalties/test_refunds'
    # concern, their order among themselves and their redeliveries are this test's).
    fundings = {
        intent_id: prepaid_fund(
            organisation=organisation, amount=Money(amount, "USD"), external_ref=intent_id, rail="stripe"
        )
        for intent_id, amount in PAID_BEFORE.items()
    }
    world = World(organisation=organisation, payees=payees, payouts=made)
    # A refund's journal key names the funding's row id, which each run's database numbers differently.
    for intent_id, funding in fundings.items():
        world.names += [
            (f"{kind}:{funding.pk}:", f"{kind}:<{intent_id}>:") for kind in ("refund", "reinstate")
        ]
    world.names += [(payout.key, f"<payout {name}>") for name, payout in made.items()]
    world.names.append((prepaid_key(organisation.pk, "USD"), "<prepaid vendor>"))
    for name, user in payees.items():
        world.names.append((payable_key(user.pk, "USD"), f"<payable {name}>"))
        world.names.append((f"acct_{user.pk:04d}test", f"<account {name}>"))
    return world


def account_update(name: str, n: int, created: int, *, enabled: bool, submitted: bool) -> bytes:
    account = recorded("account") | {
        "id": f"acct_storm_{name}",
        "payouts_enabled": enabled,
        "details_submitted": submitted,
    }
    return event("account.updated", account, event_id=f"evt_storm_acct_{name}_{n}", created=created)


def transfer(payout: Payout, kind: str, created: int, *, reversed_minor: int = 0) -> bytes:
    obj = recorded("transfer") | {
        "id": payout.external_id,
        "amount": payout.amount_minor,
        "currency": payout.currency.lower(),
        "destination": payout.destination,
        "metadata": {gateway.META_PAYOUT: payout.key},
        "amount_reversed": reversed_minor,
        "reversed": reversed_minor >= payout.amount_minor,
    }
    return event(f"transfer.{kind}", obj, event_id=f"evt_storm_{payout.external_id}_{kind}", created=created)


def topup(
    organisation: Organisation, letter: str, amount_minor: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    metadata = {gateway.META_ORGANISATION: str(organisation.pk), gateway.META_TOPUP: f"topup-storm-{letter}"}
    intent = recorded("payment_intent") | {
        "id": f"pi_storm_{letter}",
        "amount": amount_minor,
        "amount_received": amount_minor,
        "status": "succeeded",
        "metadata": metadata,
    }
    session = recorded("checkout_session") | {
        "id": f"cs_storm_{letter}",
        "amount_total": amount_minor,
        "payment_status": "paid",
        "status": "complete",
        "payment_intent": intent["id"],
        "metadata": metadata,
    }
    return intent, session


TOPUPS = {"a": 5000, "b": 7000, "c": 3000}
PAID_BEFORE = {"pi_storm_paid": 6000, "pi_storm_kept": 800}
REFUNDED, DISPUTE_LOST = 1500, 2000


def charge(intent_id: str, refunded: int) -> dict[str, Any]:
    amount = PAID_BEFORE[intent_id]
    return {
        "id": f"ch_{intent_id}",
        "object": "charge",
        "amount": amount,
        "amount_refunded": refunded,
        "currency": "usd",
        "payment_intent": intent_id,
        "refunded": refunded == amount,
    }


def refund(refund_id: str, intent_id: str, amount: int, status: str) -> dict[str, Any]:
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "payment_intent": intent_id,
        "status": status,
    }


def dispute(dispute_id: str, status: str, amount: int) -> dict[str, Any]:
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "charge": "ch_pi_storm_paid",
        "payment_intent": "pi_storm_paid",
        "currency": "usd",
        "status": status,
    }


def events_in_order(world: World, now: int) -> list[bytes]:
    """Every event as Stripe made them, oldest first."""
    carol, dave = world.payouts["carol"], world.payouts["dave"]
    intent_a, _ = topup(world.organisation, "a", TOPUPS["a"])
    intent_b, session_b = topup(world.organisation, "b", TOPUPS["b"])
    intent_c, session_c = topup(world.organisation, "c", TOPUPS["c"])
    return [
        account_update("alice", 1, now - 290, enabled=False, submitted=False),
        account_update("bob", 1, now - 280, enabled=True, submitted=True),
        account_update("alice", 2, now - 270, enabled=False, submitted=True),
        event("payment_intent.succeeded", intent_a, event_id="evt_storm_pi_a", created=now - 260),
        transfer(carol, "created", now - 250),
        transfer(dave, "created", now - 240),
        event("checkout.session.completed", session_b, event_id="evt_storm_cs_b", created=now - 230),
        event("payment_intent.succeeded", intent_b, event_id="evt_storm_pi_b", created=now - 229),
        event(
            "checkout.session.completed",  # paid by a bank debit: not paid yet
            session_c | {"payment_status": "unpaid"},
            event_id="evt_storm_cs_c",
            created=now - 220,
        ),
        transfer(carol, "updated", now - 210),
        transfer(dave, "updated", now - 200),
        account_update("alice", 3, now - 190, enabled=True, submitted=True),
        event(
            "checkout.session.async_payment_succeeded",
            session_c,
            event_id="evt_storm_cs_c2",
            created=now - 180,
        ),
        event("payment_intent.succeeded", intent_c, event_id="evt_storm_pi_c", created=now - 179),
        transfer(dave, "reversed", now - 170, reversed_minor=dave.amount_minor),
        account_update("bob", 2, now - 160, enabled=False, submitted=True),  # Stripe paused bob's payouts
        # A partial refund: the charge carries the amount refunded in all (partial refunds adding up in any
        # order is tests/royalties/test_refunds' concern); the refund's own events only note it.
        event(
            "refund.created",
            refund("re_storm_1", "pi_storm_paid", REFUNDED, "pending"),
            event_id="evt_storm_re_1_created",
            created=now - 152,
        ),
        event(
            "charge.refunded",
            charge("pi_storm_paid", REFUNDED),
            event_id="evt_storm_ch_refunded",
            created=now - 150,
        ),
        event(
            "charge.refund.updated",
            refund("re_storm_1", "pi_storm_paid", REFUNDED, "succeeded"),
            event_id="evt_storm_re_1_charge_updated",
            created=now - 149,
        ),
        event(
            "refund.updated",
            refund("re_storm_1", "pi_storm_paid", REFUNDED, "succeeded"),
            event_id="evt_storm_re_1_updated",
            created=now - 148,
        ),
        # A refund that failed before any of it was taken: nothing to give back.
        event(
            "refund.failed",
            refund("re_storm_2", "pi_storm_kept", 300, "failed"),
            created=now - 135,
            event_id="evt_storm_re_2_failed",
        ),
        # A chargeback lost: taken once for the dispute, however many of its events arrive.
        event(
            "charge.dispute.created",
            dispute("dp_storm_lost", "needs_response", DISPUTE_LOST),
            created=now - 130,
            event_id="evt_storm_dp_created",
        ),
        event(
            "charge.dispute.funds_withdrawn",
            dispute("dp_storm_lost", "needs_response", DISPUTE_LOST),
            created=now - 129,
            event_id="evt_storm_dp_withdrawn",
        ),
        event(
            "charge.dispute.closed",
            dispute("dp_storm_lost", "lost", DISPUTE_LOST),
            created=now - 120,
            event_id="evt_storm_dp_closed",
        ),
        # An inquiry moves no money.
        event(
            "charge.dispute.funds_reinstated",
            dispute("dp_storm_inquiry", "warning_closed", 500),
            created=now - 110,
            event_id="evt_storm_dp_inquiry",
        ),
        # A connected account's own bank payout failed: noted, no money moves.
        event(
            "payout.failed",
            {
                "id": "po_storm",
                "object": "payout",
                "destination_account": carol.destination,
                "failure_message": "account closed",
            },
            created=now - 100,
            event_id="evt_storm_po_failed",
        ),
        event("customer.created", {"id": "cus_storm", "object": "customer"}, event_id="evt_storm_other"),
    ]


def state(world: World) -> dict[str, Any]:
    """Everything the events may change, named without database ids or random payout keys."""
    n = world.normalize
    return {
        "profiles": sorted(
            (n(p.stripe_account_id), p.stripe_payouts_enabled, p.stripe_details_submitted, p.stripe_state_at)
            for p in PayoutProfile.objects.all()
        ),
        "payouts": sorted(
            (n(p.key), p.status, p.amount_minor, p.external_id, p.failure_reason, p.settled_at is None)
            for p in Payout.objects.all()
        ),
        "accounts": sorted(
            (n(a.key), a.balance_minor, a.held_minor) for a in LedgerAccount.objects.all() if a.balance_minor
        ),
        "journal": sorted(
            (
                t.kind,
                n(t.key),
                n(t.memo),
                tuple(
                    sorted((n(e.account.key), e.amount_minor) for e in t.entries.select_related("account"))
                ),
            )
            for t in JournalTransaction.objects.all()
        ),
        "events": sorted(
            (e.event_id, e.event_type, e.processed_at is not None) for e in WebhookEvent.objects.all()
        ),
    }


def in_a_savepoint(run: Callable[[World], dict[str, Any]], now: int) -> dict[str, Any]:
    """Build the world, run, read the state, and roll everything back."""
    captured: dict[str, Any] = {}
    try:
        with transaction.atomic():
            world = build_world(now)
            captured = run(world)
            raise _Rollback
    except _Rollback:
        pass
    return captured


@pytest.fixture
def web(stripe_on: None, settings) -> Client:
    settings.PAYOUT_THRESHOLD_MINOR = {"USD": 100}
    return Client(enforce_csrf_checks=True)


def counting_handler(counts: Counter[str]) -> Callable[[str, Mapping[str, Any]], str]:
    real = webhooks._handle

    def handle(event_type: str, payload: Mapping[str, Any]) -> str:
        note = real(event_type, payload)
        counts[str(payload["id"])] += 1  # counted once the handler finished
        return note

    return handle


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_shuffled_triple_delivery_with_a_stale_and_a_forged_event_ends_as_in_order(
    web: Client, seed: int
) -> None:
    now = int(time.time())

    def in_order(world: World) -> dict[str, Any]:
        for payload in events_in_order(world, now):
            response = deliver(web, payload)
            assert (response.status_code, response.json()["duplicate"]) == (200, False)
        return state(world) | {"ledger_clean": ledger_check().clean}

    counts: Counter[str] = Counter()
    answers: dict[str, list[tuple[int, bool]]] = {}
    bad: dict[str, tuple[int, str]] = {}

    def storm(world: World) -> dict[str, Any]:
        payloads = events_in_order(world, now)
        event_types = {webhooks._parsed(p)["type"] for p in payloads}
        assert event_types >= set(webhooks.EVENT_TYPES)  # every type we handle is in the storm
        stale_intent, _ = topup(world.organisation, "stale", 9900)
        stale = event("payment_intent.succeeded", stale_intent, event_id="evt_storm_stale", created=now - 5)
        forged = account_update("alice", 4, now - 5, enabled=False, submitted=False)
        deliveries = [(p, signature_header(p)) for p in payloads for _ in range(3)]
        deliveries += [
            (stale, signature_header(stale, timestamp=int(time.time()) - STALE_BY_S)),
            (forged, signature_header(forged, secret=FORGED_SECRET)),
        ]
        random.Random(seed).shuffle(deliveries)
        with mock.patch.object(webhooks, "_handle", counting_handler(counts)):
            for payload, header in deliveries:
                event_id = webhooks._parsed(payload)["id"]
                response = deliver(web, payload, header=header)
                if payload in (stale, forged):
                    bad[event_id] = (response.status_code, response.json()["code"])
                else:
                    answers.setdefault(event_id, []).append(
                        (response.status_code, response.json()["duplicate"])
                    )
        return state(world) | {"ledger_clean": ledger_check().clean}

    expected = in_a_savepoint(in_order, now)
    stormed = in_a_savepoint(storm, now)

    assert bad == {
        "evt_storm_stale": (400, "invalid_signature"),
        "evt_storm_acct_alice_4": (400, "invalid_signature"),
    }
    # Each event: stored and handled once, then recognised twice as a redelivery.
    assert set(answers) == {event_id for event_id, _, _ in expected["events"]}
    assert all(got == [(200, False), (200, True), (200, True)] for got in answers.values())
    assert counts == Counter(dict.fromkeys(answers, 1))
    assert stormed == expected
    # And the in-order state is the one the events describe (so the comparison above compares something).
    profiles = {account: (enabled, submitted) for account, enabled, submitted, _ in expected["profiles"]}
    assert profiles["acct_storm_alice"] == (True, True) and profiles["acct_storm_bob"] == (False, True)
    statuses = {key: status for key, status, *_ in expected["payouts"]}
    assert statuses == {"<payout carol>": "confirmed", "<payout dave>": "returned"}
    balances = {key: amount for key, amount, _ in expected["accounts"]}
    paid_in = sum(TOPUPS.values()) + sum(PAID_BEFORE.values())
    assert balances["<prepaid vendor>"] == paid_in - REFUNDED - DISPUTE_LOST
    assert (balances["<payable dave>"], balances["clearing:stripe:USD"]) == (
        4200,
        3100 - paid_in + REFUNDED + DISPUTE_LOST,
    )
    assert "<payable carol>" not in balances and "in_transit:stripe:USD" not in balances
    assert expected["ledger_clean"] is True
    assert all(processed for _, _, processed in expected["events"])
