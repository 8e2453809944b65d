"""Content-addressed file storage for uploads."""

from __future__ import annotations

import hashlib

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from catalog.models import Blob
from media.validation import MediaInfo


def blob_name(sha256: str, extension: str) -> str:
    return f"blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}.{extension}"


def blob_store(*, data: bytes, info: MediaInfo) -> tuple[Blob, bool]:
    """Store bytes once by their SHA-256. Returns the blob and whether these bytes were new."""
    sha256 = hashlib.sha256(data).hexdigest()
    existing = Blob.objects.filter(sha256=sha256).first()
    if existing is not None:
        return existing, False
    name = blob_name(sha256, info.extension)
    if not default_storage.exists(name):
        saved = default_storage.save(name, ContentFile(data))
        if saved != name:  # another writer won the race and the storage renamed ours: keep one copy
            default_storage.delete(saved)
    try:
        with transaction.atomic():
            blob = Blob.objects.create(
                sha256=sha256,
                size_bytes=len(data),
                media_type=info.media_type,
                kind=info.kind,
                width=info.width,
                height=info.height,
                duration_ms=round(info.duration_s * 1000) if info.duration_s is not None else None,
                storage_name=name,
            )
    except IntegrityError:
        return Blob.objects.get(sha256=sha256), False
    return blob, True
