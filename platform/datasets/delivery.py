"""Delivery of a licensed snapshot: short-lived signed links, a JSON Lines manifest, and tar shards; for a
text snapshot, JSONL shards and a JSON manifest listing them with their SHA-256.

A link is a token made with Django's signing (HMAC over the licence, the part and the organisation, with
a timestamp): it is refused once older than DATASET_LINK_TTL_S, when altered, and when presented by
anyone outside the licensed organisation. The shards follow the WebDataset layout (`<key>.<ext>` for the
media and `<key>.json` for its manifest line, keys in snapshot order), so they load as they are into
common training pipelines; the same shard is byte-identical on every download (fixed times and owners).

A text snapshot's shards are JSON Lines, one record per item (the text with its licence and provenance),
laid out and hashed when the snapshot is cut (`text_shard_layout`): a record depends only on the
snapshot, so every licensee downloads the same bytes, and the manifest lists each shard's SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.core import signing
from django.core.files.storage import default_storage
from django.db import transaction

from accounts.models import ApiKey, User
from common.problems import ApiError, NotFound
from datasets.models import DatasetLicence, DownloadLog, Snapshot, SnapshotItem

_SALT = "datasets.download"
MANIFEST = "manifest"
_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/avif": "avif",
    "image/heic": "heic",
    "image/bmp": "bmp",
    "image/tiff": "tiff",
    "audio/wav": "wav",
    "audio/flac": "flac",
    "audio/mpeg": "mp3",
    "audio/ogg": "ogg",
    "audio/aiff": "aiff",
    "audio/mp4": "m4a",
    "audio/webm": "webm",
}


class LinkRefused(ApiError):
    status_code = 403
    default_code = "link_refused"
    default_detail = "This download link is not valid."


def shard_items() -> int:
    return int(settings.DATASET_SHARD_ITEMS)


def link_ttl_s() -> int:
    return int(settings.DATASET_LINK_TTL_S)


def text_shard_bytes() -> int:
    return int(settings.DATASET_TEXT_SHARD_BYTES)


def shard_count(snapshot: Snapshot) -> int:
    if snapshot.tokenizer:
        return len(snapshot.shards)
    size = shard_items()
    return max(1, -(-snapshot.item_count // size))


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def parts_of(snapshot: Snapshot) -> list[str]:
    return [MANIFEST] + [shard_name(i) for i in range(shard_count(snapshot))]


def is_text(snapshot: Snapshot) -> bool:
    return bool(snapshot.tokenizer)


def link_token(*, licence: DatasetLicence, part: str) -> str:
    if part not in parts_of(licence.snapshot):
        raise NotFound(f"This snapshot has no part {part!r}.", code="part_not_found")
    return signing.dumps(
        {"l": licence.pk, "p": part, "o": licence.organisation_id}, salt=_SALT, compress=True
    )


@dataclass(frozen=True)
class Link:
    part: str
    token: str
    expires_in_s: int


def links_for(*, licence: DatasetLicence) -> list[Link]:
    ttl = link_ttl_s()
    return [Link(part, link_token(licence=licence, part=part), ttl) for part in parts_of(licence.snapshot)]


def _log(
    licence_id: int, user: User | None, api_key: ApiKey | None, part: str, size: int, refused: str
) -> None:
    DownloadLog.objects.create(
        licence_id=licence_id,
        user=user,
        api_key=api_key,
        part=part[:40],
        size_bytes=size,
        refused=refused,
    )


def link_open(*, token: str, user: User, api_key: ApiKey | None) -> tuple[DatasetLicence, str]:
    """The licence and part a link names, for this user. Refused (and logged, when the licence is known)
    if expired, altered, or presented by someone outside the licensed organisation."""
    try:
        payload = signing.loads(token, salt=_SALT, max_age=link_ttl_s())
    except signing.SignatureExpired:
        payload = signing.loads(token, salt=_SALT)  # the signature is good: say which licence it was for
        licence = DatasetLicence.objects.filter(pk=payload.get("l")).first()
        if licence is not None:
            _log(licence.pk, user, api_key, str(payload.get("p", "")), 0, "expired")
        raise LinkRefused("This download link has expired; ask for new links.", code="link_expired") from None
    except signing.BadSignature:
        raise LinkRefused("This download link is not valid.", code="link_invalid") from None
    licence = (
        DatasetLicence.objects.select_related("snapshot", "snapshot__dataset").filter(pk=payload["l"]).first()
    )
    if licence is None or licence.organisation_id != payload["o"]:
        raise LinkRefused("This download link is not valid.", code="link_invalid")
    member = licence.organisation.membership_set.filter(user=user).exists()
    key_ok = api_key is None or api_key.organisation_id in (None, licence.organisation_id)
    if not member or not key_ok:
        _log(licence.pk, user, api_key, str(payload["p"]), 0, "foreign")
        raise LinkRefused("This link was issued to another organisation.", code="link_foreign")
    return licence, str(payload["p"])


def manifest_line(entry: SnapshotItem, licence: DatasetLicence | None, shard: str) -> dict[str, Any]:
    snapshot = entry.snapshot
    key = f"{entry.position:06d}"
    extension = _EXTENSIONS.get(entry.blob.media_type, "bin")
    return {
        "key": key,
        "shard": f"{shard}.tar",
        "file": f"{key}.{extension}",
        "sha256": entry.blob_id,
        "media_type": entry.blob.media_type,
        "kind": entry.blob.kind,
        "width": entry.blob.width,
        "height": entry.blob.height,
        "duration_ms": entry.blob.duration_ms,
        "work": entry.work_id,
        "title": entry.work.title,
        "weight": entry.weight,
        "owners": entry.owners,
        "attribution": entry.attribution,
        "licence": {
            "licence_id": str(licence.licence_id) if licence is not None else None,
            "dataset": snapshot.dataset_id,
            "snapshot": snapshot.number,
            "items_sha256": snapshot.items_sha256,
            "terms_version": snapshot.terms_version,
            "uses": snapshot.terms.get("uses"),
            "commercial_use": snapshot.terms.get("commercial_use"),
            "attribution_required": snapshot.terms.get("attribution_required"),
            "territories": snapshot.terms.get("territories"),
            "expires_at": snapshot.terms.get("expires_at"),
            "work_offer_version": entry.offer_version,
        },
    }


def _entries(snapshot: Snapshot) -> Any:
    return (
        SnapshotItem.objects.filter(snapshot=snapshot)
        .select_related("blob", "work", "snapshot")
        .order_by("position")
    )


def manifest_bytes(*, licence: DatasetLicence) -> bytes:
    snapshot = licence.snapshot
    size = shard_items()
    lines = [
        json.dumps(
            manifest_line(entry, licence, shard_name(entry.position // size)),
            ensure_ascii=False,
            sort_keys=True,
        )
        for entry in _entries(snapshot).iterator(chunk_size=1000)
    ]
    return ("\n".join(lines) + "\n").encode()


def _add(archive: tarfile.TarFile, name: str, data: IO[bytes], size: int, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    archive.addfile(info, data)


def shard_file(*, licence: DatasetLicence, part: str) -> IO[bytes]:
    """The shard as a tar file (spooled to disk beyond 32 MB), positioned at its start."""
    snapshot = licence.snapshot
    index = int(part.removeprefix("shard-"))
    size = shard_items()
    mtime = int(snapshot.created_at.timestamp())
    spool = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115 (returned open)
    with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as archive:
        entries = _entries(snapshot).filter(position__gte=index * size, position__lt=(index + 1) * size)
        for entry in entries.iterator(chunk_size=200):
            line = manifest_line(entry, licence, part)
            with default_storage.open(entry.blob.storage_name, "rb") as handle:
                _add(archive, line["file"], handle, entry.blob.size_bytes, mtime)
            meta = json.dumps(line, ensure_ascii=False, sort_keys=True).encode()
            _add(archive, f"{line['key']}.json", io.BytesIO(meta), len(meta), mtime)
    spool.seek(0)
    return spool


# Text snapshots ----------------------------------------------------------------------------------------


def text_record(entry: SnapshotItem, snapshot: Snapshot) -> dict[str, Any]:
    """One JSONL record: an item's text with its licence and provenance, all frozen in the snapshot."""
    version = entry.text_version
    assert version is not None
    terms = snapshot.terms
    return {
        "id": f"{snapshot.dataset_id}-{snapshot.number}-{entry.position:06d}",
        "position": entry.position,
        "work": entry.work_id,
        "title": entry.title,
        "text_version": version.version,
        "text": version.text,
        "tokens": entry.tokens,
        "tokenizer": snapshot.tokenizer,
        "licence": {
            "dataset": snapshot.dataset_id,
            "terms_version": snapshot.terms_version,
            "uses": terms.get("uses"),
            "commercial_use": terms.get("commercial_use"),
            "attribution_required": terms.get("attribution_required"),
            "territories": terms.get("territories"),
            "expires_at": terms.get("expires_at"),
            "offer": entry.offer_id,
            "offer_version": entry.offer_version,
            "attribution": entry.attribution,
            "owners": entry.owners,
        },
        "provenance": {
            "original_sha256": entry.blob_id,
            "media_type": entry.blob.media_type,
            "text_sha256": entry.text_sha256,
            "snapshot": snapshot.pk,
            "snapshot_number": snapshot.number,
            "items_sha256": snapshot.items_sha256,
        },
    }


