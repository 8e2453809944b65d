"""Audio fingerprints on real music: three corpus pieces rendered with fluidsynth (cached in var/samples)."""

from __future__ import annotations

import io
import zipfile
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile
from scipy import signal

from media.errors import CorruptMedia, MediaError, MediaTooLarge, UnsupportedMedia
from media.fingerprint import audio
from media.fingerprint.audio_index import AudioIndex
from media.samples.audio import ensure_system_packages, render_corpus
from tests.media.sounds import with_noise

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "var" / "samples" / "audio-tests"
SR = audio.SAMPLE_RATE_HZ


@pytest.fixture(scope="module")
def pieces() -> dict[str, np.ndarray]:
    """Two chorales by Bach and a Palestrina Gloria, each decoded at the fingerprint rate."""
    ensure_system_packages()
    paths = render_corpus(SAMPLES_DIR, count=3, seed=5)
    return {path.stem: audio.decode(path)[0] for path in paths}


@pytest.fixture(scope="module")
def index_of_two(pieces: dict[str, np.ndarray]) -> tuple[AudioIndex, list[str], str]:
    names = sorted(pieces)
    unrelated = next(name for name in names if name.startswith("bach-bwv69"))
    indexed = [name for name in names if name != unrelated]
    index = AudioIndex()
    for name in indexed:
        index.add(name, audio.compute(pieces[name], SR))
    return index, indexed, unrelated


