"""In-memory inverted index of audio fingerprints: hash -> (reference, anchor frame, span) postings.

Postings live in flat numpy arrays sorted by hash, with one entry per distinct hash pointing at its run, so a
lookup is a binary search and a slice: about 9 bytes per posting. Additions and removals are buffered until
the next query; the additions then become a new sorted segment, merged into the one before it only once it
is a quarter of that one's size, so bulk loading costs one sort however many references arrive and a single
registration in a large catalogue sorts its own postings, not the catalogue's. A query reads every segment,
and with a postings budget only its rarest hashes (see AudioIndex.query).

Candidates are the references with most raw hits, narrowed to those with most hits near one offset (a long
reference collects chance hits everywhere; the right one concentrates them). A query votes, per candidate
reference, for a consistent alignment ``t_ref = offset + scale * t_query`` over a
grid of time-scale factors (MIN_SCALE..MAX_SCALE), using only matches whose span ratio agrees with the scale.
The score is the number of matched triplets in the best (offset, scale) cell.

Every aligned candidate is then verified on the spectral peaks themselves, not the hashes: the query's peaks
are mapped through the found alignment (offset, time scale; refined by +-1 frame and a pitch shift of up to
+-1 semitone) and a query peak counts as confirmed when the reference has a peak within a frame and about
half an FFT bin. The same count with the query laid over other places of the same reference gives what
chance confirms for that reference; the evidence is the fraction of the query's peaks confirmed beyond
chance (capped by its significance) times its coverage, the share of the query's one-second windows
whose peaks are confirmed beyond chance (a copy matches throughout; a passage or style two pieces share
matches over part of the query).

Peaks alone do not tell the same recording from different music that shares many of its notes (movements of
one mass on the same instrument confirm half their peaks evenly, as many as a copy keeps under heavy noise).
So a candidate the peaks support is last compared on its whole spectrum: the query's band spectrum, mapped
through the alignment and the pitch shift the peaks found, against the envelope the reference stored (v4),
seen through the query's own noise. The evidence is then the peaks' support (saturating at PEAKS_FULL)
times that correlation to the fourth power, and the confidence a logistic of it, set from
bench/fingerprint_audio.py (docs/fingerprinting.md, "Audio"). Matches are ordered by confidence.

Pure Python (numpy), no Django.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from media.fingerprint.audio import (
    ENVELOPE_PACKED_WIDTH,
    ENVELOPE_RATE_HZ,
    FRAME_S,
    MIN_FREQUENCY_HZ,
    N_FFT,
    PITCH_STEPS_PER_SEMITONE,
    SAMPLE_RATE_HZ,
    AudioFingerprint,
    envelope_log_power,
    envelope_slots,
    log_bands,
    pack_levels,
    pool_power,
    unpack_levels,
)

RefId = Hashable

MIN_SCALE = 0.92
MAX_SCALE = 1.08
# A match's own scale estimate (reference span / query span) may be off by a frame either way.
SPAN_TOLERANCE = 0.12
OFFSET_BIN_FRAMES = 2
# Hashes this common are stop words: they cost time and carry almost no evidence.
MAX_POSTINGS_PER_HASH = 4000
# A query reads at most this many postings per second of query audio, its hashes taken rarest first: the
# rare hashes carry the evidence, and the cost of a query stays bounded however large the catalogue grows
# and however common a query's hashes become in it (0: no budget).
POSTINGS_PER_QUERY_S = 0
# Postings live in sorted segments; a newer segment is merged into the one before it once it holds at least
# 1/SEGMENT_RATIO of that one's postings (see AudioIndex._build).
SEGMENT_RATIO = 4
# Candidates: the PRE_CANDIDATES references with most raw hits, then the CANDIDATES of them with most hits
# near one offset, which are aligned and verified.
PRE_CANDIDATES = 300
CANDIDATES = 20
COARSE_BIN_FRAMES = 16
# Alignment searches every ALIGN_COARSE_STRIDE-th scale first, then the whole grid within this many frames of
# the coarse alignment (the coarse scale step misplaces a 5-s query's end by up to about 3 frames).
ALIGN_COARSE_STRIDE = 4
ALIGN_COARSE_SLACK_FRAMES = 8.0
ALIGN_COARSE_WINDOWS = 6  # a weak true alignment can lose the coarse pass narrowly: refine the best few
MIN_VOTES = 4

# Verification: a query peak is confirmed when the reference has a peak within PEAK_TIME_TOLERANCE frames and
# about half an FFT bin (PEAK_BIN_TOLERANCE, at least PEAK_MIN_SEMITONES) of it under the alignment. The
# alignment is refined over small time and pitch shifts (a pitch change leaves the time scale at 1).
PEAK_TIME_TOLERANCE = 1.0
PEAK_TIME_SHIFTS = (-1.0, 0.0, 1.0)
PEAK_BIN_TOLERANCE = 0.5
PEAK_MIN_SEMITONES = 0.12
PITCH_SHIFTS = np.round(np.arange(-1.0, 1.0001, 0.1), 2)  # semitones; 5 % is 0.85
# Chance is measured on the same reference: the query is laid over CHANCE_TRIALS other places of it.
CHANCE_TRIALS = 16

# Coverage: a copy, even a noisy one, matches throughout the query; a passage or a style two different pieces
# share matches over part of it. The query is cut into windows of about COVERAGE_WINDOW_S and a window is
# covered when at least COVERAGE_MIN_EXCESS of its peaks are confirmed beyond the chance rate; the evidence is
# multiplied by the share of covered windows (windows without peaks are left out).
COVERAGE_WINDOW_S = 1.0
COVERAGE_MIN_EXCESS = 0.3

# Spectrum: an aligned candidate whose peaks give at least SPECTRUM_FROM_EVIDENCE is compared with the
# reference's stored envelope (see _spectrum_correlation); the pitch is refined by SPECTRUM_PITCH_STEPS
# semitones around the peaks' best shift. The query's noise in each band is the NOISE_PERCENTILE of its
# frames; cells are compared where the query stands SPECTRUM_MASK_LN over its band's median, both sides
# floored SPECTRUM_FLOOR_LN under their frame's loudest band.
SPECTRUM_FROM_EVIDENCE = 0.02
SPECTRUM_PITCH_STEPS = (-0.05, 0.0, 0.05)
SPECTRUM_MASK_LN = 1.0
SPECTRUM_FLOOR_LN = 11.25
SPECTRUM_MIN_CELLS = 16
# A query longer than SPECTRUM_WINDOW_S is compared window by window (SPECTRUM_WINDOW_HOP_S apart), the best
# window kept: a remix or a compilation holds the reference in some stretches and other sounds in the rest.
SPECTRUM_WINDOW_S = 5.0
SPECTRUM_WINDOW_HOP_S = 2.5
NOISE_PERCENTILE = 5.0
NOISE_MARGIN_LN = 2.0  # cells this far over the noise set the gain between query and reference
# The evidence of a candidate checked on its spectrum: min(1, peak evidence / PEAKS_FULL) x
# correlation ** SPECTRUM_POWER. The peaks say how much of the query the reference explains (a copy, even
# at 10 dB SNR, a median of 0.7 of its peaks beyond chance; look-alike music 0.1-0.5), the spectrum
# whether it is the same recording.
PEAKS_FULL = 0.3
SPECTRUM_POWER = 4

# Logistic map from votes to confidence, only for references stored without peaks (aud-triplet-ratio-v1),
# set from bench/fingerprint_audio.py: chance collisions in a 10,000-track index stay under 10 votes, true 5-s
# matches have a median of 30-46. Not calibrated: shared passages of related music reached 29 votes.
CONFIDENCE_MIDPOINT_VOTES = 12.0
CONFIDENCE_SLOPE_VOTES = 1.5
# Logistic map from verified evidence (fraction of query peaks confirmed beyond chance) to confidence, set
# from bench/fingerprint_audio.py: true 5-s matches have a median of 0.68-0.90 per transformation (v3 peaks);
# no synthetic reference and no render with another instrument reached 0.5; what does besides true matches
# is closely related music rendered with the same instrument (Palestrina movements, some sharing a passage):
# 108 of 2,080 queries without the coverage factor, 11 with it, which leaves true matches' medians alone.
EVIDENCE_PER_DEVIATION = 0.0375  # 8 standard deviations count as a 0.3 fraction
EVIDENCE_MIDPOINT = 0.33
EVIDENCE_SLOPE = 0.03


@dataclass(frozen=True)
class AudioMatch:
    ref_id: RefId
    score: int  # matched triplets agreeing on one (offset, scale)
    confidence: float  # 0..1
    offset_s: float  # where the query starts in the reference, in reference seconds
    time_scale: float  # reference duration per query duration (1.05: the query is 5 % faster)
    # What the confidence is a function of. From the peaks: the fraction of the query's peaks confirmed by the
    # reference's under the alignment beyond what chance confirms there, times the share of the query's
    # seconds so confirmed (0 when the reference has no peaks). When both sides have a spectrum (references
    # stored by v4), that support saturating at PEAKS_FULL times the spectrum's correlation ** 4.
    evidence: float = 0.0
    # Correlation of the query's spectrum with the reference's envelope under the alignment (None when it was
    # not measured: a reference or query without a spectrum, or peaks too weak to be worth it).
    spectrum: float | None = None


class AudioIndex:
    def __init__(self) -> None:
        self._ref_ids: list[RefId] = []
        self._slots: dict[RefId, int] = {}
        self._alive = np.zeros(0, dtype=bool)
        # Sorted runs of postings, oldest and largest first (see _Segment).
        self._segments: list[_Segment] = []
        self._pending: list[tuple[int, AudioFingerprint]] = []
        self._has_removed = False
        # Per slot: peak frames (sorted) and pitches in 1/PITCH_STEPS_PER_SEMITONE semitone, for verification.
        self._peak_frames: list[NDArray[np.int32]] = []
        self._peak_pitches: list[NDArray[np.uint16]] = []
        # Per slot: the spectral envelope (levels two to a byte, and frame tops), for verification.
        self._envelopes: list[tuple[NDArray[np.uint8], NDArray[np.float16]]] = []

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
        order = np.argsort(fingerprint.peak_frames, kind="stable")
        self._peak_frames.append(fingerprint.peak_frames[order].astype(np.int32))
        self._peak_pitches.append(fingerprint.peak_pitches[order].astype(np.uint16))
        self._envelopes.append((pack_levels(fingerprint.envelope), fingerprint.envelope_tops))

    def remove(self, ref_id: RefId) -> bool:
        slot = self._slots.pop(ref_id, None)
        if slot is None:
            return False
        self._alive[slot] = False
        self._has_removed = True
        self._peak_frames[slot] = np.zeros(0, dtype=np.int32)
        self._peak_pitches[slot] = np.zeros(0, dtype=np.uint16)
        self._envelopes[slot] = (np.zeros((0, ENVELOPE_PACKED_WIDTH), np.uint8), np.zeros(0, np.float16))
        self._pending = [(s, fp) for s, fp in self._pending if s != slot]
        return True

    def memory_bytes(self) -> int:
        self._build()
        arrays = [self._alive] + [a for segment in self._segments for a in segment.arrays()]
        peaks = sum(f.nbytes + p.nbytes for f, p in zip(self._peak_frames, self._peak_pitches, strict=True))
        envelopes = sum(packed.nbytes + tops.nbytes for packed, tops in self._envelopes)
        return int(sum(a.nbytes for a in arrays)) + peaks + envelopes

    def posting_count(self) -> int:
        self._build()
        return sum(segment.size for segment in self._segments)

    def _build(self) -> None:
        """Index what was added since the last query as a new segment, then merge each segment into the one
        before it while it is at least 1/SEGMENT_RATIO of its size; drop the postings of removed references.

        An addition thus costs a sort of its own postings and, over the index's life, each posting is
        merged about log(total / SEGMENT_RATIO) times, not once per addition: registering one track into a
        large catalogue no longer sorts the whole catalogue."""
        if not self._pending and not self._has_removed:
            return
        if self._has_removed:
            self._segments = [segment.kept(self._alive) for segment in self._segments]
        if self._pending:
            self._segments.append(
                _Segment.of(
                    np.concatenate([fp.hashes.astype(np.uint32) for _, fp in self._pending]),
                    np.concatenate([np.full(fp.hashes.size, s, dtype=np.int32) for s, fp in self._pending]),
                    np.concatenate([fp.frames.astype(np.uint32) for _, fp in self._pending]),
                    np.concatenate([fp.spans.astype(np.uint8) for _, fp in self._pending]),
                )
            )
        self._segments = [segment for segment in self._segments if segment.size]
        while len(self._segments) > 1 and self._segments[-1].size * SEGMENT_RATIO >= self._segments[-2].size:
            last = self._segments.pop()
            self._segments[-1] = self._segments[-1].merged(last)
        self._pending = []
        self._has_removed = False

    def _postings(
        self, q_hashes: NDArray[np.uint32], duration_s: float, postings_per_s: float
    ) -> tuple[NDArray[np.intp], NDArray[np.int32], NDArray[np.uint32], NDArray[np.uint8]]:
        """Every posting of the query's hashes (each list whole, the commonest left out): the query hash's
        index, the reference slot, its anchor frame and span."""
        runs = [segment.runs(q_hashes) for segment in self._segments]
        totals = sum((lengths for _, lengths in runs), np.zeros(q_hashes.size, dtype=np.int64))
        read = totals <= MAX_POSTINGS_PER_HASH
        if postings_per_s > 0:
            read &= _within_budget(np.where(read, totals, 0), postings_per_s * max(1.0, duration_s)) > 0
        parts = []
        for segment, (begins, lengths) in zip(self._segments, runs, strict=True):
            lengths = np.where(read, lengths, 0)
            total = int(lengths.sum())
            run_start = np.repeat(np.cumsum(lengths) - lengths, lengths)
            posting = np.repeat(begins, lengths) + (np.arange(total) - run_start)
            parts.append(
                (
                    np.repeat(np.arange(q_hashes.size), lengths),
                    segment.refs[posting],
                    segment.frames[posting],
                    segment.spans[posting],
                )
            )
        query_index, refs, frames, spans = (np.concatenate(column) for column in zip(*parts, strict=True))
        return query_index, refs, frames, spans

    def query(
        self,
        fingerprint: AudioFingerprint,
        limit: int = 5,
        *,
        postings_per_s: float = POSTINGS_PER_QUERY_S,
        exclude: Collection[RefId] = (),
    ) -> list[AudioMatch]:
        """The best-aligned references, best first, with at least MIN_VOTES agreeing triplets.

        With a `postings_per_s` budget, the query's hashes are read rarest first until that many postings per
        second of query audio are read (see _within_budget). References in `exclude` are never candidates
        (the claim check of a registration leaves out the recording itself).
        """
        self._build()
        if fingerprint.hashes.size == 0 or not self._segments:
            return []
        query_index, refs, posted_frames, posted_spans = self._postings(
            fingerprint.hashes.astype(np.uint32), fingerprint.duration_s, postings_per_s
        )
        if refs.size == 0:
            return []
        query_spans: NDArray[np.float32] = fingerprint.spans.astype(np.float32)[query_index]
        reference_spans = posted_spans.astype(np.float32)
        plausible = (reference_spans >= query_spans * np.float32(MIN_SCALE * (1 - SPAN_TOLERANCE))) & (
            reference_spans <= query_spans * np.float32(MAX_SCALE * (1 + SPAN_TOLERANCE))
        )
        per_ref = np.bincount(refs[plausible], minlength=self._alive.size)
        per_ref[~self._alive] = 0
        per_ref[[self._slots[ref] for ref in exclude if ref in self._slots]] = 0
        candidate_count = min(PRE_CANDIDATES, int(np.count_nonzero(per_ref >= MIN_VOTES)))
        if candidate_count == 0:
            return []
        candidates = np.argpartition(-per_ref, candidate_count - 1)[:candidate_count]
        is_candidate = np.zeros(per_ref.size, dtype=bool)
        is_candidate[candidates] = True
        # Only the candidates' plausible matches go further: one pass over all the matches, not one per array.
        chosen = np.flatnonzero(plausible & is_candidate[refs])
        # Times are only needed for the candidates' matches.
        refs, query_index = refs[chosen], query_index[chosen]
        span_ratio = (reference_spans[chosen] / query_spans[chosen]).astype(np.float64)
        ref_frames = posted_frames[chosen].astype(np.float64)
        query_frames = fingerprint.frames[query_index].astype(np.float64)
        if candidate_count > CANDIDATES:
            candidates = _coarse_best(candidates, refs, ref_frames, query_frames, CANDIDATES)
            is_candidate[:] = False
            is_candidate[candidates] = True
        chosen = np.flatnonzero(is_candidate[refs])
        chosen = chosen[np.argsort(refs[chosen], kind="stable")]
        chosen_refs = refs[chosen]
        run_edges = np.flatnonzero(np.diff(chosen_refs)) + 1
        scales = _scale_grid(fingerprint)
        aligned_refs: list[tuple[int, int, float, float]] = []
        for run in np.split(chosen, run_edges):
            slot = int(refs[run[0]])
            aligned = _align(ref_frames[run], query_frames[run], span_ratio[run], scales)
            if aligned is None or aligned[0] < MIN_VOTES:
                continue
            aligned_refs.append((slot, *aligned))
        aligned_refs.sort(key=lambda item: -item[1])
        query_peaks = _QueryPeaks.of(fingerprint)
        matches: list[AudioMatch] = []
        for slot, votes, offset_frames, scale in aligned_refs:
            reference_frames = self._peak_frames[slot]
            evidence = 0.0
            spectrum: float | None = None
            if reference_frames.size == 0 or query_peaks.frames.size == 0:
                # Stored by aud-triplet-ratio-v1 (no peaks): the hash votes are all there is.
                confidence = confidence_from_votes(votes)
            else:
                confirmed, chance, pitch_shift = _verify(
                    query_peaks, reference_frames, self._peak_pitches[slot], offset_frames, scale
                )
                evidence = _evidence(confirmed, chance) * _coverage(confirmed, query_peaks.frames, chance)
                packed, tops = self._envelopes[slot]
                if fingerprint.spectrum is not None and tops.size:
                    # Stored by v4 and queried with a spectrum: the spectrum decides (0 if not measured).
                    if evidence >= SPECTRUM_FROM_EVIDENCE:
                        spectrum = _spectrum_correlation(
                            fingerprint.spectrum, packed, tops, offset_frames, scale, pitch_shift
                        )
                    evidence = _combined(evidence, spectrum)
                confidence = confidence_from_evidence(evidence)
            matches.append(
                AudioMatch(
                    ref_id=self._ref_ids[slot],
                    score=votes,
                    confidence=confidence,
                    offset_s=offset_frames * FRAME_S,
                    time_scale=scale,
                    evidence=evidence,
                    spectrum=spectrum,
                )
            )
        matches.sort(key=lambda m: (-m.confidence, -m.score, m.offset_s))
        return matches[:limit]


@dataclass(frozen=True)
class _Segment:
    """A run of postings sorted by hash, with one entry per distinct hash pointing at its postings: a lookup
    is a binary search and a slice, about 9 bytes a posting."""

    keys: NDArray[np.uint32]  # distinct hashes, ascending
    starts: NDArray[np.int64]  # postings of keys[i]: starts[i]:starts[i + 1]
    refs: NDArray[np.int32]
    frames: NDArray[np.uint32]
    spans: NDArray[np.uint8]

    @classmethod
    def of(
        cls,
        hashes: NDArray[np.uint32],
        refs: NDArray[np.int32],
        frames: NDArray[np.uint32],
        spans: NDArray[np.uint8],
    ) -> _Segment:
        order = np.argsort(hashes, kind="stable")  # a reference's postings keep their order
        hashes = hashes[order]
        boundaries = np.flatnonzero(np.diff(hashes)) + 1 if hashes.size else np.zeros(0, np.int64)
        keys = hashes[np.concatenate(([0], boundaries)).astype(np.int64)] if hashes.size else hashes
        starts = np.concatenate(([0], boundaries, [hashes.size])).astype(np.int64)
        return cls(keys, starts, refs[order], frames[order], spans[order])

    @property
    def size(self) -> int:
        return int(self.refs.size)

    def arrays(self) -> tuple[NDArray[np.generic], ...]:
        return (self.keys, self.starts, self.refs, self.frames, self.spans)

    def hashes(self) -> NDArray[np.uint32]:
        return np.repeat(self.keys, np.diff(self.starts))

    def merged(self, later: _Segment) -> _Segment:
        return _Segment.of(
            np.concatenate([self.hashes(), later.hashes()]),
            np.concatenate([self.refs, later.refs]),
            np.concatenate([self.frames, later.frames]),
            np.concatenate([self.spans, later.spans]),
        )

    def kept(self, alive: NDArray[np.bool_]) -> _Segment:
        keep = alive[self.refs]
        return _Segment.of(self.hashes()[keep], self.refs[keep], self.frames[keep], self.spans[keep])

    def runs(self, q_hashes: NDArray[np.uint32]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Where each query hash's postings begin here and how many there are (0 when absent)."""
        if self.keys.size == 0:
            return np.zeros(q_hashes.size, np.int64), np.zeros(q_hashes.size, np.int64)
        position = np.minimum(np.searchsorted(self.keys, q_hashes), self.keys.size - 1)
        begins = self.starts[position]
        return begins, np.where(self.keys[position] == q_hashes, self.starts[position + 1] - begins, 0)


