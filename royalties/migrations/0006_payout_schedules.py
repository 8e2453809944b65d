"""The payout rails' periodic jobs: the payout run every hour, the chain deposit watcher every minute,
reconciliation once a day."""

from django.db import migrations

from common.schedules import BEAT_MIGRATION, Schedule, periodic_tasks


class Migration(migrations.Migration):
    dependencies = [("royalties", "0005_payout_rails"), BEAT_MIGRATION]

    operations = [
        periodic_tasks(
            Schedule(
                "royalties: payout run",
                "royalties.payout_run",
                1,
                "hours",
                "Makes this period's payouts above the threshold, sends them on their rails, confirms chain "
                "payouts.",
            ),
            Schedule(
                "royalties: chain deposits",
                "royalties.chain_deposits_watch",
                1,
                "minutes",
                "Credits stablecoin deposits to the platform's deposit address, each once.",
            ),
            Schedule(
                "royalties: reconcile rails",
                "royalties.reconcile",
                1,
                "days",
                "Compares the ledger with Stripe and the chain for this period and the last; stores differences.",
            ),
        )
    ]
