"""The periodic sweep that closes generation jobs a dead worker left running: every 5 minutes."""

from django.db import migrations

from common.schedules import BEAT_MIGRATION, Schedule, periodic_tasks


class Migration(migrations.Migration):
    dependencies = [("studio", "0001_studio_jobs_and_releases"), BEAT_MIGRATION]

    operations = [
        periodic_tasks(
            Schedule(
                "studio: close stuck generation jobs",
                "studio.sweep_stuck_jobs",
                5,
                "minutes",
                "Fails jobs running past STUDIO_JOB_TIMEOUT_S with no result (nothing was charged).",
            )
        )
    ]
