"""Voice conversion: the fan's vocal, sung or spoken in a licensed VOICE work's voice, offline on the CPU.

Analysis and resynthesis with the WORLD vocoder (pyworld): the vocal is split into its pitch contour (F0),
its spectral envelope (the shape of the vocal tract: formants, timbre) and its aperiodicity (breath,
noise); the parts that carry the singer's identity are moved towards the target voice's, learned from the
VOICE work's own recordings, and the vocal is synthesised again. The words and the melody stay the fan's.

1. Pitch: the vocal's median F0 is moved to the target's by a whole number of semitones, its spread left
   as sung (a melody stays in tune with itself, and with a backing track a remix puts it on).
2. Vocal tract: the envelope's frequency axis is scaled by the factor that best lines the vocal's average
   envelope up with the target's (a longer or shorter vocal tract moves every formant by one ratio).
3. Timbre, frame by frame (the default method, "frames"): each sounding frame of the vocal takes the
   aperiodicity of the nearest frame of the target's own recordings, of the same voicing, nearest by
   mel-cepstra (of the warped vocal) normalised to each speaker's own mean and deviation, so an "a" finds
   the target's "a"; and its log envelope becomes a mix of that frame's and of its own (warped, then
   equalised per mel band to the target's average shape), weighted by how well it was matched: a frame
   whose nearest target frame is close (key distance MATCH_NEAR or less) takes the matched envelope whole,
   one with no close frame (MATCH_FAR or more) keeps its own, linearly between; the frame keeps its own
   level. Frame matching is kNN voice conversion (Baas et al., 2023) with WORLD's features in place of a
   neural encoder's; taken whole it moves the voice furthest but loses words, and the equalised envelope
   alone keeps the words but moves the voice least. Weighting by match quality takes the target's sound
   where the target has said it, and more of it the more the voice's recordings hold (docs/studio.md has
   the figures). The method "envelope" is the equalised envelope alone.

What is learned from the target's recordings is a `VoiceProfile`: its pitch, average envelope, and its
sounding frames as mel-cepstra and aperiodicity (float16), frozen and serialisable to a JSON-able dict
(`to_dict` / `from_dict`: about 36 KB per second of recording, 4.9 MB at most, MAX_PROFILE_FRAMES) so the
app keeps it with the voice work instead of learning the voice again for every job (`VoiceConversion.run`
takes it from `GenerationRequest.prepared[PROFILE_KEY]` when the app has it).

Pure: no Django. Needs the `voice` use (the voice is the licensed artist's) and `derivative` (the result is
a derivative of the VOICE work).
"""

from __future__ import annotations

import base64
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
    ParentMedia,
    Progress,
    no_progress,
)

Samples = npt.NDArray[np.float32]
Floats = npt.NDArray[np.float64]

