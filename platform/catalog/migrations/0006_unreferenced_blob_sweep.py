"""The periodic sweep that removes stored blobs no row refers to: every 6 hours."""

from django.db import migrations

from common.schedules import BEAT_MIGRATION, Schedule, periodic_tasks


class Migration(migrations.Migration):
    dependencies = [("catalog", "0005_claim_matched_asset"), BEAT_MIGRATION]

    operations = [
        periodic_tasks(
            Schedule(
                "catalog: remove unreferenced blobs",
                "catalog.sweep_unreferenced_blobs",
                6,
                "hours",
                "Deletes stored files and blob rows older than an hour that no asset, output or dataset "
                "item refers to (an upload refused or rolled back after its bytes were written).",
            )
        )
    ]