def _within_budget(lengths: NDArray[np.int64], budget: float) -> NDArray[np.int64]:
    """The posting-list lengths to read: the rarest hashes' whole lists while their sum fits the budget,
    none of the rest (a list is read whole or not at all, so the votes of a hash stay complete)."""
    if int(lengths.sum()) <= budget:
        return lengths
    order = np.argsort(lengths, kind="stable")
    within = np.cumsum(lengths[order]) <= budget
    kept = np.zeros_like(lengths)
    kept[order[within]] = lengths[order[within]]
    return kept


@dataclass(frozen=True)
class _QueryPeaks:
    frames: NDArray[np.float64]
    semitones: NDArray[np.float64]
    tolerance: NDArray[np.float64]  # semitones: about half an FFT bin at the peak's frequency

    @classmethod
    def of(cls, fingerprint: AudioFingerprint) -> _QueryPeaks:
        semitones = fingerprint.peak_semitones
        frequency_hz = MIN_FREQUENCY_HZ * np.exp2(semitones / 12.0)
        half_bin = PEAK_BIN_TOLERANCE * SAMPLE_RATE_HZ / N_FFT
        tolerance = np.maximum(PEAK_MIN_SEMITONES, 12.0 * np.log2(1.0 + half_bin / frequency_hz))
        return cls(fingerprint.peak_frames.astype(np.float64), semitones, tolerance)


