"""Settlement throughput: N access events across many works, payees and a derivative chain, settled in bulk.

    python bench/settlement.py --events 100000                 # SQLite and PostgreSQL
    python bench/settlement.py --events 100000 --backend sqlite

Each backend runs in its own process on a fresh database: a temporary SQLite file, or a database
`bench_settlement` created on the PostgreSQL server named by --postgres (and dropped afterwards). The run
records the events through the access service (the hot path), settles them, checks every ledger invariant,
and prints events recorded and settled per second.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DB = "bench_settlement"


def _parent(args: argparse.Namespace) -> int:
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    failures = 0
    for backend in backends:
        # DEBUG off: Django would otherwise keep every query in memory.
        env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="config.settings.dev",
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY="bench-only-not-a-secret",  # noqa: S106 (a throwaway database)
            LOG_LEVEL="WARNING",
        )
        env.pop("DATABASE_URL", None)
        with tempfile.TemporaryDirectory(prefix="bench-settlement-") as tmp:
            env["TRIBUTE_VAR_DIR"] = tmp
            if backend == "sqlite":
                env["SQLITE_PATH"] = str(Path(tmp) / "bench.sqlite3")
            else:
                _postgres_admin(args.postgres, f"DROP DATABASE IF EXISTS {BENCH_DB}")
                _postgres_admin(args.postgres, f"CREATE DATABASE {BENCH_DB}")
                env["DATABASE_URL"] = args.postgres.rsplit("/", 1)[0] + "/" + BENCH_DB
            try:
                command = [
                    sys.executable,
                    __file__,
                    "--child",
                    "--events",
                    str(args.events),
                    "--seed",
                    str(args.seed),
                ]
                result = subprocess.run(command, env=env, check=False)
                failures += result.returncode != 0
            finally:
                if backend == "postgres":
                    _postgres_admin(args.postgres, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    return 1 if failures else 0


def _postgres_admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql)


def _child(events: int, seed: int) -> int:
    import django

    django.setup()
    from django.core import mail
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.db.models import Sum
    from django.test.utils import override_settings

    from accounts.models import Organisation, User
    from accounts.services import user_create
    from catalog.models import Offer
    from catalog.services import (
        ParentClaim,
        Terms,
        derivative_create,
        grant_create,
        offer_publish,
        split_share_accept,
        split_sheet_propose,
        work_create,
    )
    from common.money import Money
    from royalties.funding import prepaid_fund
    from royalties.ledger import ledger_check
    from royalties.models import Entry, LedgerAccount, RevenueItem, TransactionKind
    from royalties.revenue import access_fee_record
    from royalties.settlement import revenue_settle

    call_command("migrate", verbosity=0)
    rng = random.Random(seed)
    started = time.perf_counter()

    def person(name: str, role: str) -> User:
        return user_create(
            username=name, email=f"{name}@bench.invalid", password=None, role=role, email_verified=True
        )

    def offer(user: User, work_id: int, share_bps: int = 0) -> Offer:
        uses = {"ai-train": 5, "derivative": 0} if share_bps else {"ai-train": 5}
        from catalog.models import Work

        return offer_publish(
            work=Work.objects.get(pk=work_id),
            user=user,
            terms=Terms(currency="USD", uses=uses, derivative_share_bps=share_bps),
        )

    with override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"):
        mail.outbox = []
        creators = [person(f"creator{i}", "creator") for i in range(120)]
        offers: list[Offer] = []
        for index in range(200):
            owner = creators[index % len(creators)]
            work = work_create(user=owner, title=f"work {index}", kind="image")
            co_owners = rng.sample([c for c in creators if c.pk != owner.pk], rng.randint(0, 3))
            if co_owners:
                weights = [rng.randint(1, 10) for _ in range(len(co_owners) + 1)]
                bps = [w * 10_000 // sum(weights) for w in weights]
                bps[0] += 10_000 - sum(bps)
                split_sheet_propose(
                    work=work,
                    user=owner,
                    shares=list(zip([owner.email] + [c.email for c in co_owners], bps, strict=True)),
                )
                for co_owner in co_owners:
                    message = next(m for m in reversed(mail.outbox) if co_owner.email in m.to)
                    split_share_accept(token=message.body.split("token:\n", 1)[1].split()[0], user=co_owner)
            offers.append(offer(owner, work.pk, share_bps=rng.choice([1000, 2500, 5000])))
        # A derivative chain four levels deep, with two parents at one level.
        level = [offers[0], offers[1]]
        for depth in range(3):
            maker = creators[-1 - depth]
            claims = [ParentClaim(o.work_id, grant_create(offer=o, user=maker).grant.pk) for o in level]
            child = derivative_create(user=maker, title=f"derivative {depth}", kind="image", parents=claims)
            level = [offer(maker, child.pk, share_bps=4000)]
            offers.extend(level * 20)  # derivatives earn a good share of the accesses
    vendors = [person(f"vendor{i}", "vendor") for i in range(5)]
    organisations = [Organisation.objects.get(membership__user=v) for v in vendors]
    for organisation in organisations:
        prepaid_fund(
            organisation=organisation, amount=Money(10**12, "USD"), external_ref=f"bench-{organisation.pk}"
        )
    setup_s = time.perf_counter() - started

    started = time.perf_counter()
    for start in range(0, events, 1_000):
        with transaction.atomic():
            for number in range(start, min(events, start + 1_000)):
                access_fee_record(
                    organisation=organisations[number % len(organisations)],
                    offer=rng.choice(offers),
                    amount=Money(rng.choice([1, 5, 12, 99, 250, 1001]), "USD"),
                    access_key=f"bench-{number}",
                    new_key=True,  # as the access service records a charge: its access key is new
                )
    record_s = time.perf_counter() - started

    started = time.perf_counter()
    result = revenue_settle()
    settle_s = time.perf_counter() - started

    started = time.perf_counter()
    problems = ledger_check()
    unsettled = RevenueItem.objects.filter(settlement__isnull=True).count()
    revenue = RevenueItem.objects.aggregate(total=Sum("amount_minor"))["total"] or 0
    credited = (
        Entry.objects.filter(transaction__kind=TransactionKind.SETTLEMENT, amount_minor__gt=0).aggregate(
            total=Sum("amount_minor")
        )["total"]
        or 0
    )
    held = LedgerAccount.objects.aggregate(total=Sum("held_minor"))["total"]
    check_s = time.perf_counter() - started
    ok = problems.clean and unsettled == 0 and revenue == credited and held == 0 and result.items == events
    print(
        json.dumps(
            {
                "backend": connection.vendor,
                "events": events,
                "setup_s": round(setup_s, 2),
                "record_s": round(record_s, 2),
                "recorded_per_s": round(events / record_s),
                "settle_s": round(settle_s, 2),
                "settled_per_s": round(events / settle_s),
                "settlement_transactions": result.transactions,
                "entries": Entry.objects.count(),
                "payees": LedgerAccount.objects.filter(kind="payable").count(),
                "check_s": round(check_s, 2),
                "invariants": "ok"
                if ok
                else f"FAILED {problems} unsettled={unsettled} {revenue}!={credited}",
            }
        ),
        flush=True,
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="an administrative connection to the PostgreSQL server (the bench creates its own database)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return _child(args.events, args.seed) if args.child else _parent(args)


if __name__ == "__main__":
    sys.exit(main())
