"""A VOICE work's learned voice, kept in the storage so the studio learns it once and not for every job.

The voice generator (`media.generators.voice_convert`) learns a `VoiceProfile` from the voice work's
recordings: up to two minutes of frames, which takes 10-25 s for 100 s of speech (bench.voice_conversion
prints it). `profile_for` answers it from `voice-profiles/<work id>/<key>.json` (`VoiceProfile.to_dict`,
a few MB at most) when that file exists, and otherwise learns it once and stores it there. The key hashes
the profile's version, the most frames it keeps, and the recordings' blob digests in the order the
generator receives them, so a changed recording set (one added, removed or replaced) has another key and
is learned again; the work's older files go when the new one is written. Two first jobs on a voice at
once may both learn it (to the same result, one file kept): no lock is held over the learning, which
would hold up every other job on the voice for as long.

The files live outside `blobs/`, which the unreferenced-blob sweep (catalog.storage) walks.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from catalog.models import Asset
from media.generators import ParentMedia
from media.generators.voice_convert import MAX_PROFILE_FRAMES, PROFILE_VERSION, VoiceProfile, learn_voice

logger = logging.getLogger(__name__)

PROFILE_FOLDER = "voice-profiles"


def profile_key(assets: Sequence[Asset]) -> str:
    """What the learned voice depends on: the profile's version and size and the recordings, in order."""
    parts = [f"v{PROFILE_VERSION}", f"frames{MAX_PROFILE_FRAMES}", *(asset.blob_id for asset in assets)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def profile_name(work_id: int, assets: Sequence[Asset]) -> str:
    return f"{PROFILE_FOLDER}/{work_id}/{profile_key(assets)}.json"


def profile_for(work_id: int, parents: Sequence[tuple[Asset, bytes]]) -> VoiceProfile:
    """The voice learned from `parents` (the voice work's recordings and their bytes), from the storage
    when it was learned before, else learned now and stored. Raises GenerationFailed as the generator
    does when the recordings cannot be learned from."""
    name = profile_name(work_id, [asset for asset, _ in parents])
    kept = _stored(name)
    if kept is not None:
        return kept
    profile = learn_voice([ParentMedia(a.work_id, a.work.title, a.blob.media_type, d) for a, d in parents])
    _store(work_id, name, profile)
    return profile


def _stored(name: str) -> VoiceProfile | None:
    if not default_storage.exists(name):
        return None
    try:
        with default_storage.open(name, "rb") as handle:
            return VoiceProfile.from_dict(json.loads(handle.read()))
    except (OSError, ValueError, KeyError, TypeError):
        # Unreadable or of another version: learned again and written over.
        logger.warning("the stored voice profile %s cannot be read; learning the voice again", name)
        default_storage.delete(name)
        return None


def _store(work_id: int, name: str, profile: VoiceProfile) -> None:
    """Write the profile under `name` and remove the work's other (stale) profiles. A failure to store
    costs only the next job a relearning, so it is logged, not raised."""
    try:
        if not default_storage.exists(name):
            default_storage.save(name, ContentFile(json.dumps(profile.to_dict()).encode()))
        folder = f"{PROFILE_FOLDER}/{work_id}"
        _, files = default_storage.listdir(folder)
        for stale in files:
            if f"{folder}/{stale}" != name:
                default_storage.delete(f"{folder}/{stale}")
    except OSError:
        logger.exception("the voice profile of work %s could not be stored", work_id)
