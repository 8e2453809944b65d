"""The Celery application.

With no CELERY_BROKER_URL the broker is kombu's filesystem transport under var/, so a worker runs on one
machine without any broker server; production sets a Redis URL.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

app = Celery("tribute")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
