"""The access path under concurrency: exact counts, nothing negative, one charge per key."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.db.models import F

from access.models import AccessEvent
from access.services import AccessRequest, access_request
from accounts.models import ApiKey
from common.money import Money
from royalties.funding import prepaid_fund
from royalties.ledger import InsufficientFunds
from royalties.models import NON_NEGATIVE_KINDS, LedgerAccount
from royalties.selectors import prepaid_available
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def _market(price_minor: int = 1):
    creator, vendor = factories.creator(), factories.vendor()
    work = factories.work(creator)
    factories.offer(creator, work, uses={"ai-train": price_minor})
    organisation = vendor.organisations.get()
    factories.key(vendor, "access")
    return work, organisation, ApiKey.objects.get(user=vendor)


def _in_threads(count: int, calls: int, call) -> list[str]:
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        try:
            for step in range(calls):
                result = call(index, step)
                with lock:
                    outcomes.append(result)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(worker, range(count)))
    return outcomes


def test_the_overdraft_race_grants_exactly_what_was_funded() -> None:
    # 50 threads, 10,000 requests, a balance funded for exactly 9,000 one-cent accesses.
    work, organisation, api_key = _market(price_minor=1)
    prepaid_fund(organisation=organisation, amount=Money(9_000, "USD"), external_ref="race")
    request = AccessRequest(work_id=work.pk, use_class="ai-train", territory="US")

    def call(index: int, step: int) -> str:
        try:
            access_request(
                organisation=organisation, api_key=api_key, idempotency_key=f"{index}-{step}", request=request
            )
        except InsufficientFunds:
            return "402"
        return "200"

    outcomes = _in_threads(50, 200, call)

    assert (outcomes.count("200"), outcomes.count("402"), len(outcomes)) == (9_000, 1_000, 10_000)
    assert AccessEvent.objects.count() == 9_000
    assert prepaid_available(organisation=organisation, currency="USD") == 0
    owed = LedgerAccount.objects.filter(kind__in=NON_NEGATIVE_KINDS)
    assert not owed.filter(balance_minor__lt=F("held_minor")).exists()


def test_concurrent_replays_of_one_idempotency_key_charge_once_and_answer_the_same_bytes() -> None:
    work, organisation, api_key = _market(price_minor=7)
    prepaid_fund(organisation=organisation, amount=Money(1_000, "USD"), external_ref="replays")
    request = AccessRequest(work_id=work.pk, use_class="ai-train", territory="US")
    key = str(uuid.uuid4())

    def call(index: int, step: int) -> str:
        result = access_request(
            organisation=organisation, api_key=api_key, idempotency_key=key, request=request
        )
        return result.body.decode()

    bodies = _in_threads(20, 5, call)

    assert len(set(bodies)) == 1 and len(bodies) == 100
    assert AccessEvent.objects.count() == 1
    assert prepaid_available(organisation=organisation, currency="USD") == 993


def _wal_flushes() -> int:
    """How many times the server has flushed WAL to disk (all processes), this backend's counts included."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    with connection.cursor() as cursor:  # a new statement: the forced report happened at the last one's end
        cursor.execute("SELECT wal_sync FROM pg_stat_wal")
        return int(cursor.fetchone()[0])


@pytest.mark.postgres
@pytest.mark.parametrize(("durable_setting", "paid_by_x402"), [(False, False), (True, False), (False, True)])
def test_a_prepaid_access_waits_for_the_disk_only_when_asked_to(
    settings, durable_setting: bool, paid_by_x402: bool
) -> None:
    # Each committed access flushes the WAL itself when its commit must be durable (the setting, or an
    # access paid on-chain, whose payment must never be forgotten); otherwise it returns at once and the
    # WAL writer flushes everything a little later, a few times a second at most.
    settings.ACCESS_DURABLE_COMMIT = durable_setting
    durable = durable_setting or paid_by_x402
    work, organisation, api_key = _market(price_minor=1)
    prepaid_fund(organisation=organisation, amount=Money(100, "USD"), external_ref="flushes")
    request = AccessRequest(work_id=work.pk, use_class="ai-train", territory="US")
    access_request(organisation=organisation, api_key=api_key, idempotency_key="first", request=request)
    before = _wal_flushes()
    for step in range(20):
        access_request(
            organisation=organisation,
            api_key=api_key,
            idempotency_key=f"{step}",
            request=request,
            paid_by_x402=paid_by_x402,
        )
    flushes = _wal_flushes() - before
    assert AccessEvent.objects.count() == 21
    assert flushes >= 20 if durable else flushes < 5, flushes
