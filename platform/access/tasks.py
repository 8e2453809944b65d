from typing import Any

from celery import shared_task

from access import payments


@shared_task(name="access.x402_payments_recover", ignore_result=True)
def x402_payments_recover() -> dict[str, Any]:
    """Carry on x402 payments a crash or a slow chain left behind (see payments.x402_payments_recover).
    Idempotent: a second run changes nothing."""
    return payments.x402_payments_recover()