def _verify(
    query: _QueryPeaks,
    reference_frames: NDArray[np.int32],
    reference_pitches: NDArray[np.uint16],
    offset_frames: float,
    scale: float,
) -> tuple[NDArray[np.bool_], float, float]:
    """Which query peaks a reference peak confirms under the alignment, how many chance confirms, and the
    pitch shift (semitones, reference minus query) that confirms most.

    Chance is the median count when the same query is laid, with the same search over small time and
    pitch shifts, over CHANCE_TRIALS evenly spread other places of the same reference (wrapping round): it
    follows that reference's peak density and pitch range, and the median ignores a trial that lands on a
    repeat of the matched music.
    """
    length = int(reference_frames[-1]) + 1
    trial_shifts = np.round(np.arange(CHANCE_TRIALS + 1) * (length / (CHANCE_TRIALS + 1)))
    mapped = offset_frames + scale * query.frames
    trial_mapped = mapped[None, :] + trial_shifts[:, None]
    trial_mapped[1:] = np.mod(trial_mapped[1:], length)
    reach = PEAK_TIME_TOLERANCE + max(abs(s) for s in PEAK_TIME_SHIFTS)
    flat = trial_mapped.ravel()
    low = np.searchsorted(reference_frames, flat - reach, side="left")
    high = np.searchsorted(reference_frames, flat + reach, side="right")
    counts = high - low
    total = int(counts.sum())
    if total == 0:
        return np.zeros(query.frames.size, dtype=bool), 0.0, 0.0
    owner = np.repeat(np.arange(flat.size), counts)
    run_start = np.repeat(np.cumsum(counts) - counts, counts)
    reference_index = np.repeat(low, counts) + (np.arange(total) - run_start)
    peak_count = query.frames.size
    query_index = owner % peak_count
    time_error = reference_frames[reference_index] - flat[owner]
    pitch_error = reference_pitches[reference_index] / PITCH_STEPS_PER_SEMITONE - query.semitones[query_index]
    tolerance = query.tolerance[query_index]
    time_ok = np.abs(time_error[None, :] - np.asarray(PEAK_TIME_SHIFTS)[:, None]) <= PEAK_TIME_TOLERANCE
    pitch_ok = np.abs(pitch_error[None, :] - PITCH_SHIFTS[:, None]) <= tolerance[None, :]
    cell_ok = time_ok[:, None, :] & pitch_ok[None, :, :]  # (time shift, pitch shift, pair)
    cells = len(PEAK_TIME_SHIFTS) * PITCH_SHIFTS.size
    cell_index, pair_index = np.nonzero(cell_ok.reshape(cells, total))
    # Count each query peak once per (trial, cell), however many reference peaks confirm it.
    hit = np.zeros((CHANCE_TRIALS + 1) * cells * peak_count, dtype=bool)
    trial = owner[pair_index] // peak_count
    hit[(trial * cells + cell_index) * peak_count + query_index[pair_index]] = True
    per_cell = hit.reshape(CHANCE_TRIALS + 1, cells, peak_count)
    counts = per_cell.sum(axis=2)
    best = counts.max(axis=1)
    best_cell = int(np.argmax(counts[0]))
    pitch_shift = float(PITCH_SHIFTS[best_cell % PITCH_SHIFTS.size])
    return per_cell[0, best_cell], float(np.median(best[1:])), pitch_shift


