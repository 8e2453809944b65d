from celery import shared_task

from catalog import tracing


@shared_task(name="catalog.fingerprint_asset", ignore_result=True, acks_late=True)
def fingerprint_asset(asset_id: int) -> None:
    """Fingerprint an uploaded asset (progress on the asset), index it and open claims it triggers."""
    tracing.asset_fingerprint(asset_id=asset_id)
