from celery import shared_task

from catalog import fingerprinting, storage, watches, webhooks


@shared_task(name="catalog.fingerprint_asset", ignore_result=True, acks_late=True)
def fingerprint_asset(asset_id: int) -> None:
    """Fingerprint an uploaded asset (progress on the asset), index it and open claims it triggers."""
    fingerprinting.asset_fingerprint(asset_id=asset_id)


@shared_task(name="catalog.sweep_unreferenced_blobs", ignore_result=True)
def sweep_unreferenced_blobs() -> int:
    """Remove stored files and blob rows that no asset, output or dataset item refers to."""
    return storage.blobs_sweep_unreferenced()


@shared_task(name="catalog.webhooks_deliver", ignore_result=True)
def webhooks_deliver() -> int:
    """Post partners' due claim events (catalog.webhooks), retrying failures with backoff."""
    return webhooks.webhooks_deliver()


@shared_task(name="catalog.watches_scan", ignore_result=True)
def watches_scan() -> int:
    """Compare the new files of watched vendors' feeds with the watchers' works (catalog.watches)."""
    return watches.watches_scan()
