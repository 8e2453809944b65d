"""Celery tasks of the ledger and the payout rails. Idempotent: running one twice settles, pays or
credits nothing twice."""

from __future__ import annotations

from celery import shared_task

from common import clock
from royalties.settlement import revenue_settle


@shared_task(name="royalties.settle", ignore_result=True)
def settle() -> int:
    """Settle all unsettled revenue (scheduled by django-celery-beat; see migration 0003)."""
    return revenue_settle().items


@shared_task(name="royalties.payout_run", ignore_result=True)
def payout_run(period: str | None = None) -> int:
    """Make this period's payouts, send unsent ones, confirm chain payouts (schedule: migration 0006)."""
    from royalties.payouts import payout_run as run

    return len(run(period=period).created)


@shared_task(name="royalties.chain_deposits_watch", ignore_result=True)
def chain_deposits_watch() -> int:
    """Credit new stablecoin deposits to the platform's deposit address, each once."""
    from royalties.funding import chain_deposits_watch as watch
    from royalties.funding import deposits_configured

    if not deposits_configured():
        return 0
    result = watch()
    return result.credited + result.suspense


@shared_task(name="royalties.reconcile", ignore_result=True)
def reconcile(period: str | None = None) -> int:
    """Reconcile every configured rail for a period (default: the current and the previous one)."""
    from royalties.payouts import period_of, previous_period
    from royalties.reconcile import reconcile_all

    now = clock.now()
    periods = [period] if period is not None else [previous_period(period_of(now)), period_of(now)]
    return sum(run.differences_found for name in periods for run in reconcile_all(period=name))


@shared_task(name="royalties.claims_collect", ignore_result=True)
def claims_collect() -> int:
    """Take owed claim charges the vendor can now pay, and release escrow of final decisions."""
    from royalties.claims import claims_collect as collect

    return collect()
