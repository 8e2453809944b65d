"""The periodic sweep that closes generation jobs a dead worker left running (every 5 minutes)."""

from django.db import migrations

TASK_NAME = "studio: close stuck generation jobs"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_five, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "studio.sweep_stuck_jobs",
            "interval": every_five,
            "description": "Fails jobs running past STUDIO_JOB_TIMEOUT_S with no result (nothing was charged).",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("studio", "0001_studio_jobs_and_releases"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
