"""Every periodic job the migrations schedule names a task a worker actually has, on a sane interval."""

import pytest
from django_celery_beat.models import PeriodicTask

from config.celery import app

pytestmark = pytest.mark.django_db


def test_every_scheduled_job_names_a_registered_task() -> None:
    app.loader.import_default_modules()
    scheduled = {task.name: task for task in PeriodicTask.objects.select_related("interval")}

    assert {
        "royalties: settle revenue",
        "royalties: payout run",
        "royalties: chain deposits",
        "royalties: reconcile rails",
        "studio: close stuck generation jobs",
        "access: confirm and recover x402 payments",
    } <= set(scheduled)
    for name, task in scheduled.items():
        assert task.task in app.tasks, (name, task.task)
        assert task.enabled and task.interval is not None and task.interval.every > 0, name
