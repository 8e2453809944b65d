"""How the speaker embedding finds a voice laid over music, with and without separating the vocal first.

    python -m bench.voice_over_music [--pieces 30] [--vmr-db 0 -6 -12] [--learned]

Speakers: every voice of ``media.samples.speech`` (Festival and flite voices built from recordings of
real people, and KLettres' recorded speakers). Sentences 0 and 1 are a speaker's enrolled voice work;
sentences 2 and 3 are laid over music: a seeded excerpt of one of --pieces pieces of the music21 corpus
rendered by ``media.samples.audio`` (pieces taken in turn, so every piece carries several voices), at each
vocal-to-music power ratio of --vmr-db. A genuine trial pairs a mix with its own speaker's enrolment, an
impostor trial with every other speaker's.

Front ends compared on the same mixes: the embedding of the mix as it is (what the platform does today),
and of the vocal separated from it first by a repeating-pattern filter (REPET-SIM: the music's spectrum
at each moment is estimated as the median of its most similar frames a few seconds away, and a soft mask
keeps what stands out of it), and through the ideal ratio mask made from the parts (an upper bound);
with --learned, also by the mask network of ``bench.voice_separation``, trained here twice, once on each
half of the speakers (every other voice in turn), each half's mixes scored through the separator trained
on the other half. Prints, per condition: recall at zero false
positives, the equal error rate, and the false negatives at the shipped threshold.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile

from bench import voice_separation
from media.fingerprint import voice
from media.samples import audio, speech

ENROL = (0, 1)
TESTS = (2, 3)
TRAINING_ONLY = (4, 5)  # the learned separator's training also hears these sentences of its speakers
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


@dataclass(frozen=True)
class Mix:
    mixed: np.ndarray
    vocal: np.ndarray  # the parts, as scaled in the mix: only the oracle front end reads them
    backing: np.ndarray


def _mix(speech_samples: np.ndarray, music: np.ndarray, vmr_db: float, rng: np.random.Generator) -> Mix:
    start = int(rng.integers(0, max(1, len(music) - len(speech_samples))))
    excerpt = np.resize(music[start : start + len(speech_samples)], len(speech_samples))
    speech_power = float(np.mean(speech_samples**2))
    music_power = float(np.mean(excerpt**2)) or 1e-12
    gain = np.sqrt(speech_power / (music_power * 10 ** (vmr_db / 10)))
    backing = gain * excerpt
    scale = 1.0 / max(1.0, float(np.abs(speech_samples + backing).max()))
    vocal, backing = (speech_samples * scale).astype(np.float32), (backing * scale).astype(np.float32)
    return Mix(mixed=vocal + backing, vocal=vocal, backing=backing)


def oracle_vocal(mix: Mix) -> np.ndarray:
    """The vocal through the ideal ratio mask (each cell's true share of voice power): an upper bound for
    any separator working on the mix's spectrogram."""
    vocal = voice_separation.stft(mix.vocal)
    backing = voice_separation.stft(mix.backing)
    vocal_power, backing_power = np.abs(vocal) ** 2, np.abs(backing) ** 2
    mask = vocal_power / (vocal_power + backing_power + 1e-12)
    return voice_separation.istft((mask * (vocal + backing)).astype(np.complex64), len(mix.mixed))


def _scores(
    tests: dict[str, list[Mix]],
    enrolled: dict[str, voice.VoiceEmbedding],
    front_end: Callable[[str, Mix], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    genuine: list[float] = []
    impostor: list[float] = []
    for name, mixes in tests.items():
        for mix in mixes:
            embedding = voice.embed(front_end(name, mix), RATE)
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
    parser.add_argument("--learned", action="store_true", help="also train and try the mask network")
    parser.add_argument("--training-pieces", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=6)
    arguments = parser.parse_args()
    rng = np.random.default_rng(SEED)

    started = time.perf_counter()
    speech.ensure_system_packages()
    renders = speech.render_speech(arguments.cache / "speech", sentences=(*ENROL, *TESTS, *TRAINING_ONLY))
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
    front_ends: list[tuple[str, Callable[[str, Mix], np.ndarray]]] = [
        ("as mixed", lambda name, mix: mix.mixed),
        ("vocal separated", lambda name, mix: separate_vocal(mix.mixed)),
        ("oracle mask", lambda name, mix: oracle_vocal(mix)),
    ]
    if arguments.learned:
        front_ends.append(("learned mask", _learned_front_end(renders, arguments)))
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
        for label, front_end in front_ends:
            genuine, impostor = _scores(tests, enrolled, front_end)
            recall = float(np.mean(genuine > impostor.max()))
            shipped = voice.SAME_SPEAKER_THRESHOLD
            eer = 100 * _equal_error_rate(genuine, impostor)
            print(
                f"{f'{vmr:+.0f} dB, {label}':28} {recall:10.3f} {eer:6.2f}% "
                f"{100 * np.mean(genuine < shipped):11.1f}% {100 * np.mean(impostor >= shipped):11.2f}%"
            )
    print(f"total {time.perf_counter() - started:.0f} s")


def _learned_front_end(
    renders: dict[str, list[Path]], arguments: argparse.Namespace
) -> Callable[[str, Mix], np.ndarray]:
    """A separator per half of the speakers, trained on that half's every sentence; a speaker's mixes go
    through the one trained on the other half."""
    names = list(renders)
    halves = [names[0::2], names[1::2]]
    music_paths = voice_separation.training_music(arguments.cache / "train-music", arguments.training_pieces)
    music = [voice_separation.load_mono(path) for path in music_paths]
    separators = []
    for half in halves:
        started = time.perf_counter()
        clips = [voice_separation.load_mono(path) for name in half for path in renders[name]]
        separators.append(voice_separation.train(clips, music, epochs=arguments.epochs))
        print(f"separator trained on {len(half)} speakers in {time.perf_counter() - started:.0f} s")
    other = {name: separators[1 - index] for index, half in enumerate(halves) for name in half}
    return lambda name, mix: voice_separation.separate(mix.mixed, other[name]).vocal


if __name__ == "__main__":
    main()