def _spectrum_correlation(
    power: NDArray[np.float32],
    packed: NDArray[np.uint8],
    tops: NDArray[np.float16],
    offset_frames: float,
    scale: float,
    pitch_shift: float,
) -> float:
    """Correlation of the query's band spectrum with the reference's envelope under the alignment.

    The query's STFT frames are mapped into the reference's time (offset, scale) and pooled into the
    envelope frames they cover whole; its bands are moved by the pitch shift (refined a little either way,
    the best kept). The reference is then seen through the query's noise: raised by the gain between the
    two and added, band by band, to the query's noise floor (its quietest frames), which is what a noisy
    copy of it looks like. Both sides lose anything deeper than SPECTRUM_FLOOR_LN under their frame's top
    (coding holes) and each band's median over the frames (what an equaliser or a microphone add
    everywhere); the correlation is taken over the cells where the query stands SPECTRUM_MASK_LN above its
    band's median: its notes. The same recording, even noisy or re-coded, correlates highly; a different
    piece that shares many of its notes does not share the rest of its spectrum at the same times. Where
    the alignment puts part of the query before the reference's start or after its end, the correlation is
    scaled by the share the reference holds: one chord at the start of a piece is not a copy of it.
    """
    frame_starts_s = (offset_frames + scale * np.arange(power.shape[0])) * FRAME_S
    slots = envelope_slots(frame_starts_s)
    first, stop = int(slots[0]) + 1, int(slots[-1])  # the envelope frames the query covers whole
    inside_first, inside_stop = max(first, 0), min(stop, int(tops.size))  # and the reference holds
    if inside_stop - inside_first < 2:
        return 0.0
    pooled = pool_power(power, slots, inside_first, inside_stop - inside_first)
    stored = envelope_log_power(
        unpack_levels(packed[inside_first:inside_stop]), tops[inside_first:inside_stop]
    )
    windows = _windows(stop - first)
    best = 0.0
    for step in SPECTRUM_PITCH_STEPS:
        query = log_bands(pooled, pitch_shift + step)
        for window in windows:
            # The part of the window the reference holds; what lies beyond its ends counts as unmatched.
            low = max(window.start + first, inside_first) - inside_first
            high = min(window.stop + first, inside_stop) - inside_first
            if high - low >= 2:
                share = (high - low) / (window.stop - window.start)
                best = max(best, share * _window_correlation(query[low:high], stored[low:high]))
    return best


