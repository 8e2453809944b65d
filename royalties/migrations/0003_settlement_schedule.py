"""The periodic settlement job: every 5 minutes."""

from django.db import migrations

from common.schedules import BEAT_MIGRATION, Schedule, periodic_tasks


class Migration(migrations.Migration):
    dependencies = [("royalties", "0002_ledger_guards"), BEAT_MIGRATION]

    operations = [
        periodic_tasks(
            Schedule(
                "royalties: settle revenue",
                "royalties.settle",
                5,
                "minutes",
                "Turns unsettled revenue into journal transactions, exactly once.",
            )
        )
    ]
