"""Content-addressed file storage for uploads."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from datetime import timedelta

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Exists, ForeignObjectRel, Model, OuterRef, QuerySet

from catalog.models import Blob
from common import clock
from media.validation import MediaInfo

logger = logging.getLogger(__name__)


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
        try:
            saved = default_storage.save(name, ContentFile(data))
        except Exception:
            _partial_remove(name, len(data))
            raise
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


def _partial_remove(name: str, size_bytes: int) -> None:
    """A write that failed part-way (a full disk) can leave a short file under the blob's name, which the
    next store of the same bytes would take for the whole: remove it. A file of the full size is a whole
    copy (another writer's, or ours written before the failure) and stays."""
    try:
        if default_storage.exists(name) and default_storage.size(name) != size_bytes:
            default_storage.delete(name)
    except OSError:
        logger.warning("could not remove the partly written file %s; the blob sweep will", name)


# A blob younger than this is never swept: the request or task that stored it may not have committed the
# row that refers to it yet.
BLOB_SWEEP_GRACE = timedelta(hours=1)


def _blob_references() -> list[tuple[type[Model], str]]:
    """Every model and field that refers to a blob, including apps that hide their reverse relation."""
    return [
        (relation.related_model, relation.field.name)
        for relation in Blob._meta.get_fields(include_hidden=True)
        if isinstance(relation, ForeignObjectRel) and isinstance(relation.related_model, type)
    ]


def _stored_blob_names() -> Iterator[str]:
    folders = ["blobs"]
    while folders:
        folder = folders.pop()
        if not default_storage.exists(folder):
            continue
        subfolders, files = default_storage.listdir(folder)
        folders.extend(f"{folder}/{name}" for name in subfolders)
        yield from (f"{folder}/{name}" for name in files)


def _unreferenced(blobs: QuerySet[Blob]) -> QuerySet[Blob]:
    for model, field in _blob_references():
        blobs = blobs.exclude(Exists(model._default_manager.filter(**{field: OuterRef("pk")})))
    return blobs


def _blob_delete(unreferenced: QuerySet[Blob], sha256: str, storage_name: str) -> bool:
    """Delete the blob if it is still unreferenced (the delete re-checks every reference in the same
    statement), then its file."""
    with transaction.atomic():
        deleted, _ = unreferenced.filter(pk=sha256).delete()
    if deleted:
        default_storage.delete(storage_name)
    return bool(deleted)


def blob_discard(*, sha256: str) -> bool:
    """Delete one blob and its file now, if nothing refers to it: bytes stored for a row that was then
    not made. Whether it went. Idempotent."""
    found = Blob.objects.filter(pk=sha256).values_list("storage_name", flat=True).first()
    return found is not None and _blob_delete(_unreferenced(Blob.objects.all()), sha256, found)


def blobs_sweep_unreferenced(*, grace: timedelta = BLOB_SWEEP_GRACE) -> int:
    """Delete the blobs no row refers to, and files under blobs/ that no blob row names, once both are
    older than `grace`. Returns how many files or rows went. Idempotent; a blob that gains a reference
    meanwhile is kept (the delete re-checks every reference in the same statement)."""
    cutoff = clock.now() - grace
    unreferenced = _unreferenced(Blob.objects.filter(created_at__lt=cutoff))
    removed = 0
    for sha256, storage_name in list(unreferenced.values_list("sha256", "storage_name")):
        removed += _blob_delete(unreferenced, sha256, storage_name)
    known = set(Blob.objects.values_list("storage_name", flat=True))
    for name in _stored_blob_names():
        if name in known:
            continue
        if default_storage.get_modified_time(name) < cutoff:
            default_storage.delete(name)
            removed += 1
    return removed