PROFILE_VERSION: Final = 2
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
# Envelopes are compared on this mel-spaced grid, which every sample rate from 16 kHz covers, and coded as
# the first CEPSTRA coefficients of its DCT (a mel-cepstrum; c0 is the frame's level).
GRID_LOW_HZ: Final = 80.0
GRID_HIGH_HZ: Final = 7_600.0
GRID_POINTS: Final = 64
CEPSTRA: Final = 64
# Frame matching: each source frame takes the mean envelope of its K_NEIGHBOURS nearest target frames of
# the same voicing, nearest by mel-cepstra 1..KEY_CEPSTRA-1 (c0, the level, left out), each speaker's
# normalised to zero mean and unit variance; the result is smoothed over SMOOTH_FRAMES frames (1: not at
# all; measured: one neighbour and no smoothing keep the most of the target, docs/studio.md).
K_NEIGHBOURS: Final = 1
KEY_CEPSTRA: Final = 20
SMOOTH_FRAMES: Final = 1
# A profile keeps at most this many target frames (spread evenly over the recordings): two minutes of
# sounding frames at FRAME_PERIOD_MS.
MAX_PROFILE_FRAMES: Final = 24_000
# Vocal-tract warp factors searched (target formants / source formants).
WARP_MIN: Final = 0.8
WARP_MAX: Final = 1.25
WARP_STEPS: Final = 41
# The equaliser never moves a band by more than this (natural log units of the power envelope; 1.0 ~ 4.3 dB).
MAX_EQ_LOG: Final = 2.3
MAX_SHIFT_SEMITONES: Final = 24
# How much of the matched envelope a frame takes (the rest: the vocal's own, warped and equalised): all of
# it when its nearest target frame is MATCH_NEAR or nearer (Euclidean distance of the normalised keys, of
# KEY_CEPSTRA - 1 dimensions), none at MATCH_FAR or further, linearly between; silent frames (unmatched)
# take SILENT_MATCH_WEIGHT. Measured with two enrolled sentences the median frame lies at 3.25 (weight
# 0.5, the earlier fixed mix), with 22 sentences at 2.9.
MATCH_NEAR: Final = 2.0
MATCH_FAR: Final = 4.5
SILENT_MATCH_WEIGHT: Final = 0.5
# Where `VoiceConversion.run` finds a profile the app kept for these recordings.
PROFILE_KEY: Final = "voice_profile"
# Aperiodicity is matched on a coarser mel grid (it is smooth along frequency).
AP_POINTS: Final = 12
# "frames": frame matching (the shipped method); "envelope": warp and equalise the vocal's own envelope.
METHODS: Final = ("frames", "envelope")
DEFAULT_METHOD: Final = "frames"


@dataclass(frozen=True, eq=False)
class VoiceProfile:
    """What is learned from a voice's recordings.

    `f0_log_mean` / `f0_log_std`: median and spread of the natural log of F0 (Hz) over voiced frames.
    `envelope`: the mean log power envelope of voiced frames on the mel grid (`grid_hz()`), each frame's
    own mean removed first, so it is a shape and not a level. `cepstra` (frames x CEPSTRA) and `voiced`
    (frames): the voice's own sounding frames, as mel-cepstra, for frame matching. `voiced_s`: how much
    voiced audio it was learned from.
    """

    f0_log_mean: float
    f0_log_std: float
    envelope: tuple[float, ...]
    cepstra: npt.NDArray[np.float32]
    aperiodicity: npt.NDArray[np.float32]
    voiced: npt.NDArray[np.bool_]
    voiced_s: float
    recordings: int
    version: int = PROFILE_VERSION

    def __post_init__(self) -> None:
        cepstra = np.array(self.cepstra, dtype=np.float32).reshape(-1, CEPSTRA)
        aperiodicity = np.array(self.aperiodicity, dtype=np.float32).reshape(-1, AP_POINTS)
        voiced = np.array(self.voiced, dtype=np.bool_).reshape(-1)
        frames = cepstra.shape[0]
        if voiced.size != frames or aperiodicity.shape[0] != frames or len(self.envelope) != GRID_POINTS:
            raise ValueError("a voice profile's frames, voicing flags and envelope do not fit together")
        for array in (cepstra, aperiodicity, voiced):
            array.setflags(write=False)
        object.__setattr__(self, "cepstra", cepstra)
        object.__setattr__(self, "aperiodicity", aperiodicity)
        object.__setattr__(self, "voiced", voiced)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: figures as numbers, the frames as base64 (float16 little-endian, packed bits)."""
        return {
            "version": self.version,
            "f0_log_mean": self.f0_log_mean,
            "f0_log_std": self.f0_log_std,
            "envelope": list(self.envelope),
            "frames": int(self.cepstra.shape[0]),
            "cepstra": _encoded(self.cepstra),
            "aperiodicity": _encoded(self.aperiodicity),
            "voiced": base64.b64encode(np.packbits(self.voiced).tobytes()).decode("ascii"),
            "voiced_s": self.voiced_s,
            "recordings": self.recordings,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VoiceProfile:
        if data.get("version") != PROFILE_VERSION:
            raise ValueError(
                f"a voice profile of version {data.get('version')!r}; this code reads {PROFILE_VERSION}"
            )
        frames = int(data["frames"])
        voiced = np.unpackbits(np.frombuffer(base64.b64decode(data["voiced"]), dtype=np.uint8))[:frames]
        return cls(
            f0_log_mean=float(data["f0_log_mean"]),
            f0_log_std=float(data["f0_log_std"]),
            envelope=tuple(float(value) for value in data["envelope"]),
            cepstra=_decoded(data["cepstra"]).reshape(frames, CEPSTRA),
            aperiodicity=_decoded(data["aperiodicity"]).reshape(frames, AP_POINTS),
            voiced=voiced.astype(np.bool_),
            voiced_s=float(data["voiced_s"]),
            recordings=int(data["recordings"]),
        )

    @property
    def f0_median_hz(self) -> float:
        return math.exp(self.f0_log_mean)


def _encoded(values: npt.NDArray[np.float32]) -> str:
    return base64.b64encode(values.astype("<f2").tobytes()).decode("ascii")


def _decoded(text: str) -> npt.NDArray[np.float32]:
    return np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float32)


@dataclass(frozen=True, eq=False)
class Conversion:
    """The converted samples (at the input's rate) and what was done, in figures."""

    samples: Samples
    sample_rate_hz: int
    semitones: int
    warp: float
    source: VoiceProfile
    method: str


@dataclass(frozen=True, eq=False)
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

        kept = request.prepared.get(PROFILE_KEY)
        if isinstance(kept, VoiceProfile):
            target = kept
        else:
            progress(3, "Learning the voice from its recordings")
            target = learn_voice(request.parents)
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
                "method": result.method,
                "voice_recordings_used": target.recordings,
                "voice_voiced_s": round(target.voiced_s, 1),
            },
        )


