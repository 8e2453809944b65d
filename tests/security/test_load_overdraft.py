"""The access benchmark's overdraft race under load: 50 concurrent clients, each on its own kept-alive
connection, against gunicorn with the production settings (4 workers) on PostgreSQL, a prepaid balance
funded for fewer accesses than are asked for.

Pass criterion: exactly the funded number of 200s, every other answer a 402, zero 5xx and zero connection
errors; the balance read while the race runs is never negative, ends at exactly zero, and the ledger
balances (bench/access.py's CHECK). PostgreSQL only (marked `postgres`): it makes its own scratch database.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.access import CHECK
from tests.security.live import Gunicorn, migrate, run_python, scratch_postgres, server_env

pytestmark = [pytest.mark.security, pytest.mark.postgres]

CLIENTS = 50
REQUESTS_PER_CLIENT = 40
FUNDED_ACCESSES = 1_500  # of the 2,000 asked for

SETUP = f"""
from accounts.services import api_key_create, user_create
from catalog.services import Terms, offer_publish, work_create
from common.money import Money
from royalties.funding import prepaid_fund
creator = user_create(
    username="c", email="c@example.com", password=None, role="creator", email_verified=True
)
vendor = user_create(
    username="v", email="v@example.com", password=None, role="vendor", organisation_name="Race AI",
    email_verified=True,
)
works = []
for i in range(5):
    work = work_create(user=creator, title=f"Race work {{i}}", kind="image")
    offer_publish(work=work, user=creator, terms=Terms(currency="USD", uses={{"ai-train": 1}}))
    works.append(work.pk)
organisation = vendor.organisations.get()
prepaid_fund(organisation=organisation, amount=Money({FUNDED_ACCESSES}, "USD"), external_ref="race")
key = api_key_create(user=vendor, name="race", scopes=["access"]).secret
print(json.dumps({{"key": key, "works": works}}))
"""

BALANCE = """
from royalties.models import LedgerAccount
account = LedgerAccount.objects.get(kind="vendor_prepaid")
print(json.dumps([account.balance_minor, account.held_minor]))
"""


def _client(port: int, key: str, works: list[int], index: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for step in range(REQUESTS_PER_CLIENT):
        body = json.dumps({"work": works[(index + step) % len(works)], "use": "ai-train", "territory": "US"})
        headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"race-{index}-{step}-{uuid.uuid4().hex[:6]}",
        }
        try:
            connection.request("POST", "/api/v1/access", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            statuses[response.status] += 1
        except (OSError, http.client.HTTPException):
            statuses[599] += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.close()
    return statuses


def test_fifty_clients_racing_for_an_overdraft_get_exactly_what_was_funded(tmp_path) -> None:
    with scratch_postgres("security_load") as database_url:
        env = server_env(tmp_path, database_url)
        migrate(env)
        setup = run_python(SETUP, env)
        server = Gunicorn(env, workers=4, log=tmp_path / "gunicorn.log", production=True)
        balances: list[tuple[int, int]] = []
        racing = threading.Event()

        def watch_balance() -> None:
            import psycopg

            with psycopg.connect(database_url, autocommit=True) as watcher:
                while racing.is_set():
                    row = watcher.execute(
                        "SELECT balance_minor, held_minor FROM royalties_ledgeraccount "
                        "WHERE kind = 'vendor_prepaid'"
                    ).fetchone()
                    assert row is not None
                    balances.append((int(row[0]), int(row[1])))
                    time.sleep(0.05)

        try:
            racing.set()
            watcher = threading.Thread(target=watch_balance)
            watcher.start()
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
                results = list(
                    pool.map(
                        lambda i: _client(server.port, setup["key"], setup["works"], i),
                        range(CLIENTS),
                    )
                )
            elapsed = time.perf_counter() - started
            racing.clear()
            watcher.join()
        finally:
            racing.clear()
            server.stop()
        statuses: Counter[int] = Counter()
        for result in results:
            statuses.update(result)
        ledger = run_python(CHECK, env)
        final = run_python(BALANCE, env)

    asked = CLIENTS * REQUESTS_PER_CLIENT
    rate = asked / elapsed
    print(f"\n{asked} requests, {CLIENTS} clients, {elapsed:.1f} s ({rate:.0f} req/s): {dict(statuses)}")
    assert statuses == Counter({200: FUNDED_ACCESSES, 402: asked - FUNDED_ACCESSES})
    assert "Internal Server Error" not in server.log_text()
    assert len(balances) > 5 and all(balance - held >= 0 and held >= 0 for balance, held in balances)
    assert ledger["events"] == FUNDED_ACCESSES
    assert ledger["spent"] == FUNDED_ACCESSES
    assert ledger["available"] == 0
    assert ledger["negative_accounts"] == 0
    assert ledger["entries_sum"] == 0
    assert final == [FUNDED_ACCESSES, FUNDED_ACCESSES]  # all of it held for settlement, none of it twice
