"""The periodic job that confirms settled x402 payments once deep enough and recovers any a crash left
recorded: every minute."""

from django.db import migrations

from common.schedules import BEAT_MIGRATION, Schedule, periodic_tasks


class Migration(migrations.Migration):
    dependencies = [("access", "0005_x402_write_ahead"), BEAT_MIGRATION]

    operations = [
        periodic_tasks(
            Schedule(
                "access: confirm and recover x402 payments",
                "access.x402_payments_recover",
                1,
                "minutes",
                "Credits x402 payments CHAIN_CONFIRMATIONS deep; recovers payments settled on chain "
                "whose record a crash left unfinished.",
            )
        )
    ]