def learn_voice(parents: Sequence[ParentMedia]) -> VoiceProfile:
    """`voice_profile` of a VOICE work's recording files (WAV, FLAC, OGG or MP3 each)."""
    return voice_profile([_decode(parent.data, f"the recording {parent.title!r}") for parent in parents])


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
    *,
    method: str | None = None,
) -> Conversion:
    """`convert`, with what was done in figures. `method` is one of METHODS (DEFAULT_METHOD ships)."""
    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {METHODS}")
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
    warped = _warped(log_envelope, analysis.rate, warp)
    aperiodicity = analysis.aperiodicity
    warped_source = _profile_envelope(warped, analysis)
    equaliser = np.clip(np.asarray(target.envelope) - warped_source, -MAX_EQ_LOG, MAX_EQ_LOG)
    equalised = warped + _grid_to_bins(equaliser, analysis.rate, warped.shape[1])[None, :]
    if method == "frames":
        matched, aperiodicity, weights = _matched(log_envelope, warped, analysis, source, target)
        log_envelope = weights[:, None] * matched + (1.0 - weights[:, None]) * equalised
    else:
        log_envelope = equalised

    progress(70, "Synthesising")
    pyworld = _pyworld()
    out = pyworld.synthesize(
        np.ascontiguousarray(f0),
        np.ascontiguousarray(np.exp(log_envelope)),
        np.ascontiguousarray(aperiodicity),
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
        method=method,
    )


