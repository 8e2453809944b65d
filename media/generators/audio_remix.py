"""Remix: the fan's vocal over the creator's licensed instrumental, offline, with librosa.

1. Tempo: both tracks are beat-tracked; the vocal is time-stretched to the instrumental's tempo (the
   ratio folded by octaves and held within +-25%, past which a stretched voice stops sounding like one).
   The fan may state the vocal's tempo instead, which beats any estimate of an unaccompanied voice.
2. Key: each track's key is estimated from its chroma (Krumhansl-Schmuckler profiles); the vocal is
   pitch-shifted by the nearest number of semitones (within a tritone) that puts it in the
   instrumental's key, or in its relative major/minor.
3. Placement: the vocal's first onset lands on an instrumental beat after a short lead-in, so the
   instrumental is heard alone first.
4. Mix: levels set from the active parts of each track (the vocal a little above the instrumental), the
   instrumental ducked gently under the vocal, short fades on the vocal's edges, a fade-out at the end,
   and the peak held under -1 dBFS without clipping.
5. Presence: the instrumental must stay audibly and traceably present: the mix is fingerprinted and
   matched against the instrumental; if the match is not confident, the vocal is lowered and the mix
   made again.

Needs the `derivative` use only: the creator's recording is used as it is, and the voice is the fan's.
"""

from __future__ import annotations

import io
import math
from typing import Final

import numpy as np
import numpy.typing as npt

from media.fingerprint import audio as fingerprint
from media.fingerprint.audio_index import AudioIndex
from media.generators.base import (
    DERIVATIVE,
    GeneratedMedia,
    GenerationFailed,
    GenerationRequest,
    InputSpec,
    Progress,
)

Samples = npt.NDArray[np.float32]

MIN_RATE_HZ: Final = 16_000
MAX_RATE_HZ: Final = 48_000
MAX_OUTPUT_S: Final = 300.0
MIN_VOCAL_S: Final = 1.0
MAX_STRETCH: Final = 1.25
LEAD_IN_S: Final = 2.0
INSTRUMENTAL_RMS_DBFS: Final = -20.0
VOCAL_OVER_INSTRUMENTAL_DB: Final = 2.0
DUCK_DB: Final = 3.0
PEAK_DBFS: Final = -1.0
VOCAL_EDGE_FADE_S: Final = 0.03
FADE_IN_S: Final = 0.05
FADE_OUT_S: Final = 2.5
# Each pass that does not find the instrumental in the mix lowers the vocal by this much.
VOCAL_RETREAT_DB: Final = 4.0
PRESENCE_PASSES: Final = 3
TRACEABLE_CONFIDENCE: Final = 0.9

PITCH_CLASSES: Final = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Krumhansl-Kessler key profiles (major, minor), tonic first.
_MAJOR: Final = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR: Final = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


