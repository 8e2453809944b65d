"""How the speaker embedding finds a voice laid over music, with and without separating the vocal first.

    python -m bench.voice_over_music [--pieces 30] [--vmr-db 0 -6 -12]

Speakers: every voice of ``media.samples.speech`` (Festival and flite voices built from recordings of
real people, and KLettres' recorded speakers). Sentences 0 and 1 are a speaker's enrolled voice work;
sentences 2 and 3 are laid over music: a seeded excerpt of one of --pieces pieces of the music21 corpus
rendered by ``media.samples.audio`` (pieces taken in turn, so every piece carries several voices), at each
vocal-to-music power ratio of --vmr-db. A genuine trial pairs a mix with its own speaker's enrolment, an
impostor trial with every other speaker's.

Two front ends are compared on the same mixes: the embedding of the mix as it is (what the platform does
today), and of the vocal separated from it first by a repeating-pattern filter (REPET-SIM: the music's
spectrum at each moment is estimated as the median of its most similar frames a few seconds away, and a
soft mask keeps what stands out of it). Prints, per condition: recall at zero false positives, the equal
error rate, and the false negatives at the shipped threshold.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import soundfile

from media.fingerprint import voice
from media.samples import audio, speech

ENROL = (0, 1)
TESTS = (2, 3)
RATE = 16_000
SEED = 20261207


def _load(path: Path) -> np.ndarray:
    samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    return librosa.resample(mono, orig_sr=rate, target_sr=RATE) if rate != RATE else mono


def separate_vocal(mix: np.ndarray, rate: int = RATE) -> np.ndarray:
    """The part of `mix` that does not repeat: music repeats itself (a beat, a chord, a phrase), a voice
    reading does not. Each frame's music is estimated from the frames most like it at least a second away,
    and a soft mask keeps the rest."""
    spectrum = librosa.stft(mix, n_fft=1024, hop_length=256)
    magnitude, phase = np.abs(spectrum), np.angle(spectrum)
    second = int(librosa.time_to_frames(1.0, sr=rate, hop_length=256))
    repeating = librosa.decompose.nn_filter(magnitude, aggregate=np.median, metric="cosine", width=second)
    repeating = np.minimum(repeating, magnitude)
    vocal_mask = librosa.util.softmask(magnitude - repeating, 2.0 * repeating, power=2)
    return librosa.istft(vocal_mask * magnitude * np.exp(1j * phase), hop_length=256, length=len(mix))


def _mix(
    speech_samples: np.ndarray, music: np.ndarray, vmr_db: float, rng: np.random.Generator
) -> np.ndarray:
    start = int(rng.integers(0, max(1, len(music) - len(speech_samples))))
    excerpt = np.resize(music[start : start + len(speech_samples)], len(speech_samples))
    speech_power = float(np.mean(speech_samples**2))
    music_power = float(np.mean(excerpt**2)) or 1e-12
    gain = np.sqrt(speech_power / (music_power * 10 ** (vmr_db / 10)))
    mixed = speech_samples + gain * excerpt
    return (mixed / max(1.0, float(np.abs(mixed).max()))).astype(np.float32)


def _scores(
    tests: dict[str, list[np.ndarray]],
    enrolled: dict[str, voice.VoiceEmbedding],
    front_end: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    genuine: list[float] = []
    impostor: list[float] = []
    for name, mixes in tests.items():
        for mix in mixes:
            embedding = voice.embed(front_end(mix), RATE)
            for other, enrolment in enrolled.items():
                (genuine if other == name else impostor).append(voice.similarity(embedding, enrolment))
    return np.array(genuine), np.array(impostor)


def _equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> float:
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    rejected = np.array([np.mean(genuine < t) for t in thresholds])
    accepted = np.array([np.mean(impostor >= t) for t in thresholds])
    best = int(np.argmin(np.abs(rejected - accepted)))
    return float((rejected[best] + accepted[best]) / 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pieces", type=int, default=30)
    parser.add_argument("--vmr-db", type=float, nargs="+", default=[0.0, -6.0, -12.0])
    parser.add_argument("--cache", type=Path, default=Path("var/samples"))
    arguments = parser.parse_args()
    rng = np.random.default_rng(SEED)

    started = time.perf_counter()
    speech.ensure_system_packages()
    renders = speech.render_speech(arguments.cache / "speech", sentences=(*ENROL, *TESTS))
    pieces: list[np.ndarray] = []
    for corpus_path in audio.corpus_score_paths():
        if len(pieces) == arguments.pieces:
            break
        try:
            pieces.append(_load(audio.render_piece(corpus_path, arguments.cache / "music")))
        except audio.RenderError:
            continue
    ready = time.perf_counter() - started
    print(f"{len(renders)} speakers, {len(pieces)} pieces of music, ready in {ready:.0f} s")

    enrolled = {
        name: voice.embed(np.concatenate([_load(paths[i]) for i in range(len(ENROL))]), RATE)
        for name, paths in renders.items()
    }
    order = list(renders)
    print(f"{'condition':28} {'recall@0FP':>10} {'EER':>7} {'FNR@shipped':>12} {'FPR@shipped':>12}")
    for vmr in arguments.vmr_db:
        tests = {
            name: [
                _mix(
                    _load(renders[name][len(ENROL) + k]),
                    pieces[(position * len(TESTS) + k) % len(pieces)],
                    vmr,
                    rng,
                )
                for k in range(len(TESTS))
            ]
            for position, name in enumerate(order)
        }
        for label, front_end in (("as mixed", lambda mix: mix), ("vocal separated", separate_vocal)):
            genuine, impostor = _scores(tests, enrolled, front_end)
            recall = float(np.mean(genuine > impostor.max()))
            shipped = voice.SAME_SPEAKER_THRESHOLD
            eer = 100 * _equal_error_rate(genuine, impostor)
            print(
                f"{f'{vmr:+.0f} dB, {label}':28} {recall:10.3f} {eer:6.2f}% "
                f"{100 * np.mean(genuine < shipped):11.1f}% {100 * np.mean(impostor >= shipped):11.2f}%"
            )
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
