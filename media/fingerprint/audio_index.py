"""In-memory inverted index of audio fingerprints: hash -> (reference, anchor frame, span) postings.

Postings live in flat numpy arrays sorted by hash, with one entry per distinct hash pointing at its run, so a
lookup is a binary search and a slice: about 9 bytes per posting. Additions and removals are buffered and
merged on the next query (one sort); bulk loading therefore costs one sort however many references arrive.

A query votes, per candidate reference, for a consistent alignment ``t_ref = offset + scale * t_query`` over a
grid of time-scale factors (MIN_SCALE..MAX_SCALE), using only matches whose span ratio agrees with the scale.
The score is the number of matched triplets in the best (offset, scale) cell; the confidence maps the score
through a logistic curve set from the benchmark's score distributions (see docs/fingerprinting_audio.md): it
orders and thresholds matches, it is not a calibrated probability.

Pure Python (numpy), no Django.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from media.fingerprint.audio import FRAME_S, AudioFingerprint

RefId = Hashable

MIN_SCALE = 0.92
MAX_SCALE = 1.08
# A match's own scale estimate (reference span / query span) may be off by a frame either way.
SPAN_TOLERANCE = 0.12
OFFSET_BIN_FRAMES = 2
# Hashes this common are stop words: they cost time and carry almost no evidence.
MAX_POSTINGS_PER_HASH = 4000
CANDIDATES = 40
MIN_VOTES = 4

# Logistic map from votes to confidence, set from bench/fingerprint_audio.py: chance collisions in a
# 10,000-track index stay under 10 votes, true 5-s matches have a median of 30-46.
CONFIDENCE_MIDPOINT_VOTES = 12.0
CONFIDENCE_SLOPE_VOTES = 1.5


@dataclass(frozen=True)
class AudioMatch:
    ref_id: RefId
    score: int  # matched triplets agreeing on one (offset, scale)
    confidence: float  # 0..1
    offset_s: float  # where the query starts in the reference, in reference seconds
    time_scale: float  # reference duration per query duration (1.05: the query is 5 % faster)


class AudioIndex:
    def __init__(self) -> None:
        self._ref_ids: list[RefId] = []
        self._slots: dict[RefId, int] = {}
        self._alive = np.zeros(0, dtype=bool)
        self._keys = np.zeros(0, dtype=np.uint32)
        self._starts = np.zeros(1, dtype=np.int64)
        self._refs = np.zeros(0, dtype=np.int32)
        self._frames = np.zeros(0, dtype=np.uint32)
        self._spans = np.zeros(0, dtype=np.uint8)
        self._pending: list[tuple[int, AudioFingerprint]] = []
        self._has_removed = False

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, ref_id: object) -> bool:
        return ref_id in self._slots

    def add(self, ref_id: RefId, fingerprint: AudioFingerprint) -> None:
        """Index a reference; adding an existing ref_id replaces its fingerprint."""
        if ref_id in self._slots:
            self.remove(ref_id)
        slot = len(self._ref_ids)
        self._ref_ids.append(ref_id)
        self._slots[ref_id] = slot
        self._alive = np.append(self._alive, True)
        self._pending.append((slot, fingerprint))

    def remove(self, ref_id: RefId) -> bool:
        slot = self._slots.pop(ref_id, None)
        if slot is None:
            return False
        self._alive[slot] = False
        self._has_removed = True
        self._pending = [(s, fp) for s, fp in self._pending if s != slot]
        return True

    def memory_bytes(self) -> int:
        self._build()
        arrays = (self._keys, self._starts, self._refs, self._frames, self._spans, self._alive)
        return int(sum(a.nbytes for a in arrays))

    def posting_count(self) -> int:
        self._build()
        return int(self._refs.size)

    def _build(self) -> None:
        if not self._pending and not self._has_removed:
            return
        counts = np.diff(self._starts)
        parts_hashes = [np.repeat(self._keys, counts)]
        parts_refs = [self._refs]
        parts_frames = [self._frames]
        parts_spans = [self._spans]
        for slot, fp in self._pending:
            parts_hashes.append(fp.hashes.astype(np.uint32))
            parts_refs.append(np.full(fp.hashes.size, slot, dtype=np.int32))
            parts_frames.append(fp.frames.astype(np.uint32))
            parts_spans.append(fp.spans.astype(np.uint8))
        hashes = np.concatenate(parts_hashes)
        refs = np.concatenate(parts_refs)
        frames = np.concatenate(parts_frames)
        spans = np.concatenate(parts_spans)
        if self._has_removed:
            keep = self._alive[refs]
            hashes, refs, frames, spans = hashes[keep], refs[keep], frames[keep], spans[keep]
        order = np.argsort(hashes, kind="stable")
        hashes = hashes[order]
        self._refs, self._frames, self._spans = refs[order], frames[order], spans[order]
        boundaries = np.flatnonzero(np.diff(hashes)) + 1 if hashes.size else np.zeros(0, np.int64)
        self._keys = hashes[np.concatenate(([0], boundaries))] if hashes.size else hashes
        self._starts = np.concatenate(([0], boundaries, [hashes.size])).astype(np.int64)
        self._pending = []
        self._has_removed = False

    def query(self, fingerprint: AudioFingerprint, limit: int = 5) -> list[AudioMatch]:
        """The best-aligned references, best first, with at least MIN_VOTES agreeing triplets."""
        self._build()
        if fingerprint.hashes.size == 0 or self._keys.size == 0:
            return []
        q_hashes = fingerprint.hashes.astype(np.uint32)
        position = np.searchsorted(self._keys, q_hashes)
        position = np.minimum(position, self._keys.size - 1)
        found = self._keys[position] == q_hashes
        begins = self._starts[position]
        lengths = np.where(found, self._starts[position + 1] - begins, 0)
        lengths[lengths > MAX_POSTINGS_PER_HASH] = 0
        total = int(lengths.sum())
        if total == 0:
            return []
        query_index = np.repeat(np.arange(q_hashes.size), lengths)
        run_start = np.repeat(np.cumsum(lengths) - lengths, lengths)
        posting = np.repeat(begins, lengths) + (np.arange(total) - run_start)

        refs = self._refs[posting]
        ref_frames = self._frames[posting].astype(np.float64)
        query_frames = fingerprint.frames[query_index].astype(np.float64)
        span_ratio = self._spans[posting].astype(np.float64) / fingerprint.spans[query_index].astype(
            np.float64
        )
        plausible = (span_ratio >= MIN_SCALE * (1 - SPAN_TOLERANCE)) & (
            span_ratio <= MAX_SCALE * (1 + SPAN_TOLERANCE)
        )
        refs, ref_frames, query_frames, span_ratio = (
            refs[plausible],
            ref_frames[plausible],
            query_frames[plausible],
            span_ratio[plausible],
        )
        if refs.size == 0:
            return []

        per_ref = np.bincount(refs, minlength=self._alive.size)
        per_ref[~self._alive] = 0
        candidate_count = min(CANDIDATES, int(np.count_nonzero(per_ref >= MIN_VOTES)))
        if candidate_count == 0:
            return []
        candidates = np.argpartition(-per_ref, candidate_count - 1)[:candidate_count]
        is_candidate = np.zeros(per_ref.size, dtype=bool)
        is_candidate[candidates] = True
        chosen = np.flatnonzero(is_candidate[refs])
        chosen = chosen[np.argsort(refs[chosen], kind="stable")]
        chosen_refs = refs[chosen]
        run_edges = np.flatnonzero(np.diff(chosen_refs)) + 1
        scales = _scale_grid(fingerprint)
        matches: list[AudioMatch] = []
        for run in np.split(chosen, run_edges):
            slot = int(refs[run[0]])
            aligned = _align(ref_frames[run], query_frames[run], span_ratio[run], scales)
            if aligned is None or aligned[0] < MIN_VOTES:
                continue
            votes, offset_frames, scale = aligned
            matches.append(
                AudioMatch(
                    ref_id=self._ref_ids[slot],
                    score=votes,
                    confidence=confidence_from_votes(votes),
                    offset_s=offset_frames * FRAME_S,
                    time_scale=scale,
                )
            )
        matches.sort(key=lambda m: (-m.score, m.offset_s))
        return matches[:limit]


def confidence_from_votes(votes: int) -> float:
    return 1.0 / (1.0 + math.exp(-(votes - CONFIDENCE_MIDPOINT_VOTES) / CONFIDENCE_SLOPE_VOTES))


def _scale_grid(fingerprint: AudioFingerprint) -> NDArray[np.float64]:
    """Scales spaced so that the alignment error at the end of the query stays under one frame."""
    query_frames = max(1.0, float(fingerprint.frames.max()) if fingerprint.frames.size else 1.0)
    step = min(0.01, 1.0 / query_frames)
    count = math.ceil((math.log(MAX_SCALE) - math.log(MIN_SCALE)) / step) + 1
    count = min(count, 400)
    return np.exp(np.linspace(math.log(MIN_SCALE), math.log(MAX_SCALE), count))


def _align(
    ref_frames: NDArray[np.float64],
    query_frames: NDArray[np.float64],
    span_ratio: NDArray[np.float64],
    scales: NDArray[np.float64],
) -> tuple[int, float, float] | None:
    """Best (votes, offset in frames, scale) for one reference's matches, or None."""
    # For every scale, the matches whose own span ratio agrees with it, and the offset each implies.
    agree = np.abs(span_ratio[None, :] / scales[:, None] - 1.0) <= SPAN_TOLERANCE
    scale_index, match_index = np.nonzero(agree)
    if scale_index.size == 0:
        return None
    offsets = ref_frames[match_index] - scales[scale_index] * query_frames[match_index]
    offset_bin = np.floor(offsets / OFFSET_BIN_FRAMES).astype(np.int64)
    low = int(offset_bin.min())
    width = int(offset_bin.max()) - low + 2
    cell = scale_index.astype(np.int64) * width + (offset_bin - low)
    # One vote per query anchor frame per cell: the triplets that share an anchor (and a query hash's
    # expansion variants) are not independent evidence.
    query_slot = query_frames[match_index].astype(np.int64)
    distinct = np.unique(cell * (int(query_slot.max()) + 1) + query_slot) // (int(query_slot.max()) + 1)
    counts = np.bincount(distinct, minlength=scales.size * width).reshape(scales.size, width)
    # A true alignment can straddle two bins: score windows of two adjacent bins.
    windowed = counts[:, :-1] + counts[:, 1:]
    best = int(np.argmax(windowed))
    best_scale_index, best_bin = divmod(best, windowed.shape[1])
    votes = int(windowed[best_scale_index, best_bin])
    # Refine offset and scale by least squares on the inliers of the winning cell.
    in_cell = (scale_index == best_scale_index) & (
        (offset_bin - low == best_bin) | (offset_bin - low == best_bin + 1)
    )
    inlier_ref = ref_frames[match_index[in_cell]]
    inlier_query = query_frames[match_index[in_cell]]
    scale = float(scales[best_scale_index])
    offset = float(np.median(inlier_ref - scale * inlier_query))
    if inlier_query.size >= 8 and np.ptp(inlier_query) > 30:
        fitted_scale, fitted_offset = np.polyfit(inlier_query, inlier_ref, 1)
        if MIN_SCALE <= fitted_scale <= MAX_SCALE:
            scale, offset = float(fitted_scale), float(fitted_offset)
    return votes, offset, scale