def _windows(frames: int) -> list[slice]:
    """Stretches of SPECTRUM_WINDOW_S envelope frames about SPECTRUM_WINDOW_HOP_S apart, the last one ending
    with the query (a query no longer than one window is one stretch)."""
    length = round(SPECTRUM_WINDOW_S * ENVELOPE_RATE_HZ)
    hop = round(SPECTRUM_WINDOW_HOP_S * ENVELOPE_RATE_HZ)
    if frames <= length:
        return [slice(0, frames)]
    starts = [*range(0, frames - length, hop), frames - length]
    return [slice(start, start + length) for start in starts]


def _window_correlation(query: NDArray[np.float32], stored: NDArray[np.float32]) -> float:
    """Correlation of a stretch of the query's band spectrum with the reference's, seen through the query's
    noise, over the query's notes; 0 when there are too few of them (see _spectrum_correlation)."""
    noise = np.percentile(query, NOISE_PERCENTILE, axis=0, method="lower")
    loud = query > noise[None, :] + NOISE_MARGIN_LN
    if np.count_nonzero(loud) < SPECTRUM_MIN_CELLS:
        return 0.0
    gain = float(np.median(query[loud] - stored[loud]))
    # The reference as it would sound through the query's noise: what a noisy copy should look like.
    reference = _floored(np.logaddexp(stored + np.float32(gain), noise[None, :]))
    reference -= np.median(reference, axis=0, keepdims=True)
    query = _floored(query)
    query -= np.median(query, axis=0, keepdims=True)
    notes = query > SPECTRUM_MASK_LN
    if np.count_nonzero(notes) < SPECTRUM_MIN_CELLS:
        return 0.0
    return _correlation(query[notes], reference[notes])