class AudioRemix:
    name = "audio-remix"
    title = "Remix with your vocal"
    description = (
        "Your vocal over the creator's instrumental: tempo matched by beat tracking, key matched by pitch "
        "shifting, placed on the beat and mixed with levels, ducking and fades. The original stays "
        "audible, and traceable by its fingerprint."
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
        InputSpec(
            name="vocal_bpm",
            kind="text",
            label="Tempo of your vocal (beats per minute)",
            help="Optional: leave empty to have it estimated.",
            required=False,
            max_length=6,
        ),
    )
    use_classes = frozenset({DERIVATIVE})

    def run(self, request: GenerationRequest, progress: Progress) -> GeneratedMedia:
        import librosa

        if not request.parents:
            raise GenerationFailed("The remix needs the licensed instrumental.", code="missing_parent")
        vocal_bytes = request.inputs.get("vocal")
        if not isinstance(vocal_bytes, bytes):
            raise GenerationFailed("Upload your vocal recording.", code="missing_input")
        stated_bpm = _stated_bpm(request.inputs.get("vocal_bpm"))

        progress(5, "Decoding the instrumental and your vocal")
        instrumental, source_rate = _decode(request.parents[0].data, "the instrumental")
        rate = min(max(source_rate, MIN_RATE_HZ), MAX_RATE_HZ)
        instrumental = _resampled(instrumental, source_rate, rate)
        instrumental = instrumental[: int(MAX_OUTPUT_S * rate)]
        vocal_raw, vocal_rate = _decode(vocal_bytes, "your vocal")
        vocal = _resampled(vocal_raw, vocal_rate, rate)
        if vocal.size < MIN_VOCAL_S * rate or _rms(vocal) < 1e-4:
            raise GenerationFailed("Your vocal is silent or shorter than a second.", code="vocal_too_short")

        progress(15, "Tracking the beat")
        tempo_i, beats = librosa.beat.beat_track(y=instrumental, sr=rate, units="time")
        instrumental_bpm = float(np.atleast_1d(tempo_i)[0])
        if stated_bpm is not None:
            vocal_bpm = stated_bpm
        else:
            tempo_v, _ = librosa.beat.beat_track(y=vocal, sr=rate)
            vocal_bpm = float(np.atleast_1d(tempo_v)[0])
        stretch = _stretch_ratio(instrumental_bpm, vocal_bpm)

        progress(30, "Matching the tempo")
        if abs(stretch - 1.0) > 0.01:
            vocal = np.asarray(librosa.effects.time_stretch(vocal, rate=stretch), dtype=np.float32)

        progress(45, "Finding the keys")
        key_i = _key(instrumental, rate)
        key_v = _key(vocal, rate)
        semitones = _semitones_between(key_v, key_i)
        progress(55, "Matching the key")
        if semitones:
            vocal = np.asarray(
                librosa.effects.pitch_shift(vocal, sr=rate, n_steps=semitones), dtype=np.float32
            )

        progress(65, "Placing the vocal on the beat")
        onsets = librosa.onset.onset_detect(y=vocal, sr=rate, units="time")
        first_onset = float(onsets[0]) if len(onsets) else 0.0
        beat_times = np.asarray(beats, dtype=np.float64)
        later = beat_times[beat_times >= LEAD_IN_S + first_onset]
        start_s = float(later[0]) - first_onset if len(later) else LEAD_IN_S

        reference = AudioIndex()
        reference.add("parent", fingerprint.compute(instrumental, rate))
        vocal_gain_db = VOCAL_OVER_INSTRUMENTAL_DB
        confidence = 0.0
        mix = instrumental
        for attempt in range(1, PRESENCE_PASSES + 1):
            progress(70 + 8 * (attempt - 1), "Mixing")
            mix = _mix(instrumental, vocal, rate, start_s=start_s, vocal_gain_db=vocal_gain_db)
            heard = reference.query(fingerprint.compute(mix, rate, query=True), limit=1)
            confidence = heard[0].confidence if heard else 0.0
            if confidence >= TRACEABLE_CONFIDENCE:
                break
            vocal_gain_db -= VOCAL_RETREAT_DB

        progress(95, "Encoding")
        data = _wav(mix, rate)
        progress(100, "Done")
        return GeneratedMedia(
            data=data,
            media_type="audio/wav",
            extension="wav",
            details={
                "duration_s": round(mix.size / rate, 2),
                "sample_rate_hz": rate,
                "instrumental_bpm": round(instrumental_bpm, 1),
                "vocal_bpm": round(vocal_bpm, 1),
                "vocal_bpm_stated": stated_bpm is not None,
                "time_stretch": round(stretch, 4),
                "instrumental_key": _key_name(key_i),
                "vocal_key": _key_name(key_v),
                "pitch_shift_semitones": semitones,
                "vocal_starts_s": round(start_s, 3),
                "vocal_over_instrumental_db": vocal_gain_db,
                "instrumental_match_confidence": round(confidence, 4),
            },
        )


def _stated_bpm(value: bytes | str | None) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        bpm = float(value if isinstance(value, str) else value.decode())
    except (ValueError, UnicodeDecodeError):
        raise GenerationFailed("The vocal's tempo must be a number of beats per minute.") from None
    if not 30 <= bpm <= 300:
        raise GenerationFailed("The vocal's tempo must be between 30 and 300 beats per minute.")
    return bpm


