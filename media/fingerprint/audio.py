"""Landmark audio fingerprints that survive excerpts, noise, lossy coding and speed, tempo or pitch changes.

Method (after Wang's landmark hashing and Six & Leman's Panako, written from scratch here):

1. Decode to mono at SAMPLE_RATE_HZ and take a magnitude STFT (FRAME_S per frame).
2. Pick spectral peaks: local maxima of the log spectrogram within a time-frequency neighbourhood, the
   strongest few per second, each with a sub-bin (parabolic) frequency.
3. Join each anchor peak with pairs of the next few peaks (more of them for a query) into triplets
   (t1, f1), (t2, f2), (t3, f3) and hash what a change of speed, tempo or pitch leaves unchanged: the
   frequency *ratios* f2/f1 and f3/f1 in semitones (invariant to any pitch scale), the time *ratio*
   (t2 - t1) / (t3 - t1) (invariant to any time scale), plus the coarse octave band of f1. Plain peak
   pairs hash absolute time and frequency differences, which is why they break on a 3 % speed change.
4. Each hash keeps its anchor frame and the triplet's span t3 - t1; the span ratio between a query and a
   reference estimates the time-scale factor, and matching votes for a consistent (offset, scale) pair: see
   ``media.fingerprint.audio_index``.
5. The fingerprint also keeps the spectral peaks themselves (frame and pitch, about 3 bytes a peak), so a
   candidate found by the hashes can be verified peak by peak under its alignment.
6. And a coarse spectral envelope (quarter-semitone bands, ENVELOPE_RATE_HZ frames a second, 4 bits a
   band), so that a verified candidate can be compared on its whole spectrum: what tells a copy from
   different music sharing many of its notes. A query keeps its power spectrogram in memory instead.

Pure Python (numpy + scipy + soundfile), no Django.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import fft as scipy_fft
from scipy import signal, sparse

from media.errors import CorruptMedia, MediaError, MediaTooLarge, UnsupportedMedia
from media.validation import AUDIO_FORMATS, CONTAINER_FORMATS, sniff

# v2: the peaks are stored for verification; v3: peaks ranked in a window centred on each (v2 used fixed
# one-second blocks), so the stored hashes and peaks differ from v2's for the same audio; v4: the spectral
# envelope is stored too (hashes and peaks as in v3).
ALGORITHM = "aud-triplet-ratio-v4"

SAMPLE_RATE_HZ = 8000
N_FFT = 1024
HOP = 128
FRAME_S = HOP / SAMPLE_RATE_HZ  # 16 ms
MIN_FREQUENCY_HZ = 120.0
MAX_FREQUENCY_HZ = 3600.0

# Peak picking: a peak is the maximum of its neighbourhood (+-PEAK_BINS bins, +-PEAK_FRAMES frames) and among
# the PEAKS_PER_S strongest of the RANK_WINDOW_S centred on it.
PEAK_BINS = 9
PEAK_FRAMES = 7
RANK_WINDOW_S = 1.0
# Queries use the same density as references (measured: 20 or 24 a second ranked the right reference lower,
# because the extra peaks add chance hits everywhere).
PEAKS_PER_S = 14
# Triplets: p2 and p3 come from the FAN_OUT peaks that follow the anchor within the target zone. A query
# pairs each anchor with more of the peaks that follow: noise and lossy coding remove some of a reference's
# weaker peaks and put others in their place, which moves a surviving partner a place or two down the list,
# so a query that looks QUERY_FAN_OUT peaks ahead still forms the triplets the reference formed (a superset
# of them on the same peaks). It costs query hashes (about 2.6x), not index size, and stores nothing new.
FAN_OUT = 4
QUERY_FAN_OUT = 6
MIN_SPAN_FRAMES = 6  # t3 - t1; shorter spans give a noisy time ratio
MAX_SPAN_FRAMES = 60  # about 1 s
MAX_INTERVAL_SEMITONES = 24
TIME_RATIO_STEPS = 12  # multiples of 1/12 keep 1/2, 1/3, 1/4, 2/3, 3/4 (beat fractions) at bin centres
OCTAVE_BAND_STEP = 0.5  # octaves per band for f1
SPAN_STEP = 1.25  # spans t3 - t1 are hashed in geometric bands of this ratio, from MIN_SPAN_FRAMES

# Spectral envelope (v4): log power in quarter-semitone bands, ENVELOPE_RATE_HZ frames a second, each frame
# stored as its top level plus every band's distance below it in ENVELOPE_LEVELS steps of ENVELOPE_STEP (ln
# power); what lies deeper sits on the floor. Verification compares it with the query's spectrum under the
# found alignment: peaks tell a copy from unrelated music, the whole spectrum also tells it from look-alike
# music that shares many of its notes (see media.fingerprint.audio_index).
ENVELOPE_MIN_HZ = 110.0
ENVELOPE_MAX_HZ = 3600.0
ENVELOPE_BANDS_PER_SEMITONE = 4
ENVELOPE_BANDS = int(12 * ENVELOPE_BANDS_PER_SEMITONE * np.log2(ENVELOPE_MAX_HZ / ENVELOPE_MIN_HZ)) + 1
ENVELOPE_RATE_HZ = 8
ENVELOPE_STEP = 0.75
ENVELOPE_LEVELS = 16  # 4 bits a band
ENVELOPE_PACKED_WIDTH = (ENVELOPE_BANDS + 1) // 2  # bytes a frame

MAX_INPUT_BYTES = 200 * 1024 * 1024
MAX_DURATION_S = 30 * 60.0

# Peak pitches are stored in 1/PITCH_STEPS_PER_SEMITONE semitone above MIN_FREQUENCY_HZ (uint16).
PITCH_STEPS_PER_SEMITONE = 64

_MAGIC_V1 = b"AFP1"  # hashes only (aud-triplet-ratio-v1)
_MAGIC_V2 = b"AFP2"  # hashes and peaks (v2, v3)
_MAGIC = b"AFP3"  # hashes, peaks and envelope (v4)
_HEADER_V1 = struct.Struct("<4sIf")  # magic, count, duration_s
_HEADER_V2 = struct.Struct("<4sIfI")  # magic, count, duration_s, peak count
_HEADER = struct.Struct("<4sIfII")  # magic, count, duration_s, peak count, envelope frames


def _no_frames() -> NDArray[np.uint32]:
    return np.zeros(0, dtype=np.uint32)


def _no_pitches() -> NDArray[np.uint16]:
    return np.zeros(0, dtype=np.uint16)


def _no_envelope() -> NDArray[np.uint8]:
    return np.zeros((0, ENVELOPE_BANDS), dtype=np.uint8)


def _no_tops() -> NDArray[np.float16]:
    return np.zeros(0, dtype=np.float16)


@dataclass(frozen=True)
class AudioFingerprint:
    """Hashes of peak triplets with their anchor frame and span, in frame units of FRAME_S seconds."""

    hashes: NDArray[np.uint32]
    frames: NDArray[np.uint32]  # anchor time t1, in frames
    spans: NDArray[np.uint8]  # t3 - t1, in frames: the time-scale estimate
    duration_s: float
    # The spectral peaks the triplets were built from, sorted by frame: what verification compares. Empty for
    # fingerprints stored by aud-triplet-ratio-v1, which can then only be matched on their hashes.
    peak_frames: NDArray[np.uint32] = field(default_factory=_no_frames)
    peak_pitches: NDArray[np.uint16] = field(default_factory=_no_pitches)  # 1/64 semitone above 120 Hz
    # The spectral envelope, (frames, ENVELOPE_BANDS) levels below each frame's top (0: ENVELOPE_LEVELS - 1
    # steps or more below it), and the tops in ln power. Empty before v4.
    envelope: NDArray[np.uint8] = field(default_factory=_no_envelope)
    envelope_tops: NDArray[np.float16] = field(default_factory=_no_tops)
    # A query's power spectrogram (frames, N_FFT // 2 + 1), kept in memory for verification, never stored.
    spectrum: NDArray[np.float32] | None = field(default=None, repr=False, compare=False)

    @property
    def peak_semitones(self) -> NDArray[np.float64]:
        return self.peak_pitches.astype(np.float64) / PITCH_STEPS_PER_SEMITONE

    @property
    def times_s(self) -> NDArray[np.float64]:
        return self.frames.astype(np.float64) * FRAME_S

    def __len__(self) -> int:
        return int(self.hashes.size)

    def to_bytes(self) -> bytes:
        """Compact storage form: sorted by time, frames delta-coded, the whole zlib-compressed."""
        order = np.argsort(self.frames, kind="stable")
        frames = self.frames[order].astype(np.int64)
        deltas = np.diff(frames, prepend=0).astype(np.uint32)
        peak_order = np.argsort(self.peak_frames, kind="stable")
        peak_deltas = np.diff(self.peak_frames[peak_order].astype(np.int64), prepend=0).astype(np.uint32)
        body = (
            self.hashes[order].astype("<u4").tobytes()
            + deltas.astype("<u4").tobytes()
            + self.spans[order].astype(np.uint8).tobytes()
            + peak_deltas.astype("<u4").tobytes()
            + self.peak_pitches[peak_order].astype("<u2").tobytes()
            + self.envelope_tops.astype("<f2").tobytes()
            + pack_levels(self.envelope).tobytes()
        )
        header = _HEADER.pack(
            _MAGIC,
            int(self.hashes.size),
            float(self.duration_s),
            int(self.peak_frames.size),
            int(self.envelope_tops.size),
        )
        return header + zlib.compress(body, 6)

    @classmethod
    def from_bytes(cls, data: bytes) -> AudioFingerprint:
        """Read any storage form: AFP3 (v4), AFP2 (hashes and peaks) or AFP1 (hashes only)."""
        if len(data) < _HEADER_V1.size:
            raise CorruptMedia("The audio fingerprint is truncated.")
        magic = data[:4]
        header = {_MAGIC_V1: _HEADER_V1, _MAGIC_V2: _HEADER_V2, _MAGIC: _HEADER}.get(magic)
        if header is None:
            raise CorruptMedia("The bytes are not an audio fingerprint.")
        if len(data) < header.size:
            raise CorruptMedia("The audio fingerprint is truncated.")
        # The older forms have no envelope (AFP2) and no peaks either (AFP1): their counts are zero.
        count, duration_s, peak_count, envelope_frames = (*header.unpack_from(data)[1:], 0, 0)[:4]
        header_size = header.size
        envelope_bytes = envelope_frames * ENVELOPE_PACKED_WIDTH
        expected = count * 9 + peak_count * 6 + envelope_frames * 2 + envelope_bytes
        try:
            # max_length bounds the output, so a forged count or payload cannot inflate memory.
            decompressor = zlib.decompressobj()
            body = decompressor.decompress(data[header_size:], expected + 1)
        except zlib.error as exc:
            raise CorruptMedia(f"The audio fingerprint is damaged: {exc}") from None
        if len(body) != expected:
            raise CorruptMedia("The audio fingerprint has the wrong length.")
        hashes = np.frombuffer(body, dtype="<u4", count=count).astype(np.uint32)
        deltas = np.frombuffer(body, dtype="<u4", count=count, offset=4 * count).astype(np.int64)
        spans = np.frombuffer(body, dtype=np.uint8, count=count, offset=8 * count).copy()
        peak_deltas = np.frombuffer(body, dtype="<u4", count=peak_count, offset=9 * count).astype(np.int64)
        pitches = np.frombuffer(body, dtype="<u2", count=peak_count, offset=9 * count + 4 * peak_count)
        at = 9 * count + 6 * peak_count
        tops = np.frombuffer(body, dtype="<f2", count=envelope_frames, offset=at)
        packed = np.frombuffer(body, dtype=np.uint8, count=envelope_bytes, offset=at + 2 * envelope_frames)
        envelope = unpack_levels(packed.reshape(envelope_frames, ENVELOPE_PACKED_WIDTH))
        if not np.all(np.isfinite(tops)):
            raise CorruptMedia("The audio fingerprint has non-finite envelope levels.")
        frames = np.cumsum(deltas)
        peak_frames = np.cumsum(peak_deltas)
        limit = np.iinfo(np.uint32).max
        if (count and frames[-1] > limit) or (peak_count and peak_frames[-1] > limit):
            raise CorruptMedia("The audio fingerprint has out-of-range times.")
        return cls(
            hashes=hashes,
            frames=frames.astype(np.uint32),
            spans=spans,
            duration_s=float(duration_s),
            peak_frames=peak_frames.astype(np.uint32),
            peak_pitches=pitches.astype(np.uint16),
            envelope=envelope,
            envelope_tops=tops.astype(np.float16),
        )


def pack_levels(levels: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Envelope levels (frames, ENVELOPE_BANDS) two to a byte: (frames, ENVELOPE_PACKED_WIDTH)."""
    if levels.shape[1] % 2:
        levels = np.pad(levels, ((0, 0), (0, 1)))
    pairs = levels.reshape(levels.shape[0], ENVELOPE_PACKED_WIDTH, 2).astype(np.uint8)
    return np.ascontiguousarray((pairs[:, :, 0] << 4) | pairs[:, :, 1]).astype(np.uint8)


