"""Voice conversion: the fan's vocal, sung or spoken in a licensed VOICE work's voice, offline on the CPU.

Analysis and resynthesis with the WORLD vocoder (pyworld): the vocal is split into its pitch contour (F0),
its spectral envelope (the shape of the vocal tract: formants, timbre) and its aperiodicity (breath,
noise); the parts that carry the singer's identity are moved towards the target voice's, learned from the
VOICE work's own recordings, and the vocal is synthesised again. The words and the melody stay the fan's.

1. Pitch: the vocal's median F0 is moved to the target's by a whole number of semitones (a melody stays in
   tune with itself), its spread left as sung.
2. Vocal tract: the envelope's frequency axis is scaled by the factor that best lines the vocal's average
   envelope up with the target's (a longer or shorter vocal tract moves every formant by one ratio).
3. Timbre: a smooth per-band equaliser (on a mel grid) brings the warped vocal's average envelope shape to
   the target's.

What is learned from the target's recordings is a `VoiceProfile`: small, frozen, and serialisable to a
JSON-able dict (`to_dict` / `from_dict`) so the app can keep it with the voice work.

Pure: no Django. Needs the `voice` use (the voice is the licensed artist's) and `derivative` (the result is
a derivative of the VOICE work).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from media.generators.base import (
    DERIVATIVE,
    VOICE,
    GeneratedMedia,
    GenerationFailed,
    GenerationRequest,
    InputSpec,
    Progress,
    no_progress,
)

Samples = npt.NDArray[np.float32]
Floats = npt.NDArray[np.float64]

PROFILE_VERSION: Final = 1
# Analysis and synthesis rate: inputs above it are resampled down, and the result back to the input's rate.
WORK_RATE_HZ: Final = 24_000
MIN_RATE_HZ: Final = 8_000
MAX_RATE_HZ: Final = 192_000
MAX_VOCAL_S: Final = 300.0
MIN_VOCAL_VOICED_S: Final = 0.5
MIN_TARGET_VOICED_S: Final = 1.5
FRAME_PERIOD_MS: Final = 5.0
F0_FLOOR_HZ: Final = 60.0
F0_CEIL_HZ: Final = 1000.0
# Frames quieter than this far under the loudest are left out of what is learned (breaths, room noise).
ACTIVE_BELOW_PEAK_DB: Final = 40.0
# The envelope's shape is compared on this mel-spaced grid, which every sample rate from 16 kHz covers.
GRID_LOW_HZ: Final = 80.0
GRID_HIGH_HZ: Final = 7_600.0
GRID_POINTS: Final = 48
# Vocal-tract warp factors searched (target formants / source formants).
WARP_MIN: Final = 0.8
WARP_MAX: Final = 1.25
WARP_STEPS: Final = 41
# The equaliser never moves a band by more than this (natural log units of the power envelope; 1.0 ~ 4.3 dB).
MAX_EQ_LOG: Final = 2.3
MAX_SHIFT_SEMITONES: Final = 24


@dataclass(frozen=True)
class VoiceProfile:
    """What is learned from a voice's recordings.

    `f0_log_mean` / `f0_log_std`: natural log of F0 in Hz over voiced frames. `envelope`: the mean log
    power envelope of voiced frames on the mel grid (`grid_hz()`), each frame's own mean removed first, so
    it is a shape and not a level. `voiced_s`: how much voiced audio it was learned from.
    """

    f0_log_mean: float
    f0_log_std: float
    envelope: tuple[float, ...]
    voiced_s: float
    recordings: int
    version: int = PROFILE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "f0_log_mean": self.f0_log_mean,
            "f0_log_std": self.f0_log_std,
            "envelope": list(self.envelope),
            "voiced_s": self.voiced_s,
            "recordings": self.recordings,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VoiceProfile:
        if data.get("version") != PROFILE_VERSION:
            raise ValueError(
                f"a voice profile of version {data.get('version')!r}; this code reads {PROFILE_VERSION}"
            )
        envelope = tuple(float(value) for value in data["envelope"])
        if len(envelope) != GRID_POINTS:
            raise ValueError(f"a voice profile's envelope has {GRID_POINTS} points, got {len(envelope)}")
        return cls(
            f0_log_mean=float(data["f0_log_mean"]),
            f0_log_std=float(data["f0_log_std"]),
            envelope=envelope,
            voiced_s=float(data["voiced_s"]),
            recordings=int(data["recordings"]),
        )

    @property
    def f0_median_hz(self) -> float:
        return math.exp(self.f0_log_mean)


@dataclass(frozen=True)
class Conversion:
    """The converted samples (at the input's rate) and what was done, in figures."""

    samples: Samples
    sample_rate_hz: int
    semitones: int
    warp: float
    source: VoiceProfile
    max_eq_db: float


@dataclass(frozen=True)
class _Analysis:
    f0: Floats
    envelope: Floats  # (frames, bins) power
    aperiodicity: Floats
    rate: int
    active: npt.NDArray[np.bool_]


class VoiceConversion:
    name = "voice-convert"
    title = "Sing it in their voice"
    description = (
        "Your vocal in the licensed artist's voice: your words and melody, re-synthesised with the pitch "
        "moved to the artist's range and the vocal tract and timbre of the artist's own recordings."
    )
    parent_kind = "audio"
    output_kind = "audio"
    inputs = (
        InputSpec(
            name="vocal",
            kind="audio",
            label="Your vocal",
            help="WAV, FLAC, OGG or MP3 of your voice alone (no backing track), at least a second long.",
        ),
    )
    use_classes = frozenset({VOICE, DERIVATIVE})

    def run(self, request: GenerationRequest, progress: Progress) -> GeneratedMedia:
        if not request.parents:
            raise GenerationFailed(
                "The conversion needs the licensed voice's recordings.", code="missing_parent"
            )
        vocal_bytes = request.inputs.get("vocal")
        if not isinstance(vocal_bytes, bytes):
            raise GenerationFailed("Upload your vocal recording.", code="missing_input")

        progress(3, "Decoding the voice's recordings")
        recordings = [_decode(parent.data, f"the recording {parent.title!r}") for parent in request.parents]
        progress(8, "Learning the voice")
        target = voice_profile(recordings)
        progress(20, "Decoding your vocal")
        vocal, rate = _decode(vocal_bytes, "your vocal", code="vocal_unreadable")
        result = conversion(vocal, rate, target, progress=_scaled(progress, 25, 95))
        progress(96, "Encoding")
        data = _wav(result.samples, result.sample_rate_hz)
        progress(100, "Done")
        return GeneratedMedia(
            data=data,
            media_type="audio/wav",
            extension="wav",
            details={
                "duration_s": round(result.samples.size / result.sample_rate_hz, 2),
                "sample_rate_hz": result.sample_rate_hz,
                "pitch_shift_semitones": result.semitones,
                "vocal_median_f0_hz": round(result.source.f0_median_hz, 1),
                "voice_median_f0_hz": round(target.f0_median_hz, 1),
                "envelope_warp": round(result.warp, 3),
                "max_equalisation_db": round(result.max_eq_db, 1),
                "voice_recordings_used": target.recordings,
                "voice_voiced_s": round(target.voiced_s, 1),
            },
        )


def voice_profile(recordings: Sequence[tuple[npt.ArrayLike, int]]) -> VoiceProfile:
    """Learn a voice from its recordings ((samples, sample rate) each; silent ones add nothing).

    Raises GenerationFailed("voice_recordings_too_short") when together they hold under
    MIN_TARGET_VOICED_S of voiced sound.
    """
    analyses = [_analyse(_mono(samples, rate), rate) for samples, rate in recordings]
    profile = _profile(analyses)
    if profile is None or profile.voiced_s < MIN_TARGET_VOICED_S:
        voiced = 0.0 if profile is None else profile.voiced_s
        raise GenerationFailed(
            f"The voice's recordings hold {voiced:.1f} s of voiced sound; at least {MIN_TARGET_VOICED_S} s "
            "is needed to learn a voice.",
            code="voice_recordings_too_short",
        )
    return profile


def convert(
    samples: npt.ArrayLike,
    sr: int,
    target: VoiceProfile,
    progress: Progress = no_progress,
) -> Samples:
    """`samples` (mono, at `sr`) in `target`'s voice, at `sr` and of the same length."""
    return conversion(samples, sr, target, progress=progress).samples


def conversion(
    samples: npt.ArrayLike,
    sr: int,
    target: VoiceProfile,
    progress: Progress = no_progress,
) -> Conversion:
    """`convert`, with what was done in figures."""
    mono = _mono(samples, sr)
    if mono.size > MAX_VOCAL_S * sr:
        raise GenerationFailed(f"Your vocal is longer than {MAX_VOCAL_S:.0f} s.", code="vocal_too_long")
    progress(5, "Analysing your vocal")
    analysis = _analyse(mono, sr)
    source = _profile([analysis])
    if source is None or source.voiced_s < MIN_VOCAL_VOICED_S:
        raise GenerationFailed(
            "No voiced singing or speech was found in your vocal (is it silent, or noise only?).",
            code="vocal_not_voiced",
        )
    progress(55, "Moving the pitch")
    semitones = _semitones(source, target)
    f0 = analysis.f0 * 2.0 ** (semitones / 12.0)

    progress(60, "Moving the vocal tract and timbre")
    log_envelope = np.log(np.maximum(analysis.envelope, 1e-16))
    warp = _best_warp(source, target)
    log_envelope = _warped(log_envelope, analysis.rate, warp)
    warped_source = _profile_envelope(log_envelope, analysis)
    equaliser = np.clip(np.asarray(target.envelope) - warped_source, -MAX_EQ_LOG, MAX_EQ_LOG)
    log_envelope = log_envelope + _grid_to_bins(equaliser, analysis.rate, log_envelope.shape[1])[None, :]

    progress(70, "Synthesising")
    pyworld = _pyworld()
    out = pyworld.synthesize(
        np.ascontiguousarray(f0),
        np.ascontiguousarray(np.exp(log_envelope)),
        np.ascontiguousarray(analysis.aperiodicity),
        analysis.rate,
        FRAME_PERIOD_MS,
    )
    out = _resampled(np.asarray(out, dtype=np.float64), analysis.rate, sr)
    out = _fit_length(out, mono.size)
    out = _level_like(out, mono)
    progress(100, "Converted")
    return Conversion(
        samples=out.astype(np.float32),
        sample_rate_hz=sr,
        semitones=semitones,
        warp=warp,
        source=source,
        max_eq_db=float(np.max(np.abs(equaliser)) * 10 / math.log(10)),
    )


# -- analysis -----------------------------------------------------------------------------------------


def _pyworld() -> Any:
    with warnings.catch_warnings():
        # pyworld reads its version through the deprecated pkg_resources: pyworld's to fix, not an error.
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import pyworld
    return pyworld


def _analyse(mono: Samples, rate: int) -> _Analysis:
    work_rate = min(rate, WORK_RATE_HZ)
    x = _resampled(mono.astype(np.float64), rate, work_rate)
    pyworld = _pyworld()
    f0, times = pyworld.dio(
        x, work_rate, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ, frame_period=FRAME_PERIOD_MS
    )
    f0 = pyworld.stonemask(x, f0, times, work_rate)
    envelope = pyworld.cheaptrick(x, f0, times, work_rate)
    aperiodicity = pyworld.d4c(x, f0, times, work_rate)
    energy = np.log(np.maximum(envelope.mean(axis=1), 1e-20))
    loudest = float(np.max(energy)) if energy.size else 0.0
    active = energy > loudest - ACTIVE_BELOW_PEAK_DB * math.log(10) / 10
    return _Analysis(f0=f0, envelope=envelope, aperiodicity=aperiodicity, rate=work_rate, active=active)


def _voiced(analysis: _Analysis) -> npt.NDArray[np.bool_]:
    return (analysis.f0 > 0) & analysis.active


def _profile(analyses: Sequence[_Analysis]) -> VoiceProfile | None:
    log_f0: list[Floats] = []
    shapes: list[Floats] = []
    for analysis in analyses:
        voiced = _voiced(analysis)
        if not voiced.any():
            continue
        log_f0.append(np.log(analysis.f0[voiced]))
        grid = _on_grid(np.log(np.maximum(analysis.envelope[voiced], 1e-16)), analysis.rate)
        shapes.append(grid - grid.mean(axis=1, keepdims=True))
    if not log_f0:
        return None
    all_f0 = np.concatenate(log_f0)
    all_shapes = np.concatenate(shapes)
    return VoiceProfile(
        f0_log_mean=float(np.median(all_f0)),
        f0_log_std=float(np.std(all_f0)),
        envelope=tuple(float(value) for value in all_shapes.mean(axis=0)),
        voiced_s=all_f0.size * FRAME_PERIOD_MS / 1000.0,
        recordings=len(analyses),
    )


def _profile_envelope(log_envelope: Floats, analysis: _Analysis) -> Floats:
    voiced = _voiced(analysis)
    grid = _on_grid(log_envelope[voiced], analysis.rate)
    shape: Floats = (grid - grid.mean(axis=1, keepdims=True)).mean(axis=0)
    return shape


def grid_hz() -> Floats:
    """The mel-spaced frequencies (Hz) a profile's envelope is sampled at."""
    low, high = (2595.0 * np.log10(1.0 + f / 700.0) for f in (GRID_LOW_HZ, GRID_HIGH_HZ))
    mels = np.linspace(low, high, GRID_POINTS)
    hz: Floats = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    return hz


def _on_grid(log_envelope: Floats, rate: int) -> Floats:
    """(frames, bins) -> (frames, GRID_POINTS) by linear interpolation along frequency."""
    bins = log_envelope.shape[1]
    positions = grid_hz() / (rate / 2.0) * (bins - 1)
    return _interpolate_columns(log_envelope, positions)


def _grid_to_bins(values: Floats, rate: int, bins: int) -> Floats:
    """Grid values at every FFT bin (held flat below and above the grid)."""
    frequencies = np.linspace(0.0, rate / 2.0, bins)
    return np.interp(frequencies, grid_hz(), values)


def _interpolate_columns(matrix: Floats, positions: Floats) -> Floats:
    positions = np.clip(positions, 0.0, matrix.shape[1] - 1.0)
    lower = np.minimum(np.floor(positions).astype(np.int64), matrix.shape[1] - 2)
    weight = positions - lower
    result: Floats = matrix[:, lower] * (1.0 - weight) + matrix[:, lower + 1] * weight
    return result


def _warped(log_envelope: Floats, rate: int, warp: float) -> Floats:
    """The envelope with its frequency axis scaled by `warp`: what was at f is now at f * warp."""
    if abs(warp - 1.0) < 1e-6:
        return log_envelope
    bins = log_envelope.shape[1]
    return _interpolate_columns(log_envelope, np.arange(bins, dtype=np.float64) / warp)


def _best_warp(source: VoiceProfile, target: VoiceProfile) -> float:
    """The warp factor that lines the source's mean envelope shape up best with the target's."""
    hz = grid_hz()
    source_shape = np.asarray(source.envelope)
    target_shape = np.asarray(target.envelope)
    best, best_error = 1.0, math.inf
    for warp in np.geomspace(WARP_MIN, WARP_MAX, WARP_STEPS):
        # The warped source at f is the source at f / warp.
        moved = np.interp(hz / warp, hz, source_shape)
        moved -= moved.mean()
        error = float(np.mean((moved - (target_shape - target_shape.mean())) ** 2))
        if error < best_error:
            best, best_error = float(warp), error
    return best


def _semitones(source: VoiceProfile, target: VoiceProfile) -> int:
    shift = 12.0 * (target.f0_log_mean - source.f0_log_mean) / math.log(2.0)
    return int(max(-MAX_SHIFT_SEMITONES, min(MAX_SHIFT_SEMITONES, round(shift))))


# -- signal helpers -----------------------------------------------------------------------------------


def _mono(samples: npt.ArrayLike, rate: int) -> Samples:
    if not MIN_RATE_HZ <= int(rate) <= MAX_RATE_HZ:
        raise GenerationFailed(f"Sample rate {rate} Hz is not supported.", code="unsupported_rate")
    array = np.asarray(samples)
    if array.ndim == 2:
        array = array.mean(axis=1)
    if array.ndim != 1:
        raise GenerationFailed("Audio must be mono or multichannel samples.", code="unsupported_audio")
    mono = np.asarray(array, dtype=np.float32)
    if not np.all(np.isfinite(mono)):
        raise GenerationFailed("The audio holds non-finite samples.", code="unsupported_audio")
    return mono


def _resampled(samples: Floats, rate: int, target: int) -> Floats:
    if rate == target:
        return samples
    from scipy.signal import resample_poly

    divisor = math.gcd(int(rate), int(target))
    return np.asarray(resample_poly(samples, target // divisor, rate // divisor), dtype=np.float64)


def _fit_length(samples: Floats, length: int) -> Floats:
    if samples.size >= length:
        return samples[:length]
    return np.pad(samples, (0, length - samples.size))


def _level_like(samples: Floats, reference: Samples) -> Floats:
    """`samples` at the RMS level of `reference`, peak held under -1 dBFS."""
    level = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
    wanted = float(np.sqrt(np.mean(reference.astype(np.float64) ** 2))) if reference.size else 0.0
    if level > 1e-12:
        samples = samples * (wanted / level)
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    ceiling = 10 ** (-1.0 / 20)
    return samples * (ceiling / peak) if peak > ceiling else samples


def _scaled(progress: Progress, start: int, end: int) -> Progress:
    def scaled(percent: int, stage: str) -> None:
        progress(start + (end - start) * percent // 100, stage)

    return scaled


def _decode(data: bytes, what: str, *, code: str = "voice_recording_unreadable") -> tuple[Samples, int]:
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as handle:
            rate = int(handle.samplerate)
            block = handle.read(frames=int((MAX_VOCAL_S + 1) * rate), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise GenerationFailed(f"{what.capitalize()} cannot be decoded: {exc}", code=code) from None
    if block.shape[0] == 0:
        raise GenerationFailed(f"{what.capitalize()} has no samples.", code=code)
    return _mono(block, rate), rate


def _wav(samples: Samples, rate: int) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(samples, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