def _decode(data: bytes, what: str) -> tuple[Samples, int]:
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as handle:
            rate = int(handle.samplerate)
            block = handle.read(frames=int((MAX_OUTPUT_S + 1) * rate), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise GenerationFailed(f"{what.capitalize()} cannot be decoded: {exc}") from None
    if block.shape[0] == 0:
        raise GenerationFailed(f"{what.capitalize()} has no samples.")
    mono = np.asarray(block.mean(axis=1), dtype=np.float32)
    if not np.all(np.isfinite(mono)):
        raise GenerationFailed(f"{what.capitalize()} holds non-finite samples.")
    return mono, rate


def _resampled(samples: Samples, rate: int, target: int) -> Samples:
    if rate == target:
        return samples
    import librosa

    return np.asarray(librosa.resample(samples, orig_sr=rate, target_sr=target), dtype=np.float32)


def _stretch_ratio(instrumental_bpm: float, vocal_bpm: float) -> float:
    """The time-stretch rate (>1 speeds the vocal up) that brings its tempo to the instrumental's, folded
    by octaves (half and double time count as the same tempo) and clamped to +-25%."""
    if instrumental_bpm <= 0 or vocal_bpm <= 0:
        return 1.0
    ratio = instrumental_bpm / vocal_bpm
    ratio *= 2.0 ** -round(math.log2(ratio))
    return float(min(MAX_STRETCH, max(1 / MAX_STRETCH, ratio)))


def _key(samples: Samples, rate: int) -> tuple[int, str]:
    """(tonic pitch class, "major" or "minor") from the mean chroma."""
    import librosa

    chroma = librosa.feature.chroma_cqt(y=samples, sr=rate)
    profile = chroma.mean(axis=1)
    best = (-2.0, 0, "major")
    for tonic in range(12):
        rolled = np.roll(profile, -tonic)
        for mode, template in (("major", _MAJOR), ("minor", _MINOR)):
            score = float(np.corrcoef(rolled, template)[0, 1])
            if np.isfinite(score) and score > best[0]:
                best = (score, tonic, mode)
    return best[1], best[2]


def _key_name(key: tuple[int, str]) -> str:
    return f"{PITCH_CLASSES[key[0]]} {key[1]}"


def _semitones_between(source: tuple[int, str], target: tuple[int, str]) -> int:
    """Semitones (-6..5) moving `source` to `target`'s key, comparing relative majors when modes differ."""

    def major_tonic(key: tuple[int, str]) -> int:
        return (key[0] + 3) % 12 if key[1] == "minor" else key[0]

    shift = (major_tonic(target) - major_tonic(source)) % 12
    return shift - 12 if shift >= 6 else shift


def _rms(samples: Samples) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0


def _active_rms(samples: Samples, rate: int) -> float:
    """RMS over the louder half of 50 ms frames: silence between phrases does not pull the level down."""
    frame = max(1, int(0.05 * rate))
    usable = samples[: samples.size // frame * frame].reshape(-1, frame)
    if usable.size == 0:
        return _rms(samples)
    frame_rms = np.sqrt(np.mean(np.square(usable, dtype=np.float64), axis=1))
    loud = frame_rms[frame_rms >= np.median(frame_rms)]
    return float(np.sqrt(np.mean(np.square(loud)))) if loud.size else 0.0


def _gain_to(samples: Samples, rate: int, dbfs: float) -> Samples:
    level = _active_rms(samples, rate)
    if level <= 1e-9:
        return samples
    return np.asarray(samples * (10 ** (dbfs / 20) / level), dtype=np.float32)


def _envelope(samples: Samples, rate: int) -> Samples:
    """A smoothed 0..1 'vocal present' envelope (20 ms frames, about 300 ms release)."""
    frame = max(1, int(0.02 * rate))
    padded = np.pad(samples, (0, (-samples.size) % frame))
    frame_rms = np.sqrt(np.mean(np.square(padded.reshape(-1, frame), dtype=np.float64), axis=1))
    peak = float(frame_rms.max()) if frame_rms.size else 0.0
    active = (frame_rms > peak * 10 ** (-30 / 20)).astype(np.float64) if peak > 0 else frame_rms * 0
    smoothed = np.empty_like(active)
    level = 0.0
    release = math.exp(-1 / 15)  # 15 frames of 20 ms
    for index, value in enumerate(active):
        level = value if value > level else level * release
        smoothed[index] = level
    return np.asarray(np.repeat(smoothed, frame)[: samples.size], dtype=np.float32)


def _fade(samples: Samples, rate: int, fade_in_s: float, fade_out_s: float) -> Samples:
    out = samples.copy()
    fade_in = min(out.size, int(fade_in_s * rate))
    fade_out = min(out.size, int(fade_out_s * rate))
    if fade_in:
        out[:fade_in] *= np.linspace(0.0, 1.0, fade_in, dtype=np.float32)
    if fade_out:
        out[-fade_out:] *= np.linspace(1.0, 0.0, fade_out, dtype=np.float32)
    return out


def _mix(
    instrumental: Samples, vocal: Samples, rate: int, *, start_s: float, vocal_gain_db: float
) -> Samples:
    backing = _gain_to(instrumental, rate, INSTRUMENTAL_RMS_DBFS)
    voice = _fade(
        _gain_to(vocal, rate, INSTRUMENTAL_RMS_DBFS + vocal_gain_db), rate, *(VOCAL_EDGE_FADE_S,) * 2
    )
    start = int(start_s * rate)
    placed = np.zeros_like(backing)
    end = min(backing.size, start + voice.size)
    if end > start:
        placed[start:end] = voice[: end - start]
    ducking = 1.0 - (1.0 - 10 ** (-DUCK_DB / 20)) * _envelope(placed, rate)
    mix = backing * ducking + placed
    mix = _fade(mix, rate, FADE_IN_S, min(FADE_OUT_S, mix.size / rate / 4))
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    ceiling = 10 ** (PEAK_DBFS / 20)
    if peak > ceiling:
        mix = mix * (ceiling / peak)
    return np.asarray(mix, dtype=np.float32)


def _wav(samples: Samples, rate: int) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    try:
        soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:  # pragma: no cover (defensive)
        raise GenerationFailed(f"The mix cannot be encoded: {exc}") from None
    return buffer.getvalue()
