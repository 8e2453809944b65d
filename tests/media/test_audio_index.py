"""The inverted index of audio fingerprints, on real rendered music (cached in var/samples)."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from media.fingerprint import audio
from media.fingerprint.audio_index import (
    AudioIndex,
    AudioMatch,
    _coarse_best,
    _combined,
    _coverage,
    _distinct,
    _spectrum_correlation,
    _windows,
    confidence_from_evidence,
    confidence_from_votes,
)
from media.samples.audio import ensure_system_packages, render_corpus
from tests.media.sounds import with_noise

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "var" / "samples" / "audio-tests"
SR = audio.SAMPLE_RATE_HZ


@pytest.fixture(scope="module")
def fingerprints() -> dict[str, tuple[np.ndarray, audio.AudioFingerprint]]:
    ensure_system_packages()
    paths = render_corpus(SAMPLES_DIR, count=3, seed=5)
    decoded = {path.stem: audio.decode(path)[0] for path in paths}
    return {name: (samples, audio.compute(samples, SR)) for name, samples in decoded.items()}


def query_for(samples: np.ndarray, start_s: float) -> audio.AudioFingerprint:
    return audio.compute(samples[int(start_s * SR) : int((start_s + 5) * SR)], SR, query=True)


def test_a_query_finds_the_indexed_reference_with_offset_and_unit_scale(fingerprints):
    index = AudioIndex()
    for name, (_, fingerprint) in fingerprints.items():
        index.add(name, fingerprint)
    name, (samples, _) = sorted(fingerprints.items())[0]

    matches = index.query(query_for(samples, 6.0), limit=5)

    assert isinstance(matches[0], AudioMatch)
    assert matches[0].ref_id == name
    assert matches[0].offset_s == pytest.approx(6.0, abs=0.1)
    assert matches[0].time_scale == pytest.approx(1.0, abs=0.01)
    assert matches[0].confidence > 0.9
    assert [m.confidence for m in matches] == sorted((m.confidence for m in matches), reverse=True)
    assert all(0.0 <= m.confidence <= 1.0 for m in matches)
    assert all(m.confidence < 0.5 for m in matches[1:])


def spectrum_at(
    query: np.ndarray,
    reference: audio.AudioFingerprint,
    offset_s: float,
    *,
    scale: float = 1.0,
    pitch_shift: float = 0.0,
) -> float:
    spectrum = audio.compute(query, SR, query=True).spectrum
    assert spectrum is not None
    return _spectrum_correlation(
        spectrum,
        audio.pack_levels(reference.envelope),
        reference.envelope_tops,
        offset_s / audio.FRAME_S,
        scale,
        pitch_shift,
    )


def test_the_spectrum_of_a_noisy_copy_correlates_with_its_reference_and_other_music_does_not(fingerprints):
    (_, (samples, reference)), (_, (other, _)) = sorted(fingerprints.items())[:2]
    noisy_copy = with_noise(samples[8 * SR : 13 * SR], 10.0, seed=3)

    assert spectrum_at(noisy_copy, reference, 8.0) > 0.75
    # The same piece seven seconds later, and another piece, laid at the same place.
    assert spectrum_at(with_noise(samples[15 * SR : 20 * SR], 10.0, seed=3), reference, 8.0) < 0.5
    assert spectrum_at(with_noise(other[8 * SR : 13 * SR], 10.0, seed=3), reference, 8.0) < 0.5


def test_the_spectrum_of_a_faster_copy_is_compared_through_its_time_scale_and_pitch_shift(fingerprints):
    _, (samples, reference) = sorted(fingerprints.items())[0]
    ratio = Fraction(1.04).limit_denominator(100)  # played 4 % faster: shorter and higher
    faster = signal.resample_poly(samples[8 * SR : 14 * SR], ratio.denominator, ratio.numerator)
    query = faster[: 5 * SR].astype(np.float32)
    semitones = -12 * np.log2(1.04)  # reference minus query

    assert spectrum_at(query, reference, 8.0, scale=1.04, pitch_shift=semitones) > 0.9
    assert spectrum_at(query, reference, 8.0, scale=1.04, pitch_shift=0.0) < 0.6


def test_the_part_of_a_query_laid_before_the_reference_starts_counts_as_unmatched(fingerprints):
    (_, (samples, reference)), (_, (other, _)) = sorted(fingerprints.items())[:2]
    # Two seconds of another piece, then the reference's first three seconds.
    query = np.concatenate([other[10 * SR : 12 * SR], samples[: 3 * SR]])

    whole = spectrum_at(samples[: 5 * SR], reference, 0.0)
    partly = spectrum_at(query, reference, -2.0)

    assert whole > 0.9
    assert 0.4 * whole < partly <= 0.65 * whole


def test_a_match_checked_on_its_spectrum_reports_the_correlation_in_its_evidence(fingerprints):
    index = AudioIndex()
    for name, (_, fingerprint) in fingerprints.items():
        index.add(name, fingerprint)
    name, (samples, _) = sorted(fingerprints.items())[0]

    best = index.query(query_for(samples, 6.0), limit=1)[0]

    assert best.ref_id == name
    assert best.spectrum is not None and best.spectrum > 0.95
    assert best.evidence == pytest.approx(_combined(1.0, best.spectrum))


def test_a_long_query_that_holds_the_reference_only_in_stretches_is_still_found(fingerprints):
    index = AudioIndex()
    for name, (_, fingerprint) in fingerprints.items():
        index.add(name, fingerprint)
    (name, (samples, _)), (_, (other, _)) = sorted(fingerprints.items())[:2]
    # Seventeen seconds of the reference; the middle five drowned by another piece twice as loud.
    query = samples[6 * SR : 23 * SR].copy()
    query[6 * SR : 11 * SR] += 2.0 * other[: 5 * SR]

    best = index.query(audio.compute(query, SR, query=True), limit=1)[0]

    assert best.ref_id == name
    assert best.offset_s == pytest.approx(6.0, abs=0.1)
    assert best.confidence > 0.9


def test_a_query_is_compared_in_whole_windows_the_last_ending_with_it():
    length = round(5.0 * audio.ENVELOPE_RATE_HZ)

    assert _windows(length - 3) == [slice(0, length - 3)]
    assert _windows(length) == [slice(0, length)]
    windows = _windows(100)
    assert [w.stop - w.start for w in windows] == [length] * len(windows)
    assert windows[0].start == 0 and windows[-1].stop == 100
    assert all(b.start - a.start <= length // 2 for a, b in itertools.pairwise(windows))


def test_evidence_checked_on_the_spectrum_needs_both_the_peaks_and_the_spectrum():
    assert _combined(1.0, 0.9) == pytest.approx(0.9**4)
    assert _combined(0.15, 1.0) == pytest.approx(0.5)
    assert _combined(0.8, -0.2) == 0.0
    assert _combined(0.8, None) == 0.0


def test_a_removed_reference_is_no_longer_found(fingerprints):
    index = AudioIndex()
    for name, (_, fingerprint) in fingerprints.items():
        index.add(name, fingerprint)
    name, (samples, _) = sorted(fingerprints.items())[0]
    postings_before = index.posting_count()

    removed = index.remove(name)
    matches = index.query(query_for(samples, 6.0), limit=5)

    assert removed is True
    assert name not in index
    assert len(index) == 2
    assert all(m.ref_id != name for m in matches)
    assert index.posting_count() == postings_before - len(fingerprints[name][1])
    assert index.remove(name) is False


def test_adding_a_reference_again_replaces_its_fingerprint(fingerprints):
    (first, (first_samples, first_fp)), (_, (_, second_fp)) = sorted(fingerprints.items())[:2]
    index = AudioIndex()
    index.add(first, second_fp)

    index.add(first, first_fp)

    assert len(index) == 1
    assert index.posting_count() == len(first_fp)
    assert index.query(query_for(first_samples, 3.0))[0].ref_id == first


def test_references_added_after_a_query_are_found(fingerprints):
    names = sorted(fingerprints)
    index = AudioIndex()
    index.add(names[0], fingerprints[names[0]][1])
    index.query(query_for(fingerprints[names[0]][0], 2.0))

    index.add(names[1], fingerprints[names[1]][1])
    matches = index.query(query_for(fingerprints[names[1]][0], 2.0))

    assert matches[0].ref_id == names[1]


def test_an_empty_index_answers_nothing_and_uses_almost_no_memory(fingerprints):
    index = AudioIndex()
    samples, _ = next(iter(fingerprints.values()))

    assert index.query(query_for(samples, 1.0)) == []
    assert index.memory_bytes() < 1024


def test_memory_is_nine_bytes_a_posting_twelve_a_distinct_hash_six_a_peak_and_the_packed_envelope(
    fingerprints,
):
    index = AudioIndex()
    for name, (_, fingerprint) in fingerprints.items():
        index.add(name, fingerprint)
    peaks = sum(fingerprint.peak_frames.size for _, fingerprint in fingerprints.values())
    envelope_frames = sum(fingerprint.envelope_tops.size for _, fingerprint in fingerprints.values())
    fixed = 6 * peaks + (audio.ENVELOPE_PACKED_WIDTH + 2) * envelope_frames

    memory = index.memory_bytes()

    assert 9 * index.posting_count() + fixed <= memory <= 21 * index.posting_count() + fixed + 4096


def test_a_reference_stored_without_peaks_is_matched_on_its_votes(fingerprints):
    name, (samples, fingerprint) = sorted(fingerprints.items())[0]
    index = AudioIndex()
    index.add(
        name,
        audio.AudioFingerprint(
            hashes=fingerprint.hashes,
            frames=fingerprint.frames,
            spans=fingerprint.spans,
            duration_s=fingerprint.duration_s,
        ),
    )

    matches = index.query(query_for(samples, 6.0))

    assert matches[0].ref_id == name
    assert matches[0].confidence == pytest.approx(confidence_from_votes(matches[0].score))


def test_confidence_is_half_when_a_third_of_the_query_peaks_are_confirmed_beyond_chance():
    assert confidence_from_evidence(0.25) < 0.1
    assert confidence_from_evidence(0.33) == pytest.approx(0.5)
    assert confidence_from_evidence(0.40) > 0.9


def test_coverage_is_the_share_of_query_seconds_confirmed_beyond_chance():
    # Five seconds of query, 14 peaks a second; chance confirms 1 peak in 14.
    frames = np.repeat(np.arange(5) * 62.5, 14) + np.tile(np.arange(14) * 4.0, 5)
    everywhere = np.tile(np.arange(14) < 8, 5)  # 8 of 14 peaks in every second
    first_two_seconds = everywhere & (frames < 2 * 62.5)

    assert _coverage(everywhere, frames, chance=5.0) == 1.0
    assert _coverage(first_two_seconds, frames, chance=5.0) == pytest.approx(0.4)
    assert _coverage(np.zeros(0, dtype=bool), np.zeros(0), chance=0.0) == 0.0


def test_coverage_leaves_out_seconds_without_peaks():
    frames = np.concatenate([np.arange(14) * 4.0, 3 * 62.5 + np.arange(14) * 4.0])  # silence in between
    confirmed = np.ones(frames.size, dtype=bool)

    assert _coverage(confirmed, frames, chance=1.0) == 1.0


def test_confidence_rises_with_votes():
    assert confidence_from_votes(4) < 0.01
    assert confidence_from_votes(12) == pytest.approx(0.5)
    assert confidence_from_votes(25) > 0.99


def test_candidates_are_ranked_by_hits_near_one_offset_not_by_total_hits():
    # Reference 1 has 30 hits spread over its length; reference 2 has 12 hits at one offset.
    rng = np.random.default_rng(7)
    query_frames = np.concatenate([rng.uniform(0, 300, 30), rng.uniform(0, 300, 12)])
    ref_frames = np.concatenate([rng.uniform(0, 20_000, 30), query_frames[30:] + 4_000.0])
    refs = np.array([1] * 30 + [2] * 12, dtype=np.int32)

    best = _coarse_best(np.array([1, 2]), refs, ref_frames, query_frames, 1)

    assert best.tolist() == [2]


def test_distinct_gives_the_sorted_distinct_keys_and_their_counts_as_numpy_unique_does():
    keys = np.random.default_rng(7).integers(0, 50, 2_000).astype(np.int64)
    values, counts = _distinct(keys)
    expected_values, expected_counts = np.unique(keys, return_counts=True)
    assert np.array_equal(values, expected_values)
    assert np.array_equal(counts, expected_counts)
    empty_values, empty_counts = _distinct(np.zeros(0, dtype=np.int64))
    assert empty_values.size == 0 and empty_counts.size == 0


def _answers(index: AudioIndex, query: audio.AudioFingerprint) -> list[tuple[object, int, float]]:
    return [(m.ref_id, m.score, round(m.offset_s, 3)) for m in index.query(query, limit=5)]


def test_an_index_built_one_reference_at_a_time_answers_as_one_built_at_once(fingerprints):
    # Each addition after a query is a segment of its own, merged into the older ones as they grow.
    names = sorted(fingerprints)
    at_once, one_by_one = AudioIndex(), AudioIndex()
    for copy in range(4):
        for name in names:
            at_once.add(f"{name}-{copy}", fingerprints[name][1])
    for copy in range(4):
        for name in names:
            one_by_one.add(f"{name}-{copy}", fingerprints[name][1])
            one_by_one.posting_count()
    one_by_one.remove(f"{names[1]}-2")
    at_once.remove(f"{names[1]}-2")
    samples = fingerprints[names[1]][0]

    assert one_by_one.posting_count() == at_once.posting_count()
    assert _answers(one_by_one, query_for(samples, 4.0)) == _answers(at_once, query_for(samples, 4.0))
    assert f"{names[1]}-2" not in {ref for ref, _, _ in _answers(one_by_one, query_for(samples, 4.0))}


def test_a_postings_budget_reads_the_rarest_hashes_and_still_finds_the_copy(fingerprints):
    index = AudioIndex()
    for name, (_, fingerprint) in fingerprints.items():
        index.add(name, fingerprint)
    name, (samples, _) = sorted(fingerprints.items())[0]
    query = query_for(with_noise(samples, 20.0, seed=4), 6.0)

    unbounded = index.query(query, limit=5)
    bounded = index.query(query, limit=5, postings_per_s=30)

    assert bounded[0].ref_id == unbounded[0].ref_id == name
    assert bounded[0].confidence > 0.9
    assert bounded[0].score < unbounded[0].score  # fewer postings read, fewer votes


def test_a_reference_left_out_of_a_query_is_not_matched(fingerprints):
    index = AudioIndex()
    for name, (_, fingerprint) in fingerprints.items():
        index.add(name, fingerprint)
    name, (samples, _) = sorted(fingerprints.items())[0]

    assert index.query(query_for(samples, 6.0), limit=5)[0].ref_id == name
    assert name not in {m.ref_id for m in index.query(query_for(samples, 6.0), limit=5, exclude=[name])}


def test_a_bounded_check_spreads_its_windows_over_the_whole_recording():
    assert audio.spread_windows(5.0, window_s=8.0, hop_s=15.0, max_windows=12) == [0.0]
    assert audio.spread_windows(38.0, window_s=8.0, hop_s=15.0, max_windows=12) == [0.0, 15.0, 30.0]
    long = audio.spread_windows(600.0, window_s=8.0, hop_s=15.0, max_windows=12)
    assert len(long) == 12 and long[0] == 0.0 and long[-1] == 592.0
