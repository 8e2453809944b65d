"""The per-process matching index, loaded from stored fingerprints and kept current incrementally.

Each process (web worker, Celery worker, command) holds its own in-memory index and, before each query,
loads only the fingerprints stored since its last look (one indexed query on the id). PostgreSQL hands out
ids when a row is inserted, not when it commits, so a fingerprint may become visible after one with a
higher id was loaded: an id skipped below the newest one seen is looked for again on every look, for
GAP_WAIT_S, then given up as rolled back. At a larger scale the same structures shard across workers by
content hash.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from matching.models import Fingerprint, FingerprintKind
from media import frames
from media.fingerprint import audio, image, voice
from media.fingerprint.audio_index import AudioIndex
from media.fingerprint.image_index import ImageIndex
from media.text import embedding, quotes, static

CURRENT = {
    FingerprintKind.IMAGE: image.ALGORITHM,
    FingerprintKind.AUDIO: audio.ALGORITHM,
    FingerprintKind.VOICE: voice.ALGORITHM,
    FingerprintKind.TEXT: quotes.ALGORITHM,
    FingerprintKind.PASSAGES: embedding.ALGORITHM,
    FingerprintKind.SEARCH: static.ALGORITHM,
}


@dataclass
class Indexes:
    image: ImageIndex[str] = field(default_factory=ImageIndex)
    audio: AudioIndex = field(default_factory=AudioIndex)
    voice_ids: list[str] = field(default_factory=list)
    voice_vectors: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    text: quotes.QuoteIndex[str] = field(default_factory=quotes.QuoteIndex)
    passages: embedding.PassageIndex = field(default_factory=embedding.PassageIndex)
    search: embedding.PassageIndex = field(
        default_factory=lambda: embedding.PassageIndex(dimensions=static.DIMENSIONS)
    )
    loaded_up_to: int = 0
    # Ids below `loaded_up_to` not yet seen, with when they were first missed (time.monotonic()).
    waiting: dict[int, float] = field(default_factory=dict)

    def load(self, rows: list[Fingerprint]) -> None:
        new_voices: list[npt.NDArray[np.float32]] = []
        for row in rows:
            data = bytes(row.data)
            if row.kind == FingerprintKind.IMAGE:
                # An animation or a video: each keyframe under its own reference, mapped back by content_of.
                for number, part in enumerate(frames.unbundle(data)):
                    reference = row.sha256 if number == 0 else f"{row.sha256}{_FRAME_MARK}{number}"
                    self.image.add(reference, image.ImageFingerprint.from_bytes(part))
            elif row.kind == FingerprintKind.AUDIO:
                self.audio.add(row.sha256, audio.AudioFingerprint.from_bytes(data))
            elif row.kind == FingerprintKind.TEXT:
                self.text.add(row.sha256, quotes.TextFingerprint.from_bytes(data))
            elif row.kind == FingerprintKind.PASSAGES:
                self.passages.add(row.sha256, embedding.PassageEmbeddings.from_bytes(data))
            elif row.kind == FingerprintKind.SEARCH:
                self.search.add(
                    row.sha256, embedding.PassageEmbeddings.from_bytes(data, dimensions=static.DIMENSIONS)
                )
            else:
                self.voice_ids.append(row.sha256)
                new_voices.append(voice.VoiceEmbedding.from_bytes(data).vector)
        if new_voices:
            stacked = np.vstack(new_voices).astype(np.float32)
            self.voice_vectors = (
                stacked if self.voice_vectors.size == 0 else np.vstack([self.voice_vectors, stacked])
            )


_FRAME_MARK = "#"


def content_of(reference: str) -> str:
    """The content hash an image reference belongs to (a keyframe's reference names its frame too)."""
    return reference.split(_FRAME_MARK, 1)[0]


_lock = threading.Lock()
_indexes = Indexes()


# How long an id skipped below the newest one loaded is looked for (a fingerprint is stored in a transaction
# of its own, which lasts milliseconds), and how far below the newest id skipped ids are tracked.
GAP_WAIT_S = 600.0
GAP_SPAN = 10_000


def current() -> Indexes:
    """The index with every fingerprint committed so far (of the current algorithms)."""
    with _lock:
        refresh(_indexes, now=time.monotonic())
        return _indexes


def refresh(indexes: Indexes, *, now: float) -> None:
    """Load what was committed since the last look into `indexes`; `now` is time.monotonic()."""
    top = indexes.loaded_up_to
    seen = Fingerprint.objects.filter(pk__gt=top)
    if indexes.waiting:
        seen = seen | Fingerprint.objects.filter(pk__in=list(indexes.waiting))
    ids = set(seen.values_list("pk", flat=True))
    if ids:
        fresh = Fingerprint.objects.filter(pk__in=ids, algorithm__in=list(CURRENT.values())).order_by("pk")
        indexes.load([row for row in fresh if CURRENT[FingerprintKind(row.kind)] == row.algorithm])
    newest = max(ids | {top})
    for missing in range(max(top, newest - GAP_SPAN) + 1, newest):
        if missing not in ids:
            indexes.waiting[missing] = now
    indexes.waiting = {
        pk: since for pk, since in indexes.waiting.items() if pk not in ids and now - since <= GAP_WAIT_S
    }
    indexes.loaded_up_to = newest


def reset() -> None:
    """Forget everything loaded (tests; or after an algorithm change)."""
    global _indexes
    with _lock:
        _indexes = Indexes()