def _combined(peak_evidence: float, spectrum: float | None) -> float:
    """The evidence of a candidate checked on its spectrum (0 when the spectrum was not measured)."""
    return min(1.0, peak_evidence / PEAKS_FULL) * max(0.0, spectrum or 0.0) ** SPECTRUM_POWER


def _floored(bands: NDArray[np.float32]) -> NDArray[np.float32]:
    return np.maximum(bands, bands.max(axis=1, keepdims=True) - np.float32(SPECTRUM_FLOOR_LN))


def _correlation(a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    a = a - a.mean()
    b = b - b.mean()
    scale = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b)) / scale if scale > 0 else 0.0


def _evidence(confirmed: NDArray[np.bool_], chance: float) -> float:
    """The fraction of the query's peaks confirmed beyond chance, capped by how significant the count is.

    The fraction says how much of the query the reference explains: a passage two related pieces share
    explains part of it, the same recording nearly all of it. The cap (the excess in Poisson standard
    deviations, times EVIDENCE_PER_DEVIATION) keeps a short query's few lucky peaks from counting as much.
    """
    peak_count = max(1, confirmed.size)
    excess = float(confirmed.sum()) - chance
    return min(excess / peak_count, EVIDENCE_PER_DEVIATION * excess / math.sqrt(chance + 1.0))


