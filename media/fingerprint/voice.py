"""Speaker embeddings: link a recording to the person whose voice it carries, even when no audio was copied.

A song sung in a creator's (possibly AI-cloned) voice shares no samples with that creator's own uploads,
so audio fingerprints cannot link them; the timbre of the voice can. ``embed`` maps speech to a 256-dim
unit vector with resemblyzer's GE2E speaker encoder (a 3-layer LSTM over 40-band mel frames, trained for
speaker verification); the cosine ``similarity`` of two embeddings is high for one speaker and lower for two.

The model weights ship inside the resemblyzer package, so nothing is fetched at run time. It is loaded on
first use and kept for the life of the process; importing this module stays cheap.

``same_speaker_threshold`` and the ``confidence`` curve were measured by ``bench/fingerprint_voice.py`` on
held-apart sentences of 35 real speakers, clean and after MP3 and noise: see docs/fingerprinting_voice.md.
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

if TYPE_CHECKING:
    from resemblyzer import VoiceEncoder

ALGORITHM: Final = "voice-resemblyzer-ge2e-v1"
EMBEDDING_SIZE: Final = 256
MODEL_SAMPLE_RATE_HZ: Final = 16_000
MIN_SAMPLE_RATE_HZ: Final = 8_000
MAX_SAMPLE_RATE_HZ: Final = 192_000
MAX_DURATION_S: Final = 600.0
MAX_INPUT_BYTES: Final = 200 * 1024 * 1024
# Below this much voiced audio (after silence removal) an embedding is mostly noise.
MIN_SPEECH_S: Final = 1.0

# Cosine similarity at or above which two recordings are taken to carry the same voice: the low-FPR point
# of the benchmark (clean enrolment vs clean held-apart sentences: FPR 1.6%, FNR 5.0%). After MP3 + 15 dB
# white noise nothing false passes it, but most true matches fall below it too (FNR 86%): a miss there is
# the price of not accusing the wrong creator.
SAME_SPEAKER_THRESHOLD: Final = 0.78
same_speaker_threshold: Final = SAME_SPEAKER_THRESHOLD

# Logistic calibration of similarity to P(same speaker), fitted by the benchmark on its genuine and
# impostor scores (clean and degraded tests pooled) with equal priors:
# confidence = 1 / (1 + exp(-slope * (score - midpoint))).
_CONFIDENCE_SLOPE: Final = 25.3
_CONFIDENCE_MIDPOINT: Final = 0.661

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
    speech = _speech_only(_resample(mono, sr))
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
    """Decode WAV, FLAC, OGG or MP3 (bytes or a file) at its own sample rate and embed its voice.

    ``media.fingerprint.audio.decode`` is not used: it resamples to 8 kHz, which drops the 4-8 kHz band
    that carries much of a voice's identity.
    """
    import soundfile

    raw = data if isinstance(data, bytes) else Path(data).read_bytes()
    if len(raw) > MAX_INPUT_BYTES:
        raise MediaTooLarge(f"the file is {len(raw)} bytes; the limit is {MAX_INPUT_BYTES}")
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
