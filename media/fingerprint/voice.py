"""Speaker embeddings: link a recording to the person whose voice it carries, even when no audio was copied.

A song sung in a creator's (possibly AI-cloned) voice shares no samples with that creator's own uploads,
so audio fingerprints cannot link them; the timbre of the voice can. ``embed`` maps speech to a 256-dim
unit vector with resemblyzer's GE2E speaker encoder (a 3-layer LSTM over 40-band mel frames, trained for
speaker verification); the cosine ``similarity`` of two embeddings is high for one speaker and lower for two.

Noise is the main enemy of a re-uploaded voice: it lowers every score and pulls a recording towards
"noisy" rather than towards its speaker. Before the encoder, a recording whose noise floor is audible
(estimated SNR under NOISY_BELOW_SNR_DB) goes through a Wiener filter whose noise spectrum is measured on
its own quietest frames; a clean recording passes untouched, so clean-to-clean scores do not change.

The model weights ship inside the resemblyzer package, so nothing is fetched at run time. It is loaded on
first use and kept for the life of the process; importing this module stays cheap.

``same_speaker_threshold`` and the ``confidence`` curve were measured by ``bench/fingerprint_voice.py`` on
held-apart sentences of 35 real speakers, clean and after MP3 and white or pink noise: see the Voice
section of docs/fingerprinting.md.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from dataclasses import dataclass
from math import exp, gcd
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from media.errors import CorruptMedia, MediaTooLarge, UnsupportedMedia
from media.validation import CONTAINER_FORMATS, sniff

if TYPE_CHECKING:
    from resemblyzer import VoiceEncoder

ALGORITHM: Final = "voice-resemblyzer-ge2e-v2"
EMBEDDING_SIZE: Final = 256
MODEL_SAMPLE_RATE_HZ: Final = 16_000
MIN_SAMPLE_RATE_HZ: Final = 8_000
MAX_SAMPLE_RATE_HZ: Final = 192_000
MAX_DURATION_S: Final = 600.0
MAX_INPUT_BYTES: Final = 200 * 1024 * 1024
# Below this much voiced audio (after silence removal) an embedding is mostly noise.
MIN_SPEECH_S: Final = 1.0

# Noise front end. The noise power spectrum is the mean of the quietest _NOISE_FRAME_FRACTION of STFT
# frames (speech has pauses; stationary noise fills them); the SNR estimate compares the loudest half of
# the frames with it. Clean studio speech estimates at 30 dB or more, speech under 20 dB white noise at
# about 23 dB; some real home recordings come out near 20 dB and are (rightly) denoised.
NOISY_BELOW_SNR_DB: Final = 25.0
_STFT_SIZE: Final = 512  # 32 ms at 16 kHz
_STFT_HOP: Final = 128
_NOISE_FRAME_FRACTION: Final = 0.1
_MIN_NOISE_FRAMES: Final = 4
# Decision-directed a-priori SNR smoothing (Ephraim and Malah) keeps the residual noise from turning into
# "musical" tones; the gain floor (-20 dB) keeps some noise rather than carving holes in the spectrum.
_PRIOR_SNR_SMOOTHING: Final = 0.98
_WIENER_GAIN_FLOOR: Final = 0.1

# Cosine similarity at or above which two recordings are taken to carry the same voice: the 1% FPR point
# of the benchmark with every test condition pooled (clean enrolment vs held-apart sentences clean, and
# after MP3 + white or pink noise at 15 and 10 dB SNR: FPR 1.0%, FNR 16.6%). Clean tests: FPR 1.8%, FNR
# 5.0%; at 15 dB SNR: FPR 0.8-1.3%, FNR 11%; at 10 dB: FPR under 1%, FNR 21-35%. A miss on a very noisy
# upload is the price of not accusing the wrong creator.
SAME_SPEAKER_THRESHOLD: Final = 0.78
same_speaker_threshold: Final = SAME_SPEAKER_THRESHOLD

# Logistic calibration of similarity to P(same speaker), fitted by the benchmark on its genuine and
# impostor scores (the five test conditions pooled) with equal priors:
# confidence = 1 / (1 + exp(-slope * (score - midpoint))).
_CONFIDENCE_SLOPE: Final = 39.5
_CONFIDENCE_MIDPOINT: Final = 0.718

_BYTE_ORDER_DTYPE: Final = np.dtype("<f4")
_NORM_TOLERANCE: Final = 1e-3

_encoder_lock = threading.Lock()
_encoder: VoiceEncoder | None = None


@dataclass(frozen=True, eq=False)
class VoiceEmbedding:
    """A unit-norm float32 speaker embedding; ``to_bytes`` is 1024 little-endian bytes."""

    vector: npt.NDArray[np.float32]
    algorithm: str = ALGORITHM

    def __post_init__(self) -> None:
        vector = np.asarray(self.vector, dtype=np.float32)
        if vector.shape != (EMBEDDING_SIZE,) or not np.all(np.isfinite(vector)):
            raise ValueError(f"a voice embedding is {EMBEDDING_SIZE} finite floats, got shape {vector.shape}")
        if abs(float(np.linalg.norm(vector)) - 1.0) > _NORM_TOLERANCE:
            raise ValueError("a voice embedding has unit norm")
        vector = vector.copy()
        vector.setflags(write=False)
        object.__setattr__(self, "vector", vector)

    def to_bytes(self) -> bytes:
        return self.vector.astype(_BYTE_ORDER_DTYPE).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> VoiceEmbedding:
        if len(data) != EMBEDDING_SIZE * _BYTE_ORDER_DTYPE.itemsize:
            raise ValueError(f"a voice embedding is {EMBEDDING_SIZE * 4} bytes, got {len(data)}")
        return cls(np.frombuffer(data, dtype=_BYTE_ORDER_DTYPE).astype(np.float32))


def embed(samples: npt.ArrayLike, sr: int) -> VoiceEmbedding:
    """Embed the voice in ``samples`` (mono ``(n,)`` or ``(n, channels)``, any sample rate ``sr``).

    Raises UnsupportedMedia for a sample rate or shape we do not take, CorruptMedia for non-finite samples
    or too little speech, MediaTooLarge past MAX_DURATION_S.
    """
    mono = _validated_mono(samples, sr)
    speech = _speech_only(_denoised(_resample(mono, sr)))
    if speech.size < MIN_SPEECH_S * MODEL_SAMPLE_RATE_HZ:
        raise CorruptMedia(f"under {MIN_SPEECH_S} s of speech after removing silence")
    encoder = _load_encoder()
    import torch

    with torch.inference_mode():
        vector = encoder.embed_utterance(speech)
    unit = np.asarray(vector, dtype=np.float64)
    unit /= np.linalg.norm(unit)
    return VoiceEmbedding(unit.astype(np.float32))


def embed_file(data: bytes | str | os.PathLike[str]) -> VoiceEmbedding:
    """Decode WAV, FLAC, OGG, MP3 or AIFF (bytes or a file) at its own sample rate, or the soundtrack of
    an MP4, M4A, MOV or WebM at the model's rate, and embed its voice.

    ``media.fingerprint.audio.decode`` is not used: it resamples to 8 kHz, which drops the 4-8 kHz band
    that carries much of a voice's identity.
    """
    import soundfile

    raw = data if isinstance(data, bytes) else Path(data).read_bytes()
    if len(raw) > MAX_INPUT_BYTES:
        raise MediaTooLarge(f"the file is {len(raw)} bytes; the limit is {MAX_INPUT_BYTES}")
    fmt = sniff(raw[:16])
    if fmt in CONTAINER_FORMATS:
        from media.containers import decode_audio

        rate = MODEL_SAMPLE_RATE_HZ
        return embed(decode_audio(raw, fmt, rate=rate, max_duration_s=MAX_DURATION_S), rate)
    try:
        with soundfile.SoundFile(io.BytesIO(raw)) as handle:
            rate = int(handle.samplerate)
            limit = int(MAX_DURATION_S * rate) + 1
            samples = handle.read(frames=limit, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise UnsupportedMedia(f"not decodable as WAV, FLAC, OGG or MP3: {error}") from None
    if samples.shape[0] >= limit:
        raise MediaTooLarge(f"audio longer than {MAX_DURATION_S:.0f} s")
    return embed(samples, rate)


def similarity(a: VoiceEmbedding, b: VoiceEmbedding) -> float:
    """Cosine similarity in [-1, 1]; at or above ``same_speaker_threshold`` means the same voice."""
    if a.algorithm != b.algorithm:
        raise ValueError(f"cannot compare {a.algorithm} with {b.algorithm}")
    return float(np.clip(np.dot(a.vector, b.vector), -1.0, 1.0))


def confidence(score: float) -> float:
    """Calibrated probability (0..1) that a similarity ``score`` comes from one speaker, at equal priors."""
    return 1.0 / (1.0 + exp(-_CONFIDENCE_SLOPE * (score - _CONFIDENCE_MIDPOINT)))


def is_same_speaker(score: float) -> bool:
    return score >= SAME_SPEAKER_THRESHOLD


def _validated_mono(samples: npt.ArrayLike, sr: int) -> npt.NDArray[np.float32]:
    if not isinstance(sr, int | np.integer) or not MIN_SAMPLE_RATE_HZ <= sr <= MAX_SAMPLE_RATE_HZ:
        raise UnsupportedMedia(f"sample rate {sr!r} outside {MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ} Hz")
    try:
        array = np.asarray(samples)
    except (TypeError, ValueError) as error:
        raise UnsupportedMedia("samples are not an array of numbers") from error
    if array.dtype.kind not in "fiu" or array.ndim not in (1, 2) or array.size == 0:
        raise UnsupportedMedia(f"samples must be a non-empty 1-D or 2-D numeric array, got {array.dtype}")
    if array.shape[0] > MAX_DURATION_S * sr:
        raise MediaTooLarge(f"audio longer than {MAX_DURATION_S:.0f} s")
    if array.dtype.kind in "iu":
        # Integer PCM: scale to [-1, 1] by the type's range.
        array = array.astype(np.float64) / float(np.iinfo(array.dtype).max)
    mono = array.astype(np.float32) if array.ndim == 1 else array.astype(np.float32).mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise CorruptMedia("samples contain NaN or infinity")
    return np.ascontiguousarray(mono)


def _resample(mono: npt.NDArray[np.float32], sr: int) -> npt.NDArray[np.float32]:
    if sr == MODEL_SAMPLE_RATE_HZ:
        return mono
    from scipy.signal import resample_poly

    divisor = gcd(int(sr), MODEL_SAMPLE_RATE_HZ)
    resampled = resample_poly(mono, MODEL_SAMPLE_RATE_HZ // divisor, int(sr) // divisor)
    return np.asarray(resampled, dtype=np.float32)


def estimated_snr_db(wav: npt.NDArray[np.float32]) -> float:
    """Speech-to-noise ratio of 16 kHz audio in dB, from its loudest half of frames versus its quietest."""
    power, _ = _power_spectrogram(wav)
    return _snr_db(power, _noise_spectrum(power))


def _power_spectrogram(
    wav: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.complex128]]:
    from scipy.signal import stft

    _, _, spectrum = stft(wav.astype(np.float64), nperseg=_STFT_SIZE, noverlap=_STFT_SIZE - _STFT_HOP)
    return np.abs(spectrum) ** 2, spectrum


def _noise_spectrum(power: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    frame_energy = power.sum(axis=0)
    count = min(
        max(int(np.ceil(_NOISE_FRAME_FRACTION * frame_energy.size)), _MIN_NOISE_FRAMES), frame_energy.size
    )
    quietest = np.argsort(frame_energy, kind="stable")[:count]
    noise: npt.NDArray[np.float64] = power[:, quietest].mean(axis=1)
    return noise


def _snr_db(power: npt.NDArray[np.float64], noise: npt.NDArray[np.float64]) -> float:
    frame_energy = np.sort(power.sum(axis=0))
    loud = float(frame_energy[frame_energy.size // 2 :].mean())
    noise_energy = float(noise.sum())
    if noise_energy <= 0.0:
        return float("inf")
    return 10.0 * float(np.log10(max(loud / noise_energy - 1.0, 1e-12)))


def _denoised(wav: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Wiener-filter ``wav`` (16 kHz) when its estimated SNR is under NOISY_BELOW_SNR_DB; else return it."""
    if wav.size < _STFT_SIZE * _MIN_NOISE_FRAMES:
        return wav
    from scipy.signal import istft

    power, spectrum = _power_spectrogram(wav)
    noise = _noise_spectrum(power)
    if not _snr_db(power, noise) < NOISY_BELOW_SNR_DB:
        return wav
    posterior_snr = power / (noise[:, None] + 1e-12)
    gains = np.empty_like(power)
    previous = np.zeros(power.shape[0])
    for frame in range(power.shape[1]):
        prior_snr = _PRIOR_SNR_SMOOTHING * previous + (1.0 - _PRIOR_SNR_SMOOTHING) * np.maximum(
            posterior_snr[:, frame] - 1.0, 0.0
        )
        gain = np.maximum(prior_snr / (1.0 + prior_snr), _WIENER_GAIN_FLOOR)
        gains[:, frame] = gain
        previous = gain**2 * posterior_snr[:, frame]
    _, filtered = istft(spectrum * gains, nperseg=_STFT_SIZE, noverlap=_STFT_SIZE - _STFT_HOP)
    return np.asarray(filtered[: wav.size], dtype=np.float32)


def _speech_only(wav: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """resemblyzer's own preprocessing: level normalisation, then WebRTC VAD drops long silences."""
    resemblyzer = _import_resemblyzer()
    peak = float(np.max(np.abs(wav)))
    if peak == 0.0:
        return wav[:0]
    processed = resemblyzer.preprocess_wav(wav, source_sr=MODEL_SAMPLE_RATE_HZ)
    return np.asarray(processed, dtype=np.float32)


def _import_resemblyzer() -> Any:
    # Two import-time warnings that are resemblyzer's to fix, not errors of ours: webrtcvad reads its own
    # version through the deprecated pkg_resources, and resemblyzer imports binary_dilation from the
    # deprecated scipy.ndimage.morphology namespace.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*scipy.ndimage.morphology", category=DeprecationWarning)
        import resemblyzer
    return resemblyzer


def _load_encoder() -> VoiceEncoder:
    global _encoder
    with _encoder_lock:
        if _encoder is None:
            resemblyzer = _import_resemblyzer()
            _encoder = resemblyzer.VoiceEncoder(device="cpu", verbose=False)
        return _encoder