def unpack_levels(packed: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """The inverse of pack_levels."""
    levels = np.stack([packed >> 4, packed & 0x0F], axis=2).reshape(packed.shape[0], 2 * packed.shape[1])
    return np.ascontiguousarray(levels[:, :ENVELOPE_BANDS])


def decode(
    data: bytes | str | os.PathLike[str], *, max_duration_s: float = MAX_DURATION_S
) -> tuple[NDArray[np.float32], int]:
    """Decode WAV, FLAC, OGG, MP3 or AIFF bytes (or a file), or the soundtrack of an MP4, M4A, MOV or WebM,
    to mono float32 at SAMPLE_RATE_HZ.

    The format is taken from the content, never the name. Raises UnsupportedMedia, CorruptMedia or
    MediaTooLarge (all MediaError) for anything that is not whole, accepted audio within the limits.
    """
    import soundfile

    raw = _read_input(data)
    if not raw:
        raise CorruptMedia("The file is empty.")
    fmt = sniff(raw[:16])
    if fmt in CONTAINER_FORMATS:
        from media.containers import decode_audio

        return decode_audio(raw, fmt, rate=SAMPLE_RATE_HZ, max_duration_s=max_duration_s), SAMPLE_RATE_HZ
    if fmt not in AUDIO_FORMATS:
        raise UnsupportedMedia("The content is not audio this decoder reads.")
    try:
        info = soundfile.info(io.BytesIO(raw))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise CorruptMedia(f"The audio cannot be decoded: {exc}") from None
    if info.samplerate <= 0 or info.frames <= 0 or info.channels <= 0:
        raise CorruptMedia("The audio has no samples.")
    # MP3 frame counts are estimates, so the cap is checked again on the decoded samples.
    if info.frames / info.samplerate > max_duration_s:
        raise MediaTooLarge(f"The audio lasts over {max_duration_s:.0f} s.")
    try:
        with soundfile.SoundFile(io.BytesIO(raw)) as handle:
            limit = int((max_duration_s + 1) * handle.samplerate)
            block = handle.read(frames=limit + 1, dtype="float32", always_2d=True)
            rate = int(handle.samplerate)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        raise CorruptMedia(f"The audio is damaged: {exc}") from None
    if block.shape[0] == 0:
        raise CorruptMedia("The audio has no decodable samples.")
    if block.shape[0] > limit:
        raise MediaTooLarge(f"The audio lasts over {max_duration_s:.0f} s.")
    mono = block.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise CorruptMedia("The audio holds non-finite samples.")
    return resample(mono, rate), SAMPLE_RATE_HZ


def resample(
    samples: NDArray[np.floating], rate_hz: int, target_hz: int = SAMPLE_RATE_HZ
) -> NDArray[np.float32]:
    """Polyphase resampling by a small rational factor (exact for the common rates)."""
    if rate_hz == target_hz:
        return np.asarray(samples, dtype=np.float32)
    ratio = Fraction(target_hz, rate_hz).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    # A shorter anti-aliasing filter than scipy's default (4 rather than 10 zero crossings per side): the
    # fingerprint ignores everything above MAX_FREQUENCY_HZ, and the resampling is twice as fast.
    half_length = 4 * max(up, down)
    taps = signal.firwin(2 * half_length + 1, 1.0 / max(up, down), window=("kaiser", 5.0)).astype(np.float32)
    out = signal.resample_poly(np.asarray(samples, dtype=np.float32), up, down, window=taps)
    return np.asarray(out, dtype=np.float32)


def _read_input(data: bytes | str | os.PathLike[str]) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
    else:
        path = Path(data)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise CorruptMedia(f"The audio file cannot be read: {exc.strerror}") from None
        if size > MAX_INPUT_BYTES:
            raise MediaTooLarge(f"The file is {size} bytes; the limit is {MAX_INPUT_BYTES}.")
        raw = path.read_bytes()
    if len(raw) > MAX_INPUT_BYTES:
        raise MediaTooLarge(f"The file is {len(raw)} bytes; the limit is {MAX_INPUT_BYTES}.")
    return raw


def compute(samples: NDArray[np.floating], sr: int, *, query: bool = False) -> AudioFingerprint:
    """Fingerprint mono samples at any rate (resampled to SAMPLE_RATE_HZ first).

    With ``query=True`` every triplet whose ratios fall near a quantisation boundary also emits the hash
    of the neighbouring cell, so that a slightly moved peak still finds the reference's hash; references
    are stored without these variants, so the index does not grow.
    """
    if sr <= 0:
        raise MediaError("The sample rate must be positive.")
    audio = resample(np.asarray(samples), sr) if sr != SAMPLE_RATE_HZ else np.asarray(samples, np.float32)
    duration_s = audio.size / SAMPLE_RATE_HZ
    power = _power(audio)
    times, freqs = _peaks(_spectrogram(power), PEAKS_PER_S)
    hashes, frames, spans = _triplet_hashes(
        times, freqs, expand=query, fan_out=QUERY_FAN_OUT if query else FAN_OUT
    )
    pitches = np.clip(np.rint(freqs * PITCH_STEPS_PER_SEMITONE), 0, np.iinfo(np.uint16).max)
    # A query keeps its power spectrum instead, to be compared under whatever alignment it is found at.
    levels, tops = _envelope(power) if not query else (_no_envelope(), _no_tops())
    return AudioFingerprint(
        hashes=hashes,
        frames=frames,
        spans=spans,
        duration_s=duration_s,
        peak_frames=times.astype(np.uint32),
        peak_pitches=pitches.astype(np.uint16),
        envelope=levels,
        envelope_tops=tops,
        spectrum=power if query else None,
    )


def _power(audio: NDArray[np.float32]) -> NDArray[np.float32]:
    """Power STFT, shape (frames, N_FFT // 2 + 1); frame i starts at sample i * HOP."""
    if audio.size < N_FFT:
        audio = np.pad(audio, (0, N_FFT - audio.size))
    frame_count = 1 + (audio.size - N_FFT) // HOP
    strided = np.lib.stride_tricks.sliding_window_view(audio, N_FFT)[::HOP][:frame_count]
    window = np.hanning(N_FFT).astype(np.float32)
    spectrum = scipy_fft.rfft(strided * window, axis=1)  # single precision: twice as fast, precise enough
    return np.asarray(spectrum.real**2 + spectrum.imag**2, dtype=np.float32)


def _spectrogram(power: NDArray[np.float32]) -> NDArray[np.float32]:
    """Log power restricted to [MIN_FREQUENCY_HZ, MAX_FREQUENCY_HZ]; shape (bins, frames)."""
    low, high = _band_bins()
    return np.log(np.ascontiguousarray(power[:, low:high].T) + np.float32(1e-9))


def _band_bins() -> tuple[int, int]:
    bin_hz = SAMPLE_RATE_HZ / N_FFT
    return int(MIN_FREQUENCY_HZ / bin_hz), int(MAX_FREQUENCY_HZ / bin_hz) + 1


@functools.lru_cache(maxsize=64)
def envelope_filterbank(semitones: float = 0.0) -> sparse.csc_matrix:
    """Weights (N_FFT // 2 + 1, ENVELOPE_BANDS) that sum FFT power into quarter-semitone bands.

    Each band is a triangle around its centre, as wide as a band or, low down where bands are narrower
    than FFT bins, as a bin (linear interpolation between the two nearest bins). ``semitones`` moves every
    centre down by that interval: the bands of audio played that much higher land on the bands of the
    original, which is how a query with a pitch change is compared with its reference.
    """
    centres = ENVELOPE_MIN_HZ * np.exp2(
        np.arange(ENVELOPE_BANDS) / (12.0 * ENVELOPE_BANDS_PER_SEMITONE) - semitones / 12.0
    )
    bin_hz = SAMPLE_RATE_HZ / N_FFT
    widths = np.maximum(centres * (2.0 ** (1.0 / (12 * ENVELOPE_BANDS_PER_SEMITONE)) - 1.0), bin_hz)
    frequencies = np.arange(N_FFT // 2 + 1) * bin_hz
    weights = np.maximum(0.0, 1.0 - np.abs(frequencies[:, None] - centres[None, :]) / widths[None, :])
    weights = (weights / weights.sum(axis=0, keepdims=True)).astype(np.float32)
    # Each band takes a few bins: as a sparse matrix the product costs a fiftieth of a dense one.
    return sparse.csc_matrix(weights)


def envelope_slots(frame_starts_s: NDArray[np.floating]) -> NDArray[np.int64]:
    """The envelope frame each STFT frame falls in, from the frames' start times (reference seconds)."""
    return np.floor(frame_starts_s * ENVELOPE_RATE_HZ + 1e-9).astype(np.int64)


def pool_power(
    power: NDArray[np.float32], slots: NDArray[np.int64], first: int, count: int
) -> NDArray[np.float32]:
    """Mean power spectrum of the STFT frames in each envelope frame first .. first + count - 1.

    ``slots`` (from envelope_slots) must not decrease; frames outside the range are ignored.
    """
    low, high = np.searchsorted(slots, [first, first + count])
    local = slots[low:high] - first
    if local.size == 0:
        return np.zeros((count, power.shape[1]), dtype=np.float32)
    starts = np.flatnonzero(np.concatenate(([True], local[1:] != local[:-1])))
    sums = np.add.reduceat(power[low:high], starts, axis=0)
    held = np.diff(starts, append=local.size)
    mean = np.zeros((count, power.shape[1]), dtype=np.float32)
    mean[local[starts]] = sums / held[:, None]
    return mean


def log_bands(mean_power: NDArray[np.float32], semitones: float = 0.0) -> NDArray[np.float32]:
    """ln band power (frames, ENVELOPE_BANDS) of pooled power, with the bands moved by ``semitones``."""
    bands = np.asarray(envelope_filterbank(round(semitones, 4)).T.dot(mean_power.T).T, dtype=np.float32)
    return np.log(bands + np.float32(1e-9))


def envelope_log_power(levels: NDArray[np.uint8], tops: NDArray[np.float16]) -> NDArray[np.float32]:
    """A stored envelope as ln power, (frames, ENVELOPE_BANDS); the floor level stands for anything deeper."""
    below = (levels.astype(np.float32) - (ENVELOPE_LEVELS - 1)) * np.float32(ENVELOPE_STEP)
    return below + tops.astype(np.float32)[:, None]


def _envelope(power: NDArray[np.float32]) -> tuple[NDArray[np.uint8], NDArray[np.float16]]:
    slots = envelope_slots(np.arange(power.shape[0]) * FRAME_S)
    bands = log_bands(pool_power(power, slots, 0, int(slots[-1]) + 1))
    tops = bands.max(axis=1).astype(np.float16)
    below = (bands - tops.astype(np.float32)[:, None]) / np.float32(ENVELOPE_STEP)
    levels = np.clip(np.rint(below) + (ENVELOPE_LEVELS - 1), 0, ENVELOPE_LEVELS - 1)
    return levels.astype(np.uint8), tops


def _peaks(log_power: NDArray[np.float32], peaks_per_s: int) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Peak frames and peak frequencies in semitones above MIN_FREQUENCY_HZ, sorted by time."""
    frame_count = log_power.shape[1]
    if frame_count < 3:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    neighbourhood_max = _sliding_max(_sliding_max(log_power, PEAK_BINS, axis=0), PEAK_FRAMES, axis=1)
    # Ignore near-silence: a peak must stand well above the quietest part of the spectrogram.
    floor = np.percentile(log_power[:, ::8], 30.0) + 2.0
    is_peak = (log_power == neighbourhood_max) & (log_power > floor)
    is_peak[0, :] = False
    is_peak[-1, :] = False
    peak_bins, peak_frames = np.nonzero(is_peak)
    if peak_bins.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    strength = log_power[peak_bins, peak_frames]

    # Keep the peaks with fewer than peaks_per_s stronger peaks within half a second either side: density
    # stays even through loud and quiet passages, added noise removes weak peaks first, and (unlike fixed
    # one-second blocks, whose edges fall elsewhere in an excerpt than in its source) the choice does not
    # depend on where the audio starts.
    rank = _window_rank(peak_frames, strength, frame_count)
    kept = rank < peaks_per_s
    peak_bins, peak_frames = peak_bins[kept], peak_frames[kept]

    # Parabolic interpolation of the peak in log power gives a sub-bin frequency.
    left = log_power[peak_bins - 1, peak_frames]
    centre = log_power[peak_bins, peak_frames]
    right = log_power[peak_bins + 1, peak_frames]
    denominator = left - 2 * centre + right
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(denominator < 0, 0.5 * (left - right) / denominator, 0.0)
    low, _ = _band_bins()
    frequency_hz = (peak_bins + low + np.clip(delta, -0.5, 0.5)) * (SAMPLE_RATE_HZ / N_FFT)
    semitones = 12.0 * np.log2(frequency_hz / MIN_FREQUENCY_HZ)
    time_order = np.lexsort((semitones, peak_frames))
    return peak_frames[time_order].astype(np.int64), semitones[time_order]


def _window_rank(
    frames: NDArray[np.intp], strength: NDArray[np.float32], frame_count: int
) -> NDArray[np.int64]:
    """For each peak, how many peaks within half a second either side of it are stronger.

    Near the start or end of the audio the window is cut short; the count is scaled up to the whole window,
    so an excerpt keeps no more peaks at its edges than its source has there.
    """
    order = np.argsort(frames, kind="stable")
    sorted_frames, sorted_strength = frames[order], strength[order]
    half = round(RANK_WINDOW_S / 2 / FRAME_S)
    low = np.searchsorted(sorted_frames, sorted_frames - half, side="left")
    high = np.searchsorted(sorted_frames, sorted_frames + half, side="right")
    width = int((high - low).max())
    count = sorted_frames.size
    ranks = np.empty(count, dtype=np.int64)
    steps = np.arange(width)
    chunk = max(1, 400_000 // width)  # bounds the temporary (chunk x width) arrays
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        columns = low[start:stop, None] + steps[None, :]
        inside = columns < high[start:stop, None]
        neighbours = sorted_strength[np.minimum(columns, count - 1)]
        ranks[start:stop] = np.count_nonzero(
            inside & (neighbours > sorted_strength[start:stop, None]), axis=1
        )
    covered = np.minimum(sorted_frames + half, frame_count - 1) - np.maximum(sorted_frames - half, 0) + 1
    ranks = np.floor(ranks * ((2 * half + 1) / covered)).astype(np.int64)
    result = np.empty(count, dtype=np.int64)
    result[order] = ranks
    return result


def _sliding_max(values: NDArray[np.float32], radius: int, axis: int) -> NDArray[np.float32]:
    """Maximum over a centred window of 2 * radius + 1 along ``axis``, edges repeated.

    Same result as scipy.ndimage.maximum_filter1d(mode="nearest") but built from log2(window) vectorised
    maxima, several times faster on a spectrogram.
    """
    window = 2 * radius + 1
    moved = np.moveaxis(values, axis, 0)
    length = moved.shape[0]
    running = np.concatenate(
        [np.repeat(moved[:1], radius, axis=0), moved, np.repeat(moved[-1:], radius, axis=0)]
    )
    span = 1
    while span * 2 <= window:
        running = np.maximum(running[:-span], running[span:])
        span *= 2
    # running[i] is the max of padded[i : i + span]; two overlapping spans cover the window.
    result = np.maximum(running[:length], running[window - span : window - span + length])
    return np.ascontiguousarray(np.moveaxis(result, 0, axis))


def _triplet_hashes(
    times: NDArray[np.int64], semitones: NDArray[np.float64], *, expand: bool, fan_out: int = FAN_OUT
) -> tuple[NDArray[np.uint32], NDArray[np.uint32], NDArray[np.uint8]]:
    count = times.size
    empty = (np.zeros(0, np.uint32), np.zeros(0, np.uint32), np.zeros(0, np.uint8))
    if count < 3:
        return empty
    # Candidate partners of each anchor: the next FAN_OUT peaks strictly later in time (within the span).
    first_later = np.searchsorted(times, times, side="right")
    offsets = np.arange(fan_out)
    partner = first_later[:, None] + offsets[None, :]
    valid = partner < count
    partner = np.where(valid, partner, 0)
    valid &= (times[partner] - times[:, None]) <= MAX_SPAN_FRAMES
    valid &= np.abs(semitones[partner] - semitones[:, None]) <= MAX_INTERVAL_SEMITONES

    pair_a, pair_b = np.triu_indices(fan_out, k=1)
    anchor = np.repeat(np.arange(count), pair_a.size)
    second = partner[:, pair_a].ravel()
    third = partner[:, pair_b].ravel()
    ok = (valid[:, pair_a] & valid[:, pair_b]).ravel()
    anchor, second, third = anchor[ok], second[ok], third[ok]
    span = times[third] - times[anchor]
    ok = span >= MIN_SPAN_FRAMES
    anchor, second, third, span = anchor[ok], second[ok], third[ok], span[ok]
    if anchor.size == 0:
        return empty

    interval_2 = semitones[second] - semitones[anchor] + MAX_INTERVAL_SEMITONES
    interval_3 = semitones[third] - semitones[anchor] + MAX_INTERVAL_SEMITONES
    time_ratio = (times[second] - times[anchor]) / span * TIME_RATIO_STEPS
    band = semitones[anchor] / (12.0 * OCTAVE_BAND_STEP)
    span_band = np.log(span / MIN_SPAN_FRAMES) / np.log(SPAN_STEP)
    components = [interval_2, interval_3, time_ratio, band, span_band]
    centred = [True, True, True, False, False]  # rounded (centred cells) or floored (band edges)
    frames = times[anchor].astype(np.uint32)
    spans = span.astype(np.uint8)

    if not expand:
        cells = [
            np.rint(c) if c_round else np.floor(c) for c, c_round in zip(components, centred, strict=True)
        ]
        return _pack(cells), frames, spans

    # Query expansion: for each component near a cell edge, also try the neighbouring cell.
    # Intervals and time ratios move only with peak jitter; the f1 band and the span band also move with a
    # pitch or time scale of up to 5 % (0.85 semitone; 0.22 of a span band).
    margins = (0.2, 0.2, 0.25, 0.3, 0.25)
    variants_cells: list[list[NDArray[np.float64]]] = [[]]
    variants_mask: list[NDArray[np.bool_]] = [np.ones(anchor.size, dtype=bool)]
    for value, is_centred, margin in zip(components, centred, margins, strict=True):
        base = np.rint(value) if is_centred else np.floor(value)
        fraction = value - base if is_centred else value - base - 0.5
        # Distance to the nearest edge is 0.5 - |fraction|; the neighbour lies on the side of the fraction.
        near = (0.5 - np.abs(fraction)) < margin
        neighbour = base + np.where(fraction >= 0, 1.0, -1.0)
        new_cells: list[list[NDArray[np.float64]]] = []
        new_masks: list[NDArray[np.bool_]] = []
        for cells, mask in zip(variants_cells, variants_mask, strict=True):
            new_cells.append([*cells, base])
            new_masks.append(mask)
            new_cells.append([*cells, neighbour])
            new_masks.append(mask & near)
        variants_cells, variants_mask = new_cells, new_masks
    all_hashes, all_frames, all_spans = [], [], []
    for cells, mask in zip(variants_cells, variants_mask, strict=True):
        if not mask.any():
            continue
        all_hashes.append(_pack([c[mask] for c in cells]))
        all_frames.append(frames[mask])
        all_spans.append(spans[mask])
    return np.concatenate(all_hashes), np.concatenate(all_frames), np.concatenate(all_spans)


def _pack(cells: list[NDArray[np.float64]]) -> NDArray[np.uint32]:
    """interval_2 (6 bits) | interval_3 (6 bits) | time ratio (4) | f1 band (4) | span band (4): 24 bits."""
    interval_2, interval_3, time_ratio, band, span_band = (
        np.clip(c, 0, None).astype(np.uint32) for c in cells
    )
    return (
        (np.minimum(interval_2, 63) << 18)
        | (np.minimum(interval_3, 63) << 12)
        | (np.minimum(time_ratio, 15) << 8)
        | (np.minimum(band, 15) << 4)
        | np.minimum(span_band, 15)
    ).astype(np.uint32)


def spread_windows(duration_s: float, *, window_s: float, hop_s: float, max_windows: int) -> list[float]:
    """Start times (seconds) of the windows a bounded check of `duration_s` of audio queries, in order.

    One window every `hop_s` from the start, the last ending with the audio; a longer recording gets at
    most `max_windows`, spread evenly from its start to its end. Audio no longer than a window is one
    window starting at 0.
    """
    if duration_s <= window_s or max_windows <= 1:
        return [0.0]
    room = duration_s - window_s
    count = min(max_windows, 1 + int(np.ceil(room / hop_s)))
    return [float(start) for start in np.linspace(0.0, room, count)]