def _matched(
    log_envelope: Floats, warped: Floats, analysis: _Analysis, source: VoiceProfile, target: VoiceProfile
) -> tuple[Floats, Floats, Floats]:
    """Each sounding frame's envelope replaced by the mean of its nearest target frames' (same voicing,
    speaker-normalised mel-cepstra), its own level kept; silent frames and the band above the grid keep the
    (warped) vocal's own envelope. Also answers each frame's weight for the matched envelope (`match_weight`
    of its nearest frame's distance; SILENT_MATCH_WEIGHT for silent frames)."""
    cepstra = _cepstra(_on_grid(log_envelope, analysis.rate))
    matched = cepstra.copy()
    matched_ap = _log_aperiodicity_grid(analysis.aperiodicity, analysis.rate)
    # Keys from the warped vocal: with its formants where the target's are, an "a" is nearer the target's "a".
    key_cepstra = _cepstra(_on_grid(warped, analysis.rate))
    source_keys = _keys(key_cepstra, key_cepstra[analysis.active])
    target_keys = _keys(target.cepstra, target.cepstra)
    voiced = analysis.f0 > 0
    weights = np.full(analysis.f0.size, SILENT_MATCH_WEIGHT)
    for wanted in (True, False):
        frames = np.flatnonzero(analysis.active & (voiced == wanted))
        pool = np.flatnonzero(target.voiced == wanted)
        if pool.size == 0:
            pool = np.arange(target.voiced.size)
        if frames.size == 0 or pool.size == 0:
            continue
        neighbours = _nearest(source_keys[frames], target_keys[pool], min(K_NEIGHBOURS, pool.size))
        nearest = target_keys[pool][neighbours[:, 0]]
        weights[frames] = match_weight(np.linalg.norm(source_keys[frames] - nearest, axis=1))
        matched[frames, 1:] = target.cepstra[pool][neighbours, 1:].mean(axis=1)
        matched_ap[frames] = target.aperiodicity[pool][neighbours].mean(axis=1)
    matched[:, 1:] = _smoothed(matched[:, 1:], SMOOTH_FRAMES)
    new_grid = _from_cepstra(matched)
    active = analysis.active
    result = warped.copy()
    bins = log_envelope.shape[1]
    frequencies = np.linspace(0.0, analysis.rate / 2.0, bins)
    inside = frequencies <= GRID_HIGH_HZ
    hz = grid_hz()
    on_bins = _interpolate_columns(new_grid, np.interp(frequencies[inside], hz, np.arange(GRID_POINTS)))
    result[np.ix_(active, inside)] = on_bins[active]
    if not inside.all():
        # Above the grid: the warped vocal's own envelope, moved to meet the new one at the grid's top.
        offset = on_bins[:, -1] - warped[:, int(np.flatnonzero(inside)[-1])]
        result[np.ix_(active, ~inside)] = warped[np.ix_(active, ~inside)] + offset[active, None]
    aperiodicity = analysis.aperiodicity.copy()
    ap_bins = np.exp(
        _interpolate_columns(matched_ap, np.interp(frequencies[inside], _ap_grid_hz(), np.arange(AP_POINTS)))
    )
    aperiodicity[np.ix_(active, inside)] = np.clip(ap_bins[active], 1e-3, 1.0)
    return result, aperiodicity, weights


def match_weight(distances: npt.ArrayLike) -> Floats:
    """How much of the matched envelope a frame takes, from its key distance to its nearest target frame:
    1 at MATCH_NEAR or nearer, 0 at MATCH_FAR or further, linear between."""
    weights: Floats = np.clip(
        (MATCH_FAR - np.asarray(distances, dtype=np.float64)) / (MATCH_FAR - MATCH_NEAR), 0.0, 1.0
    )
    return weights


def _ap_grid_hz() -> Floats:
    return _mel_grid(GRID_LOW_HZ, GRID_HIGH_HZ, AP_POINTS)


def _log_aperiodicity_grid(aperiodicity: Floats, rate: int) -> Floats:
    return _on_grid(np.log(np.clip(aperiodicity, 1e-3, 1.0)), rate, _ap_grid_hz())


def _keys(cepstra: npt.ArrayLike, reference: npt.ArrayLike) -> Floats:
    """Matching keys: mel-cepstra 1..KEY_CEPSTRA, normalised by the speaker's own mean and deviation."""
    values = np.asarray(cepstra, dtype=np.float64)[:, 1:KEY_CEPSTRA]
    basis = np.asarray(reference, dtype=np.float64)[:, 1:KEY_CEPSTRA]
    keys: Floats = (values - basis.mean(axis=0)) / (basis.std(axis=0) + 1e-6)
    return keys