def record_line(entry: SnapshotItem, snapshot: Snapshot) -> bytes:
    return json.dumps(text_record(entry, snapshot), ensure_ascii=False, sort_keys=True).encode() + b"\n"


def text_shard_layout(*, snapshot: Snapshot, entries: Iterable[SnapshotItem]) -> list[dict[str, Any]]:
    """Cut the records into shards in snapshot order: a shard closes before the record that would take it
    past DATASET_SHARD_ITEMS records or DATASET_TEXT_SHARD_BYTES bytes (a record larger than that alone
    is a shard of its own). Each shard: its name, first and last position, records, bytes, SHA-256."""
    max_records, max_bytes = shard_items(), text_shard_bytes()
    shards: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    digest = hashlib.sha256()

    def close() -> None:
        if current is not None:
            current["sha256"] = digest.hexdigest()
            shards.append(current)

    for entry in sorted(entries, key=lambda e: e.position):
        line = record_line(entry, snapshot)
        if current is None or (current["records"] >= max_records or current["bytes"] + len(line) > max_bytes):
            close()
            current = {
                "name": f"{shard_name(len(shards))}.jsonl",
                "first": entry.position,
                "last": entry.position,
                "records": 0,
                "bytes": 0,
            }
            digest = hashlib.sha256()
        current["last"] = entry.position
        current["records"] += 1
        current["bytes"] += len(line)
        digest.update(line)
    close()
    return shards


