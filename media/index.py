"""The per-process matching index, loaded from stored fingerprints and kept current incrementally.

Each process (web worker, Celery worker, command) holds its own in-memory index and, before each query,
loads only the fingerprints stored since its last look (one indexed query on the id). At a larger scale the
same structures shard across workers by content hash.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from media.fingerprint import audio, image, voice
from media.fingerprint.audio_index import AudioIndex
from media.fingerprint.image_index import ImageIndex
from media.models import Fingerprint, FingerprintKind
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

    def load(self, rows: list[Fingerprint]) -> None:
        new_voices: list[npt.NDArray[np.float32]] = []
        for row in rows:
            data = bytes(row.data)
            if row.kind == FingerprintKind.IMAGE:
                self.image.add(row.sha256, image.ImageFingerprint.from_bytes(data))
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
            self.loaded_up_to = max(self.loaded_up_to, row.pk)
        if new_voices:
            stacked = np.vstack(new_voices).astype(np.float32)
            self.voice_vectors = (
                stacked if self.voice_vectors.size == 0 else np.vstack([self.voice_vectors, stacked])
            )


_lock = threading.Lock()
_indexes = Indexes()


def current() -> Indexes:
    """The index with every fingerprint stored so far (of the current algorithms)."""
    with _lock:
        fresh = Fingerprint.objects.filter(pk__gt=_indexes.loaded_up_to, algorithm__in=list(CURRENT.values()))
        rows = [row for row in fresh.order_by("pk") if CURRENT[FingerprintKind(row.kind)] == row.algorithm]
        _indexes.load(rows)
        return _indexes


def reset() -> None:
    """Forget everything loaded (tests; or after an algorithm change)."""
    global _indexes
    with _lock:
        _indexes = Indexes()