def _coverage(confirmed: NDArray[np.bool_], query_frames: NDArray[np.float64], chance: float) -> float:
    """The share of the query's windows (about COVERAGE_WINDOW_S each) confirmed beyond chance.

    A window counts when the fraction of its peaks confirmed exceeds the chance rate (chance / peaks) by
    COVERAGE_MIN_EXCESS. The same recording explains every part of an excerpt, noise and coding only thin
    it evenly; two pieces that share a cadence or a texture agree over part of it and not the rest.
    """
    if confirmed.size == 0:
        return 0.0
    length_frames = float(query_frames.max()) + 1.0
    window_count = max(1, round(length_frames * FRAME_S / COVERAGE_WINDOW_S))
    window = np.minimum((query_frames * (window_count / length_frames)).astype(np.int64), window_count - 1)
    peaks = np.bincount(window, minlength=window_count)
    hits = np.bincount(window, weights=confirmed.astype(np.float64), minlength=window_count)
    present = peaks > 0
    excess = hits[present] / peaks[present] - chance / confirmed.size
    return float(np.mean(excess >= COVERAGE_MIN_EXCESS))


def confidence_from_evidence(evidence: float) -> float:
    return 1.0 / (1.0 + math.exp(-(evidence - EVIDENCE_MIDPOINT) / EVIDENCE_SLOPE))


def confidence_from_votes(votes: int) -> float:
    return 1.0 / (1.0 + math.exp(-(votes - CONFIDENCE_MIDPOINT_VOTES) / CONFIDENCE_SLOPE_VOTES))


