"""The payout rails' periodic jobs, editable (or disabled) in the admin's Periodic tasks: the payout run
every hour, the chain deposit watcher every minute, reconciliation once a day."""

from django.db import migrations

SCHEDULES = [
    (
        "royalties: payout run",
        "royalties.payout_run",
        (1, "hours"),
        "Makes this period's payouts above the threshold, sends them on their rails, confirms chain payouts.",
    ),
    (
        "royalties: chain deposits",
        "royalties.chain_deposits_watch",
        (1, "minutes"),
        "Credits stablecoin deposits to the platform's deposit address, each once.",
    ),
    (
        "royalties: reconcile rails",
        "royalties.reconcile",
        (1, "days"),
        "Compares the ledger with Stripe and the chain for this period and the last; stores differences.",
    ),
]


def create_schedules(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, (every, period), description in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "interval": interval, "description": description}
        )


def remove_schedules(apps, schema_editor):
    names = [name for name, *_ in SCHEDULES]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=names).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("royalties", "0005_payout_rails"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedules, remove_schedules)]
