"""Celery tasks of the ledger. Idempotent: running one twice settles nothing twice."""

from __future__ import annotations

from celery import shared_task

from royalties.services import revenue_settle


@shared_task(name="royalties.settle", ignore_result=True)
def settle() -> int:
    """Settle all unsettled revenue (scheduled by django-celery-beat; see migration 0003)."""
    return revenue_settle().items