def _nearest(queries: Floats, pool: Floats, k: int) -> npt.NDArray[np.int64]:
    """Indices (queries x k) of each query's k nearest pool rows by Euclidean distance, in blocks (of
    about four million distances each, whatever the pool's size)."""
    pool_norms = np.sum(pool**2, axis=1)
    result = np.empty((queries.shape[0], k), dtype=np.int64)
    block = max(16, 4_000_000 // max(1, pool.shape[0]))
    for start in range(0, queries.shape[0], block):
        chunk = queries[start : start + block]
        distances = pool_norms[None, :] - 2.0 * chunk @ pool.T
        result[start : start + block] = np.argpartition(distances, k - 1, axis=1)[:, :k]
    return result


def _smoothed(values: Floats, width: int) -> Floats:
    if width <= 1 or values.shape[0] < width:
        return values
    kernel = np.ones(width) / width
    padded = np.pad(values, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
    cumulative = np.cumsum(np.pad(padded, ((1, 0), (0, 0))), axis=0)
    smoothed: Floats = (cumulative[width:] - cumulative[:-width]) * kernel[0]
    return smoothed


def _cepstra(grid: Floats) -> Floats:
    from scipy.fft import dct

    coded: Floats = dct(grid, type=2, norm="ortho", axis=1)[:, :CEPSTRA]
    return coded


def _from_cepstra(cepstra: Floats) -> Floats:
    from scipy.fft import idct

    padded = np.zeros((cepstra.shape[0], GRID_POINTS))
    padded[:, :CEPSTRA] = cepstra
    grid: Floats = idct(padded, type=2, norm="ortho", axis=1)
    return grid


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
    frames: list[Floats] = []
    aperiodicities: list[Floats] = []
    voicing: list[npt.NDArray[np.bool_]] = []
    for analysis in analyses:
        voiced = _voiced(analysis)
        if not voiced.any():
            continue
        log_f0.append(np.log(analysis.f0[voiced]))
        grid = _on_grid(np.log(np.maximum(analysis.envelope[analysis.active], 1e-16)), analysis.rate)
        frame_voiced = voiced[analysis.active]
        shapes.append(grid[frame_voiced] - grid[frame_voiced].mean(axis=1, keepdims=True))
        frames.append(_cepstra(grid))
        aperiodicities.append(_log_aperiodicity_grid(analysis.aperiodicity[analysis.active], analysis.rate))
        voicing.append(frame_voiced)
    if not log_f0:
        return None
    all_f0 = np.concatenate(log_f0)
    all_shapes = np.concatenate(shapes)
    cepstra = np.concatenate(frames)
    aperiodicity = np.concatenate(aperiodicities)
    flags = np.concatenate(voicing)
    if cepstra.shape[0] > MAX_PROFILE_FRAMES:
        kept = np.linspace(0, cepstra.shape[0] - 1, MAX_PROFILE_FRAMES).round().astype(np.int64)
        cepstra, aperiodicity, flags = cepstra[kept], aperiodicity[kept], flags[kept]
    return VoiceProfile(
        f0_log_mean=float(np.median(all_f0)),
        f0_log_std=float(np.std(all_f0)),
        envelope=tuple(float(value) for value in all_shapes.mean(axis=0)),
        # Kept at the precision of the serialised form, so a profile read back converts exactly alike.
        cepstra=cepstra.astype(np.float16).astype(np.float32),
        aperiodicity=aperiodicity.astype(np.float16).astype(np.float32),
        voiced=flags,
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
    return _mel_grid(GRID_LOW_HZ, GRID_HIGH_HZ, GRID_POINTS)


def _mel_grid(low_hz: float, high_hz: float, points: int) -> Floats:
    low, high = (2595.0 * np.log10(1.0 + f / 700.0) for f in (low_hz, high_hz))
    mels = np.linspace(low, high, points)
    hz: Floats = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    return hz


def _on_grid(log_envelope: Floats, rate: int, hz: Floats | None = None) -> Floats:
    """(frames, bins) -> (frames, grid points) by linear interpolation along frequency."""
    bins = log_envelope.shape[1]
    positions = (grid_hz() if hz is None else hz) / (rate / 2.0) * (bins - 1)
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
