"""Celery delivers at least once: the settlement and payout tasks, run by a real Celery worker (its own
processes, the Redis broker on 127.0.0.1, the same PostgreSQL test database), twice at once, again as a
redelivered copy of the same message, and after the worker is killed in the middle of a run.

Pass criterion: every revenue item belongs to exactly one settlement transaction, every settlement
transaction settles at least one item and balances, the ledger's invariants hold, the money settled equals
the money recorded; one payout per payee and period, whatever was delivered twice.

PostgreSQL only (marked `postgres`): the worker and the test must share a real database server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from common.money import Money
from royalties.ledger import ledger_check
from royalties.models import Entry, JournalTransaction, Payout, RevenueItem, TransactionKind
from royalties.payouts import period_of
from royalties.revenue import access_fee_record
from tests.royalties.builders import funded_vendor, three_level_chain
from tests.security.live import PYTHON, ROOT, server_env

pytestmark = [pytest.mark.security, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# A Redis database of its own, so nothing another process queues there is consumed here, and the other
# way round; each test also uses a queue name nobody else uses.
BROKER_URL = os.environ.get("SECURITY_BROKER_URL", "redis://127.0.0.1:6379/13")


def _database_url() -> str:
    params = connection.settings_dict
    password = f":{params['PASSWORD']}" if params["PASSWORD"] else ""
    return (
        f"postgres://{params['USER'] or 'postgres'}{password}@{params['HOST'] or '127.0.0.1'}:"
        f"{params['PORT'] or 5432}/{params['NAME']}"
    )


class Broker:
    def __init__(self) -> None:
        self.queue = f"security-{uuid.uuid4().hex[:8]}"
        self.redis = redis.Redis.from_url(BROKER_URL)
        self.app = Celery("security-suite", broker=BROKER_URL)

    def send(self, task: str, *, task_id: str | None = None, **kwargs: object) -> str:
        result = self.app.send_task(task, kwargs=kwargs, queue=self.queue, task_id=task_id)
        return str(result.id)

    def drained(self) -> bool:
        """Nothing waiting in the queue and nothing delivered but not yet acknowledged."""
        return self.redis.llen(self.queue) == 0 and self.redis.hlen("unacked") == 0

    def close(self) -> None:
        self.redis.delete(self.queue, "unacked", "unacked_index")
        self.redis.close()
        self.app.close()


@pytest.fixture
def broker() -> Iterator[Broker]:
    broker = Broker()
    broker.redis.delete("unacked", "unacked_index")
    yield broker
    broker.close()


class Worker:
    """`python -m tests.security.celery_worker QUEUE` in its own process group."""

    def __init__(self, broker: Broker, var_dir: Path, **knobs: str) -> None:
        env = server_env(var_dir, _database_url(), CELERY_BROKER_URL=BROKER_URL, **knobs)
        self.log = open(var_dir / f"worker-{uuid.uuid4().hex[:6]}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [PYTHON, "-m", "tests.security.celery_worker", broker.queue],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the whole worker (parent and pool): no chance to acknowledge or give anything back."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if not self.log.closed:
            self.log.close()


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, steady_s: float = 1.5) -> None:
    """Wait until the condition has held for steady_s in a row."""
    deadline = time.monotonic() + timeout_s
    held_since: float | None = None
    while time.monotonic() < deadline:
        if condition():
            held_since = held_since or time.monotonic()
            if time.monotonic() - held_since >= steady_s:
                return
        else:
            held_since = None
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def record_revenue(count: int, tag: str) -> int:
    """`count` one-access revenue items on the three-level chain; their total in minor units."""
    chain = three_level_chain() if not RevenueItem.objects.exists() else None
    offer = chain.offer_d if chain else RevenueItem.objects.first().work.offers.first()
    assert offer is not None
    organisation = funded_vendor(10_000_000, username=f"vendor{tag}")
    total = 0
    for index in range(count):
        price = 97 + index % 13  # odd amounts, so the splits round
        access_fee_record(
            organisation=organisation, offer=offer, amount=Money(price, "USD"), access_key=f"{tag}{index}"
        )
        total += price
    return total


def assert_each_item_settled_exactly_once(recorded_minor: int) -> None:
    items = RevenueItem.objects.all()
    assert not items.filter(settlement__isnull=True).exists()
    settlements = JournalTransaction.objects.filter(kind=TransactionKind.SETTLEMENT)
    # one transaction per item: each item points at exactly one, and every transaction is some item's
    used = set(items.values_list("settlement_id", flat=True))
    assert used == set(settlements.values_list("pk", flat=True))
    assert not settlements.annotate(n=Count("revenue_items")).filter(n=0).exists()
    assert items.aggregate(total=Sum("amount_minor"))["total"] == recorded_minor
    # the money that left the vendors' prepaid accounts in settlements is exactly what was recorded
    debited = Entry.objects.filter(transaction__in=settlements, amount_minor__lt=0).aggregate(
        s=Sum("amount_minor")
    )
    assert -debited["s"] == recorded_minor
    problems = ledger_check()
    assert problems.clean, problems


def test_settlement_run_twice_at_once_and_redelivered_settles_each_item_once(broker, tmp_path) -> None:
    recorded = record_revenue(400, "a")
    worker = Worker(broker, tmp_path, SECURITY_SETTLE_CHUNK="15")
    try:
        duplicate = broker.send("royalties.settle")
        broker.send("royalties.settle")
        broker.send("royalties.settle", task_id=duplicate)  # the same message delivered again
        wait_until(
            lambda: broker.drained() and not RevenueItem.objects.filter(settlement__isnull=True).exists(),
            120,
            "settlement",
        )
    finally:
        worker.stop()

    assert_each_item_settled_exactly_once(recorded)
    assert JournalTransaction.objects.filter(kind=TransactionKind.SETTLEMENT).count() >= 400 // 15


def test_a_settlement_killed_mid_run_is_redelivered_and_finishes_without_doubling(broker, tmp_path) -> None:
    recorded = record_revenue(200, "b")
    stalled_at = tmp_path / "first-chunk-committed"
    first = Worker(broker, tmp_path, SECURITY_SETTLE_CHUNK="25", SECURITY_STALL_MARKER=str(stalled_at))
    try:
        broker.send("royalties.settle")
        wait_until(stalled_at.exists, 120, "the first chunk to commit", steady_s=0)
    finally:
        first.kill()
    settled = RevenueItem.objects.filter(settlement__isnull=False).count()
    assert settled == 25  # exactly one chunk committed before the crash
    assert broker.redis.hlen("unacked") == 1  # the message was taken and never acknowledged

    second = Worker(broker, tmp_path, SECURITY_SETTLE_CHUNK="25")
    try:
        wait_until(
            lambda: broker.drained() and not RevenueItem.objects.filter(settlement__isnull=True).exists(),
            120,
            "the redelivered settlement",
        )
    finally:
        second.stop()

    assert_each_item_settled_exactly_once(recorded)
    assert JournalTransaction.objects.filter(kind=TransactionKind.SETTLEMENT).count() == 200 // 25


def test_the_payout_run_twice_at_once_and_redelivered_makes_one_payout_per_payee_and_period(
    broker, tmp_path
) -> None:
    recorded = record_revenue(300, "c")
    worker = Worker(broker, tmp_path, SECURITY_SETTLE_CHUNK="50")
    period = period_of(timezone.now())
    try:
        broker.send("royalties.settle")
        wait_until(
            lambda: broker.drained() and not RevenueItem.objects.filter(settlement__isnull=True).exists(),
            120,
            "settlement",
        )
        first = broker.send("royalties.payout_run", period=period)
        broker.send("royalties.payout_run", period=period)
        broker.send("royalties.payout_run", task_id=first, period=period)  # redelivered
        wait_until(lambda: broker.drained() and Payout.objects.exists(), 120, "the payout runs")
    finally:
        worker.stop()

    assert_each_item_settled_exactly_once(recorded)
    payouts = Payout.objects.filter(period=period)
    per_payee = payouts.values("user_id", "currency").annotate(n=Count("id"))
    assert per_payee and all(row["n"] == 1 for row in per_payee)
    assert payouts.count() == 5  # the chain's five creators each earned over the threshold
    payout_transactions = JournalTransaction.objects.filter(kind=TransactionKind.PAYOUT)
    assert payout_transactions.count() == payouts.count()
    assert ledger_check().clean
