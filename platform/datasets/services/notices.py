"""Telling contributors what happened to their items: a notice on the dashboard and a mail."""

from __future__ import annotations

from functools import partial

from django.core.mail import send_mail
from django.db import transaction

from accounts.models import User
from datasets.models import (
    Dataset,
    DatasetItem,
    DatasetNotice,
)


def notify(user_id: int, dataset: Dataset, item: DatasetItem | None, kind: str, message: str) -> None:
    DatasetNotice.objects.create(
        user_id=user_id, dataset=dataset, item=item, kind=kind, message=message[:500]
    )
    transaction.on_commit(partial(mail_notice, user_id, dataset.title, message))


def mail_notice(user_id: int, title: str, message: str) -> None:
    email = User.objects.filter(pk=user_id).values_list("email", flat=True).first()
    if email:
        send_mail(
            subject=f"Your items in the dataset “{title}”",
            message=message,
            from_email=None,
            recipient_list=[email],
        )
