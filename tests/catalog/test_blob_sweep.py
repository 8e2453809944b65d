"""The periodic sweep removes stored bytes that no row refers to, and nothing else."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from catalog.models import Blob
from catalog.services import asset_upload
from catalog.storage import blob_store
from catalog.tasks import sweep_unreferenced_blobs
from media.validation import inspect
from tests import factories

pytestmark = pytest.mark.django_db


def test_the_sweep_removes_unreferenced_blobs_and_stray_files_once_they_are_an_hour_old(time_machine) -> None:
    # given a referenced blob (a work's file), an unreferenced blob, and a file no row names
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    time_machine.move_to(start)
    creator = factories.creator()
    kept = asset_upload(
        work=factories.work(creator), user=creator, data=factories.png_bytes(), filename="a.png"
    )
    orphan_bytes = factories.png_bytes(color=(9, 9, 9))
    orphan, _ = blob_store(data=orphan_bytes, info=inspect(orphan_bytes))
    stray = default_storage.save("blobs/zz/zz/stray.png", ContentFile(b"left by a rolled-back request"))
    root = Path(settings.MEDIA_ROOT)
    os.utime(root / stray, (start.timestamp(), start.timestamp()))  # written when the clock read `start`

    # when the sweep runs at once, then again two hours later
    at_once = sweep_unreferenced_blobs()
    time_machine.move_to(start + timedelta(hours=2))
    later = sweep_unreferenced_blobs()
    again = sweep_unreferenced_blobs()

    # then nothing young is touched; later the orphan and the stray go, the work's file stays
    assert at_once == 0
    assert later == 2 and again == 0
    assert list(Blob.objects.values_list("pk", flat=True)) == [kept.asset.blob_id]
    assert (root / kept.asset.blob.storage_name).is_file()
    assert not (root / orphan.storage_name).exists()
    assert not (root / stray).exists()