def peaks_of(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return audio._peaks(audio._spectrogram(audio._power(samples)), audio.PEAKS_PER_S)


def excerpt(samples: np.ndarray, start_s: float, length_s: float) -> np.ndarray:
    return samples[int(start_s * SR) : int((start_s + length_s) * SR)]


def as_mp3(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, SR, format="MP3", bitrate_mode="CONSTANT", compression_level=0.75)
    return buffer.getvalue()


def test_a_noisy_mp3_excerpt_matches_its_original_at_the_right_offset(pieces, index_of_two):
    index, indexed, _ = index_of_two
    original = indexed[0]
    query_bytes = as_mp3(with_noise(excerpt(pieces[original], 9.0, 5.0), snr_db=10, seed=1))

    samples, rate = audio.decode(query_bytes)
    matches = index.query(audio.compute(samples, rate, query=True), limit=3)

    assert rate == SR
    assert matches[0].ref_id == original
    assert matches[0].offset_s == pytest.approx(9.0, abs=0.25)
    assert matches[0].confidence > 0.9


def test_an_excerpt_played_four_percent_faster_matches_with_its_offset_and_time_scale(pieces, index_of_two):
    index, indexed, _ = index_of_two
    original = indexed[1]
    ratio = Fraction(1 / 1.04).limit_denominator(200)
    faster = signal.resample_poly(excerpt(pieces[original], 12.0, 6.0), ratio.numerator, ratio.denominator)

    matches = index.query(audio.compute(faster[: 5 * SR].astype(np.float32), SR, query=True), limit=3)

    assert matches[0].ref_id == original
    assert matches[0].offset_s == pytest.approx(12.0, abs=0.25)
    assert matches[0].time_scale == pytest.approx(1.04, abs=0.01)
    assert matches[0].confidence > 0.9


def test_an_unrelated_piece_does_not_match(pieces, index_of_two):
    index, _, unrelated = index_of_two

    matches = index.query(audio.compute(excerpt(pieces[unrelated], 4.0, 5.0), SR, query=True), limit=3)

    assert all(match.confidence < 0.5 for match in matches)


def test_fingerprints_round_trip_through_their_compact_bytes(pieces):
    fingerprint = audio.compute(next(iter(pieces.values())), SR)

    data = fingerprint.to_bytes()
    restored = audio.AudioFingerprint.from_bytes(data)

    order = np.argsort(fingerprint.frames, kind="stable")
    assert np.array_equal(restored.hashes, fingerprint.hashes[order])
    assert np.array_equal(restored.frames, fingerprint.frames[order])
    assert np.array_equal(restored.spans, fingerprint.spans[order])
    assert np.array_equal(restored.peak_frames, fingerprint.peak_frames)
    assert np.array_equal(restored.peak_pitches, fingerprint.peak_pitches)
    assert fingerprint.peak_frames.size > 0
    assert np.array_equal(restored.envelope, fingerprint.envelope)
    assert np.array_equal(restored.envelope_tops, fingerprint.envelope_tops)
    assert fingerprint.envelope.shape[1] == audio.ENVELOPE_BANDS
    # One frame per 1/ENVELOPE_RATE_HZ s, up to the start of the last STFT frame.
    assert abs(fingerprint.envelope.shape[0] - fingerprint.duration_s * audio.ENVELOPE_RATE_HZ) <= 2
    assert restored.duration_s == pytest.approx(fingerprint.duration_s)
    # Hashes and peaks take under 6 bytes a hash; the envelope at most half a byte a level plus 2 a frame.
    envelope_bytes = fingerprint.envelope_tops.size * (audio.ENVELOPE_PACKED_WIDTH + 2)
    assert len(data) < 6 * len(fingerprint) + envelope_bytes


def test_a_query_keeps_its_spectrum_in_memory_and_stores_no_envelope(pieces):
    samples = next(iter(pieces.values()))[: 5 * SR]

    query = audio.compute(samples, SR, query=True)
    restored = audio.AudioFingerprint.from_bytes(query.to_bytes())

    assert query.spectrum is not None
    assert query.spectrum.shape[1] == audio.N_FFT // 2 + 1
    assert query.envelope.shape == (0, audio.ENVELOPE_BANDS)
    assert restored.spectrum is None


def test_fingerprints_stored_by_v3_still_load_without_their_envelope(pieces):
    fingerprint = audio.compute(next(iter(pieces.values())), SR)
    data = fingerprint.to_bytes()
    count, duration, peak_count = len(fingerprint), data[8:12], fingerprint.peak_frames.size
    body = zlib.decompress(data[20:])[: 9 * count + 6 * peak_count]
    header = b"AFP2" + count.to_bytes(4, "little") + duration + peak_count.to_bytes(4, "little")

    restored = audio.AudioFingerprint.from_bytes(header + zlib.compress(body))

    assert np.array_equal(restored.peak_pitches, fingerprint.peak_pitches)
    assert restored.envelope.shape == (0, audio.ENVELOPE_BANDS)
    assert restored.envelope_tops.size == 0


def test_fingerprints_stored_by_v1_still_load_without_their_peaks(pieces):
    fingerprint = audio.compute(next(iter(pieces.values())), SR)
    order = np.argsort(fingerprint.frames, kind="stable")
    deltas = np.diff(fingerprint.frames[order].astype(np.int64), prepend=0).astype("<u4")
    body = (
        fingerprint.hashes[order].astype("<u4").tobytes()
        + deltas.tobytes()
        + fingerprint.spans[order].tobytes()
    )
    header = b"AFP1" + len(fingerprint).to_bytes(4, "little") + np.float32(fingerprint.duration_s).tobytes()

    restored = audio.AudioFingerprint.from_bytes(header + zlib.compress(body))

    assert np.array_equal(restored.hashes, fingerprint.hashes[order])
    assert np.array_equal(restored.frames, fingerprint.frames[order])
    assert restored.peak_frames.size == 0
    assert restored.peak_pitches.size == 0


def test_fingerprinting_is_deterministic(pieces):
    samples = next(iter(pieces.values()))

    first, second = audio.compute(samples, SR), audio.compute(samples.copy(), SR)

    assert first.to_bytes() == second.to_bytes()
    assert len(first) > 0


@pytest.mark.parametrize(
    "data",
    [
        b"AFP1",  # truncated header
        b"XXXX" + bytes(8),  # not a fingerprint
        b"AFP1" + (10).to_bytes(4, "little") + bytes(4) + b"not zlib at all",
        b"AFP2" + bytes(8),  # truncated v2 header
        b"AFP3" + bytes(12),  # truncated v4 header
    ],
)
def test_damaged_fingerprint_bytes_are_refused(data):
    with pytest.raises(CorruptMedia):
        audio.AudioFingerprint.from_bytes(data)


@pytest.mark.parametrize("count_at", [4, 12, 16], ids=["hash count", "peak count", "envelope frames"])
def test_a_fingerprint_with_a_forged_count_is_refused(pieces, count_at):
    data = bytearray(audio.compute(next(iter(pieces.values())), SR).to_bytes())
    data[count_at : count_at + 4] = (10**8).to_bytes(4, "little")

    with pytest.raises(CorruptMedia):
        audio.AudioFingerprint.from_bytes(bytes(data))


def test_an_empty_file_is_corrupt_media(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")

    with pytest.raises(CorruptMedia) as raised:
        audio.decode(path)
    assert raised.value.code == "corrupt_media"


def test_a_zip_archive_named_mp3_is_unsupported(tmp_path):
    path = tmp_path / "song.mp3"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("song.mp3", b"\xff\xfb" + bytes(4000))

    with pytest.raises(UnsupportedMedia) as raised:
        audio.decode(path)
    assert raised.value.code == "unsupported_media"


@pytest.mark.parametrize(
    "data",
    [
        b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40),  # a WAV header with nonsense inside
        b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(2000),  # an ID3 tag and no audio frames
        b"fLaC" + bytes(100),
    ],
)
def test_damaged_audio_is_corrupt_media(data):
    with pytest.raises(CorruptMedia):
        audio.decode(data)


def test_a_truncated_mp3_decodes_what_is_there_or_is_refused(pieces):
    data = as_mp3(excerpt(next(iter(pieces.values())), 0.0, 3.0))

    try:
        samples, _ = audio.decode(data[: len(data) // 2])
    except MediaError:
        return
    assert 0 < samples.size < 3 * SR


def test_audio_longer_than_the_limit_is_too_large():
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(3 * SR, dtype=np.float32), SR, format="WAV")

    with pytest.raises(MediaTooLarge):
        audio.decode(buffer.getvalue(), max_duration_s=2.0)


def test_silence_has_no_fingerprint():
    fingerprint = audio.compute(np.zeros(5 * SR, dtype=np.float32), SR)

    assert len(fingerprint) == 0
    assert AudioIndex().query(fingerprint) == []


def test_any_input_rate_is_resampled_to_the_fingerprint_rate():
    buffer = io.BytesIO()
    tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32)
    soundfile.write(buffer, np.stack([tone, tone], axis=1), 44100, format="FLAC")

    samples, rate = audio.decode(buffer.getvalue())

    assert rate == SR
    assert samples.dtype == np.float32
    assert samples.size == SR


def test_a_query_forms_every_triplet_its_reference_forms_from_the_same_peaks(pieces):
    samples = next(iter(pieces.values()))[: 20 * SR]
    times, semitones = peaks_of(samples)

    reference = audio._triplet_hashes(times, semitones, expand=False, fan_out=audio.FAN_OUT)
    query = audio._triplet_hashes(times, semitones, expand=False, fan_out=audio.QUERY_FAN_OUT)

    reference_triplets = set(
        zip(reference[0].tolist(), reference[1].tolist(), reference[2].tolist(), strict=True)
    )
    query_triplets = set(zip(query[0].tolist(), query[1].tolist(), query[2].tolist(), strict=True))
    assert audio.QUERY_FAN_OUT > audio.FAN_OUT
    assert reference_triplets < query_triplets


def test_a_query_keeps_its_peaks_at_the_reference_density_for_verification(pieces):
    samples = next(iter(pieces.values()))[: 10 * SR]

    reference = audio.compute(samples, SR)
    query = audio.compute(samples, SR, query=True)

    assert np.array_equal(query.peak_frames, reference.peak_frames)
    assert np.array_equal(query.peak_pitches, reference.peak_pitches)
    assert len(query) > len(reference)


def test_an_excerpt_keeps_the_peaks_of_its_source_wherever_it_starts(pieces):
    samples = next(iter(pieces.values()))[: 30 * SR]
    start_frame = 211  # not a whole number of seconds: a block-based choice would differ here
    excerpt_samples = samples[start_frame * audio.HOP : (start_frame + 500) * audio.HOP]

    source_frames, source_semitones = peaks_of(samples)
    frames, semitones = peaks_of(excerpt_samples)

    margin = round(0.5 / audio.FRAME_S)  # the excerpt's edges see only part of the ranking window
    inside = (source_frames >= start_frame + margin) & (source_frames < start_frame + 500 - margin)
    source = set(
        zip(
            (source_frames[inside] - start_frame).tolist(),
            source_semitones[inside].round(3).tolist(),
            strict=True,
        )
    )
    kept = set(zip(frames.tolist(), semitones.round(3).tolist(), strict=True))
    assert len(source) > 80
    assert len(source & kept) >= 0.97 * len(source)
