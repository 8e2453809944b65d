"""Periodic jobs as data migrations: each app adds its django-celery-beat schedules with `periodic_tasks`,
so they exist on every database and stay editable (or can be disabled) in the admin's Periodic tasks."""

from __future__ import annotations

from typing import Any, NamedTuple

from django.db import migrations

BEAT_MIGRATION = ("django_celery_beat", "0019_alter_periodictasks_options")


class Schedule(NamedTuple):
    name: str
    task: str
    every: int
    period: str  # "minutes", "hours", "days"
    description: str


def periodic_tasks(*schedules: Schedule) -> migrations.RunPython:
    """A migration operation that creates these periodic tasks (kept if they exist) and removes them when
    the migration is reversed."""

    def create(apps: Any, schema_editor: Any) -> None:
        interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
        task_model = apps.get_model("django_celery_beat", "PeriodicTask")
        for schedule in schedules:
            interval, _ = interval_model.objects.get_or_create(every=schedule.every, period=schedule.period)
            task_model.objects.get_or_create(
                name=schedule.name,
                defaults={"task": schedule.task, "interval": interval, "description": schedule.description},
            )

    def remove(apps: Any, schema_editor: Any) -> None:
        names = [schedule.name for schedule in schedules]
        apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=names).delete()

    return migrations.RunPython(create, remove)
