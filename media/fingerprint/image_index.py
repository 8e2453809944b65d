"""Sub-linear search over image fingerprints: multi-index hashing of ORB descriptors, then verification.

Each reference descriptor (256 bits) is cut into ``BANDS`` bands of ``BAND_BITS`` bits, and every band
value becomes an entry ``(band, value) -> reference`` in one sorted table. Two descriptors of the same
scene point differ in a few dozen bits, so they usually agree exactly on at least one band; a query
looks its descriptors' band values up with a binary search (``O(log n)`` each, plus the entries it
finds) and adds up, per reference, the band values it met, each weighted by how rare that value is
(generic corners look alike in every picture). The references with the most votes are then checked
with ``image.compare`` (RANSAC geometry), which is what keeps false matches out.

Storage is a few flat numpy arrays (8 bytes per entry), kept as a large sorted run plus a small sorted
run of recent additions that is merged in when it grows; removals are tombstones, compacted once they
are a quarter of the table. Very common band values (flat textures) are skipped at query time.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from media.fingerprint.image import (
    DESCRIPTOR_BYTES,
    ImageFingerprint,
    ImageMatch,
    compare,
)

BAND_BITS: Final = 24
BANDS: Final = DESCRIPTOR_BYTES * 8 // BAND_BITS  # 10 bands of 3 bytes; the last 2 bytes are unused
#: A band value met in more than this many entries (plus a share of the catalog) is too common to vote.
_MAX_BUCKET: Final = 64
_MAX_BUCKET_SHARE: Final = 0.02
#: Candidates to verify per query: the best-voted ones, at least this many votes each.
_MIN_VOTES: Final = 3
_CANDIDATES_PER_RESULT: Final = 2
_MIN_CANDIDATES: Final = 4
_DELTA_SHARE: Final = 0.25
_TOMBSTONE_SHARE: Final = 0.25

RefId = TypeVar("RefId", bound=Hashable)
_Keys = npt.NDArray[np.uint32]


def band_keys(descriptors: npt.NDArray[np.uint8]) -> _Keys:
    """Keys ``band << 24 | value`` for every band of every descriptor, shape ``(n * BANDS,)``."""
    if len(descriptors) == 0:
        return np.zeros(0, np.uint32)
    used = descriptors[:, : BANDS * 3].astype(np.uint32).reshape(len(descriptors), BANDS, 3)
    values = (used[:, :, 0] << 16) | (used[:, :, 1] << 8) | used[:, :, 2]
    bands = np.arange(BANDS, dtype=np.uint32) << BAND_BITS
    return np.asarray((values | bands).reshape(-1), dtype=np.uint32)


@dataclass
class _Run:
    """A sorted run of entries: keys and the slot of the reference each belongs to."""

    keys: _Keys
    slots: npt.NDArray[np.uint32]

    @classmethod
    def empty(cls) -> _Run:
        return cls(np.zeros(0, np.uint32), np.zeros(0, np.uint32))

    @classmethod
    def build(cls, keys: _Keys, slots: npt.NDArray[np.uint32]) -> _Run:
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], slots[order])

    def __len__(self) -> int:
        return len(self.keys)

    def nbytes(self) -> int:
        return self.keys.nbytes + self.slots.nbytes

    def lookup(self, keys: _Keys, max_bucket: int) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
        """The slots of all entries whose key is in ``keys`` (skipping over-full buckets), each with
        the size of the bucket it was found in."""
        nothing = (np.zeros(0, np.uint32), np.zeros(0, np.int64))
        if len(self.keys) == 0 or len(keys) == 0:
            return nothing
        starts = np.searchsorted(self.keys, keys, side="left")
        ends = np.searchsorted(self.keys, keys, side="right")
        sizes = ends - starts
        keep = (sizes > 0) & (sizes <= max_bucket)
        starts, sizes = starts[keep], sizes[keep]
        if len(sizes) == 0:
            return nothing
        # Gather the ranges [start, start + size) without a Python loop.
        offsets = np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))
        return self.slots[offsets], np.repeat(sizes.astype(np.int64), sizes)


class ImageIndex(Generic[RefId]):
    """Reference fingerprints by id; ``query`` returns verified matches, best first."""

    def __init__(self) -> None:
        self._fingerprints: dict[int, ImageFingerprint] = {}
        self._ids: dict[int, RefId] = {}
        self._slots: dict[RefId, int] = {}
        self._next_slot = 0
        self._main = _Run.empty()
        self._delta = _Run.empty()
        self._pending_keys: list[_Keys] = []
        self._pending_slots: list[npt.NDArray[np.uint32]] = []
        self._dead_entries = 0
        self._dead_slots: set[int] = set()

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, ref_id: object) -> bool:
        return ref_id in self._slots

    def __iter__(self) -> Iterator[RefId]:
        return iter(self._slots)

    def add(self, ref_id: RefId, fingerprint: ImageFingerprint) -> None:
        """Index ``fingerprint`` under ``ref_id``, replacing what was there under the same id."""
        if ref_id in self._slots:
            self.remove(ref_id)
        reference = fingerprint.without_mirror()
        slot = self._next_slot
        self._next_slot += 1
        self._fingerprints[slot] = reference
        self._ids[slot] = ref_id
        self._slots[ref_id] = slot
        keys = band_keys(reference.features.descriptors)
        self._pending_keys.append(keys)
        self._pending_slots.append(np.full(len(keys), slot, np.uint32))

    def remove(self, ref_id: RefId) -> bool:
        """Forget ``ref_id``; returns whether it was there."""
        slot = self._slots.pop(ref_id, None)
        if slot is None:
            return False
        fingerprint = self._fingerprints.pop(slot)
        del self._ids[slot]
        self._dead_slots.add(slot)
        self._dead_entries += len(fingerprint.features) * BANDS
        return True

    def fingerprint(self, ref_id: RefId) -> ImageFingerprint | None:
        slot = self._slots.get(ref_id)
        return None if slot is None else self._fingerprints[slot]

    def candidates(self, fingerprint: ImageFingerprint, count: int) -> list[tuple[RefId, float]]:
        """Up to ``count`` references sharing the most (rarity-weighted) band values with the query."""
        self._settle()
        descriptors = [fingerprint.features.descriptors]
        if fingerprint.mirrored is not None:
            descriptors.append(fingerprint.mirrored.descriptors)
        keys = np.unique(np.concatenate([band_keys(d) for d in descriptors]))
        max_bucket = _MAX_BUCKET + int(_MAX_BUCKET_SHARE * len(self._slots))
        main_slots, main_sizes = self._main.lookup(keys, max_bucket)
        delta_slots, delta_sizes = self._delta.lookup(keys, max_bucket)
        found = np.concatenate([main_slots, delta_slots])
        if len(found) == 0:
            return []
        # Generic corners give near-identical descriptors in unrelated images, so common band values
        # carry little evidence: weight each hit by the rarity of its value (inverse bucket size).
        sizes = np.concatenate([main_sizes, delta_sizes]).astype(np.float64)
        weights = np.log1p(max(1, len(self._slots)) / sizes)
        # Votes per slot by counting, not sorting the hits; a removed reference's slot gets none.
        votes = np.bincount(found, weights=weights, minlength=self._next_slot)
        if self._dead_slots:
            votes[np.fromiter(self._dead_slots, np.int64, len(self._dead_slots))] = 0.0
        eligible = np.flatnonzero(votes >= _MIN_VOTES)
        if len(eligible) > count:  # keep the `count` best (and any tied with the last), then order them
            kth = np.partition(votes[eligible], len(eligible) - count)[len(eligible) - count]
            eligible = eligible[votes[eligible] >= kth]
        best = eligible[np.lexsort((eligible, -votes[eligible]))][:count]
        return [(self._ids[int(slot)], round(float(votes[slot]), 2)) for slot in best]

    def query(self, fingerprint: ImageFingerprint, limit: int = 10) -> list[tuple[RefId, ImageMatch]]:
        """Verified matches for ``fingerprint`` (compute it with the mirror to find mirrored copies)."""
        if limit <= 0:
            return []
        count = max(_MIN_CANDIDATES, _CANDIDATES_PER_RESULT * limit)
        matches: list[tuple[RefId, ImageMatch]] = []
        for ref_id, _votes in self.candidates(fingerprint, count):
            match = compare(fingerprint, self._fingerprints[self._slots[ref_id]])
            if match.is_match:
                matches.append((ref_id, match))
        matches.sort(key=lambda item: -item[1].score)
        return matches[:limit]

    def memory_bytes(self) -> int:
        """Bytes held in arrays: lookup tables plus the stored fingerprints (object overhead excluded)."""
        pending = sum(k.nbytes for k in self._pending_keys) + sum(s.nbytes for s in self._pending_slots)
        fingerprints = sum(f.nbytes() for f in self._fingerprints.values())
        return self._main.nbytes() + self._delta.nbytes() + pending + fingerprints

    def _settle(self) -> None:
        """Sort pending additions into the delta run; merge or compact when worthwhile."""
        if self._pending_keys:
            keys = np.concatenate([self._delta.keys, *self._pending_keys])
            slots = np.concatenate([self._delta.slots, *self._pending_slots])
            self._pending_keys.clear()
            self._pending_slots.clear()
            self._delta = _Run.build(keys, slots)
        total = len(self._main) + len(self._delta)
        if len(self._delta) > _DELTA_SHARE * len(self._main) or self._dead_entries > _TOMBSTONE_SHARE * total:
            keys = np.concatenate([self._main.keys, self._delta.keys])
            slots = np.concatenate([self._main.slots, self._delta.slots])
            if self._dead_slots:
                alive = ~np.isin(slots, np.fromiter(self._dead_slots, np.uint32, len(self._dead_slots)))
                keys, slots = keys[alive], slots[alive]
                self._dead_slots.clear()
                self._dead_entries = 0
            self._main = _Run.build(keys, slots)
            self._delta = _Run.empty()