def text_manifest_bytes(*, licence: DatasetLicence) -> bytes:
    """The manifest of a licensed text snapshot: the licence, the snapshot and its shards with SHA-256."""
    snapshot = licence.snapshot
    manifest = {
        "format": "jsonl",
        "licence": {
            "licence_id": str(licence.licence_id),
            "organisation": licence.organisation_id,
            "territory": licence.territory or None,
            "receipt": licence.receipt,
        },
        "snapshot": {
            "id": snapshot.pk,
            "dataset": snapshot.dataset_id,
            "number": snapshot.number,
            "items_sha256": snapshot.items_sha256,
            "records": snapshot.item_count,
            "tokenizer": snapshot.tokenizer,
            "total_tokens": snapshot.total_tokens,
            "terms": snapshot.terms,
        },
        "shards": snapshot.shards,
    }
    return json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=1).encode() + b"\n"


def text_shard_file(*, licence: DatasetLicence, part: str) -> IO[bytes]:
    """A JSONL shard (spooled to disk beyond 32 MB), positioned at its start."""
    snapshot = licence.snapshot
    shard = snapshot.shards[int(part.removeprefix("shard-"))]
    entries = (
        SnapshotItem.objects.filter(
            snapshot=snapshot, position__gte=shard["first"], position__lte=shard["last"]
        )
        .select_related("blob", "text_version")
        .order_by("position")
    )
    spool = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115 (returned open)
    for entry in entries.iterator(chunk_size=100):
        spool.write(record_line(entry, snapshot))
    spool.seek(0)
    return spool


@transaction.atomic
def download_logged(
    *, licence: DatasetLicence, part: str, user: User, api_key: ApiKey | None, size: int
) -> None:
    _log(licence.pk, user, api_key, part, size, "")