def _coarse_best(
    candidates: NDArray[np.intp],
    refs: NDArray[np.int32],
    ref_frames: NDArray[np.float64],
    query_frames: NDArray[np.float64],
    count: int,
) -> NDArray[np.intp]:
    """The ``count`` candidates with most matches near one alignment, however long the reference.

    A reference's total hits grow with its length and with how common its hashes are; a true match
    concentrates its hits on one offset. The offset at scale 1 (reference frame - query frame) drifts by
    at most (MAX_SCALE - 1) x the query length over a scaled query, so windows of two coarse bins hold it.
    """
    local = np.full(int(refs.max()) + 1, -1, dtype=np.int64)
    local[candidates] = np.arange(candidates.size)
    owner = local[refs]
    mine = owner >= 0
    owner = owner[mine]
    coarse = np.floor((ref_frames[mine] - query_frames[mine]) / COARSE_BIN_FRAMES).astype(np.int64)
    coarse -= int(coarse.min()) if coarse.size else 0
    width = int(coarse.max()) + 2 if coarse.size else 2
    keys, counts = _distinct(owner * width + coarse)
    # Adjacent coarse bins of the same reference form a window.
    following = np.zeros(counts.size, dtype=np.int64)
    adjacent = np.flatnonzero(np.diff(keys) == 1)
    following[adjacent] = counts[adjacent + 1]
    windows = counts + following
    best = np.zeros(candidates.size, dtype=np.int64)
    np.maximum.at(best, keys // width, windows)
    return candidates[np.argsort(-best, kind="stable")[:count]]


def _distinct(values: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The distinct values, ascending, and how often each occurs (np.unique's answer: a sort is several
    times faster than np.unique on these integer keys)."""
    ordered = np.sort(values)
    if ordered.size == 0:
        return ordered, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    return ordered[starts], np.diff(starts, append=ordered.size)


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
    """Best (votes, offset in frames, scale) for one reference's matches, or None.

    Coarse to fine: every ALIGN_COARSE_STRIDE-th scale first finds where the matches agree (a scale step
    that much coarser misplaces the end of the query by a few frames, still within a window), then the
    whole scale grid counts the votes among the matches near that alignment only. The vote count is the
    same as a search of the whole grid whenever the best cell lies there, at a fraction of the cost.
    """
    coarse = _coarse_alignments(ref_frames, query_frames, span_ratio, scales[::ALIGN_COARSE_STRIDE])
    if not coarse:
        return None
    near = np.zeros(ref_frames.size, dtype=bool)
    for coarse_offset, coarse_scale in coarse:
        residual = np.abs(ref_frames - (coarse_offset + coarse_scale * query_frames))
        near |= residual <= ALIGN_COARSE_SLACK_FRAMES
    fine = _vote(ref_frames[near], query_frames[near], span_ratio[near], scales)
    if fine is None:
        return None
    votes, offset, scale, (inlier_query, inlier_ref) = fine
    if inlier_query.size >= 8 and np.ptp(inlier_query) > 30:
        fitted_scale, fitted_offset = np.polyfit(inlier_query, inlier_ref, 1)
        if MIN_SCALE <= fitted_scale <= MAX_SCALE:
            scale, offset = float(fitted_scale), float(fitted_offset)
    return votes, offset, scale


@dataclass(frozen=True)
class _VoteGrid:
    """Votes per window of two adjacent (scale, offset bin) cells, and the cell of each agreeing match."""

    windowed: NDArray[np.int64]  # (scales, offset bins - 1)
    scale_index: NDArray[np.intp]  # per agreeing (scale, match) pair
    match_index: NDArray[np.intp]
    offset_bin: NDArray[np.int64]  # from 0; bin 0 starts at `low` x OFFSET_BIN_FRAMES
    low: int


def _vote_grid(
    ref_frames: NDArray[np.float64],
    query_frames: NDArray[np.float64],
    span_ratio: NDArray[np.float64],
    scales: NDArray[np.float64],
) -> _VoteGrid | None:
    """Count, for every scale and offset bin, the query anchors whose matches agree with it."""
    # For every scale, the matches whose own span ratio agrees with it, and the offset each implies.
    agree = np.abs(span_ratio[None, :] / scales[:, None] - 1.0) <= SPAN_TOLERANCE
    scale_index, match_index = np.nonzero(agree)
    if scale_index.size == 0:
        return None
    offsets = ref_frames[match_index] - scales[scale_index] * query_frames[match_index]
    offset_bin = np.floor(offsets / OFFSET_BIN_FRAMES).astype(np.int64)
    low = int(offset_bin.min())
    offset_bin -= low
    width = int(offset_bin.max()) + 2
    cell = scale_index.astype(np.int64) * width + offset_bin
    # One vote per query anchor frame per cell: the triplets that share an anchor (and a query hash's
    # expansion variants) are not independent evidence.
    query_slot = query_frames[match_index].astype(np.int64)
    slots = int(query_slot.max()) + 1
    distinct = _distinct(cell * slots + query_slot)[0] // slots
    counts = np.bincount(distinct, minlength=scales.size * width).reshape(scales.size, width)
    # A true alignment can straddle two bins: score windows of two adjacent bins.
    windowed = counts[:, :-1] + counts[:, 1:]
    return _VoteGrid(windowed, scale_index, match_index, offset_bin, low)


def _coarse_alignments(
    ref_frames: NDArray[np.float64],
    query_frames: NDArray[np.float64],
    span_ratio: NDArray[np.float64],
    scales: NDArray[np.float64],
) -> list[tuple[float, float]]:
    """(offset, scale) of the ALIGN_COARSE_WINDOWS windows with most votes on a coarse scale grid."""
    grid = _vote_grid(ref_frames, query_frames, span_ratio, scales)
    if grid is None:
        return []
    windowed = grid.windowed.ravel()
    top = min(ALIGN_COARSE_WINDOWS, windowed.size)
    best = np.argpartition(-windowed, top - 1)[:top]
    result = []
    for window in best[windowed[best] > 0]:
        scale_at, bin_at = divmod(int(window), grid.windowed.shape[1])
        offset = (grid.low + bin_at + 1) * OFFSET_BIN_FRAMES  # the window's centre
        result.append((float(offset), float(scales[scale_at])))
    return result


def _vote(
    ref_frames: NDArray[np.float64],
    query_frames: NDArray[np.float64],
    span_ratio: NDArray[np.float64],
    scales: NDArray[np.float64],
) -> tuple[int, float, float, tuple[NDArray[np.float64], NDArray[np.float64]]] | None:
    """Votes, offset and scale of the best (scale, offset) window, and its inliers (query, reference)."""
    if ref_frames.size == 0:
        return None
    grid = _vote_grid(ref_frames, query_frames, span_ratio, scales)
    if grid is None:
        return None
    best = int(np.argmax(grid.windowed))
    best_scale_index, best_bin = divmod(best, grid.windowed.shape[1])
    votes = int(grid.windowed[best_scale_index, best_bin])
    # Offset by the median over the inliers of the winning window.
    in_cell = (grid.scale_index == best_scale_index) & (
        (grid.offset_bin == best_bin) | (grid.offset_bin == best_bin + 1)
    )
    inlier_ref = ref_frames[grid.match_index[in_cell]]
    inlier_query = query_frames[grid.match_index[in_cell]]
    scale = float(scales[best_scale_index])
    offset = float(np.median(inlier_ref - scale * inlier_query))
    return votes, offset, scale, (inlier_query, inlier_ref)
