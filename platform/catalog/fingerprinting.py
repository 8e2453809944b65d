"""Fingerprinting an uploaded asset (the Celery task's body): its content's fingerprints computed and
stored once per content, then the claims its matches call for opened by the trace."""

from __future__ import annotations

from functools import partial

from django.core.files.storage import default_storage

from catalog.models import Asset, FingerprintStatus, WorkKind
from catalog.tracing import claims_open_for
from matching import services as media
from media.errors import MediaError


def _set_progress(asset_id: int, percent: int) -> None:
    Asset.objects.filter(pk=asset_id).update(fingerprint_progress=percent)


def asset_fingerprint(*, asset_id: int) -> Asset | None:
    """Fingerprint an asset's content, then open the claims its matches call for.

    Idempotent: a finished asset is left alone, and fingerprints and claims are unique, so a redelivered
    task changes nothing. Undecodable content marks the asset failed with the reason; a kind of
    fingerprint the content does not allow (the voice of a recording that is mostly music) is skipped, the
    others stored, and the asset done with the skipped kinds noted in its error field.
    """
    started = (
        Asset.objects.filter(pk=asset_id)
        .exclude(fingerprint_status=FingerprintStatus.DONE)
        .update(fingerprint_status=FingerprintStatus.RUNNING, fingerprint_progress=0, fingerprint_error="")
    )
    if not started:
        return None
    asset = Asset.objects.select_related("blob", "work", "uploaded_by").get(pk=asset_id)
    with default_storage.open(asset.blob.storage_name, "rb") as handle:
        data = handle.read()
    kinds = media.fingerprint_kinds_for(asset.blob.kind, voice_work=asset.work.kind == WorkKind.VOICE)
    skipped: list[media.SkippedStep] = []
    try:
        media.fingerprints_compute(
            sha256=asset.blob.sha256,
            data=data,
            kinds=kinds,
            progress=partial(_set_progress, asset_id),
            skipped=skipped,
        )
    except MediaError as exc:
        Asset.objects.filter(pk=asset_id).update(
            fingerprint_status=FingerprintStatus.FAILED, fingerprint_error=str(exc)[:300]
        )
        return asset
    note = "; ".join(f"{step.step} skipped: {step.reason}" for step in skipped)
    Asset.objects.filter(pk=asset_id).update(
        fingerprint_status=FingerprintStatus.DONE, fingerprint_progress=100, fingerprint_error=note[:300]
    )
    claims_open_for(asset=asset, data=data)
    asset.refresh_from_db()
    return asset
